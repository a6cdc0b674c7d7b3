"""``eew ingest``: live SeedLink -> Kafka waveform topic.

Example::

    eew ingest --server 127.0.0.1:18000 --streams "NC_MEM:HH?,NC_JAS:HH?" \\
        --bootstrap-servers 127.0.0.1:9092 --state-file /var/lib/eew/seedlink.json

SIGTERM/SIGINT: the link is closed, the producer flushed, the state file saved, exit 0; every
wait (broker at start-up, server connect, reconnect backoff) ends within a second.
The service itself is ``services.ingest.service.IngestService``.
"""

from __future__ import annotations

import sys

from services.common.exceptions import ConfigError
from services.common.lifecycle import run_service
from services.common.settings import load_settings
from services.ingest.exceptions import StateFileError
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings

__all__ = ["IngestService", "main"]


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(IngestSettings, sys.argv[1:] if argv is None else argv)
    return run_service("ingest", settings, IngestService, (ConfigError,), fatal_errors=(StateFileError,))


if __name__ == "__main__":
    sys.exit(main())
