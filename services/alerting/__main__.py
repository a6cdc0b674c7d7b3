"""``eew alert``: association and alert delivery (scores topic -> alerts topic -> outbox -> webhooks, MQTT, SSE; subscriber API)."""

from __future__ import annotations

import logging
import sys

from services.alerting.service import AlertingService
from services.alerting.settings import AlertingSettings
from services.common.exceptions import ConfigError
from services.common.lifecycle import run_service
from services.common.settings import load_settings

log = logging.getLogger("services.alerting")


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(AlertingSettings, sys.argv[1:] if argv is None else argv)
    return run_service("alerting service", settings, AlertingService, (ConfigError,))


if __name__ == "__main__":
    sys.exit(main())
