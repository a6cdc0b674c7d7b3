"""Publish an archive into a run's broker with the replay library of ``eew replay``.

The archive's file rules are the replay's own (``services.ingest.replay``: which paths hold
waveforms, SDS layout) and its channel rule the ingest's (``CHANNEL_PATTERN``), so a tool that
indexes an archive before a run (``eew validate``) sees the files and channels the run publishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from services.common.kafka import make_producer
from services.ingest.core import ValidationConfig
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from services.ingest.replay import ReplayStats, Stopper, expand_paths, replay_files, sds_files

__all__ = ["CHANNEL_PATTERN", "ArchivePublisher", "ReplayStats", "Stopper", "expand_paths", "sds_files"]

#: Channel codes the replay accepts by default (the ingest's own rule).
CHANNEL_PATTERN: str = ValidationConfig().channel_pattern


class ArchivePublisher:
    """One idempotent producer that publishes archive files, a time window at a time."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self.producer: Any = make_producer(bootstrap, client_id)
        self.publisher = Publisher(self.producer, IngestMetrics(CollectorRegistry()))

    def publish(self, files: Iterable[Path], speed: float = 0.0, stop: Stopper | None = None,
                window: tuple[int | None, int | None] = (None, None), packet_seconds: float = 10.0,
                flush_timeout_s: float = 60.0) -> ReplayStats:
        """Publish every packet of ``files`` within ``window`` in time order, flushed (``replay_files``)."""
        return replay_files(files, self.publisher, speed, stop, window=window, packet_seconds=packet_seconds,
                            flush_timeout_s=flush_timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        self.producer.close(timeout=timeout_s)
