"""Durable embedded broker: Tansu's s3:// engine on a local SeaweedFS keeps acknowledged data.

Every test runs real processes (tansu, weed) on 127.0.0.1. Reads never trust Tansu's high
watermark: they read from the beginning until a poll returns nothing for a while, with a bounded
total time, and compare exact message sets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from services.broker.embedded import EmbeddedBroker, SeaweedS3, free_port, weed_binary
from services.broker.exceptions import BrokerStartError
from services.common.codec import Packet, decode_packet
from services.common.kafka import make_producer
from services.common.topics import SCORES, WAVEFORMS, TopicSpec
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from tests.support.processes import read_line_matching

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _need_weed() -> None:
    try:
        weed_binary()
    except BrokerStartError as exc:
        pytest.skip(f"durable mode needs SeaweedFS: {exc}")


def produce(bootstrap: str, topic: TopicSpec, n: int, tag: str) -> dict[bytes, tuple[int, int]]:
    """Send n keyed messages with acks=all; return value -> (partition, offset) of each acknowledgement."""
    producer = make_producer(bootstrap, client_id=f"durable-test-{tag}")
    try:
        futures = {
            f"{tag}-{i}".encode(): producer.send(
                topic.name, key=f"XX.S{i % 37:02d}..HH?".encode(), value=f"{tag}-{i}".encode()
            )
            for i in range(n)
        }
        producer.flush(60)
        acks = {value: fut.get(timeout=30) for value, fut in futures.items()}
    finally:
        producer.close(10)
    return {value: (md.partition, md.offset) for value, md in acks.items()}


def read_all(
    bootstrap: str, topic: TopicSpec, idle_s: float = 3.0, max_s: float = 60.0
) -> dict[bytes, tuple[int, int]]:
    """Every message of every partition from the beginning: value -> (partition, offset)."""
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="durable-test-reader",
        fetch_max_wait_ms=100,
    )
    try:
        tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: dict[bytes, tuple[int, int]] = {}
        start = last = time.monotonic()
        while time.monotonic() - start < max_s and time.monotonic() - last < idle_s:
            for tp, records in consumer.poll(timeout_ms=300).items():
                for rec in records:
                    got[rec.value] = (tp.partition, rec.offset)
                last = time.monotonic()
        return got
    finally:
        consumer.close()


@pytest.fixture
def durable_dir(tmp_path: Path) -> Path:
    _need_weed()
    return tmp_path / "broker-data"


def test_acknowledged_messages_survive_tansu_sigkill(durable_dir: Path) -> None:
    """SIGKILL Tansu right after the acks, restart it on the same port and storage: all messages are back."""
    broker = EmbeddedBroker(durable_dir=durable_dir)
    try:
        broker.start()
        sent = produce(broker.bootstrap, WAVEFORMS, 400, "before")
        assert len(sent) == 400
        assert len({p for p, _ in sent.values()}) > 1, "keys should spread over several partitions"

        broker.kill()
        broker.start()  # same port, same SeaweedFS

        got = read_all(broker.bootstrap, WAVEFORMS)
        assert len(got) == 400
        assert got == sent, "every acknowledged message is back at its acknowledged partition/offset"

        # New writes continue after the old offsets instead of overwriting them.
        after = produce(broker.bootstrap, WAVEFORMS, 50, "after")
        last_before: dict[int, int] = {}
        for p, o in sent.values():
            last_before[p] = max(o, last_before.get(p, -1))
        for p, o in after.values():
            assert o > last_before.get(p, -1), f"partition {p}: offset {o} reused after restart"
        assert len(read_all(broker.bootstrap, WAVEFORMS)) == 450
    finally:
        broker.stop()


def test_kill_9_mid_stream_loses_nothing_the_publisher_called_acknowledged(durable_dir: Path) -> None:
    """SIGKILL Tansu while the ingest publisher streams; restart; resend what it reported failed.

    In-flight batches are retried by the producer after the restart, and Tansu sometimes answers
    such a retry DUPLICATE_SEQUENCE_NUMBER for a batch it did not keep (kafka-python reports
    that as success at offset -1). The publisher reports those as failed, so resending every
    failure (as the ingester does by fetching again) must leave every record in the topic.
    """
    broker = EmbeddedBroker(durable_dir=durable_dir)
    registry = CollectorRegistry()
    outcome: dict[int, bool] = {}
    lock = threading.Lock()

    def send(pub: Publisher, seq: int) -> None:
        def done(ok: bool, seq: int = seq) -> None:
            with lock:
                outcome[seq] = ok

        station = f"S{seq % 12:02d}"
        packet = Packet("XX", station, "", "HHZ", seq * 10**9, 100.0, np.zeros(50, np.float32), sequence=seq)
        assert pub.publish(packet, done)

    try:
        broker.start()
        pub = Publisher(make_producer(broker.bootstrap, "durable-test-publisher"), IngestMetrics(registry))
        seq = 0
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:  # stream for 3 s, then keep streaming through the kill
            send(pub, seq)
            seq += 1
            time.sleep(0.003)
        broker.kill()
        for _ in range(300):  # ~1 s of sends into the dead broker: the producer buffers them
            send(pub, seq)
            seq += 1
            time.sleep(0.003)
        time.sleep(2.0)
        broker.start()
        assert pub.flush(120.0), f"{pub.in_flight} sends never settled"
        failed = sorted(q for q, ok in outcome.items() if not ok)
        resend = Publisher(
            make_producer(broker.bootstrap, "durable-test-resend"), IngestMetrics(CollectorRegistry())
        )
        for q in failed:
            send(resend, q)
        assert resend.flush(60.0) and all(outcome[q] for q in failed), "the resend itself failed"
        resend.close()
        pub.close()

        held = {decode_packet(v).sequence for v in read_all(broker.bootstrap, WAVEFORMS)}
        assert len(outcome) == seq
        missing = sorted(set(range(seq)) - held)
        assert missing == [], f"{len(missing)} records missing after resending the {len(failed)} reported failed"
        acked = registry.get_sample_value("eew_ingest_packets_acked_total")
        print(f"kill -9 mid-stream: {seq} sent, {len(failed)} reported failed and resent, {acked:.0f} acked")
    finally:
        broker.stop()


def test_data_and_committed_offsets_survive_full_restart(durable_dir: Path) -> None:
    """Stop Tansu and SeaweedFS, start both again from the same folder: messages and group offsets are kept."""
    first = EmbeddedBroker(durable_dir=durable_dir)
    try:
        first.start()
        port = first.port
        sent = produce(first.bootstrap, SCORES, 200, "scores")
        committer = KafkaConsumer(
            bootstrap_servers=[first.bootstrap], group_id="durable-test-group", enable_auto_commit=False
        )
        tp = TopicPartition(SCORES.name, 1)
        committer.assign([tp])
        committer.commit({tp: OffsetAndMetadata(17, "", -1)})
        committer.close()
    finally:
        first.stop()

    second = EmbeddedBroker(port=port, durable_dir=durable_dir)
    try:
        second.start()
        assert read_all(second.bootstrap, SCORES) == sent
        checker = KafkaConsumer(
            bootstrap_servers=[second.bootstrap], group_id="durable-test-group", enable_auto_commit=False
        )
        checker.assign([tp])
        assert checker.committed(tp) == 17
        checker.close()
    finally:
        second.stop()


def test_memory_mode_loses_data_on_restart(tmp_path: Path) -> None:
    """Control: the same restart in memory mode comes back empty, so the durable tests can fail."""
    broker = EmbeddedBroker()
    try:
        broker.start()
        assert len(produce(broker.bootstrap, SCORES, 20, "mem")) == 20
        broker.kill()
        broker.start()
        assert read_all(broker.bootstrap, SCORES, idle_s=2.0) == {}
    finally:
        broker.stop()


def test_seaweed_listens_only_on_loopback_and_reuses_its_ports(durable_dir: Path) -> None:
    """All weed listeners are on 127.0.0.1 and the ports saved in ports.json are reused on restart."""
    s3 = SeaweedS3(durable_dir / "seaweedfs")
    try:
        s3.start()
        listening = _listening_sockets(s3.proc.pid if s3.proc else -1)
        assert listening, "weed listens somewhere"
        assert all(host == "127.0.0.1" for host, _ in listening), listening
        assert {port for _, port in listening} >= set(s3.ports.values())
        ports = dict(s3.ports)
    finally:
        s3.stop()
    again = SeaweedS3(durable_dir / "seaweedfs")
    assert again.ports == ports


def _listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the TCP listeners owned by pid, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            addr_hex, port_hex = cols[1].split(":")
            if v6:
                host = "::1" if addr_hex == "0" * 24 + "01000000" else addr_hex
            else:
                host = ".".join(str(int(addr_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
            out.append((host, int(port_hex, 16)))
    return out


def _start_cli_broker(port: int, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "broker",
            "--durable",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = read_line_matching(proc, "broker ready:", timeout_s=90)
    return proc, line.rsplit(" ", 1)[-1]


def test_eew_broker_durable_cli_keeps_data_across_restarts(durable_dir: Path) -> None:
    """`eew broker --durable` twice on one data folder: what the first acknowledged, the second serves."""
    port = free_port()
    proc, bootstrap = _start_cli_broker(port, durable_dir)
    try:
        assert bootstrap == f"127.0.0.1:{port}"
        sent = produce(bootstrap, SCORES, 100, "cli")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0
    assert (durable_dir / "seaweedfs" / "ports.json").exists()

    proc, bootstrap = _start_cli_broker(port, durable_dir)
    try:
        assert read_all(bootstrap, SCORES) == sent
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
