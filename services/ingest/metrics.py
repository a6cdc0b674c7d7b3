"""The ingest service's metrics, on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Data latency (wall clock at receipt minus the time just after the packet's last sample):
# SeedLink records fill in ~1-10 s at 100 Hz, plus transport; archive replays read far older data.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0)
# Send -> broker acknowledgement: milliseconds on a healthy local broker, seconds when it struggles.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class IngestMetrics:
    """Everything ``eew ingest`` and ``eew replay`` count; names are prefixed ``eew_ingest_``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.packets_in = Counter(
            "eew_ingest_packets_in",
            "Records received (SeedLink packets or replay pieces).",
            ["source"],
            registry=registry,
        )
        self.bytes_in = Counter(
            "eew_ingest_bytes_in", "Bytes of input records received.", ["source"], registry=registry
        )
        self.packets_out = Counter(
            "eew_ingest_packets_published", "Waveform packets handed to the producer.", registry=registry
        )
        self.packets_acked = Counter(
            "eew_ingest_packets_acked", "Waveform packets acknowledged by the broker.", registry=registry
        )
        self.samples_out = Counter(
            "eew_ingest_samples_published", "Samples in published packets.", registry=registry
        )
        self.publish_failures = Counter(
            "eew_ingest_publish_failures",
            "Messages the broker did not acknowledge.",
            ["topic"],
            registry=registry,
        )
        self.deadletters = Counter(
            "eew_ingest_deadletters", "Rejected records written to the dead-letter topic.", registry=registry
        )
        self.rejected = Counter(
            "eew_ingest_rejected", "Records rejected, by reason.", ["reason"], registry=registry
        )
        self.repaired = Counter(
            "eew_ingest_repaired", "Records repaired and published, by repair.", ["repair"], registry=registry
        )
        self.gaps = Counter(
            "eew_ingest_gaps", "Gaps detected between consecutive packets of a channel.", registry=registry
        )
        self.gap_seconds = Counter(
            "eew_ingest_gap_seconds", "Total length of detected gaps.", registry=registry
        )
        self.overlaps = Counter(
            "eew_ingest_overlaps", "Overlaps (trimmed) and duplicates (rejected) detected.", registry=registry
        )
        self.latency = Histogram(
            "eew_ingest_data_latency_seconds",
            "Wall clock at receipt minus the end time of the packet's data.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.station_latency = Gauge(
            "eew_ingest_station_latency_seconds",
            "Data latency of the newest packet of each station.",
            ["station"],
            registry=registry,
        )
        self.ack_latency = Histogram(
            "eew_ingest_ack_latency_seconds",
            "Producer send to broker acknowledgement.",
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        self.unscorable_streams = Counter(
            "eew_ingest_unscorable_streams",
            "Streams (channel and rate) published that the detector would not score, by reason "
            "(services.common.streams; counted once per stream).",
            ["reason"],
            registry=registry,
        )
        self.server_resets = Counter(
            "eew_ingest_server_resets",
            "SeedLink server resets detected (sequence numbers no longer match the state); "
            "each is followed by a resume by time.",
            registry=registry,
        )
        self.resent_skipped = Counter(
            "eew_ingest_resent_skipped",
            "Records sent again by the server after a resume by time, already published: skipped.",
            registry=registry,
        )
        self.refused_stations = Gauge(
            "eew_ingest_refused_stations",
            "Stations the SeedLink server refuses (unknown station or no selector accepted), until a "
            "retry on a side link is accepted.",
            registry=registry,
        )
        self.stalled_stations = Gauge(
            "eew_ingest_stalled_stations",
            "Stations silent longer than the stall timeout while the link delivers other stations.",
            registry=registry,
        )
        self.station_retries = Counter(
            "eew_ingest_station_retries",
            "Own-schedule retries of refused or stalled stations on side links, by outcome (accepted, "
            "moved, nothing_newer, refused, connect_failed, lost).",
            ["outcome"],
            registry=registry,
        )
        self.side_links = Gauge(
            "eew_ingest_side_links",
            "Stations streaming on a side link of their own (refused then accepted, or moved off a "
            "broken subscription).",
            registry=registry,
        )
        self.reconnects = Counter(
            "eew_ingest_reconnects", "SeedLink reconnections after a lost/aborted link.", registry=registry
        )
        self.connect_failures = Counter(
            "eew_ingest_connect_failures", "Failed SeedLink connection attempts.", registry=registry
        )
        self.stalls = Counter(
            "eew_ingest_stalls",
            "Stations that went silent for longer than the stall timeout (each episode once).",
            registry=registry,
        )
        self.link_stalls = Counter(
            "eew_ingest_link_stalls",
            "Links on which no station delivered for the stall timeout (each forces a reconnect).",
            registry=registry,
        )
        self.connected = Gauge("eew_ingest_connected", "1 while the SeedLink link is up.", registry=registry)
        self.state_saves = Counter("eew_ingest_state_saves", "SeedLink state file writes.", registry=registry)
        self.state_save_failures = Counter(
            "eew_ingest_state_save_failures", "SeedLink state file writes that failed.", registry=registry
        )
        self.corrupt_files = Counter(
            "eew_ingest_corrupt_files", "Replay input files that could not be read.", registry=registry
        )
