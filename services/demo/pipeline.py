"""Run the whole pipeline as separate processes on one machine (demo, end-to-end tests).

Each service runs as its own ``eew`` subprocess against an embedded broker, exactly as it would
in a deployment; logs go to files in ``run_dir``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.broker.embedded import EmbeddedBroker, free_port

log = logging.getLogger(__name__)


@dataclass
class ServiceProcess:
    """One ``eew <command>`` child process with its log file and metrics port."""

    name: str
    argv: list[str]
    log_path: Path
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> ServiceProcess:
        cmd = [sys.executable, "-m", "services.cli", *self.argv, "--http-port", str(self.http_port)]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.info("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s`` (the services promise < 10 s), then SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s: killing", self.name, timeout_s)
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalPipeline:
    """Broker + detector + alerting as processes; ``replay`` pushes an archive through them."""

    run_dir: Path
    stations_csv: Path
    webhook_urls: list[str] = field(default_factory=list)
    detector_args: list[str] = field(default_factory=list)
    alerting_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_path=self.run_dir / "broker.log")
        self.services: list[ServiceProcess] = []

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
        return self

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
