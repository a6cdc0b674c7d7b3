"""``eew ingest``: live SeedLink -> Kafka waveform topic.

Example::

    eew ingest --server 127.0.0.1:18000 --streams "NC_MEM:HH?,NC_JAS:HH?" \\
        --bootstrap-servers 127.0.0.1:9092 --state-file /var/lib/eew/seedlink.json

SIGTERM/SIGINT: the link is closed, the producer flushed, the state file saved, exit 0; every
wait (broker at start-up, server connect, reconnect backoff) ends within a second.
The service itself is ``services.ingest.service.IngestService``.
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry

from services.common.exceptions import BrokerUnavailable, ConfigError
from services.common.lifecycle import StopFlag, setup_logging
from services.common.settings import load_settings
from services.ingest.exceptions import StateFileError
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings

__all__ = ["IngestService", "main"]

log = logging.getLogger("services.ingest")


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(IngestSettings, sys.argv[1:] if argv is None else argv)
    setup_logging(settings.log_level)
    stop = StopFlag().install_signal_handlers()
    try:
        service = IngestService(settings, CollectorRegistry(), stop)
        return service.run()
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    except (BrokerUnavailable, StateFileError) as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
