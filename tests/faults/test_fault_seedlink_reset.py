"""Issue 19: a SeedLink server that restarts with a fresh ring and numbers its packets from 1 again.

ringserver killed with ``kill -9`` before it saved its ring comes back empty and renumbers; an
ingester that resumes by sequence number only then skips what the new numbers point past
(measured against ringserver: 217 of 3,414 records at 10 of 14 stations). The test server does
the same (``SeedLinkFeed.reset``), once like ringserver (``DATA seq time`` is checked against the
record before ``seq``, an unknown ``seq`` means new data only) and once as a server that knows
only numbers. Counted: every record served, by channel and start time, is in the waveform topic
exactly once; one WARNING and one ``eew_ingest_server_resets`` per reset.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path

import pytest
from obspy import read

from services.broker.embedded import EmbeddedBroker
from services.common.codec import decode_packet
from services.common.topics import WAVEFORMS
from tests.integration.test_ingest_seedlink import (
    Source,
    _last_seqs,
    _settings,
    _state,
    _station_filter,
    _stations,
    consume,
    metric,
    running,
)
from tests.support.seedlink_server import SeedLinkFeed, SeedLinkServer, wait_until

pytestmark = pytest.mark.integration
RESET_LINE = "no longer matches the resume state"


def _served(src: Source) -> Counter[tuple[str, int]]:
    """(nslc, start ns) of every record the feed holds now for the source's stations."""
    out: Counter[tuple[str, int]] = Counter()
    for sta in src.stations:
        for rec in src.feed.snapshot("ZI", sta):
            tr = read(io.BytesIO(rec.data), format="MSEED", headonly=True)[0]
            out[(tr.id, tr.stats.starttime.ns)] += 1
    return out


def _in_topic(bootstrap: str, src: Source, expected: int) -> Counter[tuple[str, int]]:
    msgs = consume(bootstrap, WAVEFORMS.name, _station_filter(src.stations), expected, timeout_s=60.0)
    return Counter((p.nslc, p.start_time_ns) for p in (decode_packet(m.value) for m in msgs))  # type: ignore[attr-defined]


def _check(served: Counter[tuple[str, int]], got: Counter[tuple[str, int]], what: str) -> None:
    lost = served - got
    dups = {k: n for k, n in got.items() if n > 1}
    extra = set(got) - set(served)
    print(
        f"\n{what}: {sum(served.values())} records served, {sum(lost.values())} lost, {len(dups)} duplicated"
    )
    assert not lost and not dups and not extra


def _resets_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum(RESET_LINE in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("overtake", [True, False], ids=["new-numbers-pass-old", "new-numbers-behind"])
def test_ringserver_like_reset_resumes_by_time(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture, overtake: bool
) -> None:
    """The server renumbers from 1 while the ingester stays up: nothing skipped, nothing twice."""
    caplog.set_level(logging.INFO, logger="services.ingest")
    feed = SeedLinkFeed()
    src = Source(feed, _stations(3))
    server = SeedLinkServer(feed, unknown_seq="next").start()
    try:
        with running(_settings(broker, server, src.stations, tmp_path), server) as svc:
            src.block(10.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            old = _last_seqs(src)
            before = _served(src)
            server.stop()
            feed.reset()  # kill -9 with no ring saved: empty, numbered from 1 again
            src.block(40.0 if overtake else 3.0)  # written while the server restarts
            if overtake:
                assert all(feed.next_counter("ZI", s) > old[f"ZI_{s}"] for s in src.stations)
            server.start()
            src.block(5.0)
            assert wait_until(lambda: metric(svc, "eew_ingest_server_resets_total") >= 1, 30), "reset unseen"
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            src.block(5.0)  # and the new numbering is resumed normally afterwards
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            assert metric(svc, "eew_ingest_server_resets_total") == 1
            assert metric(svc, "eew_ingest_gaps_total") == 0
            served = before + _served(src)
    finally:
        server.stop()
    assert _resets_logged(caplog) == 1
    _check(served, _in_topic(broker.bootstrap, src, sum(served.values())), "ringserver-like reset")


def test_numbers_only_server_reset_detected_by_a_backward_sequence(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that ignores the time of ``DATA``: the first packet's number is not after the one
    resumed from, so the ingester resumes by time itself."""
    caplog.set_level(logging.INFO, logger="services.ingest")
    feed = SeedLinkFeed()
    src = Source(feed, _stations(2))
    server = SeedLinkServer(feed, unknown_seq="next", honor_resume_time=False).start()
    try:
        with running(_settings(broker, server, src.stations, tmp_path), server) as svc:
            src.block(10.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            before = _served(src)
            server.stop()
            feed.reset()
            src.block(3.0)
            server.start()
            # Live data go on; the ingester sees the next new packet's (small) number.
            assert wait_until(lambda: server.streaming_connections() >= 1, 30)
            src.block(3.0)
            assert wait_until(lambda: metric(svc, "eew_ingest_server_resets_total") >= 1, 30), "reset unseen"
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            served = before + _served(src)
    finally:
        server.stop()
    assert _resets_logged(caplog) == 1
    _check(served, _in_topic(broker.bootstrap, src, sum(served.values())), "numbers-only reset")


def test_reset_while_the_ingester_is_down_resumes_from_the_state_file_by_time(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ingester stopped, server reset, ingester started: the saved per-channel ends drive the resume."""
    caplog.set_level(logging.INFO, logger="services.ingest")
    feed = SeedLinkFeed()
    src = Source(feed, _stations(2))
    server = SeedLinkServer(feed, unknown_seq="next").start()
    try:
        s = _settings(broker, server, src.stations, tmp_path)
        with running(s, server):
            src.block(10.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
        before = _served(src)
        server.stop()
        feed.reset()
        src.block(40.0)
        server.start()
        with running(s, server) as svc:
            src.block(3.0)
            assert wait_until(lambda: metric(svc, "eew_ingest_server_resets_total") >= 1, 30), "reset unseen"
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            served = before + _served(src)
    finally:
        server.stop()
    assert _resets_logged(caplog) == 1
    _check(served, _in_topic(broker.bootstrap, src, sum(served.values())), "reset while down")
