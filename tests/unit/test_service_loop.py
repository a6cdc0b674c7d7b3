"""The service harness (services.common.loop.ConsumeLoop) against a stand-in Kafka adapter and
stage: backpressure pauses and resumes, commits follow confirmed acknowledgements, an
unacknowledged send rewinds, a clean stop drains and commits, a bug commits nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

import services.common.loop as loop_mod
from services.common.lifecycle import StopFlag
from services.common.loop import ConsumeLoop, LoopConfig

TP = TopicPartition("in", 0)


@dataclass
class _Meta:
    offset: int


class _Future:
    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.value = _Meta(7 if ok else -1)

    def succeeded(self) -> bool:
        return self.ok


@dataclass
class _Record:
    offset: int
    value: bytes = b"x"
    key: bytes | None = None


@dataclass
class FakeIO:
    batches: list[dict[TopicPartition, list[Any]]] = field(default_factory=list)
    ack: bool = True
    sent: list[str] = field(default_factory=list)
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    is_paused: bool = False
    closed: bool = False
    polls: list[int] = field(default_factory=list)
    metadata: str = ""

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.polls.append(timeout_ms)
        return self.batches.pop(0) if self.batches else {}

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any = None) -> _Future:
        self.sent.append(topic)
        return _Future(self.ack)

    def flush(self, timeout_s: float) -> None:
        pass

    def commit(self, offsets: dict[TopicPartition, int], metadata: str = "") -> bool:
        self.commits.append(dict(offsets))
        self.metadata = metadata
        return True

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, tps: Any) -> None:
        self.is_paused = True

    def resume_all(self) -> None:
        self.is_paused = False

    def paused(self) -> bool:
        return self.is_paused

    def close(self, timeout_s: float = 5.0) -> None:
        self.closed = True


class FakeStage:
    """Publishes one output per record; holds a backlog for ``backlog_turns`` turns."""

    def __init__(self, io: FakeIO, backlog_turns: int = 0, fail_on: int | None = None) -> None:
        self.io, self.backlog_turns, self.fail_on = io, backlog_turns, fail_on
        self.loop: ConsumeLoop | None = None
        self.next: int | None = None
        self.pending = 0
        self.rewinds = self.drained = 0
        self.prepared = self.closed = False

    def prepare(self) -> None:
        self.prepared = True

    def close(self) -> None:
        self.closed = True

    def commit_metadata(self) -> str:
        return ""

    def open(self) -> FakeIO:
        return self.io

    def settle(self, records: Any) -> Any:
        return records

    def handle(self, tp: TopicPartition, r: Any, wall: int, mono: int) -> None:
        if r.offset == self.fail_on:
            raise RuntimeError("a bug")
        self.next = r.offset + 1
        self.pending += 1

    def process(self) -> int:
        assert self.loop is not None
        for _ in range(self.pending):
            self.loop.send("out", None, b"y")
        self.pending = 0
        self.backlog_turns = max(0, self.backlog_turns - 1)
        return self.backlog_turns

    def housekeeping(self, mono_ns: int) -> None:
        pass

    def safe_offsets(self, tps: Any) -> dict[TopicPartition, int]:
        return {TP: self.next} if self.next is not None else {}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        pass

    def rewind(self) -> None:
        self.rewinds += 1

    def drain(self) -> None:
        self.drained += 1


class Metrics:
    def __init__(self) -> None:
        r = CollectorRegistry()
        self.registry = r
        self.broker_errors = Counter("t_broker_errors", "", registry=r)
        self.pauses = Counter("t_pauses", "", registry=r)
        self.paused = Gauge("t_paused", "", registry=r)
        self.unacked = Gauge("t_unacked", "", registry=r)
        self.commits = Counter("t_commits", "", registry=r)
        self.commit_failures = Counter("t_commit_failures", "", registry=r)
        self.rewinds = Counter("t_rewinds", "", registry=r)
        self.delivery_failures = Counter("t_delivery_failures", "", ["topic"], registry=r)


def make(io: FakeIO, **kw: Any) -> tuple[ConsumeLoop, FakeStage, Metrics]:
    stage = FakeStage(io, **kw)
    m = Metrics()
    loop = ConsumeLoop("test", LoopConfig(commit_interval_s=3600.0), stage, StopFlag(), m)
    stage.loop = loop
    loop.io = io  # type: ignore[assignment]
    return loop, stage, m


def test_backlog_pauses_polls_without_waiting_and_resumes() -> None:
    io = FakeIO(batches=[{TP: [_Record(0)]}])
    loop, _, m = make(io, backlog_turns=2)
    loop.turn()
    assert io.is_paused and m.registry.get_sample_value("t_pauses_total") == 1
    loop.turn()
    assert io.polls == [100, 0] and not io.is_paused


def test_commit_follows_confirmed_acknowledgements() -> None:
    io = FakeIO(batches=[{TP: [_Record(0), _Record(1)]}])
    loop, _, _ = make(io)
    loop.turn()
    assert io.sent == ["out", "out"] and not io.commits
    assert loop.flush_and_commit() and io.commits == [{TP: 2}] and not loop.unacked


def test_an_unacknowledged_send_rewinds_instead_of_committing() -> None:
    io = FakeIO(batches=[{TP: [_Record(0)]}], ack=False)
    loop, stage, m = make(io)
    loop.turn()
    assert not loop.flush_and_commit()
    assert stage.rewinds == 1 and not io.commits
    assert m.registry.get_sample_value("t_delivery_failures_total", {"topic": "out"}) == 1


def test_clean_stop_drains_flushes_commits_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_mod, "wait_for_broker", lambda *a, **k: True)
    io = FakeIO(batches=[{TP: [_Record(0)]}])
    loop, stage, _ = make(io)
    stage.process = _stopping(stage, loop)  # type: ignore[method-assign]
    assert loop.run("unused:9092") == 0
    assert stage.drained == 1 and io.commits == [{TP: 1}] and io.closed
    assert stage.prepared and stage.closed


def test_a_bug_commits_nothing_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_mod, "wait_for_broker", lambda *a, **k: True)
    io = FakeIO(batches=[{TP: [_Record(0)]}, {TP: [_Record(1)]}])
    loop, stage, _ = make(io, fail_on=1)
    assert loop.run("unused:9092") == 1
    assert not io.commits and stage.drained == 0 and io.closed


def test_stopped_while_waiting_for_the_broker_is_a_clean_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_mod, "wait_for_broker", lambda *a, **k: False)
    io = FakeIO()
    loop, stage, _ = make(io)
    assert loop.run("unused:9092") == 0 and not io.closed
    assert stage.closed  # what prepare started is released however far the start got


def _stopping(stage: FakeStage, loop: ConsumeLoop) -> Any:
    original = FakeStage.process

    def process() -> int:
        n = original(stage)
        loop.stop.set()  # type: ignore[attr-defined]
        return n

    return process
