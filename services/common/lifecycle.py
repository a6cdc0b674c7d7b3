"""Signal handling and logging set-up shared by the services' entry points."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Protocol

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


class Service(Protocol):
    """What ``run_service`` runs: health hooks and a blocking ``run`` that returns the exit code."""

    def alive(self) -> bool: ...

    def checks(self) -> dict[str, Callable[[], tuple[bool, str]]]: ...

    def run(self) -> int: ...


def serve_health(service: Any, registry: Any, host: str = "127.0.0.1", port: int = 0) -> Any:
    """Start the /metrics /healthz /readyz server of ``service`` (its ``alive``, ``checks`` and, when
    it has them, ``notes``: /readyz details that never fail it); set as ``service.health`` when the
    service has that slot."""
    from services.common.http import HealthServer

    notes: dict[str, Callable[[], str]] = service.notes() if hasattr(service, "notes") else {}

    class _Health(HealthServer):
        def readiness(self) -> tuple[bool, dict[str, str]]:
            ok, detail = super().readiness()
            for name, note in notes.items():
                detail[name] = note()
            return ok, detail

    health = _Health(registry, host, port, alive=service.alive, checks=service.checks()).start()
    if hasattr(service, "health"):
        service.health = health
    return health


def run_service(
    name: str,
    settings: Any,
    make_service: Callable[[Any, Any, StopFlag], Service],
    startup_errors: tuple[type[BaseException], ...],
    fatal_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """The shared entry point of a long-running service.

    Logging, SIGTERM/SIGINT -> stop flag, a fresh metrics registry, the /metrics /healthz /readyz
    server around ``service.run()`` (stopped by an ExitStack however it ends); 2 when the service
    cannot start (``startup_errors``), 1 when the broker stays unreachable or on ``fatal_errors``,
    else what ``run`` returns.
    """
    from prometheus_client import CollectorRegistry

    from services.common.exceptions import BrokerUnavailable

    setup_logging(settings.log_level)
    stop = StopFlag().install_signal_handlers()
    registry = CollectorRegistry()
    with ExitStack() as exits:
        try:
            service = make_service(settings, registry, stop)
            exits.callback(serve_health(service, registry, settings.http_host, settings.http_port).stop)
            return int(service.run())
        except startup_errors as exc:
            log.error("cannot start the %s: %s", name, exc)
            return 2
        except (BrokerUnavailable, *fatal_errors) as exc:
            log.error("%s: %s", name, exc)
            return 1
