"""Property tests: generated bad input never escapes the ingest path, and good data around it survives.

Together the two tests push well over 10,000 generated inputs (records and mutated miniSEED
records) through decoding, validation, repair and publishing (into an in-memory producer).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from obspy import Stream, Trace, UTCDateTime
from prometheus_client import CollectorRegistry

from services.common.codec import decode_packet
from services.common.topics import DEADLETTER, WAVEFORMS
from services.ingest.core import NS, IngestCore, Record
from services.ingest.emit import Emitter
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from services.ingest.seedlink import decode_record

NOW = 1_700_000_000 * NS
COUNTS = {"records": 0, "mseed": 0}


@dataclass
class _Acked:
    offset: int

    def add_callback(self, fn: Any) -> None:
        fn(self)  # stands in for RecordMetadata: the offset the broker wrote it at

    def add_errback(self, fn: Any) -> None:
        pass


@dataclass
class MemoryProducer:
    """Stands in for Kafka in unit tests: keeps what was sent, acknowledges at once."""

    sent: list[tuple[str, bytes | None, bytes, dict[str, bytes]]] = field(default_factory=list)

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> _Acked:
        assert isinstance(value, bytes) and (key is None or isinstance(key, bytes))
        self.sent.append((topic, key, value, dict(headers or [])))
        return _Acked(len(self.sent) - 1)

    def flush(self, timeout: float | None = None) -> None:
        pass


_DTYPES = ["<i2", "<i4", ">i4", "<i8", "<u4", "<f2", "<f4", ">f4", "<f8", "<c8", "|S1", "?"]
_CODES = ["", " ", "XX", "X", "ABC", "TOOLONGX", "é", "A.B", "\x00", "--", "HHZ", "LOG", "hhz", "GOOD1"]
_CHANNELS = ["HHZ", "HHN", "ENE", "BH1", "LOG", "ACE", "VM1", "", "HHZZ", "h z"]
_RATES = [
    100.0,
    0.0,
    -1.0,
    1e-9,
    1e9,
    float("nan"),
    float("inf"),
    -float("inf"),
    40.0,
    200.0,
    0.1,
    1000.0,
    1000.1,
]


def garbage_record(seed: int) -> Record:
    """A record built from ``seed``: random ids, dtypes, bit patterns, rates and times (edge values included)."""
    rng = random.Random(seed)  # the standard library's generator: ~20x cheaper to seed than NumPy's
    dtype = np.dtype(rng.choice(_DTYPES))
    n = rng.choice([0, 1, 2, 99, 100, 101, rng.randrange(400)])
    data = np.frombuffer(rng.randbytes(n * dtype.itemsize), dtype=dtype)
    if dtype.kind == "f" and n and rng.random() < 0.5:
        data = data.copy()
        data[rng.randrange(n)] = rng.choice([np.nan, np.inf, -np.inf])
    starts = [
        rng.randrange(-(2**62), 2**62),
        NOW + rng.randrange(-100 * NS, 100 * NS),
        NOW - 300 * NS,  # the time of the good stream: collisions on purpose (other channels)
        0,
    ]
    rates = [*_RATES, rng.gauss(0.0, 1e3), rng.uniform(0.05, 2000)]
    return Record(
        rng.choice(_CODES),
        rng.choice(_CODES[:-1] + ["BAD"]),  # never "GOOD": that station is the valid stream
        rng.choice(["", "00", "--", "XYZ"]),
        rng.choice(_CHANNELS + _CODES),
        rng.choice(starts),
        rng.choice(rates),
        data,
        rng.randrange(2**24),
        "hypothesis",
    )


_METRICS: list[IngestMetrics] = []


def _pipeline() -> tuple[IngestCore, Emitter, MemoryProducer]:
    """A fresh core and producer; one metrics bundle for all examples (no check reads it, and
    registering a bundle per example cost more than the example)."""
    if not _METRICS:
        _METRICS.append(IngestMetrics(CollectorRegistry()))
    producer = MemoryProducer()
    return IngestCore(), Emitter(Publisher(producer, _METRICS[0]), _METRICS[0]), producer


@pytest.mark.slow
@settings(
    max_examples=450, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(st.integers(0, 2**64), min_size=15, max_size=40))
def test_garbage_never_escapes_and_valid_stream_survives(items: list[int]) -> None:
    """Valid 1-s packets of XX.GOOD interleaved with garbage: every valid one is published intact, in order.

    Each drawn integer is one garbage record's seed (its high bits) and whether a valid packet follows
    it (its lowest bit): one draw per record."""
    core, emitter, producer = _pipeline()
    t0 = NOW - 300 * NS
    good: list[Record] = []
    for i, item in enumerate(items):
        seed, then_good = item >> 1, bool(item & 1)
        bad = garbage_record(seed)
        COUNTS["records"] += 1
        out = core.process(bad, now_ns=NOW)
        emitter.emit(out, bad, NOW)
        if out.packet is not None:
            p = out.packet
            assert np.all(np.isfinite(p.data)) and p.data.dtype in (np.int32, np.float32, np.float64)
            assert 0.1 <= p.sampling_rate <= 1000.0 and 0 < len(p.data) <= 100_000
        if then_good:
            g = Record(
                "XX", "GOOD", "", "HHZ", t0 + len(good) * NS, 100.0, np.arange(100, dtype=np.int32) + i
            )
            good.append(g)
            gout = core.process(g, now_ns=NOW)
            assert gout.accepted and gout.repairs == () and gout.gap_s == 0.0
            emitter.emit(gout, g, NOW)
    published = [decode_packet(v) for topic, _k, v, _h in producer.sent if topic == WAVEFORMS.name]
    mine = [p for p in published if p.station == "GOOD"]
    assert [p.start_time_ns for p in mine] == [g.start_time_ns for g in good]
    for p, g in zip(mine, good, strict=True):
        np.testing.assert_array_equal(p.data, g.data)
    for topic, _key, _value, headers in producer.sent:
        if topic == DEADLETTER.name:
            assert headers["reason"] and headers["nslc"] is not None


def _valid_records() -> list[bytes]:
    out = []
    for enc, data in (
        ("STEIM2", np.cumsum(np.random.default_rng(0).integers(-500, 500, 2000)).astype(np.int32)),
        ("INT32", np.arange(-60, 60, dtype=np.int32)),
        ("FLOAT32", np.linspace(-1, 1, 120).astype(np.float32)),
    ):
        tr = Trace(data, header={"network": "XX", "station": "MSD", "channel": "HHZ", "sampling_rate": 100.0})
        tr.stats.starttime = UTCDateTime(ns=NOW - 60 * NS)
        buf = io.BytesIO()
        Stream([tr]).write(buf, format="MSEED", reclen=512, encoding=enc)
        out.append(buf.getvalue()[:512])
    return out


VALID_MSEED = _valid_records()


@pytest.mark.slow
# libmseed's log callback in ObsPy cannot decode some garbage bytes and says so as an "unraisable" warning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::obspy.io.mseed.InternalMSEEDWarning")
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(VALID_MSEED))),
    st.binary(min_size=3, max_size=36),
    st.one_of(st.none(), st.integers(0, 511)),
)
def test_mutated_miniseed_records_are_decoded_or_dead_lettered(
    which: int, damage: bytes, truncate: int | None
) -> None:
    """Random byte damage to real records: decode fails cleanly (dead letter) or the core handles the result.

    ``damage`` holds 1-12 flips, 3 bytes each (position: 2 bytes mod 512, new value): one draw, not 24."""
    COUNTS["mseed"] += 1
    flips = [
        (int.from_bytes(damage[i : i + 2], "little") % 512, damage[i + 2])
        for i in range(0, len(damage) - 2, 3)
    ]
    raw = bytearray(VALID_MSEED[which])
    for pos, val in flips:
        raw[pos] = val
    if truncate is not None:
        raw[truncate:] = bytes(512 - truncate)
    core, emitter, producer = _pipeline()
    try:
        rec = decode_record(bytes(raw), seq=1, source="hypothesis")
    except Exception as exc:  # noqa: BLE001 -- the live path treats any decoder failure as corrupt
        emitter.corrupt(bytes(raw), "XX.MSD..HHZ", str(exc), "hypothesis")
        assert producer.sent[-1][0] == DEADLETTER.name
        return
    out = core.process(rec, now_ns=NOW)
    emitter.emit(out, rec, NOW, raw_mseed=bytes(raw))
    assert len(producer.sent) == 1
    topic = producer.sent[0][0]
    assert topic == (WAVEFORMS.name if out.accepted else DEADLETTER.name)


def test_zz_enough_generated_inputs() -> None:
    """The two property tests above fed at least 10,000 generated bad inputs (when run together)."""
    if COUNTS["records"] == 0:
        return  # run alone (-k): nothing to check
    print(f"\ngenerated inputs: {COUNTS}")
    assert COUNTS["records"] + COUNTS["mseed"] >= 10_000, COUNTS
