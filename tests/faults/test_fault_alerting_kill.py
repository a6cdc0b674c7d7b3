"""Fault 3: ``kill -9`` the alerting service right after the webhook receiver got the NEW alert.

The feeder holds the data at 8 s after the origin: the four near stations have their P (alert
NEW), the two far ones (P at 11.5 s and 14.4 s) do not yet. The service is killed as soon as it has
recorded the NEW as delivered (the receiver answered 200), a new one starts with the same group and outbox, and only then the rest of
the event is fed: the far stations trigger, so an update is due. The restarted service must not
send what was already delivered, and must send the update.

Not covered on purpose: a kill between the receiver's 200 and the service recording it. No
webhook sender can tell that case from a lost request, so the service sends again with the same
``Idempotency-Key`` (at-least-once; receivers deduplicate on the key).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from services.pipeline.receiver import WebhookReceiver
from tests.faults.conftest import (
    FAR,
    PRE_S,
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

HOLD_S = PRE_S + 8  # event second the feeder stops at until the restarted service is ready


@pytest.mark.parametrize("express", [False, True], ids=["event-time-order", "express-triggers"])
def test_kill_9_alerting_after_new_no_resend_and_update_sent(
    make_pipeline: Callable[..., FaultPipeline],
    quake: Quake,
    receiver: WebhookReceiver,
    table: Table,
    express: bool,
) -> None:
    """Both orderings: the default (scores in event-time order) and ``--express-triggers=true`` (a
    triggering station's scores go through at once, as deploy/ runs it)."""
    pipe = make_pipeline(alerting={"--express-triggers": "true"} if express else None)
    pipe.feeder.start(hold_at=HOLD_S)
    assert receiver.wait_for(1, 150), f"no alert at the receiver:\n{pipe.log('alerting')}"
    # "Sent" = the receiver answered 200 and the service recorded it (its delivered counter, bumped
    # right after the outbox row is marked delivered); the kill follows at once.
    pipe.wait_until(
        lambda: metric_sum(pipe.metrics("alerting"), "eew_alert_deliveries_total", outcome="ok") >= 1,
        30,
        "the service to record the delivery",
        poll_s=0.0,
    )
    pipe.kill("alerting")
    t_kill = time.monotonic()
    before = receiver.snapshot()
    requests_before = receiver.requests
    assert before[0].body["type"] == "NEW" and before[0].body["version"] == 1
    assert not set(FAR) & {s["station"] for r in before for s in r.body["stations"]}, (
        "far stations fed too early"
    )
    delivered_before = {(r.body["event_id"], r.body["version"]) for r in before}

    pipe.start_service("alerting")
    pipe.wait_until(lambda: pipe.ready("alerting"), 90, "the restarted alerting service to be ready")
    ready_s = time.monotonic() - t_kill
    time.sleep(2.0)  # the restored service had its chance to (wrongly) re-send
    resent = [r for r in receiver.snapshot()[len(before):]
              if (r.body["event_id"], r.body["version"]) in delivered_before]  # fmt: skip
    t_release = time.monotonic()
    pipe.feeder.hold(None)

    def far_update() -> list:
        return [
            r
            for r in receiver.snapshot()[len(before) :]
            if set(FAR) & {s["station"] for s in r.body["stations"]}
        ]

    pipe.wait_until(lambda: bool(far_update()), 120, "an update with the far stations")
    update_s = time.monotonic() - t_release
    pipe.wait_settled()
    ac = alert_counts(pipe.watcher.alerts(), receiver)
    wc = waveform_counts(pipe.broker.bootstrap, pipe.feeder)
    expected, unscored, _rescored = window_counts(pipe.watcher, quake)
    after = receiver.snapshot()[len(before) :]

    table.add(Row(
        "kill -9 alerting right after the receiver got NEW; more stations trigger after the restart"
        + (" (express triggers)" if express else ""),
        f"{len(before)} version(s) delivered before the kill ({requests_before} requests); re-sent after restart: "
        f"{len(resent)}; delivered after: versions {[r.body['version'] for r in after]} "
        f"(update with {sorted(set(FAR) & {s['station'] for s in far_update()[0].body['stations']})}); {ac.line()}" + pipe.crash_note(),
        f"{len(wc.missing_records)} / {sum(wc.duplicated.values())} records",
        f"{len(ac.lost)} / {ac.topic_duplicates + ac.receiver_duplicates}",
        f"kill -> restarted service ready {ready_s:.1f} s; feed released -> update delivered {update_s:.1f} s",
    ))  # fmt: skip

    seen = [(r.body["event_id"], r.body["version"], r.body["type"]) for r in receiver.snapshot()]
    assert resent == [], seen
    assert after and all(r.body["type"] == "UPDATE" for r in after), seen
    assert [r.body["version"] for r in after] == list(
        range(max(v for _e, v in delivered_before) + 1, max(v for _e, v in delivered_before) + 1 + len(after))
    ), seen
    assert receiver.requests == len(receiver.snapshot())  # no refused or repeated request
    assert unscored == 0 and expected > 0
    assert wc.missing_records == []
    assert_one_clean_event(ac, quake.stations)
    pipe.assert_no_crash()
