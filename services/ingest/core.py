"""Pure core of the ingest service: records -> validated, repaired ``Packet``s.

No I/O here. The adapters (SeedLink, replay) turn what they read into ``Record``s, call
``IngestCore.process`` and publish what comes out; every rejection carries a short reason
label (a metric label and the dead-letter ``reason`` header):

====================  ===========================================================================
reason                meaning
====================  ===========================================================================
corrupt_record        undecodable miniSEED (set by the adapters, which see the raw bytes)
bad_id                network/station/location code empty or not alphanumeric
unknown_channel       channel code does not match ``ValidationConfig.channel_pattern``
unknown_encoding      samples are not numbers (ASCII/opaque records, complex, object)
bad_sampling_rate     non-finite or outside [min_sampling_rate, max_sampling_rate]
empty                 no samples
oversized             more than ``max_samples`` samples
time_in_future        the record ends more than ``max_future_s`` after the wall clock, or after 2200
time_in_past          the record ends more than ``max_past_s`` before the wall clock, or before 1950
sample_overflow       integer samples outside int32
nonfinite             NaN/inf samples (all of them, or any when the policy is "reject")
duplicate             the same samples were already accepted for this channel
out_of_order          older than data already accepted for this channel (late or re-sent)
====================  ===========================================================================

Repairs (counted, the packet is still published): ``nonfinite`` (NaN/inf replaced by the last
finite value, the convention the model uses for gaps), ``overlap`` (leading samples already
accepted are trimmed), ``sample_rate_change`` (continuity restarts at the new rate).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from services.common.codec import Packet
from services.common.domain import nslc
from services.common.settings import CoreModel
from services.common.streams import (
    ACCELERATION_INSTRUMENTS,
    COMPONENT_ROW,
    LOW_GAIN_INSTRUMENTS,
    VELOCITY_INSTRUMENTS,
)
from services.ingest.exceptions import StreamSpecError

NS = 1_000_000_000
# Absolute time sanity (a corrupted BTIME can say year 0 or 2900): outside this is never real data.
EARLIEST_NS = -631_152_000 * NS  # 1950-01-01
LATEST_NS = 7_258_118_400 * NS  # 2200-01-01
INT32_MIN, INT32_MAX = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)

REJECT_REASONS = (
    "corrupt_record",
    "bad_id",
    "unknown_channel",
    "unknown_encoding",
    "bad_sampling_rate",
    "empty",
    "oversized",
    "time_in_future",
    "time_in_past",
    "sample_overflow",
    "nonfinite",
    "duplicate",
    "out_of_order",
)
REPAIR_REASONS = ("nonfinite", "overlap", "sample_rate_change")

#: Channel codes the ingester accepts: the instruments and components ``services.common.streams``
#: knows (so nothing the detector scores is refused here), plus component 3; what the detector
#: would still refuse (e.g. a rate) is published with a warning (``emit.StreamWarnings``).
DEFAULT_CHANNEL_PATTERN = (
    f"^[A-Z][{''.join(sorted(VELOCITY_INSTRUMENTS | ACCELERATION_INSTRUMENTS | LOW_GAIN_INSTRUMENTS))}]"
    f"[{''.join(sorted(COMPONENT_ROW))}3]$"
)

_NET_RE = re.compile(r"^[A-Za-z0-9]{1,2}$")
_STA_RE = re.compile(r"^[A-Za-z0-9]{1,5}$")
_LOC_RE = re.compile(r"^[A-Za-z0-9]{0,2}$")


@dataclass(frozen=True, slots=True)
class Record:
    """One contiguous block of samples of one channel, as read (before validation)."""

    network: str
    station: str
    location: str
    channel: str
    start_time_ns: int
    sampling_rate: float
    data: np.ndarray
    sequence: int = 0
    source: str = ""

    @property
    def nslc(self) -> str:
        return nslc(self.network, self.station, self.location, self.channel)


def record_end_ns(rec: Record) -> int:
    """Time just after the record's last sample (its start when the rate or samples are unusable)."""
    try:
        sr = float(rec.sampling_rate)
        n = int(np.asarray(rec.data).size)
    except (TypeError, ValueError):
        return int(rec.start_time_ns)
    if not math.isfinite(sr) or sr <= 0:
        return int(rec.start_time_ns)
    return int(rec.start_time_ns) + _duration_ns(n, sr)


