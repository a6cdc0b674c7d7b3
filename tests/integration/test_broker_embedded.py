"""Embedded broker in memory mode: topics with their final partition counts, and `eew broker` as a process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from services.broker.embedded import EmbeddedBroker, free_port
from services.common.topics import ALL_TOPICS
from tests.support.processes import read_line_matching

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def partition_counts(bootstrap: str) -> dict[str, int]:
    """Topic -> number of partitions, from cluster metadata."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], client_id="embedded-test")
    try:
        out = {}
        for name in consumer.topics():
            parts = consumer.partitions_for_topic(name) or set()
            out[name] = len(parts)
        return out
    finally:
        consumer.close()


def test_topics_created_with_their_partition_counts(broker: EmbeddedBroker) -> None:
    """Every pipeline topic exists with the partition count declared in services/common/topics.py."""
    counts = partition_counts(broker.bootstrap)
    for spec in ALL_TOPICS:
        assert counts.get(spec.name) == spec.partitions, f"{spec.name}: {counts.get(spec.name)}"


def test_create_topics_can_be_disabled(tmp_path: Path) -> None:
    """create_topics=False leaves the broker empty (so --no-create-topics does what it says)."""
    with EmbeddedBroker(create_topics=False, log_path=tmp_path / "tansu.log") as b:
        admin = KafkaAdminClient(bootstrap_servers=[b.bootstrap], request_timeout_ms=5_000)
        try:
            assert not {t.name for t in ALL_TOPICS} & set(admin.list_topics())
        finally:
            admin.close()


def test_broker_listens_on_loopback_only(tmp_path: Path) -> None:
    """Tansu is started with a 127.0.0.1 listener and advertises the same address."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as b:
        assert b.bootstrap == f"127.0.0.1:{b.port}"
        assert b.proc is not None
        args = b.proc.args
        assert isinstance(args, list)
        assert args[args.index("--listener-url") + 1] == f"tcp://127.0.0.1:{b.port}"
        assert args[args.index("--advertised-listener-url") + 1] == f"tcp://127.0.0.1:{b.port}"
    assert not _port_open(b.port), "stop() leaves nothing listening"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_eew_broker_command_prints_bootstrap_and_stops_on_sigterm() -> None:
    """`eew broker` prints its bootstrap line, serves the topics, and exits 0 within 10 s of SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "broker", "--port", str(port), "--log-level", "WARNING"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = read_line_matching(proc, "broker ready:", timeout_s=60)
        assert line == f"broker ready: --bootstrap-servers 127.0.0.1:{port}"
        counts = partition_counts(f"127.0.0.1:{port}")
        assert {t.name: t.partitions for t in ALL_TOPICS}.items() <= counts.items()

        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        rc = proc.wait(timeout=10)  # the shutdown contract: exit within 10 s of SIGTERM
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    print(f"eew broker stopped {elapsed:.2f} s after SIGTERM")
    assert rc == 0
    assert not _port_open(port), "tansu child stopped with the command"
