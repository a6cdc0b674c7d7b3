"""Property test: poison input never escapes the detector core and never disturbs valid data.

Each example interleaves a clean 3-component station ("GOOD") with generated bad input: NaN/inf and
overflowing samples, unsupported or nonsense sampling rates, unknown channels, empty packets,
re-sent overlapping/duplicate slices of data already sent, wild timestamps (far future, far past),
garbage and corrupted protobuf through ``decode_packet``, and random packets for another station.
The assertion: no exception escapes, and GOOD's scored chunks are bit-identical to a clean run.
Over all examples at least 10,000 bad inputs are fed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.codec import Packet, decode_packet, encode_packet
from services.common.exceptions import DecodeError
from services.common.streams import resample_ratio
from services.detector.core import CoreDetector
from tests.unit.test_detector_core import DT, T0, FakeScorer, config, make_packets, noise_rec

NOW = T0 + 86_400 * 10**9
REC = noise_rec(2000, seed=42)
VALID = make_packets(REC, size=100, sta="GOOD")  # 60 packets, 20 s
GOOD_KEY = "XX.GOOD.00.HH?"
N_EXAMPLES = 55  # x 200-260 bad inputs: the clean stream is replayed per example, so fewer, denser ones
fed_bad = 0


def _clean_reference() -> tuple[list[int], np.ndarray]:
    det = CoreDetector(config(), sc := FakeScorer())
    ends: list[int] = []
    for p in VALID:
        det.feed(p, now_ns=NOW)
        ends += [s.window_end_ns for s in det.score_ready()]
    return ends, np.concatenate(sc.calls)


REF_ENDS, REF_WAVES = _clean_reference()

KINDS = [
    "nan",
    "inf",
    "overflow",
    "rate",
    "channel",
    "empty",
    "resend",
    "future",
    "past",
    "garbage",
    "mutated",
    "junk",
]
# Rates and other floats worth hitting on purpose; any other float comes from 8 drawn bytes.
EDGE_FLOATS = [
    np.nan,
    np.inf,
    -np.inf,
    0.0,
    -0.0,
    5e-324,
    1e-300,
    1e300,
    -100.0,
    1.0,
    19.99,
    37.0,
    100.0,
    1e6,
]


def _decode_item(blob: bytes) -> tuple[int, str, int, float, bytes]:
    """One bad input's (slot, kind, free parameter, float, raw bytes) from the bytes hypothesis drew for
    it: one draw per bad input instead of five keeps the ~12,000 inputs of a run cheap to generate,
    and hypothesis still varies (and shrinks) every field."""
    head = blob.ljust(16, b"\0")
    slot = int.from_bytes(head[0:2], "little") % len(VALID)
    kind = KINDS[head[2] % len(KINDS)]
    k = int.from_bytes(head[3:7], "little") & 0x7FFFFFFF
    x = EDGE_FLOATS[head[7]] if head[7] < len(EDGE_FLOATS) else float(np.frombuffer(head[8:16], "<f8")[0])
    return slot, kind, k, x, blob[16:]


# Each bad input: 16 bytes of fields, then up to 48 bytes of raw garbage (the "garbage" kind's bytes).
bad_item = st.binary(min_size=8, max_size=64).map(_decode_item)


def _bad_packet(slot: int, kind: str, k: int, x: float, raw: bytes) -> Packet | bytes:
    """Build one bad input relative to the GOOD packets sent so far (slot = index of the last one)."""
    base = VALID[slot]
    data = REC[k % 3, :100].copy()
    t = base.start_time_ns
    if kind in ("nan", "inf", "overflow"):
        data[k % 100] = {"nan": np.nan, "inf": np.inf, "overflow": 1e300}[kind]
        return Packet("XX", "GOOD", "00", base.channel, t, 100.0, data)
    if kind == "rate":
        rate = x if isinstance(resample_ratio(x, 100.0), str) else 37.0  # a rate the detector refuses
        return Packet("XX", "GOOD", "00", base.channel, t, rate, data)
    if kind == "channel":
        cha = ["HHX", "HH", "LOG", "HHZZ", "", "H\x00Z"][k % 6]
        return Packet("XX", "GOOD", "00", cha, t, 100.0, data)
    if kind == "empty":
        return Packet("XX", "GOOD", "00", base.channel, t, 100.0, np.array([], dtype=np.float64))
    if kind == "resend":  # a slice of a packet already sent: duplicate/overlap of real data
        old = VALID[k % (slot + 1)]
        a = k % 100
        b = a + 1 + (k // 100) % (100 - a)
        return Packet(
            old.network,
            old.station,
            old.location,
            old.channel,
            old.start_time_ns + a * DT,
            100.0,
            old.data[a:b],
        )
    if kind == "future":
        return Packet("XX", "GOOD", "00", base.channel, NOW + (k + 700) * 10**9, 100.0, data)
    if kind == "past":  # far before anything scored (beyond history and max gap)
        return Packet("XX", "GOOD", "00", base.channel, T0 - (k + 100) * 10**9, 100.0, data)
    if kind == "garbage":
        return raw
    if kind == "mutated":  # a JUNK packet's encoding, truncated or with a flipped byte
        enc = bytearray(encode_packet(Packet("YY", "JUNK", "", "HHZ", t, 100.0, data)))
        if k % 2:
            return bytes(enc[: k % len(enc)])
        enc[k % len(enc)] ^= 1 + (k >> 8) % 255
        return bytes(enc)
    # junk: a packet for another station with arbitrary time/rate (must not crash, may be accepted)
    rate = x if np.isfinite(x) else 100.0
    return Packet("YY", "JUNK", "", "HH" + "ZNE12X"[k % 6], (k * 7919) % (2 * NOW), rate, data[: k % 100])


@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(st.lists(bad_item, min_size=200, max_size=260))
def _check(bad: list[tuple[int, str, int, float, bytes]]) -> None:
    global fed_bad
    by_slot: dict[int, list[Packet | bytes]] = {}
    wild: dict[int, int] = {}
    for slot, kind, k, x, raw in bad:
        if kind in ("future", "past"):
            # at most 2 wild timestamps in a row: 3 consistent ones are a confirmed discontinuity by design
            wild[slot] = wild.get(slot, 0) + 1
            if wild[slot] > 2:
                kind = "nan"
        by_slot.setdefault(slot, []).append(_bad_packet(slot, kind, k, x, raw))
    det, sc = detector()
    ends: list[int] = []
    for i, p in enumerate(VALID):
        assert det.feed(p, now_ns=NOW) is None
        for item in by_slot.get(i, []):
            fed_bad += 1
            if isinstance(item, bytes):
                try:
                    item = decode_packet(item)
                except DecodeError:
                    continue
            det.feed(item, now_ns=NOW)
        for s in det.score_ready():
            if s.key == GOOD_KEY:
                ends.append(s.window_end_ns)
    assert ends == REF_ENDS
    mine = np.stack(
        [
            w[k]
            for w, keys in zip(sc.calls, sc.keys, strict=True)
            for k, key in enumerate(keys)
            if key == GOOD_KEY
        ]
    )
    np.testing.assert_array_equal(mine, REF_WAVES)


class KeyedScorer(FakeScorer):
    """FakeScorer that also records which station each row of each call belongs to."""

    def __init__(self) -> None:
        super().__init__()
        self.det: CoreDetector | None = None
        self.keys: list[list[str]] = []

    def __call__(self, wave: np.ndarray, state: np.ndarray):  # type: ignore[no-untyped-def]
        assert self.det is not None
        self.keys.append(list(self.det.batch_keys))
        return super().__call__(wave, state)


def detector() -> tuple[CoreDetector, KeyedScorer]:
    sc = KeyedScorer()
    det = CoreDetector(config(), sc)
    sc.det = det
    return det, sc


@pytest.mark.slow
def test_poison_input_never_escapes_and_valid_data_is_still_scored() -> None:
    """>= 10,000 generated bad inputs; GOOD's scores equal the clean run's in every example."""
    _check()
    assert fed_bad >= 10_000, fed_bad
