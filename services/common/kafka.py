"""Kafka client factories with the settings this pipeline needs to lose nothing.

kafka-python 3.x silently turns idempotence off when acks/retries/in-flight conflict with it,
so every producer here sets all of them explicitly and consistently. Consumers never
auto-commit and start from the earliest offset of a new group: each service commits only
after its own outputs are acknowledged.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.common.exceptions import BrokerUnavailable
from services.common.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)


class Waitable(Protocol):
    """A stop signal: ``threading.Event`` or ``services.common.lifecycle.StopFlag``."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def _servers(bootstrap: str) -> list[str]:
    return [s.strip() for s in bootstrap.split(",") if s.strip()]


def _stop_half_built(client: object) -> None:
    """kafka-python 3.0 starts a consumer's or admin client's IO thread (``kafka-io-*``) before it
    bootstraps, and when the bootstrap raises (no broker, or one that accepts and never answers) the
    half-built object is dropped with that thread still running: it reconnects and logs for the life
    of the process, one more thread per failed attempt. Stop what the constructor started."""
    inner = getattr(client, "_client", None)
    net = getattr(getattr(client, "_manager", None), "_net", None) or getattr(client, "_net", None)
    for step in (getattr(inner, "close", None), getattr(net, "stop", None)):
        if step is not None:
            try:
                step()
            except Exception:  # noqa: BLE001 -- best effort on a client that never came up
                log.debug("stopping a half-built Kafka client", exc_info=True)


class AdminClient(KafkaAdminClient):
    """``KafkaAdminClient`` whose IO thread is stopped when its constructor fails (``_stop_half_built``)."""

    def __init__(self, **configs: object) -> None:
        try:
            super().__init__(**configs)
        except BaseException:
            _stop_half_built(self)
            raise


class Consumer(KafkaConsumer):
    """``KafkaConsumer`` whose IO thread is stopped when its constructor fails (``_stop_half_built``)."""

    def __init__(self, *topics: str, **configs: object) -> None:
        try:
            super().__init__(*topics, **configs)
        except BaseException:
            _stop_half_built(self)
            raise


def make_producer(bootstrap: str, client_id: str, **extra: object) -> KafkaProducer:
    """Idempotent producer with acks=all, retries and in-flight set so idempotence stays on.

    kafka-python 3 has no ``buffer_memory`` bound: callers bound their own in-flight sends
    (count unacknowledged futures and wait on them) rather than buffering without limit.
    """
    cfg: dict[str, object] = dict(
        bootstrap_servers=_servers(bootstrap),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        retries=2_147_483_647,
        max_in_flight_requests_per_connection=5,
        linger_ms=5,
        batch_size=256 * 1024,
        max_block_ms=30_000,
        request_timeout_ms=30_000,
        delivery_timeout_ms=120_000,
        compression_type=None,
    )
    cfg.update(extra)
    return KafkaProducer(**cfg)


def confirmed(metadata: object) -> bool:
    """True when a produce acknowledgement names the offset the record was written at.

    kafka-python completes a batch the broker answered with DUPLICATE_SEQUENCE_NUMBER as a
    success with offset -1 ("already written"). Tansu gives that answer after a ``kill -9`` and
    restart for batches it did not keep (measured: 9 of 18 kills lost 1-6 such records), so an
    acknowledgement without an offset is not proof of storage: callers treat it as a failed
    delivery and send again (at-least-once; consumers already dedupe). With Apache Kafka the
    answer is true and the resend is a harmless duplicate.
    """
    offset = getattr(metadata, "offset", None)
    return isinstance(offset, int) and offset >= 0


def make_consumer(
    bootstrap: str, group_id: str, client_id: str, topics: Iterable[str] = (), **extra: object
) -> KafkaConsumer:
    """Group consumer with manual commits, earliest reset and fast failure detection."""
    cfg: dict[str, object] = dict(
        bootstrap_servers=_servers(bootstrap),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
        max_poll_interval_ms=60_000,
        max_poll_records=2_000,
        fetch_max_wait_ms=50,
        isolation_level="read_uncommitted",
    )
    cfg.update(extra)
    consumer = Consumer(**cfg)
    topics = list(topics)
    if topics:
        consumer.subscribe(topics)
    return consumer


