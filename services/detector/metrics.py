"""The detector service's metrics, on an injected registry (names prefixed ``eew_detector_``)."""

from __future__ import annotations

from collections import Counter as CountMap

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.detector import core as dc

# One ONNX call for 1..512 stations x 1 s: ~0.5 ms (a few stations, GPU or small CPU batch) to
# ~1-2 s (hundreds of stations on 2 shared CPU cores).
INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Now minus the end time of a packet's data: SeedLink records take ~1-10 s to fill at 100 Hz;
# replays of old archives read far older data (the top buckets catch them).
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 300.0, 3600.0)
# Packet receipt (ingest_time_ns) -> score published: the stride plus batching and the wait for
# the slowest component.
PROCESSING_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

# core counter key -> (metric attribute, label or None)
_CORE_COUNTS = {
    dc.C_GAPS: ("gaps", None),
    dc.C_GAP_SAMPLES: ("gap_samples", None),
    dc.C_DUP_SAMPLES: ("duplicate_samples", None),
    dc.C_DUP_PACKETS: ("duplicate_packets", None),
    dc.C_LATE_SAMPLES: ("late_samples", None),
    dc.C_LATE_PACKETS: ("late_packets", None),
    dc.C_LATE_FILLED: ("late_fill_samples", None),
    dc.C_DEAD: ("component_events", "dead"),
    dc.C_REVIVED: ("component_events", "revived"),
    dc.C_RESETS: ("station_resets", None),
    dc.C_TIME_JUMP: ("time_jump_discarded", None),
    dc.C_EVICTED: ("stations_evicted", None),
    dc.C_TRIGGERS: ("triggers", None),
    dc.C_RETRIGGERS: ("retriggers", None),
    dc.C_CHUNKS: ("windows_scored", None),
    dc.C_FORCED: ("forced_drains", None),
    dc.C_FRONT_RESETS: ("resampler_events", "reset"),
    dc.C_RATE_CHANGES: ("resampler_events", "rate_change"),
    dc.C_CLIPPED: ("clipped_packets", None),
    dc.C_SITE_SUPPRESSED: ("site_suppressed_triggers", None),
}


