"""Horizontal scaling: ``eew detect`` processes in ONE consumer group on the real broker.

A feeder publishes live 1 s packets (data time = wall clock, real-time pace) of 24 synthetic
noise stations and 2 synthetic event stations to a 12-partition waveform topic; detector
subprocesses (``ServiceProcess``, the shipped ONNX model) share one group.

* ``test_kill_9_one_of_two_detectors``: two start together and split the partitions; one is
  killed with SIGKILL (no flush, no commit, no leave-group); the survivor takes its stations.
* ``test_scale_out_then_scale_in``: one owns everything, a second joins and takes half (the
  autoscaler's scale-out: an eager rebalance hand-over), then the first gets SIGTERM (scale-in).

Which process produced each StationScore: the proto has no field for it and the detector sets no
record headers, but every detector's idempotent producer gets its own producer id from the broker
and that id is written into every record batch it produces. The test reads the scores topic with
plain Fetch requests (kafka-python's consumer hides the batch header) to attribute each score to
its producer, and checks it against each process's /metrics (station gauges, assigned partitions).

Asserts: the owners' station sets (/metrics) are disjoint, non-empty and cover every station,
their partitions add up to 12, and each one's scores come from its own producer; in each
station's scores partition (broker append order) the producer changes at most once per group
generation (two owners at the same time would interleave every second); no producer scores a
window twice, so re-scored windows are hand-over duplicates from two different owners; after the
hand-over every station goes on being scored by the remaining process with no window missing.
Printed: hand-over gap per station (wall time from the old owner's last score to the new owner's
first), duplicates and how far their probabilities differ (the new owner rebuilds the model state
from the committed warm-up history, not from the stream start, so re-scores are not identical;
the alerting keeps the first score of a window, which is the old owner's).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from kafka import KafkaAdminClient
from kafka.protocol.consumer import FetchRequest
from kafka.record.memory_records import MemoryRecords

from models import synthetic
from services.broker.embedded import EmbeddedBroker, free_port
from services.common.codec import Packet, encode_packet, stream_key
from services.common.kafka import ensure_topics, make_producer
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.topics import TopicSpec
from services.pipeline.processes import ServiceProcess

pytestmark = pytest.mark.integration

NS = 1_000_000_000
FS = 100
N_NOISE = 24
EVENT_STATIONS = {"E01": 22.0, "E02": 24.0}  # station -> P arrival, seconds after the feed starts
FEED_S = 150  # data generated per station; the test ends long before
WAVE_PARTITIONS = 12
SCORE_PARTITIONS = 6
STABLE_S = 3.0  # both processes owning half must last this long before the kill
CATCH_UP_S = 2.0  # after the survivor has caught up, watch this much longer


@dataclass(frozen=True)
class ScoreRecord:
    """One StationScore with where it came from (producer id) and where it sits (partition, offset)."""

    producer_id: int
    partition: int
    offset: int
    key: str
    window_end_ns: int
    scored_ns: int
    probability: float
    triggered: bool


class ScoreReader:
    """Reads a topic from the beginning with Fetch requests, keeping each batch's producer id."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic = topic
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="scaling-score-reader")
        self.next = dict.fromkeys(range(partitions), 0)
        self.records: list[ScoreRecord] = []

    def poll(self) -> int:
        """Fetch everything new from every partition; returns how many records arrived."""
        part = FetchRequest.FetchTopic.FetchPartition
        req = FetchRequest(
            max_wait_ms=50,
            min_bytes=1,
            max_bytes=16 * 1024 * 1024,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=[
                FetchRequest.FetchTopic(
                    topic=self.topic,
                    partitions=[
                        part(
                            partition=p,
                            current_leader_epoch=-1,
                            fetch_offset=off,
                            last_fetched_epoch=-1,
                            log_start_offset=-1,
                            partition_max_bytes=4 * 1024 * 1024,
                        )
                        for p, off in self.next.items()
                    ],
                )
            ],
            forgotten_topics_data=[],
            rack_id="",
            min_version=4,
            max_version=11,
        )
        manager = self.admin._manager  # the admin client's connection manager sends any request

        async def send():  # noqa: ANN202
            return await manager.send(req)

        resp = manager.run(send)
        n = 0
        for topic in resp.responses:
            for pr in topic.partitions:
                assert pr.error_code == 0, (
                    f"fetch of {self.topic}[{pr.partition_index}]: error {pr.error_code}"
                )
                records = MemoryRecords(pr.records or b"")
                batch = records.next_batch()
                while batch is not None:
                    for r in batch:
                        if r.offset < self.next[pr.partition_index]:
                            continue
                        m = pb.StationScore()
                        m.ParseFromString(r.value)
                        self.records.append(
                            ScoreRecord(
                                batch.producer_id,
                                pr.partition_index,
                                r.offset,
                                r.key.decode(),
                                m.window_end_time_ns,
                                m.scored_time_ns,
                                m.probability,
                                m.triggered,
                            )
                        )
                        self.next[pr.partition_index] = r.offset + 1
                        n += 1
                    batch = records.next_batch()
        return n

    def close(self) -> None:
        self.admin.close()