def record_from_trace(trace: Any, sequence: int = 0, source: str = "") -> Record:
    """An ObsPy ``Trace`` as a ``Record`` (sample times kept to the nanosecond)."""
    st = trace.stats
    return Record(
        network=str(st.network),
        station=str(st.station),
        location=str(st.location),
        channel=str(st.channel),
        start_time_ns=int(st.starttime.ns),
        sampling_rate=float(st.sampling_rate),
        data=np.asarray(trace.data),
        sequence=sequence,
        source=source,
    )


class ValidationConfig(CoreModel):
    """What the core accepts: the one declaration of each limit; the nested ``validation`` group of
    the ingest and replay settings (flags ``--max-future-s`` ..., environment ``EEW_MAX_FUTURE_S`` ...)."""

    max_future_s: float = Field(
        60.0,
        ge=0.0,
        description="Reject records ending more than this many seconds after the wall clock (0 disables).",
    )
    max_past_s: float = Field(
        0.0,
        ge=0.0,
        description="Reject records ending more than this many seconds before the wall clock (0 disables).",
    )
    min_sampling_rate: float = Field(0.1, gt=0.0, description="Lowest accepted sampling rate, Hz.")
    max_sampling_rate: float = Field(1000.0, gt=0.0, description="Highest accepted sampling rate, Hz.")
    max_samples: int = Field(
        100_000, ge=1, description="Reject records with more samples than this (oversized)."
    )
    channel_pattern: str = Field(
        DEFAULT_CHANNEL_PATTERN,
        description="Regular expression of accepted channel codes; others are rejected as unknown_channel "
        "(the default takes every instrument the detector scores, see services.common.streams).",
    )
    nonfinite_policy: Literal["repair", "reject"] = Field(
        "repair", description="NaN/inf samples: 'repair' (hold the last finite value) or 'reject' the record."
    )
    gap_tolerance_samples: float = Field(
        0.5,
        ge=0.0,
        description="Timing jitter tolerated: a record starting within this many samples of the channel's "
        "expected next sample is continuous (no gap, no overlap).",
    )

    @field_validator("channel_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"channel_pattern {value!r} is not a regular expression: {exc}") from exc
        return value


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one record: a packet to publish, or a rejection reason."""

    packet: Packet | None
    reason: str | None = None
    detail: str = ""
    repairs: tuple[str, ...] = ()
    gap_s: float = 0.0
    overlap_s: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.packet is not None


@dataclass
class _ChannelState:
    last_start_ns: int
    end_ns: int
    sampling_rate: float
    last_value: float | None = None


def _duration_ns(n: int, sampling_rate: float) -> int:
    return int(round(n * NS / sampling_rate))


class IngestCore:
    """Validates and repairs records and tracks per-channel continuity (gaps, overlaps)."""

    def __init__(self, config: ValidationConfig | None = None) -> None:
        self.config = config or ValidationConfig()
        self._channel_re = re.compile(self.config.channel_pattern)
        self._channels: dict[str, _ChannelState] = {}

    def reset(self, nslc: str | None = None) -> None:
        """Forget continuity for one channel (or all)."""
        if nslc is None:
            self._channels.clear()
        else:
            self._channels.pop(nslc, None)

    def expected_start_ns(self, nslc: str) -> int | None:
        """Time of the next sample expected on a channel (None before its first packet)."""
        st = self._channels.get(nslc)
        return None if st is None else st.end_ns

    def process(self, rec: Record, now_ns: int, ingest_time_ns: int | None = None) -> Outcome:
        """Validate one record; never raises on bad content (a rejection reason instead)."""
        try:
            return self._process(rec, now_ns, now_ns if ingest_time_ns is None else ingest_time_ns)
        except (ValueError, TypeError, OverflowError, AttributeError) as exc:
            # Anything a garbage record can still trigger is a rejection, never a crash.
            return Outcome(None, "corrupt_record", f"{type(exc).__name__}: {exc}")

    def _reject(self, reason: str, detail: str) -> Outcome:
        return Outcome(None, reason, detail)

    def _process(self, rec: Record, now_ns: int, ingest_time_ns: int) -> Outcome:
        cfg = self.config
        if not (
            isinstance(rec.network, str)
            and isinstance(rec.station, str)
            and isinstance(rec.location, str)
            and _NET_RE.match(rec.network)
            and _STA_RE.match(rec.station)
            and _LOC_RE.match(rec.location)
        ):
            return self._reject("bad_id", f"{rec.network!r}.{rec.station!r}.{rec.location!r}")
        if not isinstance(rec.channel, str) or not self._channel_re.match(rec.channel):
            return self._reject("unknown_channel", repr(rec.channel))
        data = np.asarray(rec.data)
        if data.ndim != 1:
            data = data.reshape(-1)
        kind = data.dtype.kind
        if kind not in "iuf":
            return self._reject("unknown_encoding", f"dtype {data.dtype}")
        sr = rec.sampling_rate
        if not isinstance(sr, (int, float, np.floating, np.integer)) or not math.isfinite(float(sr)):
            return self._reject("bad_sampling_rate", repr(sr))
        sr = float(sr)
        if not cfg.min_sampling_rate <= sr <= cfg.max_sampling_rate:
            return self._reject("bad_sampling_rate", f"{sr} Hz")
        n = int(data.size)
        if n == 0:
            return self._reject("empty", "no samples")
        if n > cfg.max_samples:
            return self._reject("oversized", f"{n} samples > {cfg.max_samples}")
        start = int(rec.start_time_ns)
        end = start + _duration_ns(n, sr)
        if cfg.max_future_s > 0 and end > now_ns + int(cfg.max_future_s * NS):
            return self._reject("time_in_future", f"ends {(end - now_ns) / NS:.1f} s after now")
        if end > LATEST_NS:
            return self._reject("time_in_future", f"ends after 2200 ({end} ns)")
        if start < EARLIEST_NS:
            return self._reject("time_in_past", f"starts before 1950 ({start} ns)")
        if cfg.max_past_s > 0 and end < now_ns - int(cfg.max_past_s * NS):
            return self._reject("time_in_past", f"ends {(now_ns - end) / NS:.1f} s before now")

        repairs: list[str] = []
        nslc = rec.nslc
        state = self._channels.get(nslc)
        if kind in "iu":
            if data.dtype.itemsize > 4 or kind == "u":
                lo, hi = int(data.min()), int(data.max())
                if lo < INT32_MIN or hi > INT32_MAX:
                    return self._reject("sample_overflow", f"range [{lo}, {hi}] outside int32")
            data = data.astype(np.int32, copy=False)
        else:
            # Native byte order; half floats widen to float32, anything wider than 8 bytes narrows.
            data = data.astype(np.float32 if data.dtype.itemsize <= 4 else np.float64, copy=False)
            finite = np.isfinite(data)
            if not finite.all():
                bad = int(n - finite.sum())
                if cfg.nonfinite_policy == "reject" or bad == n:
                    return self._reject("nonfinite", f"{bad} of {n} samples NaN/inf")
                prev = state.last_value if state is not None and state.sampling_rate == sr else None
                data = _hold_last_finite(data, finite, prev)
                repairs.append("nonfinite")

        gap_s = overlap_s = 0.0
        if state is not None and state.sampling_rate != sr:
            repairs.append("sample_rate_change")
            state = None
        if state is not None:
            tol = int(cfg.gap_tolerance_samples * NS / sr)
            dt = start - state.end_ns
            if dt > tol:
                gap_s = dt / NS
            elif dt < -tol:
                # Leading samples whose time is before the expected next sample were accepted already.
                k = math.ceil((state.end_ns - tol - start) * sr / NS)
                if k >= n:
                    same = abs(start - state.last_start_ns) <= tol
                    reason = "duplicate" if same else "out_of_order"
                    return self._reject(reason, f"ends {(state.end_ns - end) / NS:.3f} s before expected")
                overlap_s = k / sr
                data = data[k:]
                start += _duration_ns(k, sr)
                n = int(data.size)
                end = start + _duration_ns(n, sr)
                repairs.append("overlap")

        last_value = float(data[-1])
        self._channels[nslc] = _ChannelState(start, end, sr, last_value)
        packet = Packet(
            network=rec.network,
            station=rec.station,
            location=rec.location,
            channel=rec.channel,
            start_time_ns=start,
            sampling_rate=sr,
            data=data,
            ingest_time_ns=ingest_time_ns,
            sequence=int(rec.sequence),
            source=rec.source,
        )
        return Outcome(packet, None, "", tuple(repairs), gap_s, overlap_s)


def _hold_last_finite(data: np.ndarray, finite: np.ndarray, prev: float | None) -> np.ndarray:
    """Replace NaN/inf with the last finite value before it (``prev`` or the first finite one)."""
    out = np.array(data, copy=True)
    idx = np.where(finite, np.arange(out.size), -1)
    np.maximum.accumulate(idx, out=idx)
    lead = idx < 0
    fill_lead = prev if prev is not None and math.isfinite(prev) else out[np.argmax(finite)]
    out[~lead] = out[idx[~lead]]
    out[lead] = fill_lead
    return out


# ---------------------------------------------------------------------------------------------
# Packetising (replay): records cut into ~packet_seconds pieces on an absolute time grid.


def split_record(rec: Record, packet_seconds: float, align: bool = True) -> list[Record]:
    """Cut a record into packets of about ``packet_seconds``; sample times are kept exactly.

    With ``align`` the cuts fall on multiples of ``packet_seconds`` in absolute time, so the
    three components of a sensor are cut at the same instants (as a digitiser would).
    Records with a sampling rate the core would reject are returned whole (and rejected there).
    """
    n = int(np.asarray(rec.data).size)
    sr = rec.sampling_rate
    try:
        sr_ok = math.isfinite(float(sr)) and float(sr) > 0
    except (TypeError, ValueError):
        sr_ok = False
    if packet_seconds <= 0 or n == 0 or not sr_ok:
        return [rec]
    sr = float(sr)
    grid = max(1, int(round(packet_seconds * NS)))
    t0 = int(rec.start_time_ns)
    cuts: list[int] = [0]
    if align:
        b = (t0 // grid + 1) * grid
    else:
        b = t0 + grid
    while True:
        idx = math.ceil((b - t0) * sr / NS - 1e-6)
        if idx >= n:
            break
        if idx > cuts[-1]:
            cuts.append(idx)
        b += grid
    cuts.append(n)
    out = []
    for a, z in zip(cuts[:-1], cuts[1:], strict=True):
        out.append(replace(rec, start_time_ns=t0 + _duration_ns(a, sr), data=rec.data[a:z]))
    return out


# ---------------------------------------------------------------------------------------------
# SeedLink stream selection, reconnect backoff, stall watchdog.

_SELECTOR_RE = re.compile(r"^!?([A-Z0-9?]{2}|--)?[A-Z0-9?]{3}(\.[A-Z?])?$")


@dataclass(frozen=True)
class StreamSpec:
    """One SeedLink station subscription: NET_STA with its selectors (e.g. ``HH?``)."""

    network: str
    station: str
    selectors: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.network}_{self.station}"


def parse_streams(text: str, default_selectors: Sequence[str] = ()) -> list[StreamSpec]:
    """Parse ``"NET_STA[:SEL SEL],NET_STA[:SEL],..."`` (ObsPy/slinktool syntax).

    Repeated stations are merged. Raises ``StreamSpecError`` naming the bad entry.
    """
    specs: dict[str, StreamSpec] = {}
    previous = ""
    for raw in text.split(","):
        token = raw.strip()
        if not token:
            continue
        name, _, sel = token.partition(":")
        parts = name.strip().split("_")
        if len(parts) != 2 or not _NET_RE.match(parts[0]) or not _STA_RE.match(parts[1]):
            if previous and ":" not in token and all(_SELECTOR_RE.match(x) for x in token.split()):
                raise StreamSpecError(
                    f"{token!r} after {previous!r} looks like a selector: the selectors of one station are "
                    f"separated by spaces and stations by commas, e.g. '{previous} {token},NET_STA:HH?'"
                )
            raise StreamSpecError(
                f"not NET_STA[:SELECTORS]: {token!r} (expected e.g. 'NC_MEM:HHZ HHN HHE,NC_JAS:HH?': "
                "stations separated by commas, selectors by spaces)"
            )
        previous = token
        selectors = tuple(s for s in sel.split() if s) if sel.strip() else tuple(default_selectors)
        for s in selectors:
            if len(s) > 8 or not _SELECTOR_RE.match(s):
                raise StreamSpecError(
                    f"bad SeedLink selector {s!r} in {token!r}: expected [LL]CCC[.T] ('?' wildcards, "
                    "'!' to exclude, '--' for an empty location), several separated by spaces, e.g. 'HHZ 00BH?'"
                )
        spec = StreamSpec(parts[0], parts[1], selectors)
        if spec.key in specs:
            old = specs[spec.key]
            merged = old.selectors + tuple(s for s in selectors if s not in old.selectors)
            spec = StreamSpec(spec.network, spec.station, merged)
        specs[spec.key] = spec
    if not specs:
        raise StreamSpecError("no streams given (expected e.g. 'NC_MEM:HH?,NC_JAS:HH?')")
    return list(specs.values())


@dataclass
class Backoff:
    """Exponential reconnect delay with full jitter, capped; ``reset`` after a good connection."""

    min_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.min_s * self.factor**self.attempt)
        self.attempt += 1
        return self.min_s + self.rng.random() * max(0.0, ceiling - self.min_s)

    def reset(self) -> None:
        self.attempt = 0


class StallWatch:
    """Which stations that did deliver data have gone quiet for longer than ``timeout_s``.

    A station counts as flowing once it has delivered data (in this process); quiet time is
    measured from the later of its last data and the current connection's start, so a fresh
    connection gets ``timeout_s`` before it can be declared stalled. One quiet station is only
    reported (``stalled``); the link as a whole is stalled (``link_stalled``) when no station
    at all delivered for ``timeout_s``.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._last: dict[str, float] = {}
        self._connected_at = 0.0

    def connected(self, now: float) -> None:
        self._connected_at = now

    def data(self, key: str, now: float) -> None:
        self._last[key] = now

    def forget(self, key: str) -> None:
        """A station no longer on this link (it moved to another)."""
        self._last.pop(key, None)

    def last_data(self) -> float | None:
        return max(self._last.values()) if self._last else None

    def stalled(self, now: float) -> list[str]:
        if self.timeout_s <= 0:
            return []
        return [k for k, t in self._last.items() if now - max(t, self._connected_at) > self.timeout_s]

    def quiet_s(self, key: str, now: float) -> float:
        """Seconds since a station's last data (0 when it never delivered)."""
        t = self._last.get(key)
        return 0.0 if t is None else now - t

    def link_stalled(self, now: float) -> bool:
        """No station delivered anything for ``timeout_s`` (on a link that did deliver before)."""
        last = self.last_data()
        if self.timeout_s <= 0 or last is None:
            return False
        return now - max(last, self._connected_at) > self.timeout_s
