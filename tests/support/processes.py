"""Helpers for tests that run the project's commands as subprocesses."""

from __future__ import annotations

import subprocess
import threading

import pytest


def read_line_matching(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> str:
    """First stdout line containing needle, read on a thread so a silent process cannot hang the test."""
    found: list[str] = []
    seen: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if needle in line:
                found.append(line.strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout_s)
    if not found:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"no {needle!r} line within {timeout_s} s; output: {''.join(seen)[-2000:]}")
    return found[0]
