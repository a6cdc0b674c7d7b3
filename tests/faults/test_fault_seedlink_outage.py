"""Fault 5: the SeedLink server goes away for 30 s while the station data keep coming in, then
comes back on the same port.

The feed runs in real time during the outage (the earthquake arrives while the server is down),
so the returning server holds a 30 s backlog. The ingester must reconnect (backoff capped at
1 s here) and resume from where it stopped: no gap, no duplicate -- a reconnect within one
process resumes after the last received record. Recovery is timed from the server's restart to
the reconnect and to the ingester having acknowledged the backlog.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from services.pipeline.receiver import WebhookReceiver
from tests.faults.conftest import (
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

OUTAGE_S = 30.0


def test_seedlink_server_down_30_s_ingester_reconnects_and_resumes(
    make_pipeline: Callable[..., FaultPipeline], quake: Quake, receiver: WebhookReceiver, table: Table
) -> None:
    pipe = make_pipeline()
    # Held before the event until the ingester has acknowledged everything: waiting for "caught up"
    # while the feed runs needs the acknowledgements to keep pace within one 0.2 s step, which a
    # loaded machine (or a slower durable broker) does not give; the feed then ended before the outage.
    pipe.feeder.start(hold_at=PRE_S - 4)
    pipe.wait_until(
        lambda: pipe.feeder.fed_s >= PRE_S - 4 and pipe.ingest_caught_up(), 90, "pre-event data to flow"
    )
    pipe.feeder.speed = 1.0  # live during the outage
    conns = pipe.server.connections_accepted
    pipe.server.stop()
    t_down = time.monotonic()
    fed_at_stop = pipe.feeder.fed_s
    pipe.feeder.hold(None)
    time.sleep(OUTAGE_S)
    fed_in_outage = pipe.feeder.fed_s - fed_at_stop
    pipe.server.start()  # same port, same feed (the station data kept arriving)
    t_up = time.monotonic()
    pipe.feeder.speed = 5.0
    target = pipe.feeder.last_seqs()
    pipe.wait_until(lambda: pipe.server.connections_accepted > conns, 30, "the ingester to reconnect")
    reconnect_s = time.monotonic() - t_up
    pipe.wait_until(
        lambda: all(pipe.state().get(k, -1) >= v for k, v in target.items()),
        60,
        "the backlog to be acknowledged",
    )
    backlog_s = time.monotonic() - t_up
    pipe.wait_settled()
    m = pipe.metrics("ingest")
    reconnects = metric_sum(m, "eew_ingest_reconnects_total")
    failures = metric_sum(m, "eew_ingest_connect_failures_total")
    gaps = metric_sum(m, "eew_ingest_gaps_total")
    overlaps = metric_sum(m, "eew_ingest_overlaps_total")
    wc = waveform_counts(pipe.broker.bootstrap, pipe.feeder)
    expected, unscored, _rescored = window_counts(pipe.watcher, quake)
    ac = alert_counts(pipe.watcher.alerts(), receiver)

    table.add(Row(
        f"SeedLink server stopped for {OUTAGE_S:.0f} s with data arriving, restarted on the same port",
        f"{fed_in_outage} s of data (the P arrivals) came in during the outage; reconnects {reconnects:.0f}, "
        f"failed connects {failures:.0f}, gaps {gaps:.0f}, overlaps {overlaps:.0f}; {wc.line()}; "
        f"{expected - unscored}/{expected} windows scored; {ac.line()}" + pipe.crash_note(),
        f"{len(wc.missing_records)} / {sum(wc.duplicated.values())} records "
        f"({wc.missing_samples} / {wc.duplicated_samples} samples)",
        f"{len(ac.lost)} / {ac.topic_duplicates + ac.receiver_duplicates}",
        f"server up -> reconnected {reconnect_s:.1f} s, -> backlog acknowledged {backlog_s:.1f} s "
        f"(outage {t_up - t_down:.1f} s)",
    ))  # fmt: skip

    # The outage really overlapped live data (the feeder runs slower than real time on a loaded
    # machine: 19 of 30 s seen at load 12-16 on 2 cores, with two busy loops beside).
    assert fed_in_outage >= 10
    assert reconnects >= 1 and failures >= 1
    assert wc.missing_records == [] and wc.duplicated == {} and wc.unexpected == []
    for nslc, (served, held) in wc.per_channel.items():
        assert served == held, nslc
    assert gaps == 0 and overlaps == 0
    assert unscored == 0
    assert_one_clean_event(ac, quake.stations)
    pipe.assert_no_crash()
