"""The detector stage: waveform topic -> CoreDetector (ONNX model) -> scores topic.

``services.common.loop.ConsumeLoop`` drives it (poll, backpressure, flush + commit, broker
outages, shutdown); this module supplies the stage's hooks: decode and feed a packet, score and
publish what is ready, the safe offsets, rewinds and rebalances. One thread does everything, so
the model's per-station state needs no locking; ONNX Runtime uses its own intra-op threads.

Offsets (at-least-once)
    A station's model state is built from its history, so committing the newest consumed offset
    would lose it on a restart. Per partition the service commits the smallest offset still
    needed by any of its stations: data not yet scored plus ``warmup`` seconds of history (the
    core tracks it per station), or the next offset when nothing is needed. Commits happen only
    after every score and dead letter sent so far has been acknowledged (flush + check every
    future). A restarted detector therefore re-reads a little, rebuilds the states, and re-scores
    some chunks; downstream de-duplicates by (station, window_end). A failed delivery rewinds the
    partitions to their committed offsets and rebuilds every station.

Backpressure
    At most ``max_rounds_per_poll`` chunks per station are scored between polls; while ready
    chunks remain, every assigned partition is paused (poll keeps the group membership alive)
    and resumed when the backlog is gone. Unacknowledged sends are bounded by ``max_unacked``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from kafka import TopicPartition
from prometheus_client import CollectorRegistry

from models.runtime import StepResult, StreamingModel
from services.common.codec import SCHEMA_VERSION, decode_packet
from services.common.exceptions import DecodeError
from services.common.http import ReadyCheck
from services.common.lifecycle import StopFlag
from services.common.loop import ConsumeLoop, KafkaIO, Records
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.streams import STREAM_REASONS, hint
from services.common.timeutil import NS_PER_S, now_ns, ns_to_iso
from services.detector.core import CoreDetector, Score
from services.detector.metrics import DetectorMetrics
from services.detector.settings import DetectorSettings

log = logging.getLogger(__name__)

#: Rejections that are ordinary stream events (counted, not dead-lettered).
STREAM_EVENTS = frozenset({"late", "duplicate"})
#: Most (stream, reason) pairs remembered for the once-per-stream log and /readyz.
MAX_REJECTED_STREAMS = 10_000


def score_message(s: Score, scored_time_ns: int) -> pb.StationScore:
    """The StationScore message of a core score."""
    return pb.StationScore(
        schema_version=SCHEMA_VERSION,
        network=s.network,
        station=s.station,
        location=s.location,
        channel_prefix=s.channel_prefix,
        window_start_time_ns=s.window_start_ns,
        window_end_time_ns=s.window_end_ns,
        probability=s.probability,
        triggered=s.triggered,
        has_p_onset=s.has_p_onset,
        p_onset_time_ns=s.p_onset_ns,
        p_onset_probability=s.p_onset_probability,
        model_id=s.model_id,
        model_version=s.model_version,
        ingest_time_ns=s.ingest_time_ns,
        scored_time_ns=scored_time_ns,
        peak_amplitude=s.peak_amplitude,
        peak_displacement=s.peak_displacement,
        components=s.components,
    )


class _LogBudget:
    """At most ``n`` warnings per reason per ``window_s`` (poison floods must not flood the log)."""

    def __init__(self, n: int = 10, window_s: float = 60.0) -> None:
        self.n, self.window_s = n, window_s
        self._spent: dict[str, tuple[float, int]] = {}

    def allow(self, reason: str) -> bool:
        now = time.monotonic()
        start, used = self._spent.get(reason, (now, 0))
        if now - start > self.window_s:
            start, used = now, 0
        self._spent[reason] = (start, used + 1)
        return used < self.n


class DetectorService:
    """Runs the loop until ``stop`` is set; ``run()`` returns the exit code."""

    def __init__(
        self,
        settings: DetectorSettings,
        registry: CollectorRegistry,
        stop: StopFlag | None = None,
        model: StreamingModel | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop or StopFlag()
        self.metrics = DetectorMetrics(registry)
        self.model = model or StreamingModel(
            settings.model_dir, settings.provider_list(), intra_op_threads=settings.intra_op_threads
        )
        c = self.model.contract
        self.core = CoreDetector(settings.core_config(c), self._score)
        self.metrics.provider.labels(self.model.provider, c.model_id, c.model_version).set(1)
        log.info(
            "detector: model %s %s on %s; stride %d samples, max batch %d, thresholds detection %.4f p_pick %.4f",
            c.model_id,
            c.model_version,
            self.model.provider,
            self.core.C,
            settings.core.max_batch,
            self.core.cfg.detection_threshold,
            self.core.cfg.p_pick_threshold,
        )
        self.io: KafkaIO | None = None
        self.tp_of: dict[str, TopicPartition] = {}
        self.keys_of: dict[TopicPartition, set[str]] = {}
        self.next_offset: dict[TopicPartition, int] = {}
        self.committed_offsets: dict[TopicPartition, int] = {}  # last committed offset per partition
        self._last_data = 0.0
        self._last_rejected = 0.0  # last packet refused for a stream reason (nothing scorable)
        self._rejected_streams: dict[tuple[str, str], int] = {}  # (NSLC, reason) -> packets
        self._log_budget = _LogBudget()
        self._revoked: set[TopicPartition] = set()
        self._lost: set[TopicPartition] = set()
        self._rebalanced = False
        self.loop = ConsumeLoop("detector", settings.loop, self, self.stop, self.metrics)
        self.loop.on_acked = self._acked

    # ---- model --------------------------------------------------------------------------------
    def _score(self, wave: np.ndarray, state: np.ndarray) -> StepResult:
        t = time.perf_counter()
        res = self.model.step(wave, state)
        self.metrics.inference.observe(time.perf_counter() - t)
        return res

    # ---- health -------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.loop.alive()

    def checks(self) -> dict[str, ReadyCheck]:
        return {
            "broker": self.loop.broker_check(self.settings.bootstrap_servers),
            "model": self._check_model,
            "data": self._check_data,
        }

    def _check_model(self) -> tuple[bool, str]:
        return True, self.model.provider

    def _check_data(self) -> tuple[bool, str]:
        if not self._last_data:
            if self._last_rejected:
                return False, "receiving data but none scorable: " + self._rejection_summary()
            return False, "no waveform data received yet"
        age = time.monotonic() - self._last_data
        if age > self.settings.data_timeout_s:
            return False, f"no waveform data for {age:.0f} s"
        if self._last_rejected > self._last_data:
            return True, "some streams not scorable: " + self._rejection_summary()
        return True, ""

    def _rejection_summary(self, most: int = 5) -> str:
        """'reason: N streams (e.g. NSLC), ...' over the streams refused so far."""
        by_reason: dict[str, list[str]] = {}
        for nslc, reason in self._rejected_streams:
            by_reason.setdefault(reason, []).append(nslc)
        parts = [
            f"{reason}: {len(v)} stream(s) (e.g. {sorted(v)[0]})"
            for reason, v in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:most]
        ]
        return "; ".join(parts)

    def _note_rejection(self, nslc: str, reason: str, rate: float) -> None:
        """Count a refused packet; the first one per (stream, reason) is logged at WARNING with the fix."""
        self._last_rejected = time.monotonic()
        k = (nslc, reason)
        seen = self._rejected_streams.get(k)
        if seen is None and len(self._rejected_streams) < MAX_REJECTED_STREAMS:
            self._rejected_streams[k] = 1
            self.metrics.rejected_streams.labels(reason).inc()
            log.warning(
                "%s (%g Hz) not scorable: %s -- %s (first packet of this stream; further ones are "
                "counted in eew_detector_rejected_packets_total{reason=%r})",
                nslc,
                rate,
                reason,
                hint(reason) or "see services/common/streams.py",
                reason,
            )
        elif seen is not None:
            self._rejected_streams[k] = seen + 1

    # ---- the stage's hooks (see services.common.loop) ----------------------------------------
    def run(self) -> int:
        return self.loop.run(self.settings.bootstrap_servers)

    def prepare(self) -> None:
        pass  # nothing runs before the broker

    def close(self) -> None:
        pass  # the clients are the loop's; the model and core need no closing

    def commit_metadata(self) -> str:
        return ""

    def open(self) -> KafkaIO:
        s = self.settings
        self.io = KafkaIO(
            s.bootstrap_servers,
            s.group_id,
            s.client_id,
            s.waveforms_topic,
            self._on_revoked,
            self._on_assigned,
            self._on_lost,
            max_poll_records=s.loop.max_poll_records,
        )
        log.info("detector: %s -> %s (group %s)", s.waveforms_topic, s.scores_topic, s.group_id)
        return self.io

    def settle(self, records: Records) -> Records:
        if self._lost or self._rebalanced:
            return self._settle_rebalance(records)
        if self._revoked:  # revoked, new assignment not yet here: hold off on those partitions
            return {tp: recs for tp, recs in records.items() if tp not in self._revoked}
        return records

    def handle(self, tp: TopicPartition, r: Any, wall: int, mono: int) -> None:
        self._handle(tp, r, wall, mono)

    def process(self) -> int:
        """Score and publish up to ``max_rounds_per_poll`` chunks per station; the backlog left."""
        self._publish(self.core.score_ready(self.settings.max_rounds_per_poll))
        backlog = self.core.backlog()
        self.metrics.backlog.set(backlog)
        self.metrics.add_core_counts(*self.core.take_counts())
        self.metrics.stations_active.set(len(self.core.stations))
        return backlog

    def housekeeping(self, mono_ns: int) -> None:
        self._evict(mono_ns)

    def safe_offsets(self, tps: set[TopicPartition] | None) -> dict[TopicPartition, int]:
        return self.commit_offsets(tps)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed_offsets.update(offsets)

    def rewind(self) -> None:
        self._rewind()

    def drain(self) -> None:
        self._publish(self.core.score_ready(self.settings.max_rounds_per_poll))

    def _acked(self, topic: str) -> None:
        if topic == self.settings.scores_topic:
            self.metrics.scores_acked.inc()

    def _handle(self, tp: TopicPartition, r: Any, wall: int, mono: int) -> None:
        m = self.metrics
        raw: bytes = r.value or b""
        m.packets_in.inc()
        m.bytes_in.inc(len(raw))
        self.next_offset[tp] = r.offset + 1
        try:
            pkt = decode_packet(raw)
        except DecodeError as exc:
            m.decode_errors.labels(exc.reason).inc()
            self._deadletter(tp, r, exc.reason, exc.detail)
            return
        key = pkt.key
        owner = self.tp_of.get(key)
        if owner is None:
            self.tp_of[key] = owner = tp
            self.keys_of.setdefault(tp, set()).add(key)
        tag = r.offset if owner == tp else None
        if tag is None and self._log_budget.allow("key_partition"):
            log.warning(
                "%s arrives on %s[%d] and %s[%d]: offsets not tracked for the second",
                key,
                tp.topic,
                tp.partition,
                owner.topic,
                owner.partition,
            )
        reason = self.core.feed(pkt, tag=tag, now_ns=wall, mono_ns=mono)
        if reason is None:
            self._last_data = time.monotonic()
            lat = (wall - pkt.end_time_ns) / NS_PER_S
            m.data_latency.observe(lat)
            m.station_latency.labels(key).set(lat)
            return
        m.rejected.labels(reason).inc()
        if reason in STREAM_EVENTS:
            return
        if reason in STREAM_REASONS:
            self._note_rejection(pkt.nslc, reason, float(pkt.sampling_rate))
        self._deadletter(tp, r, reason, f"{pkt.nslc} at {ns_to_iso(pkt.start_time_ns)}")

    def _deadletter(self, tp: TopicPartition, r: Any, reason: str, detail: str) -> None:
        assert self.io is not None
        if self._log_budget.allow(reason):
            log.warning("rejected %s[%d]@%d: %s (%s)", tp.topic, tp.partition, r.offset, reason, detail[:200])
        headers = [
            ("reason", reason.encode()),
            ("detail", detail[:500].encode(errors="replace")),
            ("source_topic", tp.topic.encode()),
            ("source_partition", str(tp.partition).encode()),
            ("source_offset", str(r.offset).encode()),
            ("service", b"detector"),
        ]
        self.loop.send(self.settings.deadletter_topic, r.key, r.value or b"", headers)
        self.metrics.deadletters.labels(reason).inc()

    def _publish(self, scores: list[Score]) -> None:
        if not scores:
            return
        assert self.io is not None
        topic = self.settings.scores_topic
        t = now_ns()
        for s in scores:
            self.loop.send(topic, s.key.encode(), score_message(s, t).SerializeToString())
            if s.ingest_time_ns > 0:
                self.metrics.processing_latency.observe(max(0.0, (t - s.ingest_time_ns) / NS_PER_S))
            if s.new_trigger:
                log.info(
                    "trigger %s at %s: p=%.3f, P onset %s (p_pick %.2f), %d components",
                    s.key,
                    ns_to_iso(s.window_end_ns),
                    s.probability,
                    ns_to_iso(s.p_onset_ns),
                    s.p_onset_probability,
                    s.components,
                )
        self.metrics.scores_out.inc(len(scores))

    # ---- offsets ------------------------------------------------------------------------------
    def commit_offsets(self, tps: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Per partition, the smallest offset a restart still needs (only those that moved)."""
        out: dict[TopicPartition, int] = {}
        for tp, nxt in self.next_offset.items():
            if tps is not None and tp not in tps:
                continue
            target = nxt
            for key in self.keys_of.get(tp, ()):
                need = self.core.earliest_needed(key)
                if need is not None and need < target:
                    target = need
            if target > self.committed_offsets.get(tp, -1):
                out[tp] = target
        return out

    def _rewind(self) -> None:
        """Re-read every assigned partition from its committed offset with fresh stations."""
        assert self.io is not None
        for tp in self.io.assignment():
            off = self.committed_offsets.get(tp)
            if off is None:
                off = self.io.committed(tp)
            if off is not None:
                self.io.seek(tp, off)
            self._forget(tp)

    def _forget(self, tp: TopicPartition) -> None:
        keys = self.keys_of.pop(tp, set())
        self.core.drop_stations(keys)
        for key in keys:
            self.tp_of.pop(key, None)
            try:
                self.metrics.station_latency.remove(key)
            except KeyError:
                pass
        self.next_offset.pop(tp, None)

    def _evict(self, mono: int) -> None:
        gone = self.core.evict_idle(mono, int(self.settings.station_idle_s * NS_PER_S))
        for key in gone:
            tp = self.tp_of.pop(key, None)
            if tp is not None:
                self.keys_of.get(tp, set()).discard(key)
            try:
                self.metrics.station_latency.remove(key)
            except KeyError:
                pass
        if gone:
            log.info("dropped %d idle stations (nothing for %.0f s)", len(gone), self.settings.station_idle_s)

    # Rebalance callbacks run on kafka-python's IO thread, where blocking consumer calls (commit,
    # committed) are not allowed: they only record what happened; ``_settle_rebalance`` acts on it
    # from the loop thread right after ``poll`` returns. Offsets are committed every
    # ``commit_interval_s`` anyway, so a partition that moves away resumes elsewhere from a safe
    # point at most that old (re-scoring a little: at-least-once).

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info("waveform partitions revoked: %s", sorted(tp.partition for tp in revoked))
            self._revoked |= revoked

    def _on_lost(self, lost: set[TopicPartition]) -> None:
        if lost:
            log.warning(
                "waveform partitions lost (group membership expired): %s", sorted(tp.partition for tp in lost)
            )
            self._lost |= lost

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("waveform partitions assigned: %s", sorted(tp.partition for tp in assigned))
        self._rebalanced = True

    def _settle_rebalance(self, records: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        """Apply recorded rebalance events; return the records still valid to process.

        Revoked and not reassigned: forget the stations. Revoked and reassigned in the same
        (eager) rebalance: nobody else consumed it meanwhile and kafka-python kept the position,
        so the stations simply continue. Lost (membership expired) but assigned again: the
        position may be stale and someone else may have consumed, so the stations are rebuilt
        from the committed offset (this poll's records for it are discarded, re-read after seek).
        """
        assert self.io is not None
        current = self.io.assignment()
        # Every partition we hold anything for and no longer own is forgotten. kafka-python keeps
        # revoked partitions in assignment() until the new assignment arrives, so this runs only
        # once it has (``_rebalanced``) or membership was lost.
        held = self._revoked | self._lost | set(self.next_offset) | set(self.keys_of)
        for tp in held - current:
            self._forget(tp)
            self.committed_offsets.pop(tp, None)
        rewound = self._lost & current
        for tp in rewound:
            self._forget(tp)
            off = self.io.committed(tp)
            if off is not None:
                self.io.seek(tp, off)
                self.committed_offsets[tp] = off
            else:
                self.committed_offsets.pop(tp, None)
        self._revoked, self._lost, self._rebalanced = set(), set(), False
        self.metrics.assigned.set(len(current))
        return {tp: recs for tp, recs in records.items() if tp in current and tp not in rewound}
