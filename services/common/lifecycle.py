"""Signal handling and logging set-up shared by the services' entry points."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM/SIGINT (or by code); service loops poll ``is_set`` and drain, flush, commit."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def install_signal_handlers(self) -> StopFlag:
        """Route SIGTERM and SIGINT to this flag (main thread only)."""

        def handler(signum: int, _frame: object) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        return self


def setup_logging(level: str = "INFO") -> None:
    """One log format for every service: UTC timestamps, logger name, message."""
    import time

    logging.Formatter.converter = time.gmtime
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        force=True,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)


def run_service(
    name: str,
    settings: Any,
    make_service: Callable[[Any, Any, StopFlag], Any],
    startup_errors: tuple[type[BaseException], ...],
) -> int:
    """The shared entry point of a long-running service.

    Logging, SIGTERM/SIGINT -> stop flag, a fresh metrics registry, the /metrics /healthz /readyz
    server around ``service.run()``; 2 when the service cannot start (``startup_errors``), 1 when
    the broker stays unreachable, else what ``run`` returns.
    """
    from prometheus_client import CollectorRegistry

    from services.common.exceptions import BrokerUnavailable
    from services.common.http import HealthServer

    setup_logging(settings.log_level)
    stop = StopFlag().install_signal_handlers()
    registry = CollectorRegistry()
    try:
        service = make_service(settings, registry, stop)
    except startup_errors as exc:
        log.error("cannot start the %s: %s", name, exc)
        return 2
    health = HealthServer(
        registry, settings.http_host, settings.http_port, alive=service.alive, checks=service.checks()
    ).start()
    try:
        return int(service.run())
    except BrokerUnavailable as exc:
        log.error("%s", exc)
        return 1
    finally:
        health.stop()
