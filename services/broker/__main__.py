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

from prometheus_client import CollectorRegistry

from services.broker.embedded import EmbeddedBroker
from services.broker.retention import parse_overrides
from services.broker.settings import BrokerSettings
from services.common.exceptions import ConfigError
from services.common.http import HealthServer
from services.common.lifecycle import StopFlag, setup_logging
from services.common.settings import load_settings

log = logging.getLogger("eew.broker")
MB = 1024 * 1024


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
            start_timeout_s=settings.start_timeout_s,
            stop_timeout_s=settings.stop_timeout_s,
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
            while not stop.wait(settings.watch_interval_s):
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
