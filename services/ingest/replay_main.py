"""``eew replay``: miniSEED files or an SDS archive -> Kafka waveform topic, paced like live data.

Examples::

    eew replay --files "archive/*.mseed" --speed 0 --bootstrap-servers 127.0.0.1:9092
    eew replay --sds /data/sds --start 2024-01-01T00:00:00Z --end 2024-01-01T01:00:00Z --speed 1

Prints a one-line summary (packets, seconds of data, wall time) and exits 0 once the broker has
acknowledged everything (1 when deliveries failed or nothing could be read).
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry

from services.common.exceptions import BrokerUnavailable, ConfigError
from services.common.http import HealthServer
from services.common.kafka import make_producer, wait_for_broker
from services.common.lifecycle import StopFlag, setup_logging
from services.common.settings import load_settings
from services.ingest.exceptions import ReplayInputError
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from services.ingest.replay import ReplayStats, expand_paths, replay_files, sds_files
from services.ingest.settings import ReplaySettings

log = logging.getLogger("services.ingest.replay")


def _time_ns(text: str, name: str) -> int:
    from obspy import UTCDateTime

    try:
        return int(UTCDateTime(text).ns)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--{name}: not an ISO-8601 UTC time: {text!r}") from exc


def run_replay(settings: ReplaySettings, registry: CollectorRegistry, stop: StopFlag) -> ReplayStats:
    """Wire producer, metrics and the replay for the given settings (no signal handling).

    Inputs are resolved before the broker is contacted, so a wrong path fails at once.
    """
    if bool(settings.files) == bool(settings.sds):
        raise ConfigError("give either --files or --sds (with --start and --end)")
    if settings.speed < 0:
        raise ConfigError("--speed must be >= 0")
    window: tuple[int | None, int | None] = (None, None)
    if settings.sds:
        if not settings.start or not settings.end:
            raise ConfigError("--sds needs --start and --end")
        window = (_time_ns(settings.start, "start"), _time_ns(settings.end, "end"))
        files = sds_files(settings.sds, window[0], window[1], settings.nslc)  # type: ignore[arg-type]
        what = f"SDS {settings.sds} {settings.nslc} {settings.start} .. {settings.end}"
    else:
        patterns = [p for p in settings.files.split(",") if p.strip()]
        files = expand_paths(patterns)
        what = settings.files
    if not files:
        raise ReplayInputError(f"no input files for {what}")
    log.info("replaying %d files (%s) at speed %s", len(files), what, settings.speed or "max")
    metrics = IngestMetrics(registry)
    if not wait_for_broker(settings.bootstrap_servers, settings.broker_timeout_s, stop=stop):
        log.info("stopped while waiting for the broker at %s", settings.bootstrap_servers)
        return ReplayStats(stopped=True)
    publisher = Publisher(make_producer(settings.bootstrap_servers, settings.client_id), metrics)
    try:
        return replay_files(
            files,
            publisher,
            settings.speed,
            stop,
            packet_seconds=settings.packet_seconds,
            align=settings.align_packets,
            validation=settings.validation,
            metrics=metrics,
            window=window,
            flush_timeout_s=settings.flush_timeout_s,
        )
    finally:
        publisher.close(settings.close_timeout_s)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(ReplaySettings, sys.argv[1:] if argv is None else argv)
    setup_logging(settings.log_level)
    stop = StopFlag().install_signal_handlers()
    registry = CollectorRegistry()
    health = HealthServer(registry, settings.http_host, settings.http_port).start()
    try:
        stats = run_replay(settings, registry, stop)
    except (ConfigError, ReplayInputError) as exc:
        log.error("%s", exc)
        return 2
    except BrokerUnavailable as exc:
        log.error("%s", exc)
        return 1
    finally:
        health.stop()
    print(stats.summary(), flush=True)
    if stats.failed or (stats.packets == 0 and stats.rejected == 0):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
