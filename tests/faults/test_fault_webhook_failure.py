"""Fault 6: the subscriber's webhook answers 500 for a while (from before the first alert until
``FAIL_S`` seconds after the first request reached it), then recovers.

Deliveries must be retried with backoff (full jitter, here at most ``BACKOFF_MAX_S`` apart, up to
``ATTEMPTS`` attempts, so the budget outlasts the failure window) and completed once it
recovers: every version exactly once with a 200, in order, none dead-lettered. Attempts are
counted three ways that must agree: the receiver's request count, the service's attempt
counters, and the outbox rows' attempt numbers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from services.alerting.dispatch.outbox import DELIVERED, Outbox
from services.pipeline.receiver import WebhookReceiver
from tests.faults.conftest import (
    FaultPipeline,
    Quake,
    Row,
    Table,
    alert_counts,
    assert_one_clean_event,
    metric_sum,
    waveform_counts,
    window_counts,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

FAIL_S = 4.0
ATTEMPTS = 30
BACKOFF_MAX_S = 1.0
SECRET = "fault-test-webhook-secret-0123"


def test_failing_webhook_is_retried_with_backoff_until_it_recovers(
    make_pipeline: Callable[..., FaultPipeline], quake: Quake, receiver: WebhookReceiver, table: Table
) -> None:
    receiver.fail_first = 10**9  # 500 to everything until recovered below
    receiver.secret = SECRET  # and it verifies the Standard Webhooks signature of what it accepts
    recovered: list[float] = []

    def recover() -> None:
        """FAIL_S after the first request, answer 200 from the next request on."""
        deadline = time.monotonic() + 240
        while receiver.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(FAIL_S)
        receiver.fail_first = receiver.requests
        recovered.append(time.monotonic())

    pipe = make_pipeline(alerting={
        "--delivery-attempts": str(ATTEMPTS),
        "--delivery-backoff-initial-s": "0.2",
        "--delivery-backoff-max-s": str(BACKOFF_MAX_S),
        "--webhook-secret": SECRET,
    })  # fmt: skip
    helper = threading.Thread(target=recover, daemon=True)
    helper.start()
    pipe.feeder.start()
    pipe.wait_until(lambda: bool(recovered), 180, "the webhook's failure window to pass")
    failed_requests = receiver.fail_first
    pipe.wait_until(lambda: len(receiver.snapshot()) >= 1, 60, "the first delivery after the recovery")
    first_ok_s = time.monotonic() - recovered[0]
    pipe.wait_settled()
    m = pipe.metrics("alerting")
    http_500 = metric_sum(m, "eew_alert_delivery_attempts_total", result="http_500")
    ok_attempts = metric_sum(m, "eew_alert_delivery_attempts_total", result="ok")
    dead = metric_sum(m, "eew_alert_deliveries_total", outcome="failed")
    wc = waveform_counts(pipe.broker.bootstrap, pipe.feeder)
    expected, unscored, _rescored = window_counts(pipe.watcher, quake)
    ac = alert_counts(pipe.watcher.alerts(), receiver)
    pipe.stop()  # the outbox is read once the service has exited
    outbox = Outbox.open(f"sqlite:///{pipe.outbox}")
    try:
        rows = sorted(outbox.deliveries(), key=lambda r: r.version)
    finally:
        outbox.close()
    attempts = {r.version: r.attempts for r in rows}

    table.add(Row(
        f"subscriber webhook answers 500 until {FAIL_S:.0f} s after its first request, then 200",
        f"{receiver.requests} requests: {failed_requests} answered 500, {len(receiver.snapshot())} accepted; "
        f"attempts per version {attempts}; service counters: {http_500:.0f} http_500 + {ok_attempts:.0f} ok "
        f"attempts, {dead:.0f} dead-lettered; {ac.line()}" + pipe.crash_note(),
        f"{len(wc.missing_records)} / {sum(wc.duplicated.values())} records",
        f"{len(ac.lost)} / {ac.topic_duplicates + ac.receiver_duplicates}",
        f"webhook recovered -> first alert delivered {first_ok_s:.1f} s (backoff cap {BACKOFF_MAX_S:.0f} s)",
    ))  # fmt: skip

    assert failed_requests >= 2  # the alert met the failing webhook and was retried
    assert_one_clean_event(ac, quake.stations)
    assert [r.body["version"] for r in receiver.snapshot()] == sorted(v for _e, v, _t, _n in ac.topic)
    assert http_500 == failed_requests and ok_attempts == len(receiver.snapshot())
    assert receiver.requests == failed_requests + len(receiver.snapshot())
    assert dead == 0 and receiver.refused == []  # every accepted request verified
    assert all(r.headers.get("webhook-id") == f"{r.body['event_id']}:{r.body['version']}" for r in receiver.snapshot())
    assert [r.status for r in rows] == [DELIVERED] * len(ac.topic)
    assert sum(attempts.values()) == receiver.requests
    assert attempts[1] == failed_requests + 1  # the lane is ordered: v1 took every failure, then v2...
    assert all(n == 1 for v, n in attempts.items() if v > 1)
    assert unscored == 0 and wc.missing_records == []
    pipe.assert_no_crash()
