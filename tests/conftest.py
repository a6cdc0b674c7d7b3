"""Shared fixtures: a real embedded broker, a fresh metrics registry, the ../shared data path."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.broker.embedded import EmbeddedBroker

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared data folder: $EEW_SHARED_DIR, else ../shared beside the repository."""
    return Path(os.environ.get("EEW_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared, or skip with the reason when it is absent."""
    path = shared_dir()
    if not (path / "data" / "nc_phasenet").is_dir():
        pytest.skip(f"real data folder not found at {path} (set EEW_SHARED_DIR): CI provides it")
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real Tansu broker (memory storage) for the session, topics created."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh Prometheus registry per test."""
    return CollectorRegistry()


@pytest.fixture(autouse=True)
def _no_leaked_kafka_client(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test must close the Kafka clients it opens: a client left open keeps a ``kafka-io-*`` thread
    reconnecting to a broker that is gone, logging tracebacks for the rest of the run (and, on
    Python 3.11, racing ``ast.parse`` in the main thread: gh-106905). Clients get
    ``KAFKA_CLOSE_GRACE_S`` to wind down (a wait attempt ends at its own bootstrap timeout)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + KAFKA_CLOSE_GRACE_S
    while True:
        new = [t.name for t in threading.enumerate() if t.name.startswith("kafka-io-") and t.ident not in before]
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if new:
        pytest.fail(f"{request.node.nodeid} left Kafka client thread(s) running: {', '.join(new)}")


KAFKA_CLOSE_GRACE_S = 10.0


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault table of tests/faults (rows kept on each test's report by its ``table`` fixture, so the
    table is whole when pytest-xdist runs the tests in workers; this hook runs where the summary is
    written). ``EEW_FAULT_TABLE=FILE`` also writes it as JSON."""
    import json

    tr = terminalreporter
    rows = [
        value
        for reports in tr.stats.values()
        for rep in reports
        if getattr(rep, "when", None) == "call"
        for key, value in getattr(rep, "user_properties", ())
        if key == "fault_row"
    ]
    if not rows:
        return
    tr.write_sep("=", "fault table (tests/faults)")
    tr.write_line("| fault | observed | packets lost / dup | alerts lost / dup | recovery |")
    tr.write_line("|---|---|---|---|---|")
    for r in rows:
        tr.write_line(f"| {r['fault']} | {r['observed']} | {r['packets']} | {r['alerts']} | {r['recovery']} |")
    out = os.environ.get("EEW_FAULT_TABLE")
    if out:
        Path(out).write_text(json.dumps(rows, indent=1))
