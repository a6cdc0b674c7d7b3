"""Fault 2: ``kill -9`` the detector while it is scoring the earthquake, restart it (same group).

The kill comes right after the first alert reached the receiver, while the feeder still streams
the event (the far stations' P is still ahead). The detector commits waveform offsets only after its scores are acknowledged, so the restarted
one re-reads from the committed offsets: every (station, window end) is scored at least once
(some twice). The alerting service sees those repeated scores; alert ids and versions are
deterministic and it must emit each (event id, version) once: exactly one NEW, nothing lost or
duplicated on the alerts topic or at the webhook receiver.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from services.pipeline.receiver import WebhookReceiver
from tests.faults.conftest import (
    FaultPipeline,
    Quake,
    Row,
    Table,
    alert_counts,
    assert_one_clean_event,
    waveform_counts,
    window_counts,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_kill_9_detector_mid_batch_scores_every_window_and_alerts_once(
    make_pipeline: Callable[..., FaultPipeline], quake: Quake, receiver: WebhookReceiver, table: Table
) -> None:
    pipe = make_pipeline()
    pipe.feeder.start()
    # Mid-event: the NEW is out (so re-scored trigger windows reach an alerting service that already
    # alerted), the far stations' P is still ahead, and the feeder keeps the detector busy.
    pipe.wait_until(lambda: len(receiver.snapshot()) >= 1, 120, "the first alert")
    before = len(pipe.watcher.scores())
    pipe.kill("detector")
    killed_ns = time.time_ns()
    delivered_at_kill = len(receiver.snapshot())
    pipe.start_service("detector")
    t_restart = time.monotonic()
    pipe.wait_until(
        lambda: any(s.scored_time_ns > killed_ns for s, _t in pipe.watcher.scores()),
        120,
        "the first new score",
    )
    first_score_s = time.monotonic() - t_restart
    pipe.wait_until(lambda: quake.expected_windows() <= pipe.watcher.windows(), 150, "every window scored")
    all_scored_s = time.monotonic() - t_restart
    pipe.wait_settled()
    expected, unscored, rescored = window_counts(pipe.watcher, quake)
    wc = waveform_counts(pipe.broker.bootstrap, pipe.feeder)
    ac = alert_counts(pipe.watcher.alerts(), receiver)
    twice = Counter((s.station, s.window_end_time_ns) for s, _t in pipe.watcher.scores() if s.triggered)
    triggered_twice = sum(1 for n in twice.values() if n > 1)

    table.add(Row(
        "kill -9 detector mid-batch (during the event), restart in the same group",
        f"{before} scores before the kill, {delivered_at_kill} alerts delivered before it; "
        f"{expected - unscored}/{expected} windows scored, {rescored} scored twice ({triggered_twice} of them triggered); "
        f"{ac.line()}" + pipe.crash_note(),
        f"{len(wc.missing_records)} / {sum(wc.duplicated.values())} records",
        f"{len(ac.lost)} / {ac.topic_duplicates + ac.receiver_duplicates}",
        f"restart -> first new score {first_score_s:.1f} s, -> every window scored {all_scored_s:.1f} s",
    ))  # fmt: skip

    assert unscored == 0
    assert wc.missing_records == [] and not wc.duplicated
    assert_one_clean_event(ac, quake.stations)
    pipe.assert_no_crash()
