"""Retention of the durable embedded broker: the janitor's deletions, as Tansu and clients see them.

Tansu 0.6.0 ignores ``retention.ms``; ``eew broker --durable`` removes expired batch objects from
SeaweedFS itself (services/broker/janitor.py). These tests show, on real tansu + weed processes,
that after a sweep the earliest offset moves forward, a consumer group resumes at its committed
offset with nothing missing, a fetch below the earliest offset is served from the earliest kept
batch, and after a broker restart offsets continue (never reused). Sweeps are driven with a
"now" in the future, so nothing depends on the machine's speed. ``DeleteRecords`` is never sent
(it panics Tansu 0.6.0).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from services.broker.embedded import EmbeddedBroker, free_port
from services.broker.janitor import DIR_MODE, META_LOG, RetentionJanitor
from services.broker.metrics import BrokerMetrics
from services.common.kafka import make_producer
from services.common.topics import ALL_TOPICS, WAVEFORMS
from tests.integration.test_broker_durable import _need_weed
from tests.support.processes import read_line_matching

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TP = TopicPartition(WAVEFORMS.name, 0)
HOUR_NS = 3600 * 10**9


def produce_batches(bootstrap: str, batches: int, per_batch: int, tag: str) -> list[int]:
    """``batches`` flushed batches of ``per_batch`` messages to partition 0; their offsets."""
    producer = make_producer(bootstrap, client_id=f"retention-test-{tag}")
    offsets: list[int] = []
    try:
        for b in range(batches):
            futs = [
                producer.send(WAVEFORMS.name, partition=0, value=f"{tag}-{b}-{i}".encode())
                for i in range(per_batch)
            ]
            producer.flush(30)
            offsets.extend(f.get(timeout=30).offset for f in futs)
    finally:
        producer.close(10)
    return offsets


def consume(
    bootstrap: str, group: str | None, start: int | None, want: int, max_s: float = 60.0
) -> list[int]:
    """Offsets read from partition 0 (a group resumes at its commit; else from ``start``) until
    ``want`` are read or ``max_s`` passes."""
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap],
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        client_id="retention-test-reader",
    )
    got: list[int] = []
    try:
        if group is None:
            consumer.assign([TP])
            consumer.seek(TP, start or 0)
        else:
            consumer.subscribe([WAVEFORMS.name])
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline and len(got) < want:
            for tp, recs in consumer.poll(timeout_ms=300).items():
                got.extend(r.offset for r in recs if tp.partition == 0)
    finally:
        consumer.close()
    return got


def earliest(bootstrap: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], client_id="retention-test-offsets")
    try:
        return int(consumer.beginning_offsets([TP])[TP])
    finally:
        consumer.close()


def test_expired_batches_go_and_consumers_tolerate_it_across_a_restart(tmp_path: Path) -> None:
    _need_weed()
    broker = EmbeddedBroker(durable_dir=tmp_path / "broker", retention_interval_s=0)
    try:
        broker.start()
        assert broker.janitor is None, "interval 0 turns the janitor thread off"
        old = produce_batches(broker.bootstrap, 4, 25, "old")
        assert old == list(range(100))
        committer = KafkaConsumer(
            bootstrap_servers=[broker.bootstrap], group_id="retention-g", enable_auto_commit=False
        )
        committer.assign([TP])
        committer.commit({TP: OffsetAndMetadata(60, "", -1)})
        committer.close()
        time.sleep(1.1)  # filer times are whole seconds: old ones < t_mid - 1.1 s <= new ones (floored)
        t_mid_ns = time.time_ns()
        new = produce_batches(broker.bootstrap, 2, 25, "new")
        assert new == list(range(100, 150))

        registry = CollectorRegistry()
        assert broker.s3 is not None
        janitor = RetentionJanitor(
            broker.s3.filer(10.0),
            {WAVEFORMS.name: WAVEFORMS.partitions},
            {WAVEFORMS.name: 0},
            BrokerMetrics(registry),
            interval_s=3600,
        )
        # retention 0 at "now" = t_mid - 1 s: the old batches expire, the new ones stay
        folder = janitor.folder(WAVEFORMS.name, 0)
        names = [
            e["FullPath"].rsplit("/", 1)[-1]
            for page, _ in janitor.filer.list_pages(folder, 1000)
            for e in page
        ]
        assert names == [f"{o:020d}.batch" for o in (0, 25, 50, 75, 100, 125)]
        # kept forever, 6 objects > 3 allowed: counted, reported crowded, nothing removed
        counter = RetentionJanitor(
            broker.s3.filer(10.0),
            {WAVEFORMS.name: 1},
            {WAVEFORMS.name: -1},
            BrokerMetrics(CollectorRegistry()),
            interval_s=3600,
            max_objects=3,
        )
        assert counter.sweep() == 0
        assert counter.crowded == {f"{WAVEFORMS.name}[0]": 6}
        removed = janitor.sweep(now_ns=t_mid_ns - 1_000_000_000)
        assert removed == 4, "the four old batches expired, the two new ones are kept"
        objects = registry.get_sample_value(
            "eew_broker_partition_objects", {"topic": WAVEFORMS.name, "partition": "0"}
        )
        assert objects == 2 and janitor.crowded == {}
        assert (
            registry.get_sample_value("eew_broker_retention_deleted_objects_total", {"topic": WAVEFORMS.name})
            == 4
        )

        for phase in ("after the sweep", "after a broker restart"):
            assert earliest(broker.bootstrap) == 100, phase
            from_zero = consume(broker.bootstrap, None, 0, 50)
            assert from_zero == list(range(100, 150)), f"{phase}: a fetch below the earliest starts there"
            # the group committed 60, inside the removed range: it resumes at the earliest kept
            grp = consume(broker.bootstrap, "retention-g", None, 50)
            assert grp == list(range(100, 150)), phase
            if phase == "after the sweep":
                broker.stop_broker_only()
                broker.start()

        more = produce_batches(broker.bootstrap, 1, 10, "more")
        assert more == list(range(150, 160)), "offsets continue after the removed batches, never reused"
        # everything may expire: the newest batch of each partition always stays
        assert janitor.sweep(now_ns=time.time_ns() + HOUR_NS) == 2
        assert earliest(broker.bootstrap) == 150
        assert consume(broker.bootstrap, None, 0, 10) == list(range(150, 160))
        # the filer's metadata log (one file a minute) is pruned to its newest file
        janitor.prune_meta_log(now_ns=time.time_ns() + HOUR_NS)
        logs = [e for day, _ in janitor.filer.list_pages(META_LOG, 100) for e in day if e["Mode"] & DIR_MODE]
        files = [f for d in logs for page, _ in janitor.filer.list_pages(d["FullPath"], 100) for f in page]
        assert len(files) <= 1
    finally:
        broker.stop()


def test_janitor_thread_keeps_the_store_bounded(tmp_path: Path) -> None:
    """``eew broker --durable``'s janitor thread, retention 0: each pass leaves one batch per partition."""
    _need_weed()
    registry = CollectorRegistry()
    broker = EmbeddedBroker(
        durable_dir=tmp_path / "broker",
        retention_ms={WAVEFORMS.name: 0},
        retention_interval_s=0.5,
        registry=registry,
    )
    try:
        broker.start()
        produce_batches(broker.bootstrap, 5, 10, "x")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and earliest(broker.bootstrap) < 40:
            time.sleep(0.5)
        assert earliest(broker.bootstrap) == 40
        assert (
            registry.get_sample_value("eew_broker_retention_deleted_objects_total", {"topic": WAVEFORMS.name})
            == 4
        )
        assert consume(broker.bootstrap, None, 0, 10) == list(range(40, 50))
        fp = broker.footprint()
        assert fp["tansu_rss"] > 0 and fp["weed_rss"] > 0 and fp["disk"] > 0
    finally:
        broker.stop()


