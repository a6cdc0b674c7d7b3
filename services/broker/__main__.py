"""``eew broker``: run the embedded broker in the foreground until SIGTERM/SIGINT.

Memory mode (the default) keeps every message ever produced in Tansu's memory (Tansu 0.6.0
ignores retention): it is for bounded runs (demo, validate, tests), says so at start, and its
/readyz turns not ready once Tansu's resident memory passes ``--memory-limit-mb``. ``--durable``
stores data in a local SeaweedFS and removes batches older than each topic's retention
(``services/common/topics.py``, ``--retention-ms TOPIC=MS``), for long-lived use.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import Field
from pydantic_settings import CliImplicitFlag

from services.broker.embedded import EmbeddedBroker
from services.broker.retention import parse_overrides
from services.common.exceptions import ConfigError
from services.common.http import HealthServer
from services.common.lifecycle import StopFlag, setup_logging
from services.common.settings import ServiceSettings, load_settings

log = logging.getLogger("eew.broker")
MB = 1024 * 1024


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


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(BrokerSettings, argv)
    setup_logging(settings.log_level)
    try:
        overrides = parse_overrides(settings.retention_ms)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    stop = StopFlag().install_signal_handlers()
    durable_dir = settings.data_dir if settings.durable else None
    registry = CollectorRegistry()
    if durable_dir is None:
        log.warning(
            "memory storage keeps every message ever produced in RAM (Tansu ignores retention): for bounded "
            "runs (demo, validate, tests); run a long-lived broker with --durable (retention enforced) or "
            "Apache Kafka (deploy/). /readyz turns not ready past --memory-limit-mb %.0f",
            settings.memory_limit_mb,
        )
    footprint: dict[str, int] = {}

    def storage_check() -> tuple[bool, str]:
        rss = footprint.get("tansu_rss", 0) / MB
        if durable_dir is None and rss > settings.memory_limit_mb:
            return False, (
                f"memory storage: tansu holds {rss:.0f} MiB > --memory-limit-mb {settings.memory_limit_mb:.0f}"
                " (every message ever produced); restart it or use --durable"
            )
        crowded = dict(broker.janitor.crowded) if broker.janitor is not None else {}
        if crowded:
            return False, (
                f"durable storage: {', '.join(f'{k} holds {v}' for k, v in sorted(crowded.items()))} batch objects "
                f"> --max-partition-objects {settings.max_partition_objects} (fetches slow down); shorten --retention-ms"
            )
        return True, "ok"

    try:
        broker = EmbeddedBroker(
            port=settings.port,
            durable_dir=durable_dir,
            create_topics=settings.create_topics,
            retention_ms=overrides,
            retention_interval_s=settings.retention_interval_s,
            storage_timeout_s=settings.storage_timeout_s,
            storage_memory_mb=settings.storage_memory_mb,
            max_partition_objects=settings.max_partition_objects,
            registry=registry,
        )
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    with broker as b:
        health = HealthServer(
            registry, settings.http_host, settings.http_port, checks={"storage": storage_check}
        )
        health.start()
        print(f"broker ready: --bootstrap-servers {b.bootstrap}", flush=True)
        next_fp = 0.0
        try:
            while not stop.wait(0.5):
                if b.proc is not None and b.proc.poll() is not None:
                    log.error("tansu exited with code %s", b.proc.returncode)
                    return 1
                if b.s3 is not None and b.s3.proc is not None and b.s3.proc.poll() is not None:
                    log.error("SeaweedFS (weed) exited with code %s", b.s3.proc.returncode)
                    return 1
                if time.monotonic() >= next_fp:
                    next_fp = time.monotonic() + settings.footprint_interval_s
                    footprint.update(b.footprint())
                    ok, why = storage_check()
                    if not ok and not footprint.get("warned"):
                        footprint["warned"] = 1
                        log.warning("%s", why)
        finally:
            health.stop()
    log.info("broker stopped")
    return 0