class Feeder(threading.Thread):
    """Live-like publisher: every second, the previous second of every station (3 components)."""

    def __init__(self, bootstrap: str, topic: str, keys: dict[str, np.ndarray], t0_ns: int) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.keys, self.t0_ns = bootstrap, topic, keys, t0_ns
        self.stop = threading.Event()
        self.seconds = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = make_producer(self.bootstrap, "scaling-feeder")
        try:
            for s in range(FEED_S):
                due = (self.t0_ns + (s + 1) * NS - time.time_ns()) / NS
                if self.stop.wait(max(0.0, due)):
                    break
                for sta, data in self.keys.items():
                    for c, comp in enumerate("ZNE"):
                        p = Packet("SC", sta, "", "HH" + comp, self.t0_ns + s * NS, float(FS),
                                   data[c, s * FS : (s + 1) * FS], ingest_time_ns=time.time_ns())  # fmt: skip
                        producer.send(self.topic, key=p.key.encode(), value=encode_packet(p))
                producer.flush(10)
                self.seconds = s + 1
        except BaseException as exc:  # noqa: BLE001 -- reported by the test thread
            self.error = exc
        finally:
            producer.close(5)


def station_records(seconds: int) -> dict[str, np.ndarray]:
    """(3, seconds*FS) float32 Z, N, E of every station: noise, and two events."""
    rng = np.random.default_rng(7)
    out = {}
    for i in range(N_NOISE):
        out[f"N{i:02d}"] = synthetic.noise(rng, seconds * FS, FS, 200.0).astype(np.float32)
    for sta, p_s in EVENT_STATIONS.items():
        out[sta] = synthetic.event_record(rng, seconds * FS, FS, p_s=p_s, snr=30.0, noise_level=200.0).astype(
            np.float32
        )
    return out


def scrape(port: int) -> tuple[set[str], int, float]:
    """(stations buffered, partitions assigned, windows scored) from one detector's /metrics."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3.0).text
    except httpx.HTTPError:  # not serving yet (model loading)
        return set(), 0, 0.0
    stations = set(re.findall(r'^eew_detector_station_data_latency_seconds\{station="([^"]+)"\}', text, re.M))
    assigned = re.search(r"^eew_detector_assigned_partitions (\S+)$", text, re.M)
    scored = re.search(r"^eew_detector_windows_scored_total (\S+)$", text, re.M)
    return (
        stations,
        int(float(assigned.group(1))) if assigned else 0,
        float(scored.group(1)) if scored else 0.0,
    )


def detector(bootstrap: str, tag: str, i: int, run_dir: Path) -> ServiceProcess:
    argv = [
        "detect",
        "--bootstrap-servers", bootstrap,
        "--group-id", f"scaling-{tag}",
        "--client-id", f"scaling-detector-{i}",
        "--waveforms-topic", f"eew.waveforms.sc-{tag}",
        "--scores-topic", f"eew.scores.sc-{tag}",
        "--deadletter-topic", f"eew.deadletter.sc-{tag}",
        "--intra-op-threads", "1",
        "--commit-interval-s", "0.5",
    ]  # fmt: skip
    return ServiceProcess(f"detector-{i}", argv, run_dir / f"detector-{i}.log", free_port())


def ownership_changes(recs: list[ScoreRecord]) -> int:
    """How often the producer changes along one station's scores in append (offset) order."""
    ordered = sorted(recs, key=lambda r: r.offset)
    return sum(1 for a, b in zip(ordered, ordered[1:], strict=False) if a.producer_id != b.producer_id)


