"""The whole pipeline as separate processes on one machine: ``eew demo``, ``eew validate``, tests.

Each service runs as its own ``eew`` subprocess (``ServiceProcess``) against an embedded broker,
exactly as it would in a deployment; logs go to files in ``run_dir``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.broker.embedded import EmbeddedBroker, free_port
from services.pipeline.processes import ServiceProcess

log = logging.getLogger(__name__)


@dataclass
class LocalPipeline:
    """Broker + detector + alerting as processes; ``replay`` pushes an archive through them."""

    run_dir: Path
    stations_csv: Path
    webhook_urls: list[str] = field(default_factory=list)
    detector_args: list[str] = field(default_factory=list)
    alerting_args: list[str] = field(default_factory=list)
    # `eew dashboard` beside the services (replay mode), on this web port (0: a free one); None: none
    # (eew demo always starts one; eew validate with --dashboard-port).
    dashboard_port: int | None = None
    dashboard_token: str = ""

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_path=self.run_dir / "broker.log")
        self.services: list[ServiceProcess] = []
        self.dashboard: ServiceProcess | None = None
        self.dashboard_url = ""

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self) -> LocalPipeline:
        self.broker.start()
        common = ["--bootstrap-servers", self.bootstrap]
        self.detector = ServiceProcess(
            "detector", ["detect", *common, *self.detector_args], self.run_dir / "detector.log", free_port()
        )
        alert_argv = ["alert", *common, "--stations", str(self.stations_csv), *self.alerting_args]
        if self.webhook_urls:
            alert_argv += ["--webhook-urls", ",".join(self.webhook_urls)]
        self.alerting = ServiceProcess("alerting", alert_argv, self.run_dir / "alerting.log", free_port())
        self.services = [self.detector.start(), self.alerting.start()]
        if self.dashboard_port is not None:
            self._start_dashboard_if_built()
        return self

    def _start_dashboard_if_built(self) -> None:
        from services.dashboard.service import ASSETS

        if (ASSETS / "index.html").is_file():
            self.start_dashboard()
        else:  # the run does not need the page; say why it is missing (once)
            log.warning("dashboard not started: front end not built in %s (run `make web`)", ASSETS)
            self.dashboard_port = None

    def start_dashboard(self, extra_args: list[str] | None = None) -> ServiceProcess:
        """``eew dashboard --replay`` on this broker, showing the services' metrics; ``dashboard_url``."""
        port = self.dashboard_port or free_port()
        metrics = ",".join(f"{s.name}=http://127.0.0.1:{s.http_port}/metrics" for s in self.services)
        argv = ["dashboard", "--bootstrap-servers", self.bootstrap, "--web-port", str(port), "--replay",
                "--stations", str(self.stations_csv), *(["--metrics-urls", metrics] if metrics else []),
                *(extra_args or [])]
        self.dashboard = ServiceProcess("dashboard", argv, self.run_dir / "dashboard.log", free_port())
        self.services.append(self.dashboard.start(env={"EEW_API_TOKENS": self.dashboard_token}))
        self.dashboard_url = f"http://127.0.0.1:{port}/"
        return self.dashboard

    def replay(self, archive: Path, speed: float = 0.0, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Publish every miniSEED file of ``archive`` (``eew replay``); returns when it has flushed."""
        cmd = [
            sys.executable, "-m", "services.cli", "replay",
            "--bootstrap-servers", self.bootstrap,
            "--files", str(archive),
            "--speed", str(speed),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        (self.run_dir / "replay.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            raise RuntimeError(f"replay failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        return res

    def check_alive(self) -> None:
        if self.dashboard_port is not None and self.dashboard is None and self.broker.proc is not None:
            # runs that start the broker themselves (eew validate): the dashboard joins at the first check
            self._start_dashboard_if_built()
            if self.dashboard_url:
                print(f"[pipeline] dashboard (replay): {self.dashboard_url}", flush=True)
        for s in self.services:
            if not s.running():
                raise RuntimeError(f"{s.name} exited early ({s.proc.returncode if s.proc else None}):\n{s.log_tail()}")

    def stop(self) -> dict[str, int | None]:
        codes = {s.name: s.stop() for s in reversed(self.services)}
        self.broker.stop()
        return codes

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_quiet(count_fn, min_count: int, quiet_s: float, timeout_s: float, alive_fn=None) -> int:  # noqa: ANN001
    """Wait until ``count_fn()`` reaches ``min_count`` and then stays unchanged for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last, last_change = count_fn(), time.monotonic()
    while time.monotonic() < deadline:
        if alive_fn is not None:
            alive_fn()
        n = count_fn()
        if n != last:
            last, last_change = n, time.monotonic()
        if n >= min_count and time.monotonic() - last_change >= quiet_s:
            return n
        time.sleep(0.2)
    return count_fn()