def make_reader(bootstrap: str, client_id: str, **extra: object) -> KafkaConsumer:
    """Consumer without a group that reads assigned partitions from their start (read-back, restore)."""
    cfg: dict[str, object] = dict(
        bootstrap_servers=_servers(bootstrap),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    cfg.update(extra)
    return Consumer(**cfg)


class _QuietThread(logging.Filter):
    """Drops kafka-python's records from the waiting threads (their per-attempt errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.threads


def _tcp_open(bootstrap: str, timeout_s: float) -> bool:
    """True when some bootstrap address accepts a TCP connection (cheap, no client, no log lines)."""
    for server in _servers(bootstrap):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


class _MetadataAttempt:
    """One metadata request in a daemon thread, so the waiter can give up on a stop signal."""

    def __init__(self, bootstrap: str, timeout_s: float, quiet: _QuietThread) -> None:
        self.done = threading.Event()
        self.error: Exception | None = None
        self._args = (bootstrap, timeout_s, quiet)
        threading.Thread(target=self._run, name="kafka-wait", daemon=True).start()

    def _run(self) -> None:
        bootstrap, timeout_s, quiet = self._args
        quiet.threads.add(threading.get_ident())
        try:
            admin = AdminClient(
                bootstrap_servers=_servers(bootstrap),
                request_timeout_ms=int(timeout_s * 1000),
                bootstrap_timeout_ms=int(timeout_s * 1000),  # else 30 s, past this attempt's share
            )
            try:
                admin.list_topics()
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 -- reported to the waiter, never lost in a thread
            self.error = exc
        finally:
            quiet.threads.discard(threading.get_ident())
            self.done.set()


#: Pacing of ``wait_for_broker`` inside the caller's deadline (not timeouts of their own): the
#: longest TCP probe, the longest metadata attempt, the pause between attempts, and how often a
#: running attempt looks at ``stop``.
TCP_PROBE_S, METADATA_ATTEMPT_S, ATTEMPT_PAUSE_S, STOP_POLL_S = 1.0, 5.0, 0.3, 0.1


def wait_for_broker(bootstrap: str, timeout_s: float = 30.0, stop: Waitable | None = None) -> bool:
    """Block until a metadata request succeeds (True), ``stop`` is set (False), or raise BrokerUnavailable.

    Each attempt first checks that a bootstrap address accepts TCP (a short connect), so a
    broker that is not up yet costs no kafka-python client and no error lines; kafka-python's
    own per-attempt errors are kept out of the log (the waiting threads only). Between attempts it
    waits on ``stop``, so SIGTERM ends the wait within ~0.3 s instead of at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    last: Exception | str | None = None
    quiet = _QuietThread()
    # Logger filters are not inherited: put it on kafka-python's module loggers (made at import).
    kafka_logs = [
        lg
        for name, lg in list(logging.Logger.manager.loggerDict.items())
        if isinstance(lg, logging.Logger) and (name == "kafka" or name.startswith("kafka."))
    ]
    for lg in kafka_logs:
        lg.addFilter(quiet)
    try:
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                return False
            if not _tcp_open(bootstrap, min(TCP_PROBE_S, max(0.05, deadline - time.monotonic()))):
                last = "connection refused or timed out"
            else:
                left = deadline - time.monotonic()
                attempt = _MetadataAttempt(bootstrap, min(METADATA_ATTEMPT_S, max(0.5, left)), quiet)
                while not attempt.done.wait(STOP_POLL_S):
                    if stop is not None and stop.is_set():
                        return False  # the attempt's daemon thread ends at its own request timeout
                if attempt.error is None:
                    return True
                last = attempt.error
            pause = min(ATTEMPT_PAUSE_S, max(0.0, deadline - time.monotonic()))
            if stop is not None:
                if stop.wait(pause):
                    return False
            else:
                time.sleep(pause)
    finally:
        for lg in kafka_logs:
            lg.removeFilter(quiet)
    raise BrokerUnavailable(f"no Kafka broker at {bootstrap} after {timeout_s:.0f} s: {last}")


def ensure_topics(bootstrap: str, topics: Iterable[TopicSpec] = ALL_TOPICS, timeout_s: float = 30.0) -> None:
    """Create missing topics with their final partition counts; existing ones are left alone."""
    wait_for_broker(bootstrap, timeout_s)
    admin = AdminClient(bootstrap_servers=_servers(bootstrap), request_timeout_ms=int(timeout_s * 1000))
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t.name, t.partitions, 1) for t in topics if t.name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", [t.name for t in new])
    finally:
        admin.close()


def broker_reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """Cheap readiness probe: can we fetch cluster metadata?"""
    try:
        wait_for_broker(bootstrap, timeout_s)
        return True
    except BrokerUnavailable:
        return False