class Scenario:
    """The topics, the feeder, the detector processes, the score reader and the /metrics history."""

    def __init__(self, broker: EmbeddedBroker, run_dir: Path, n_detectors: int) -> None:
        tag = uuid.uuid4().hex[:8]
        ensure_topics(
            broker.bootstrap,
            [
                TopicSpec(f"eew.waveforms.sc-{tag}", WAVE_PARTITIONS, "test"),
                TopicSpec(f"eew.scores.sc-{tag}", SCORE_PARTITIONS, "test"),
                TopicSpec(f"eew.deadletter.sc-{tag}", 1, "test"),
            ],
        )
        data = station_records(FEED_S)
        self.keys = {stream_key("SC", sta, "", "HHZ") for sta in data}
        t0_ns = (time.time_ns() // NS - 1) * NS  # whole second, live: the first packet is due now
        self.feeder = Feeder(broker.bootstrap, f"eew.waveforms.sc-{tag}", data, t0_ns)
        self.procs = [detector(broker.bootstrap, tag, i, run_dir) for i in range(n_detectors)]
        self.reader = ScoreReader(broker.bootstrap, f"eew.scores.sc-{tag}", SCORE_PARTITIONS)
        self.gone: set[int] = set()  # indexes of processes stopped on purpose
        self.last: dict[int, tuple[set[str], int, float]] = {}  # newest /metrics of each live process
        self.stable_since: list[int] = []  # wall ns of the consecutive snapshots where owners_stable held
        self._owners: list[int] = []

    def alive_check(self) -> None:
        assert self.feeder.error is None, f"feeder failed: {self.feeder.error!r}"
        for i, p in enumerate(self.procs):
            if i not in self.gone and p.proc is not None:
                assert p.running(), f"{p.name} exited:\n{p.log_tail()}"

    def watch(self, until_fn, timeout_s: float, what: str) -> None:  # noqa: ANN001
        """Read scores and scrape the live processes' /metrics until ``until_fn()`` holds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.alive_check()
            self.reader.poll()
            self.last = {
                i: scrape(p.http_port)
                for i, p in enumerate(self.procs)
                if i not in self.gone and p.proc is not None
            }
            if until_fn():
                return
            time.sleep(0.3)
        logs = "\n".join(f"--- {p.name}\n{p.log_tail(15)}" for p in self.procs)
        last = {i: (sorted(st), parts, n) for i, (st, parts, n) in self.last.items()}
        pytest.fail(
            f"timed out waiting for {what}; last /metrics (stations, partitions, windows): {last}\n{logs}"
        )

    def owners_stable(self, owners: list[int]) -> bool:
        """The processes ``owners`` hold disjoint, non-empty station sets covering every station and
        all partitions (their /metrics), continuously for STABLE_S."""
        if self._owners != owners:
            self._owners, self.stable_since = owners, []
        sets = [self.last[i][0] for i in owners]
        parts = [self.last[i][1] for i in owners]
        ok = (
            all(sets)
            and sum(len(x) for x in sets) == len(set().union(*sets))
            and set().union(*sets) == self.keys
            and sum(parts) == WAVE_PARTITIONS
            and all(parts)
        )
        if not ok:
            self.stable_since.clear()
            return False
        self.stable_since.append(time.time_ns())
        return self.stable_since[-1] - self.stable_since[0] >= STABLE_S * NS

    def producers_of(self, owners: list[int]) -> dict[int, int]:
        """Producer id of each owner: the one its stations' scores came from while ownership was stable."""
        recent = [r for r in self.reader.records if r.scored_ns > self.stable_since[0] + NS]
        pid_of = {}
        for i in owners:
            stations, _, scored = self.last[i]
            assert scored > 0, f"{self.procs[i].name} scored nothing"
            pids = {r.producer_id for r in recent if r.key in stations}
            assert len(pids) == 1, (
                f"{self.procs[i].name}'s stations {sorted(stations)} scored by producers {pids}"
            )
            pid_of[i] = pids.pop()
            assert {r.key for r in recent if r.producer_id == pid_of[i]} <= stations
        assert len(set(pid_of.values())) == len(owners)
        return pid_of

    def taken_over(self, survivor_pid: int, after_ns: int) -> bool:
        """Every station has a window ending 2 s past ``after_ns`` scored by ``survivor_pid``."""
        newest: dict[str, int] = {}
        for r in self.reader.records:
            if r.producer_id == survivor_pid:
                newest[r.key] = max(newest.get(r.key, 0), r.window_end_ns)
        return set(newest) == self.keys and min(newest.values()) > (after_ns // NS + 2) * NS

    def close(self) -> None:
        self.feeder.stop.set()
        self.feeder.join(15)
        for p in self.procs:
            if p.running():
                p.stop()
        self.reader.close()


def check_history(sc: Scenario, survivor: ServiceProcess, stop_ns: int) -> tuple[list, int]:
    """What the scores topic says about ownership; returns (duplicate pairs, generations)."""
    by_station: dict[str, list[ScoreRecord]] = defaultdict(list)
    for r in sc.reader.records:
        by_station[r.key].append(r)
    assert set(by_station) == sc.keys

    # one owner at a time: in append (offset) order a station's producer changes at most once per
    # group generation after the survivor's first (its log counts the generations it took part in)
    generations = survivor.log_path.read_text().count("waveform partitions assigned")
    changes = {k: ownership_changes(v) for k, v in by_station.items()}
    assert max(changes.values()) <= generations - 1, (changes, generations)

    # a producer never scores a window twice: re-scores come from a different, new owner
    per_pid: dict[tuple[int, str, int], int] = defaultdict(int)
    for r in sc.reader.records:
        per_pid[(r.producer_id, r.key, r.window_end_ns)] += 1
    assert max(per_pid.values()) == 1
    first: dict[tuple[str, int], ScoreRecord] = {}
    dups = []
    for r in sorted(sc.reader.records, key=lambda r: (r.partition, r.offset)):
        k = (r.key, r.window_end_ns)
        if k in first:
            dups.append((first[k], r))
        else:
            first[k] = r
    assert all(a.producer_id != b.producer_id for a, b in dups)

    # no station stopped being scored: every window from its first one on, no hole, past the stop
    for k, recs in by_station.items():
        ends = sorted({r.window_end_ns for r in recs})
        holes = [(b - a) // NS - 1 for a, b in zip(ends, ends[1:], strict=False) if b - a != NS]
        assert not holes, f"{k}: windows missing ({sum(holes)} s)"
        assert ends[-1] > (stop_ns // NS + 2) * NS, f"{k} not scored after the hand-over"
    return dups, generations


def report(
    sc: Scenario, what: str, moved: set[str], old_pid: int, new_pid: int, stop_ns: int, dups: list
) -> str:
    """Hand-over gaps of the stations that moved and how the duplicates differ."""
    gaps = []
    for k in moved:
        old = [r.scored_ns for r in sc.reader.records if r.key == k and r.producer_id == old_pid]
        new = [
            r.scored_ns
            for r in sc.reader.records
            if r.key == k and r.producer_id == new_pid and r.scored_ns > stop_ns
        ]
        gaps.append((min(new) - max(old)) / NS)
    diffs = [abs(a.probability - b.probability) for a, b in dups]
    newest: dict[str, tuple[int, float]] = {}
    for a, b in dups:
        if a.window_end_ns >= newest.get(a.key, (0, 0.0))[0]:
            newest[a.key] = (a.window_end_ns, abs(a.probability - b.probability))
    flips = sum(a.triggered != b.triggered for a, b in dups)
    return (
        f"{what}: {len(moved)} stations moved; hand-over gap (old owner's last score -> new owner's first) "
        f"min {min(gaps):.1f} s, median {float(np.median(gaps)):.1f} s, max {max(gaps):.1f} s; "
        f"re-scored windows {len(dups)}, |dp| max {max(diffs, default=0.0):.4f} median "
        f"{float(np.median(diffs)) if diffs else 0.0:.4f} (newest re-score per station: max "
        f"{max((d for _, d in newest.values()), default=0.0):.4f}), triggered flag differs in {flips}"
    )


def test_kill_9_one_of_two_detectors(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Both start together and split the partitions; SIGKILL one; the survivor scores everything."""
    sc = Scenario(broker, tmp_path, 2)
    try:
        sc.feeder.start()
        for p in sc.procs:
            p.start()
        sc.watch(lambda: sc.owners_stable([0, 1]), 60.0, "both detectors to own half of the stations")
        before = dict(sc.last)
        pid_of = sc.producers_of([0, 1])
        victim, survivor = sc.procs
        assert victim.proc is not None
        kill_ns = time.time_ns()
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        sc.gone.add(0)
        caught: list[float] = []

        def survivor_has_all() -> bool:
            if not sc.taken_over(pid_of[1], kill_ns):
                return False
            caught.append(time.monotonic())
            return caught[-1] - caught[0] >= CATCH_UP_S

        t_kill = time.monotonic()
        sc.watch(survivor_has_all, 60.0, "the survivor to score every station after the kill")
        after = sc.last[1]
        sc.feeder.stop.set()
        sc.feeder.join(15)
        sc.reader.poll()
        code = survivor.stop()
        assert code == 0, f"survivor exit code {code}:\n{survivor.log_tail()}"
    finally:
        sc.close()
    assert after[0] == sc.keys and after[1] == WAVE_PARTITIONS, f"survivor's /metrics: {after}"
    assert {r.producer_id for r in sc.reader.records} == set(pid_of.values())
    dups, generations = check_history(sc, survivor, kill_ns)
    for k in before[0][0]:
        assert any(r.producer_id == pid_of[1] for r in sc.reader.records if r.key == k)
    print(
        f"\nkill -9: {len(sc.keys)} stations, {len(sc.reader.records)} scores; before: "
        f"{len(before[0][0])}/{len(before[1][0])} stations, {before[0][1]}/{before[1][1]} partitions; every station "
        f"scored by the survivor {caught[0] - t_kill:.1f} s after the kill; generations {generations}\n"
        + report(sc, "kill -9", before[0][0], pid_of[0], pid_of[1], kill_ns, dups)
    )


def test_scale_out_then_scale_in(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """One detector owns everything; a second joins and takes half (rebalance hand-over, the
    autoscaler's scale-out); then the first is stopped with SIGTERM (scale-in) and the second
    scores everything."""
    sc = Scenario(broker, tmp_path, 2)
    try:
        sc.feeder.start()
        sc.procs[0].start()
        sc.watch(lambda: sc.owners_stable([0]), 60.0, "the first detector to own every station")
        pid_first = sc.producers_of([0])[0]
        join_ns = time.time_ns()
        sc.procs[1].start()
        sc.watch(lambda: sc.owners_stable([0, 1]), 30.0, "the two detectors to share the stations")
        shared = dict(sc.last)
        pid_of = sc.producers_of([0, 1])
        assert pid_of[0] == pid_first
        stop_ns = time.time_ns()
        assert sc.procs[0].stop() == 0, sc.procs[0].log_tail()
        sc.gone.add(0)
        sc.watch(
            lambda: sc.taken_over(pid_of[1], stop_ns), 60.0, "the remaining detector to score everything"
        )
        sc.watch(
            lambda: sc.owners_stable([1]), 30.0, "the remaining detector's /metrics to show every station"
        )
        sc.feeder.stop.set()
        sc.feeder.join(15)
        sc.reader.poll()
        assert sc.procs[1].stop() == 0, sc.procs[1].log_tail()
    finally:
        sc.close()
    assert {r.producer_id for r in sc.reader.records} == set(pid_of.values())
    dups, generations = check_history(sc, sc.procs[1], stop_ns)
    print(
        f"\nscale-out/in: {len(sc.keys)} stations, {len(sc.reader.records)} scores; shared "
        f"{len(shared[0][0])}/{len(shared[1][0])} stations; generations seen by the second {generations}\n"
        + report(
            sc,
            "scale-out",
            shared[1][0],
            pid_first,
            pid_of[1],
            join_ns,
            [
                d
                for d in dups
                if d[1].producer_id == pid_of[1] and d[1].key in shared[1][0] and d[1].scored_ns < stop_ns
            ],
        )
        + "\n"
        + report(
            sc,
            "scale-in (SIGTERM)",
            shared[0][0],
            pid_of[0],
            pid_of[1],
            stop_ns,
            [d for d in dups if d[1].key in shared[0][0]],
        )
    )