def _created(script: str) -> dict[str, int]:
    """topic -> retention.ms of the ``create <topic> <partitions> <retention>`` lines of a job script."""
    return {m[1]: int(m[3]) for m in re.finditer(r"^\s*create (\S+) (\d+) (-?\d+)\s*$", script, re.M)}


def test_deploy_topic_jobs_use_the_retention_of_topics_py() -> None:
    """The Apache Kafka deployments create every topic with topics.py's retention.ms."""
    expected = {t.name: t.retention_ms for t in ALL_TOPICS}
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    assert _created(compose["services"]["create-topics"]["command"][0]) == expected
    job = next(
        d
        for d in yaml.safe_load_all((REPO / "deploy/k8s/topics-job.yaml").read_text())
        if d and d.get("kind") == "Job"
    )
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert _created(script) == expected


def _readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def test_eew_broker_memory_mode_warns_and_readyz_reports_its_limit() -> None:
    """Memory mode says at start that it is for bounded runs; past --memory-limit-mb /readyz says why."""
    port, http = free_port(), free_port()
    cmd = [sys.executable, "-m", "services.cli", "broker", "--port", str(port), "--http-port", str(http),
           "--memory-limit-mb", "1", "--footprint-interval-s", "0.5"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        warning = read_line_matching(proc, "memory storage keeps every message", timeout_s=60)
        assert "WARNING" in warning and "--durable" in warning
        read_line_matching(proc, "broker ready:", timeout_s=60)
        deadline = time.monotonic() + 30
        code, body = _readyz(http)
        while code != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
            code, body = _readyz(http)
        assert code == 503, body
        assert "memory storage: tansu holds" in body["checks"]["storage"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_eew_broker_rejects_a_malformed_retention_override() -> None:
    cmd = [sys.executable, "-m", "services.cli", "broker", "--port", str(free_port()), "--durable",
           "--retention-ms", "eew.waveforms.v1=1h"]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "expected TOPIC=MILLISECONDS" in r.stderr + r.stdout