class DetectorMetrics:
    """Everything ``eew detect`` counts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = self.registry = registry
        self.packets_in = Counter("eew_detector_packets_in", "Waveform records consumed.", registry=r)
        self.bytes_in = Counter("eew_detector_bytes_in", "Bytes of waveform records consumed.", registry=r)
        self.broker_errors = Counter(
            "eew_detector_broker_errors", "Retriable Kafka errors ridden out (broker restarts, moves).", registry=r
        )
        self.decode_errors = Counter(
            "eew_detector_decode_errors", "Records that failed to decode, by reason.", ["reason"], registry=r
        )
        self.rejected = Counter(
            "eew_detector_rejected_packets",
            "Decoded packets the buffers refused, by reason (late/duplicate are normal stream events).",
            ["reason"],
            registry=r,
        )
        self.rejected_streams = Counter(
            "eew_detector_rejected_streams",
            "Streams (NSLC) refused for their channel code or sampling rate, by reason (each counted once).",
            ["reason"],
            registry=r,
        )
        self.resampler_events = Counter(
            "eew_detector_resampler_events",
            "Resampler restarts of non-100 Hz components: reset (gap, restart), rate_change (mid-stream).",
            ["event"],
            registry=r,
        )
        self.clipped_packets = Counter(
            "eew_detector_clipped_packets",
            "Velocity packets with clipped samples (the site's accelerometer takes over its triggers).",
            registry=r,
        )
        self.site_suppressed_triggers = Counter(
            "eew_detector_site_suppressed_triggers",
            "Triggers of a site's secondary sensor (an accelerometer beside a healthy velocity sensor).",
            registry=r,
        )
        self.deadletters = Counter(
            "eew_detector_deadletters",
            "Records written to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.gaps = Counter(
            "eew_detector_gaps", "Gaps inside a component, filled with its last value.", registry=r
        )
        self.gap_samples = Counter("eew_detector_gap_samples", "Samples hold-filled in gaps.", registry=r)
        self.duplicate_samples = Counter(
            "eew_detector_duplicate_samples", "Samples dropped as duplicates/overlaps.", registry=r
        )
        self.duplicate_packets = Counter(
            "eew_detector_duplicate_packets", "Packets with nothing new (all duplicate).", registry=r
        )
        self.late_samples = Counter(
            "eew_detector_late_samples",
            "Samples that arrived after their chunk was scored (dropped).",
            registry=r,
        )
        self.late_packets = Counter(
            "eew_detector_late_packets",
            "Packets that arrived entirely after their chunks were scored.",
            registry=r,
        )
        self.late_fill_samples = Counter(
            "eew_detector_late_fill_samples",
            "Out-of-order samples that replaced gap fill before scoring.",
            registry=r,
        )
        self.component_events = Counter(
            "eew_detector_component_events", "Components declared dead or revived.", ["event"], registry=r
        )
        self.station_resets = Counter(
            "eew_detector_station_resets", "Stations restarted on a confirmed time discontinuity.", registry=r
        )
        self.time_jump_discarded = Counter(
            "eew_detector_time_jump_discarded",
            "Packets with an unconfirmed wild timestamp, dropped.",
            registry=r,
        )
        self.stations_evicted = Counter(
            "eew_detector_stations_evicted",
            "Stations dropped after receiving nothing for a while.",
            registry=r,
        )
        self.forced_drains = Counter(
            "eew_detector_forced_drains",
            "Times a long packet forced scoring to make room in a buffer.",
            registry=r,
        )
        self.windows_scored = Counter("eew_detector_windows_scored", "Station chunks scored.", registry=r)
        self.triggers = Counter("eew_detector_triggers", "New station triggers.", registry=r)
        self.retriggers = Counter(
            "eew_detector_retriggers",
            "New station triggers on a new P onset while the previous event still rings (also in triggers).",
            registry=r,
        )
        self.scores_out = Counter("eew_detector_scores_out", "StationScore messages sent.", registry=r)
        self.scores_acked = Counter(
            "eew_detector_scores_acked", "StationScore messages acknowledged by the broker.", registry=r
        )
        self.delivery_failures = Counter(
            "eew_detector_delivery_failures",
            "Messages the broker did not acknowledge.",
            ["topic"],
            registry=r,
        )
        self.rewinds = Counter(
            "eew_detector_rewinds", "Rewinds to the committed offsets after a failed delivery.", registry=r
        )
        self.commits = Counter("eew_detector_commits", "Offset commits that succeeded.", registry=r)
        self.commit_failures = Counter(
            "eew_detector_commit_failures", "Offset commits that failed.", registry=r
        )
        self.inference = Histogram(
            "eew_detector_inference_seconds",
            "Wall time of one model call.",
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "eew_detector_batch_size", "Stations per model call.", buckets=BATCH_BUCKETS, registry=r
        )
        self.data_latency = Histogram(
            "eew_detector_data_latency_seconds",
            "Wall clock at consumption minus the end time of the packet's data.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.station_latency = Gauge(
            "eew_detector_station_data_latency_seconds",
            "Data latency of each station's newest packet.",
            ["station"],
            registry=r,
        )
        self.processing_latency = Histogram(
            "eew_detector_processing_latency_seconds",
            "Score published minus ingest_time_ns of the newest packet behind it.",
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.provider = Gauge(
            "eew_detector_execution_provider",
            "1 for the ONNX Runtime execution provider actually in use.",
            ["provider", "model_id", "model_version"],
            registry=r,
        )
        self.stations_active = Gauge("eew_detector_stations_active", "Stations with buffers.", registry=r)
        self.backlog = Gauge(
            "eew_detector_backlog_stations", "Stations with a chunk ready but not scored.", registry=r
        )
        self.paused = Gauge(
            "eew_detector_paused", "1 while consumption is paused (backpressure).", registry=r
        )
        self.pauses = Counter(
            "eew_detector_pauses", "Times consumption was paused because scoring fell behind.", registry=r
        )
        self.unacked = Gauge(
            "eew_detector_unacked_messages", "Messages sent, not yet acknowledged.", registry=r
        )
        self.assigned = Gauge("eew_detector_assigned_partitions", "Waveform partitions assigned.", registry=r)

    def add_core_counts(self, counts: CountMap[str], batch_sizes: list[int]) -> None:
        """Turn the core's counters (since the last call) into metric increments."""
        for key, n in counts.items():
            spec = _CORE_COUNTS.get(key)
            if spec is None or n <= 0:
                continue
            attr, label = spec
            metric = getattr(self, attr)
            (metric.labels(label) if label else metric).inc(n)
        for b in batch_sizes:
            self.batch_size.observe(b)
