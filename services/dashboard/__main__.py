"""``eew dashboard``: the operator's live page fed from the score, alert and dead-letter topics."""

from __future__ import annotations

import sys

from services.common.lifecycle import run_service
from services.common.settings import load_settings
from services.dashboard.service import STARTUP_ERRORS, DashboardService
from services.dashboard.settings import DashboardSettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(DashboardSettings, sys.argv[1:] if argv is None else argv)
    return run_service("dashboard", settings, DashboardService, STARTUP_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
