"""One service harness: the consume loop every Kafka stage runs (poll -> decode -> process ->
publish -> commit), its backpressure, its waits and its shutdown, in the spirit of Quix Streams'
run loop and SeisBench's annotate hooks: the loop owns the control flow, a ``Stage`` the science.

A turn of ``ConsumeLoop``
    1. too many sends unacknowledged (``max_unacked``): flush and commit first;
    2. ``poll`` (no wait while the stage reports a backlog), then ``Stage.settle`` (rebalance);
    3. ``Stage.handle`` per record (decode, feed; bad input goes to ``send`` as a dead letter);
    4. ``Stage.process`` scores/publishes what is ready and returns its backlog: while it is
       positive every assigned partition is paused (poll keeps the membership), resumed after;
    5. every ``housekeeping_interval_s`` ``Stage.housekeeping``; every ``commit_interval_s``
       flush, check every acknowledgement (``confirmed``), then commit ``Stage.safe_offsets``;
       an unacknowledged send makes the stage ``rewind`` instead (at-least-once).

Around it (``ConsumeLoop.run``): ``Stage.prepare`` (work that needs no broker), wait for the
broker (SIGTERM ends the wait), ``Stage.open``, retriable Kafka errors ridden out for
``broker_timeout_s``, and an ``ExitStack`` that on the way out drains the stage, flushes and
commits (a clean stop) or commits nothing (a bug: exit 1), then closes the clients and, last,
``Stage.close`` (however far the start got). Health: ``alive`` (the loop turned recently),
``turned_within`` and ``broker_check`` (cached) for /readyz. Signals, the health server and exit
codes come from ``services.common.lifecycle.run_service`` (SIGTERM/SIGINT -> the stop flag).
Every wait is a field of ``LoopConfig``, the nested ``loop`` group of the service's settings.

Stages: ``services.detector.service.DetectorService`` and ``services.alerting.service.AlertingService``.
``eew ingest`` is a producer (nothing to poll or commit): it takes ``run_service`` and an
ExitStack shutdown, not this loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata
from pydantic import Field

from services.common.kafka import (
    Waitable,
    broker_reachable,
    confirmed,
    make_consumer,
    make_producer,
    wait_for_broker,
)
from services.common.retry import OutageTracker, is_retriable
from services.common.settings import CoreModel

log = logging.getLogger(__name__)

Records = dict[TopicPartition, list[Any]]
PartitionsCallback = Callable[[set[TopicPartition]], None]


class LoopConfig(CoreModel):
    """Knobs of the consume loop: polling, backpressure, commits, and every wait it makes."""

    max_poll_records: int = Field(2000, ge=1, description="Most records per consumer poll.")
    poll_timeout_ms: int = Field(100, ge=0, description="Consumer poll timeout.")
    max_unacked: int = Field(
        20000, ge=1, description="Most unacknowledged messages before the loop flushes and waits."
    )
    commit_interval_s: float = Field(1.0, gt=0.0, description="Seconds between flush-and-commit cycles.")
    flush_timeout_s: float = Field(
        5.0, gt=0.0, description="Longest wait for the broker to acknowledge sent messages."
    )
    close_timeout_s: float = Field(
        5.0, ge=0.0, description="At exit, longest wait for the producer to hand over what it still holds."
    )
    broker_timeout_s: float = Field(
        30.0,
        gt=0.0,
        description="How long to wait for the broker at start-up, and to ride out an outage before exiting.",
    )
    broker_check_timeout_s: float = Field(
        2.0, gt=0.0, description="Timeout of the /readyz broker check (a TCP connect)."
    )
    broker_check_interval_s: float = Field(
        5.0, ge=0.0, description="The /readyz broker check is cached this long."
    )
    alive_timeout_s: float = Field(
        30.0,
        gt=0.0,
        description="/healthz fails when the loop has not turned for this long (at least 3 x flush-timeout-s).",
    )
    housekeeping_interval_s: float = Field(
        10.0, gt=0.0, description="How often idle state is swept (e.g. the detector's idle stations)."
    )


class _Inc(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Set(Protocol):
    def set(self, value: float) -> None: ...


class _Labelled(Protocol):
    def labels(self, *values: str) -> _Inc: ...


class LoopMetrics(Protocol):
    """The loop's metrics, part of the service's own typed bundle (e.g. ``DetectorMetrics``)."""

    broker_errors: _Inc  # retriable Kafka errors ridden out
    pauses: _Inc  # times intake was paused by backpressure
    paused: _Set  # 1 while paused
    unacked: _Set  # sends not yet acknowledged
    commits: _Inc
    commit_failures: _Inc
    rewinds: _Inc  # rewinds to the committed offsets after a failed delivery
    delivery_failures: _Labelled  # by topic: sends the broker did not acknowledge


class OwnLoopMetrics:
    """A ``LoopMetrics`` bundle for a service whose own bundle lacks some: ``reuse`` names the
    service's metrics to use, the others are registered as ``<prefix>_<name>`` (``loop_`` names
    where the service already has another meaning for the word)."""

    HELP = {
        "broker_errors": ("broker_errors", "Retriable Kafka errors ridden out."),
        "pauses": ("pauses", "Times consumption was paused by backpressure."),
        "paused": ("paused", "1 while consumption is paused (backpressure)."),
        "unacked": ("unacked_messages", "Messages sent through the loop and not yet acknowledged."),
        "commits": ("commits", "Offset commits."),
        "commit_failures": ("commit_failures", "Offset commits that failed (retried at the next interval)."),
        "rewinds": ("rewinds", "Rewinds to the committed offsets after an unacknowledged send."),
        "delivery_failures": ("loop_unacknowledged", "Sends through the loop the broker did not acknowledge."),
    }

    def __init__(self, registry: Any, prefix: str, **reuse: Any) -> None:
        from prometheus_client import Counter, Gauge

        for attr, (name, doc) in self.HELP.items():
            if attr in reuse:
                metric = reuse[attr]
            elif attr in ("paused", "unacked"):
                metric = Gauge(f"{prefix}_{name}", doc, registry=registry)
            elif attr == "delivery_failures":
                metric = Counter(f"{prefix}_{name}", doc, ["topic"], registry=registry)
            else:
                metric = Counter(f"{prefix}_{name}", doc, registry=registry)
            setattr(self, attr, metric)


class _Listener(ConsumerRebalanceListener):
    """Forwards rebalance callbacks (they run inside ``poll``)."""

    def __init__(
        self, revoked: PartitionsCallback, assigned: PartitionsCallback, lost: PartitionsCallback
    ) -> None:
        self._revoked, self._assigned, self._lost = revoked, assigned, lost

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._revoked(set(revoked))

    def on_partitions_lost(self, lost: Any) -> None:
        self._lost(set(lost))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._assigned(set(assigned))


class KafkaIO:
    """A stage's clients: the group consumer of its input topic and the idempotent producer."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        client_id: str,
        topic: str,
        on_revoked: PartitionsCallback,
        on_assigned: PartitionsCallback,
        on_lost: PartitionsCallback,
        max_poll_records: int = 2000,
    ) -> None:
        self.topic = topic
        self.producer = make_producer(bootstrap, client_id)
        self.consumer = make_consumer(bootstrap, group_id, client_id, max_poll_records=max_poll_records)
        self.consumer.subscribe([topic], listener=_Listener(on_revoked, on_assigned, on_lost))

    def poll(self, timeout_ms: int, max_records: int | None = None) -> Records:
        return self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> FutureRecordMetadata:
        return self.producer.send(topic, key=key, value=value, headers=headers)

    def flush(self, timeout_s: float) -> None:
        self.producer.flush(timeout=timeout_s)

    def commit(self, offsets: dict[TopicPartition, int], metadata: str = "") -> bool:
        """Commit ``offsets`` (next record to read) synchronously; False (logged) on failure."""
        if not offsets:
            return True
        try:
            self.consumer.commit({tp: OffsetAndMetadata(off, metadata, -1) for tp, off in offsets.items()})
            return True
        except KafkaError as exc:
            log.warning(
                "commit of %s failed: %s",
                {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()},
                exc,
            )
            return False

    def committed(self, tp: TopicPartition) -> int | None:
        try:
            return self.consumer.committed(tp)
        except KafkaError as exc:
            log.warning("could not read the committed offset of %s[%d]: %s", tp.topic, tp.partition, exc)
            return None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.seek(tp, offset)

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        if tps:
            self.consumer.pause(*tps)

    def resume_all(self) -> None:
        paused = list(self.consumer.paused())
        if paused:
            self.consumer.resume(*paused)

    def paused(self) -> bool:
        return bool(self.consumer.paused())

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the consumer first (no auto-commit), then the producer."""
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.producer.close(timeout=timeout_s)


class Stage(Protocol):
    """What a service plugs into the loop (each hook runs on the loop thread)."""

    def prepare(self) -> None:
        """Before the broker wait: start what needs no broker (e.g. alert delivery from the outbox)."""
        ...

    def close(self) -> None:
        """Last on the way out, however far the start got: release what ``prepare``/``open`` made."""
        ...

    def open(self) -> KafkaIO:
        """Create the clients (after the broker answered); rebalance callbacks go to the stage."""
        ...

    def settle(self, records: Records) -> Records:
        """Apply rebalance events recorded since the last poll; return the records still to handle."""
        ...

    def handle(self, tp: TopicPartition, record: Any, wall_ns: int, mono_ns: int) -> None:
        """Decode and feed one record (a bad one: ``loop.send`` a dead letter)."""
        ...

    def process(self) -> int:
        """Process and publish what is ready; return the backlog (> 0 pauses intake)."""
        ...

    def housekeeping(self, mono_ns: int) -> None:
        """Periodic sweep (every ``housekeeping_interval_s``)."""
        ...

    def safe_offsets(self, tps: set[TopicPartition] | None) -> dict[TopicPartition, int]:
        """Per partition, the offset a restart must resume from (only those that moved)."""
        ...

    def commit_metadata(self) -> str:
        """Metadata stored with the offsets ``safe_offsets`` just returned ("" for none)."""
        ...

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """These offsets were committed."""
        ...

    def rewind(self) -> None:
        """A send was not acknowledged: re-read from the committed offsets with fresh state."""
        ...

    def drain(self) -> None:
        """At a clean stop, before the last flush and commit: publish what is ready."""
        ...


class ConsumeLoop:
    """Drives a ``Stage`` until ``stop`` is set; ``run()`` returns the exit code."""

    def __init__(
        self, name: str, cfg: LoopConfig, stage: Stage, stop: Waitable, metrics: LoopMetrics
    ) -> None:
        self.name, self.cfg, self.stage, self.stop, self.metrics = name, cfg, stage, stop, metrics
        self.io: KafkaIO | None = None
        self.unacked: list[tuple[FutureRecordMetadata, str]] = []
        self.backlog = 0
        self._heartbeat = time.monotonic()
        self._last_commit = time.monotonic()
        self._last_housekeeping = time.monotonic()
        self._broker_cache: tuple[float, bool] = (-1e9, False)
        #: Called with the topic of every acknowledged send (the stage's own counters).
        self.on_acked: Callable[[str], None] = lambda topic: None

    # ---- health --------------------------------------------------------------------------------
    def alive(self) -> bool:
        """The loop turned recently (a poll, a processing round or a flush never takes this long)."""
        limit = max(self.cfg.alive_timeout_s, 3 * self.cfg.flush_timeout_s)
        return time.monotonic() - self._heartbeat < limit

    def turned_within(self, seconds: float) -> bool:
        """The loop turned in the last ``seconds`` (a /readyz check stricter than ``alive``)."""
        return time.monotonic() - self._heartbeat < seconds

    def broker_check(self, bootstrap: str) -> Callable[[], tuple[bool, str]]:
        """A /readyz check of the broker, cached ``broker_check_interval_s``."""

        def check() -> tuple[bool, str]:
            at, ok = self._broker_cache
            if time.monotonic() - at > self.cfg.broker_check_interval_s:
                ok = broker_reachable(bootstrap, self.cfg.broker_check_timeout_s)
                self._broker_cache = (time.monotonic(), ok)
            return ok, "" if ok else f"no broker at {bootstrap}"

        return check

    # ---- sending -------------------------------------------------------------------------------
    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Send one message; its acknowledgement is checked before the next commit."""
        assert self.io is not None
        self.unacked.append((self.io.send(topic, key, value, headers), topic))

    # ---- run -----------------------------------------------------------------------------------
    def run(self, bootstrap: str) -> int:
        cfg = self.cfg
        outage = OutageTracker(cfg.broker_timeout_s, self.name)
        with ExitStack() as exits:
            exits.callback(self.stage.close)
            self.stage.prepare()
            if not wait_for_broker(bootstrap, cfg.broker_timeout_s, stop=self.stop):
                return 0  # stopped (SIGTERM) while waiting for the broker
            self.io = self.stage.open()
            exits.callback(self._close)
            try:
                while not self.stop.is_set():
                    try:
                        self.turn()
                        outage.ok()
                    except KafkaError as exc:
                        delay = outage.failed(exc) if is_retriable(exc) else None
                        if delay is None:
                            raise
                        self.metrics.broker_errors.inc()
                        self.stop.wait(delay)
            except KafkaError:
                log.exception("%s: Kafka error, stopping", self.name)
                self._finish()
                return 1
            except Exception:
                # a bug: the stage's state may be inconsistent, so commit nothing (a restart re-reads
                # from the last safe commit) and exit non-zero for the supervisor to restart us
                log.exception("%s: unexpected error, stopping without committing", self.name)
                return 1
            self._finish()
        log.info("%s stopped", self.name)
        return 0

    def turn(self) -> None:
        """One iteration: poll, handle, process/publish, backpressure, housekeeping, commit."""
        assert self.io is not None
        cfg, io, m = self.cfg, self.io, self.metrics
        self._heartbeat = time.monotonic()
        if len(self.unacked) >= cfg.max_unacked:
            self.flush_and_commit()
        records = self.stage.settle(io.poll(0 if self.backlog else cfg.poll_timeout_ms, cfg.max_poll_records))
        wall, mono = time.time_ns(), time.monotonic_ns()
        for tp, recs in records.items():
            for r in recs:
                self.stage.handle(tp, r, wall, mono)
        self.backlog = self.stage.process()
        if self.backlog:  # (re)applied every turn: partitions assigned meanwhile are paused too
            if not io.paused():
                m.pauses.inc()
            io.pause(io.assignment())
            m.paused.set(1)
        elif io.paused():
            io.resume_all()
            m.paused.set(0)
        m.unacked.set(len(self.unacked))
        now = time.monotonic()
        if now - self._last_housekeeping > cfg.housekeeping_interval_s:
            self.stage.housekeeping(mono)
            self._last_housekeeping = now
        if now - self._last_commit >= cfg.commit_interval_s:
            self.flush_and_commit()

    def flush_and_commit(self, tps: set[TopicPartition] | None = None) -> bool:
        """Wait for every sent message's acknowledgement, then commit what the stage says is safe."""
        assert self.io is not None
        m = self.metrics
        self._last_commit = time.monotonic()
        if self.unacked:
            try:
                self.io.flush(self.cfg.flush_timeout_s)
            except KafkaError as exc:
                log.error("%s: flush failed: %s", self.name, exc)
            failed: dict[str, int] = {}
            for fut, topic in self.unacked:
                if fut.succeeded() and confirmed(fut.value):
                    self.on_acked(topic)
                else:
                    failed[topic] = failed.get(topic, 0) + 1
            self.unacked = []
            if failed:
                for topic, n in failed.items():
                    m.delivery_failures.labels(topic).inc(n)
                log.error(
                    "%s: %s messages not acknowledged: rewinding to the committed offsets", self.name, failed
                )
                m.rewinds.inc()
                self.stage.rewind()
                return False
        offsets = self.stage.safe_offsets(tps)
        if offsets and self.io.commit(offsets, self.stage.commit_metadata()):
            self.stage.committed(offsets)
            m.commits.inc()
            log.debug("committed %s", {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()})
        elif offsets:
            m.commit_failures.inc()
            return False
        return True

    def _finish(self) -> None:
        """A clean stop: publish what is ready, wait for acknowledgements, commit."""
        log.info("%s stopping: flushing and committing", self.name)
        try:
            self.stage.drain()
            self.flush_and_commit()
        except KafkaError as exc:
            log.error("%s: final flush/commit failed: %s", self.name, exc)

    def _close(self) -> None:
        if self.io is not None:
            self.io.close(timeout_s=self.cfg.close_timeout_s)
            self.io = None
