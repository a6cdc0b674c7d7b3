"""``eew detect``: waveform packets -> ONNX detector -> station scores (Kafka in, Kafka out)."""

from __future__ import annotations

import logging
import sys

from models.exceptions import ContractError
from services.common.exceptions import ConfigError
from services.common.lifecycle import run_service
from services.common.settings import load_settings
from services.detector.service import DetectorService
from services.detector.settings import DetectorSettings

log = logging.getLogger("services.detector")


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(DetectorSettings, sys.argv[1:] if argv is None else argv)
    return run_service("detector", settings, DetectorService, (ConfigError, ContractError))


if __name__ == "__main__":
    sys.exit(main())
