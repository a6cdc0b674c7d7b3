"""Settings of ``eew broker`` (environment ``EEW_*`` or flags ``--kebab-case``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import CliImplicitFlag

from services.common.settings import ServiceSettings


class BrokerSettings(ServiceSettings):
    """Settings of ``eew broker``."""

    port: int = Field(9092, description="Port Tansu listens on, on 127.0.0.1.")
    durable: CliImplicitFlag[bool] = Field(
        False,
        description="Keep data across restarts (Tansu s3:// on a local SeaweedFS) and enforce retention; "
        "flag --durable. Without it every message stays in memory: for bounded runs only.",
    )
    data_dir: Path = Field(Path(".eew-run/broker"), description="Where durable mode keeps its data.")
    create_topics: CliImplicitFlag[bool] = Field(
        True, description="Create the pipeline's topics with their final partitions (--no-create-topics)."
    )
    retention_ms: list[str] = Field(
        default_factory=list,
        description="Durable mode: per-topic retention override TOPIC=MILLISECONDS (-1 keeps forever), "
        "repeatable; defaults from services/common/topics.py (waveforms 24 h, scores 7 d, dead letters 14 d, "
        "alerts kept).",
    )
    retention_interval_s: float = Field(
        60.0, description="Durable mode: how often expired batches are removed (0 turns retention off)."
    )
    storage_timeout_s: float = Field(
        10.0, description="Durable mode: timeout of each request to SeaweedFS's filer/master (retention)."
    )
    storage_memory_mb: int = Field(
        256, description="Durable mode: SeaweedFS's soft memory limit (Go GOMEMLIMIT), MiB."
    )
    max_partition_objects: int = Field(
        500,
        description="Durable mode: /readyz turns not ready while a partition holds more batch objects than "
        "this (Tansu 0.6.0's fetches slow down with the count, see bench/RESULTS.md); shorten --retention-ms.",
    )
    memory_limit_mb: float = Field(
        1024.0,
        description="Memory mode: /readyz turns not ready once Tansu's resident memory passes this (MiB).",
    )
    footprint_interval_s: float = Field(
        10.0, description="How often the broker's memory and disk gauges are refreshed."
    )
    start_timeout_s: float = Field(
        60.0, gt=0.0, description="Longest wait for Tansu (and SeaweedFS) to listen and create the topics."
    )
    stop_timeout_s: float = Field(
        10.0, gt=0.0, description="At exit, how long Tansu and SeaweedFS get after SIGTERM before SIGKILL."
    )
    watch_interval_s: float = Field(
        0.5, gt=0.0, description="How often the broker processes are checked (one that exited ends the command)."
    )
