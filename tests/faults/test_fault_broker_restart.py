"""Fault 4: ``kill -9`` the durable broker (Tansu) with data flowing, start it again on the same
port with the same storage (SeaweedFS keeps running, as a separate storage service would).

What was acknowledged before the kill is known from the ingester: its state file holds, per
station, the newest SeedLink record such that it and every earlier one were acknowledged by the
broker. Every served record up to that watermark must be in the waveform topic as read after the
restart; in the end every served record must be there (the ingester re-fetches what failed), and
the rest of the pipeline must recover (every window scored, one clean event).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from services.common.codec import decode_packet
from services.common.topics import WAVEFORMS
from services.pipeline.receiver import WebhookReceiver
from tests.faults.conftest import (
    NET,
    PRE_S,
    FaultPipeline,
    Quake,
    Row,
    Table,
    alert_counts,
    assert_one_clean_event,
    metric_sum,
    read_all,
    waveform_counts,
    window_counts,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DOWN_S = 3.0  # broker down this long while the feed goes on


def test_broker_kill_9_and_restart_loses_no_acknowledged_packet(
    make_pipeline: Callable[..., FaultPipeline], quake: Quake, receiver: WebhookReceiver, table: Table
) -> None:
    pipe = make_pipeline()
    pipe.feeder.start()
    pipe.wait_until(
        lambda: pipe.feeder.fed_s >= PRE_S + 3 and len(pipe.state()) == len(quake.stations),
        90,
        "the ingester to acknowledge data of every station into the event",
    )
    watermark = pipe.state()  # read before the kill: everything up to it was acknowledged
    acked_count = metric_sum(pipe.metrics("ingest"), "eew_ingest_packets_acked_total")  # >= the watermark's
    pipe.broker.kill()
    t_kill = time.monotonic()
    fed_at_kill = pipe.feeder.fed_s
    time.sleep(DOWN_S)
    pipe.broker.start()  # same port, same SeaweedFS storage
    t_up = time.monotonic()
    up_ns = time.time_ns()

    # Right after the restart, before anything could be re-sent: the acknowledged records are there.
    held = {(p.nslc, p.sequence) for p in (decode_packet(v) for v in read_all(pipe.broker.bootstrap, WAVEFORMS).values())
            if p.network == NET}  # fmt: skip
    acked = {(n, q) for n, q, _k in pipe.feeder.served() if q <= watermark["_".join(n.split(".")[:2])]}
    lost_acked = acked - held

    target = pipe.feeder.last_seqs()
    pipe.wait_until(
        lambda: all(pipe.state().get(k, -1) >= v for k, v in target.items()),
        120,
        "ingest to catch up after it",
    )
    catch_up_s = time.monotonic() - t_up
    pipe.wait_until(
        lambda: any(s.scored_time_ns > up_ns for s, _t in pipe.watcher.scores()), 120, "new scores"
    )
    scores_s = time.monotonic() - t_up
    pipe.wait_settled()
    wc = waveform_counts(pipe.broker.bootstrap, pipe.feeder)
    expected, unscored, rescored = window_counts(pipe.watcher, quake)
    ac = alert_counts(pipe.watcher.alerts(), receiver)
    m = pipe.metrics("ingest")
    failures = metric_sum(m, "eew_ingest_publish_failures_total")

    table.add(Row(
        f"kill -9 durable broker (Tansu) with data flowing, down {DOWN_S:.0f} s, restart on the same port/storage",
        f"killed at event second {fed_at_kill}; {len(acked)} records acknowledged before the kill "
        f"(ingest acked counter {acked_count:.0f}), {len(lost_acked)} of them missing after the restart; "
        f"{failures:.0f} publish failures; end: {wc.line()}; {expected - unscored}/{expected} windows scored "
        f"({rescored} twice); {ac.line()}" + pipe.crash_note(),
        f"{len(lost_acked)} acknowledged lost; end {len(wc.missing_records)} / {sum(wc.duplicated.values())} records",
        f"{len(ac.lost)} / {ac.topic_duplicates + ac.receiver_duplicates}",
        f"broker up -> ingest caught up {catch_up_s:.1f} s, -> first new score {scores_s:.1f} s "
        f"(kill -> up {t_up - t_kill:.1f} s)",
    ))  # fmt: skip

    assert len(acked) >= len(quake.stations) and acked_count >= len(acked)
    assert lost_acked == set()
    assert wc.missing_records == [] and wc.unexpected == []
    # The ingester only re-fetches after its acknowledged watermark: no acknowledged record twice.
    for nslc, seq in wc.duplicated:
        assert seq > watermark["_".join(nslc.split(".")[:2])], (nslc, seq)
    assert unscored == 0
    assert_one_clean_event(ac, quake.stations)
    pipe.assert_no_crash()
