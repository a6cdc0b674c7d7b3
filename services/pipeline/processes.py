"""One ``eew <command>`` child process: start, readiness, log tail, SIGTERM-then-SIGKILL stop."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll its /readyz until 200; RuntimeError (with the log tail) when it exits or the time is up."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode if self.proc else None}):\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
