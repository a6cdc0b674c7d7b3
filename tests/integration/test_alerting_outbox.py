"""The outbox survives restarts, on SQLite and on the real PostgreSQL server of this machine.

Each backend runs the same scenarios: a delivery still failing when the service stops is sent by
the next start with the same bytes and idempotency key; rows written just before a crash (no
attempt made) go out after the restart; a delivery is dead-lettered after N attempts and stays
dead; the same alert written twice makes one set of rows. PostgreSQL tests use their own table
prefix and drop their tables; they skip (with the reason) when the server is down.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig
from services.alerting.dispatch.outbox import DEAD, DELIVERED, PENDING, Database, Outbox
from services.alerting.dispatch.subscribers import Subscriber, SubscriberSpec, static_subscribers
from services.alerting.exceptions import OutboxError
from services.alerting.metrics import AlertingMetrics
from services.common.timeutil import now_ns
from tests.integration.test_alerting_delivery import Receiver, fresh, wait_until

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("EEW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CFG = DeliveryConfig(
    attempts=50,
    backoff_initial_s=0.05,
    backoff_max_s=0.1,
    connect_timeout_s=0.5,
    read_timeout_s=0.5,
    poll_s=0.2,
)


def _pg_reason() -> str | None:
    try:
        Database(PG_URL, connect_timeout_s=2).close()
    except OutboxError as exc:
        return f"PostgreSQL not reachable at {PG_URL}: {exc}"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(database URL, table prefix) for each backend; PostgreSQL tables are dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.sqlite'}", "eew_"
        return
    why = _pg_reason()
    if why:
        pytest.skip(why)
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    yield PG_URL, prefix
    Outbox.open(PG_URL, prefix).drop_tables()


def delivery(url: str, prefix: str, rx_url: str, registry: CollectorRegistry, cfg: DeliveryConfig = CFG):
    outbox = Outbox.open(url, prefix)
    return outbox, AlertDelivery.for_urls(outbox, rx_url, cfg, AlertingMetrics(registry))


def test_pending_delivery_is_resumed_after_a_restart(db_url: tuple[str, str]) -> None:
    """The receiver is down (503) while the first service runs; after a stop and a new start on
    the same database the delivery goes out, same body and idempotency key, exactly once accepted."""
    url, prefix = db_url
    rx = Receiver(fail_first=10**6, fail_status=503)
    outbox, d = delivery(url, prefix, rx.url, CollectorRegistry())
    d.start()
    alert = fresh()
    d.submit(alert)
    assert wait_until(lambda: len(rx.requests) >= 2)
    d.close(drain_s=0.0)
    outbox.close()
    rows = Outbox.open(url, prefix).deliveries()
    assert (
        [r.status for r in rows] == [PENDING] and rows[0].attempts >= 2 and rows[0].last_error == "http_503"
    )
    failed_before = len(rx.requests)

    rx.fail_first = 0  # the receiver is back
    reg = CollectorRegistry()
    outbox2, d2 = delivery(url, prefix, rx.url, reg)
    d2.start()
    try:
        assert rx.wait_for(1, timeout_s=15)
        assert d2.wait_idle(10)
    finally:
        d2.close(drain_s=1.0)
        rx.close()
    rows = outbox2.deliveries()
    assert [r.status for r in rows] == [DELIVERED] and len(rx.accepted) == 1
    assert rx.accepted[0]["event_id"] == alert.event_id and rx.accepted[0]["version"] == 1
    bodies = {body for _, body in rx.requests}
    keys = {h["idempotency-key"] for h, _ in rx.requests}
    assert len(bodies) == 1 and keys == {f"{alert.event_id}:1"} and len(rx.requests) == failed_before + 1
    label = static_subscribers(rx.url)[0].label
    assert reg.get_sample_value(
        "eew_alert_deliveries_total", {"subscriber": label, "channel": "webhook", "outcome": "ok"}
    )
    outbox2.close()


def test_rows_written_before_a_crash_are_sent_after_the_restart(db_url: tuple[str, str]) -> None:
    """The fan-out wrote the rows and the process died before any attempt: nothing is lost."""
    url, prefix = db_url
    rx = Receiver()
    outbox, d = delivery(url, prefix, rx.url, CollectorRegistry())
    for v in (1, 2):
        assert d.fanout.process(fresh(v)) is not None  # written, never started: the "crash"
    assert d.fanout.process(fresh(1)) is not None  # a new message (new created time) is new
    outbox.db.close()  # no shutdown, no drain
    assert rx.requests == []

    outbox2, d2 = delivery(url, prefix, rx.url, CollectorRegistry())
    d2.start()
    try:
        got = rx.wait_for(3, timeout_s=15)
    finally:
        d2.close(drain_s=1.0)
        rx.close()
    assert [g["version"] for g in got] == [1, 2, 1]  # in outbox order, each once
    assert {r.status for r in outbox2.deliveries()} == {DELIVERED}
    outbox2.close()


def test_dead_letter_after_n_attempts_persists(db_url: tuple[str, str]) -> None:
    """attempts=3 against a receiver that always fails: exactly 3 requests, then a dead row that a
    restart does not retry; the same message written twice gives one row."""
    url, prefix = db_url
    rx = Receiver(fail_first=10**6, fail_status=502)
    cfg = DeliveryConfig(attempts=3, backoff_initial_s=0.02, backoff_max_s=0.05, poll_s=0.2)
    reg = CollectorRegistry()
    outbox, d = delivery(url, prefix, rx.url, reg, cfg)
    d.start()
    alert = fresh()
    try:
        d.submit(alert)
        d.submit(alert)  # e.g. a produce retry: same event, version and created time
        assert wait_until(lambda: len(outbox.deliveries(status=DEAD)) == 1, 15)
    finally:
        d.close(drain_s=0.5)
    assert len(rx.requests) == 3
    dead = outbox.deliveries()
    assert len(dead) == 1 and dead[0].attempts == 3 and dead[0].last_error == "attempts_exhausted_http_502"
    label = static_subscribers(rx.url)[0].label
    assert reg.get_sample_value(
        "eew_alert_delivery_failures_total",
        {"subscriber": label, "channel": "webhook", "reason": "attempts_exhausted_http_502"},
    )
    assert reg.get_sample_value("eew_alert_fanout_alerts_total", {"outcome": "duplicate"}) == 1
    outbox.close()

    outbox2, d2 = delivery(url, prefix, rx.url, CollectorRegistry(), cfg)
    d2.start()
    try:
        assert d2.wait_idle(5)
    finally:
        d2.close(drain_s=0.2)
        rx.close()
    assert len(rx.requests) == 3 and outbox2.deliveries()[0].status == DEAD
    outbox2.close()


def test_subscribers_crud_and_delete_kills_pending(db_url: tuple[str, str]) -> None:
    """Subscribers round-trip through the database (secret kept for signing); deleting one turns
    its pending deliveries dead; purge removes rows older than the retention only."""
    url, prefix = db_url
    outbox = Outbox.open(url, prefix)
    spec = SubscriberSpec.model_validate(
        {
            "name": "hospital",
            "latitude": 35.1,
            "longitude": -118.0,
            "min_intensity": 5.0,
            "channels": {"webhook": {"url": "https://x.example.org/h", "secret": "x" * 20}, "sse": True},
        }
    )
    sub = Subscriber("sub-0123456789abcdef", "ops", spec, now_ns(), now_ns())
    outbox.add_subscriber(sub)
    got = outbox.get_subscriber(sub.id)
    assert got is not None and got.spec == spec and got.webhook()[1] == "x" * 20
    assert [s.id for s in outbox.list_subscribers("ops")] == [sub.id] and outbox.list_subscribers(
        "other"
    ) == []
    v0 = outbox.subscribers_version()
    upd = outbox.update_subscriber(sub.id, spec.model_copy(update={"name": "clinic"}), now_ns())
    assert upd is not None and upd.revision == 2 and upd.spec.name == "clinic"
    assert outbox.subscribers_version() != v0
    d = AlertDelivery(outbox, CFG, AlertingMetrics(CollectorRegistry()))
    alert = fresh(magnitude=7.0)
    assert d.fanout.process(alert) is not None
    rows = outbox.deliveries(sub.id)
    assert {(r.channel, r.status) for r in rows} == {("webhook", PENDING), ("sse", "feed")}
    assert outbox.delete_subscriber(sub.id, now_ns()) and not outbox.delete_subscriber(sub.id, now_ns())
    rows = {r.channel: r for r in outbox.deliveries(sub.id)}
    assert rows["webhook"].status == DEAD and rows["webhook"].last_error == "subscriber_deleted"
    assert outbox.purge(now_ns() - 3600 * 10**9) == 0 and len(outbox.deliveries()) == 2  # too recent
    assert outbox.purge(now_ns() + 1) == 2 and outbox.deliveries() == [] and outbox.alerts_after(0) == []
    outbox.close()


def test_interrupted_fan_out_is_completed_once(db_url: tuple[str, str]) -> None:
    """Fan-out is written in chunks; a crash after the first chunk leaves the alert logged but not
    complete: processing it again writes the missing rows only (no duplicates), nearest first."""
    url, prefix = db_url
    outbox = Outbox.open(url, prefix)
    subs = []
    for i in range(5):
        spec = SubscriberSpec.model_validate(
            {
                "name": f"s{i}",
                "latitude": 35.0 + 0.2 * (4 - i),
                "longitude": -118.0,
                "channels": {"sse": True},
            }
        )
        subs.append(Subscriber(f"sub-{i:016x}", "ops", spec, now_ns(), now_ns()))
        outbox.add_subscriber(subs[-1])
    d = AlertDelivery(outbox, CFG, AlertingMetrics(CollectorRegistry()))
    d.fanout.chunk = 2
    alert = fresh()
    crash = RuntimeError("crash after the first chunk")

    def die() -> None:
        raise crash

    d.fanout.on_written = [die]
    with pytest.raises(RuntimeError):
        d.fanout.process(alert)
    assert not outbox.is_logged(alert.event_id, alert.version, alert.created_time_ns)
    first = outbox.deliveries()
    assert len(first) == 2  # the two nearest sites: s4 (35.0) and s3 (35.2)
    assert {r.subscriber_id for r in first} == {subs[4].id, subs[3].id}
    d.fanout.on_written = []
    assert d.fanout.process(alert) is not None
    rows = outbox.deliveries()
    assert len(rows) == 5 and len({r.subscriber_id for r in rows}) == 5
    assert outbox.is_logged(alert.event_id, alert.version, alert.created_time_ns)
    assert d.fanout.process(alert) is None  # complete: a third time writes nothing
    outbox.close()


def test_lost_postgresql_connection_is_reopened() -> None:
    """The server ends the session (restart, failover): one call fails with OutboxError (the
    caller retries), the next one reconnects."""
    why = _pg_reason()
    if why:
        pytest.skip(why)
    db = Database(PG_URL)
    admin = Database(PG_URL)
    try:
        pid = db.execute("SELECT pg_backend_pid()")[0][0]
        admin.execute("SELECT pg_terminate_backend(?)", (pid,))
        with pytest.raises(OutboxError):
            db.execute("SELECT 1")
        assert db.execute("SELECT 1") == [(1,)]
        assert db.execute("SELECT pg_backend_pid()")[0][0] != pid
    finally:
        db.close()
        admin.close()
