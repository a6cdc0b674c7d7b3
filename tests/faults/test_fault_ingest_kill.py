"""Fault 1: ``kill -9`` the ingester mid-stream (during the earthquake) and restart it with the
same ``--state-file``.

SeedLink resume defines what may repeat: the state file holds each station's acknowledged
watermark, the restarted ingester asks the server for everything after it, so records between
the watermark saved before the kill and what the killed process had already delivered are sent
twice; nothing may be missing. Counted per record and per sample, per channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

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
    waveform_counts,
    window_counts,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_kill_9_ingester_mid_stream_resumes_without_loss(
    make_pipeline: Callable[..., FaultPipeline], quake: Quake, receiver: WebhookReceiver, table: Table
) -> None:
    pipe = make_pipeline()
    pipe.feeder.start()
    pipe.wait_until(
        lambda: pipe.feeder.fed_s >= PRE_S + 3 and len(pipe.state()) == len(quake.stations),
        90,
        "the ingester to acknowledge data of every station into the event",
    )
    pipe.kill("ingest")
    saved = pipe.state()  # final: the process is dead
    fed_at_kill = pipe.feeder.fed_s
    time.sleep(1.0)  # data keep arriving at the server while no ingester runs
    pipe.start_service("ingest")
    t_restart = time.monotonic()
    target = pipe.feeder.last_seqs()
    pipe.wait_until(
        lambda: all(pipe.state().get(k, -1) >= v for k, v in target.items()),
        90,
        "the restarted ingester to catch up",
    )
    catch_up_s = time.monotonic() - t_restart
    pipe.wait_settled()
    wc = waveform_counts(pipe.broker.bootstrap, pipe.feeder)
    expected, unscored, rescored = window_counts(pipe.watcher, quake)
    ac = alert_counts(pipe.watcher.alerts(), receiver)
    beyond = sum(1 for nslc, seq in wc.duplicated if seq > saved["_".join(nslc.split(".")[:2])])

    table.add(Row(
        "kill -9 ingester mid-stream, restart with the same state file",
        f"killed at event second {fed_at_kill}; {wc.line()}; {beyond} of the duplicates lie after the "
        f"watermark saved before the kill; "
        f"{expected - unscored}/{expected} windows scored; {ac.line()}" + pipe.crash_note(),
        f"{len(wc.missing_records)} / {sum(wc.duplicated.values())} records "
        f"({wc.missing_samples} / {wc.duplicated_samples} samples)",
        f"{len(ac.lost)} / {ac.topic_duplicates + ac.receiver_duplicates}",
        f"restart -> caught up with the server: {catch_up_s:.1f} s",
    ))  # fmt: skip

    assert wc.missing_records == [] and wc.missing_samples == 0
    assert wc.unexpected == []
    for nslc, (served, held) in wc.per_channel.items():
        assert served == held, nslc
    # Only SeedLink-resume repeats: records after the watermark saved before the kill, at most once more.
    for (nslc, seq), extra in wc.duplicated.items():
        key = "_".join(nslc.split(".")[:2])
        assert extra == 1 and seq > saved[key], (nslc, seq, saved)
    assert sorted(saved) == sorted(f"{NET}_{s}" for s in quake.stations)
    assert unscored == 0
    assert_one_clean_event(ac, quake.stations)
    pipe.assert_no_crash()
