"""The embedded broker's metrics (``eew broker``), on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class BrokerMetrics:
    """Retention janitor and footprint; names are prefixed ``eew_broker_``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deleted_objects = Counter(
            "eew_broker_retention_deleted_objects",
            "Expired batch objects removed from durable storage.",
            ["topic"],
            registry=registry,
        )
        self.deleted_bytes = Counter(
            "eew_broker_retention_deleted_bytes",
            "Bytes of expired batch objects removed from durable storage.",
            ["topic"],
            registry=registry,
        )
        self.errors = Counter(
            "eew_broker_retention_errors",
            "Retention passes (per partition) that failed to list or delete.",
            ["topic"],
            registry=registry,
        )
        self.last_pass = Gauge(
            "eew_broker_retention_last_pass_timestamp_seconds",
            "When the retention janitor last finished a pass over every partition.",
            registry=registry,
        )
        self.partition_objects = Gauge(
            "eew_broker_partition_objects",
            "Batch objects a partition holds in durable storage (counted up to just past the limit).",
            ["topic", "partition"],
            registry=registry,
        )
        self.rss_bytes = Gauge(
            "eew_broker_rss_bytes",
            "Resident memory of the broker's processes.",
            ["process"],
            registry=registry,
        )
        self.disk_bytes = Gauge(
            "eew_broker_disk_bytes", "Bytes on disk in the durable data folder.", registry=registry
        )
