"""From a core ``Outcome`` to Kafka: the packet, or the rejected input to the dead-letter topic.

Shared by the SeedLink and replay adapters so both count and log bad input the same way.
"""

from __future__ import annotations

import logging

import numpy as np

from services.common.codec import Packet, encode_packet
from services.common.domain import station_id
from services.common.streams import hint, scorable
from services.ingest.core import NS, Outcome, Record
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import (
    MSEED_CONTENT_TYPE,
    OCTET_CONTENT_TYPE,
    PACKET_CONTENT_TYPE,
    DoneCallback,
    Publisher,
)

log = logging.getLogger(__name__)


class _RateLimitedLog:
    """The first ``burst`` messages per key, then one every ``every`` (a poison stream cannot flood logs)."""

    def __init__(self, burst: int = 5, every: int = 1000) -> None:
        self.burst = burst
        self.every = every
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(self, key: tuple[str, str]) -> int | None:
        n = self.counts.get(key, 0) + 1
        if len(self.counts) > 10_000:
            self.counts.clear()
        self.counts[key] = n
        return n if n <= self.burst or n % self.every == 0 else None


class StreamWarnings:
    """Warns once per stream (NSLC and rate) the detector would refuse, by the shared rule.

    ``services.common.streams.scorable`` is the one rule of replay, ingest and detector; the
    ingester still publishes such streams (archives and other consumers may want them) but
    says so once, with the hint, and counts them by reason.
    """

    def __init__(self, metrics: IngestMetrics, limit: int = 100_000) -> None:
        self.metrics = metrics
        self.limit = limit
        self._seen: set[tuple[str, float]] = set()

    def check(self, nslc: str, channel: str, rate: float) -> str | None:
        """The refusal reason of this stream (None when scorable); logs and counts it the first time."""
        key = (nslc, rate)
        if key in self._seen:
            return None
        if len(self._seen) >= self.limit:
            self._seen.clear()
        self._seen.add(key)
        reason = scorable(channel, rate)
        if reason is not None:
            self.metrics.unscorable_streams.labels(reason).inc()
            log.warning(
                "%s at %g Hz: published, but the detector will not score it (%s: %s)",
                nslc,
                rate,
                reason,
                hint(reason),
            )
        return reason


class Emitter:
    """Publishes accepted packets, dead-letters rejections, and keeps the metrics."""

    def __init__(self, publisher: Publisher, metrics: IngestMetrics) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self._limit = _RateLimitedLog()
        self.streams = StreamWarnings(metrics)

    def emit(
        self,
        outcome: Outcome,
        rec: Record,
        now_ns: int,
        raw_mseed: bytes | None = None,
        on_done: DoneCallback | None = None,
    ) -> bool:
        """Publish the outcome of one record; ``raw_mseed`` (the original record) goes to dead letters."""
        m = self.metrics
        for r in outcome.repairs:
            m.repaired.labels(r).inc()
        if outcome.packet is not None:
            p = outcome.packet
            if outcome.gap_s > 0:
                m.gaps.inc()
                m.gap_seconds.inc(outcome.gap_s)
                self._log(
                    p.nslc, "gap", "%s: gap of %.3f s before %d", p.nslc, outcome.gap_s, p.start_time_ns
                )
            if outcome.overlap_s > 0:
                m.overlaps.inc()
                self._log(p.nslc, "overlap", "%s: overlap of %.3f s trimmed", p.nslc, outcome.overlap_s)
            self.streams.check(p.nslc, p.channel, p.sampling_rate)
            latency = (now_ns - p.end_time_ns) / NS
            m.latency.observe(max(0.0, latency))
            m.station_latency.labels(station_id(p.network, p.station)).set(latency)
            return self.publisher.publish(p, on_done)
        reason = outcome.reason or "rejected"
        m.rejected.labels(reason).inc()
        if reason in ("duplicate", "out_of_order"):
            m.overlaps.inc()
        self._log(
            rec.nslc,
            reason,
            "%s: record rejected (%s: %s), seq %s from %s: dead-lettered",
            rec.nslc,
            reason,
            outcome.detail,
            rec.sequence,
            rec.source,
        )
        if raw_mseed is not None:
            payload, ctype = raw_mseed, MSEED_CONTENT_TYPE
        else:
            payload, ctype = _best_effort_payload(rec)
        return self.publisher.dead_letter(
            payload, reason, rec.nslc, outcome.detail, rec.source, ctype, on_done
        )

    def corrupt(
        self, raw: bytes, nslc: str, detail: str, source: str, on_done: DoneCallback | None = None
    ) -> bool:
        """An input record that could not be decoded at all."""
        self.metrics.rejected.labels("corrupt_record").inc()
        self._log(
            nslc, "corrupt_record", "%s: undecodable record from %s (%s): dead-lettered", nslc, source, detail
        )
        return self.publisher.dead_letter(
            raw, "corrupt_record", nslc, detail, source, MSEED_CONTENT_TYPE, on_done
        )

    def _log(self, nslc: str, kind: str, fmt: str, *args: object) -> None:
        n = self._limit((nslc, kind))
        if n is not None:
            suffix = f" [{n} so far]" if n > self._limit.burst else ""
            log.warning(fmt + suffix, *args)


def _best_effort_payload(rec: Record) -> tuple[bytes, bytes]:
    """The rejected record as a WaveformPacket when its samples are numbers, else their raw bytes."""
    try:
        data = np.asarray(rec.data)
        if data.dtype.kind not in "iuf":
            return data.tobytes(), OCTET_CONTENT_TYPE
        packet = Packet(
            rec.network,
            rec.station,
            rec.location,
            rec.channel,
            int(rec.start_time_ns),
            float(rec.sampling_rate),
            data,
            sequence=int(rec.sequence) & 0xFFFFFFFFFFFFFFFF,
            source=rec.source,
        )
        return encode_packet(packet), PACKET_CONTENT_TYPE
    except (ValueError, TypeError, OverflowError, AttributeError):
        return b"", OCTET_CONTENT_TYPE
