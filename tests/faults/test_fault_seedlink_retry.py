"""Issue 19: a refused or stalled station is retried on its own schedule, on a side link of its own.

The main link to the other stations is never torn down for it (counted at the server: one
``STATION`` negotiation per healthy station for the whole test). Each case counts the records
the server holds against the waveform topic (by channel and start time): 0 lost, 0 duplicated.

* a station refused at first (ringserver: "no data stream selector(s) accepted" for a station it
  has no data for) is streamed on its own link once the server receives its data;
* a silent station is probed on its schedule (the probe finds nothing newer and closes, at INFO)
  and its data, once they resume, arrive;
* a station whose subscription on the main link silently broke (the server holds its data, the
  link does not deliver them) moves to its own link;
* SIGTERM while a side link waits in its backoff ends the process promptly;
* a broker outage and a server outage while a station streams on its side link: every link
  resumes from acknowledged data, nothing lost.
"""

from __future__ import annotations

import io
import logging
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from obspy import UTCDateTime, read

from services.broker.embedded import EmbeddedBroker, free_port
from services.common.topics import WAVEFORMS
from tests.faults.test_fault_seedlink_reset import _check, _in_topic, _served
from tests.integration.test_ingest_seedlink import (
    REPO,
    Source,
    _last_seqs,
    _settings,
    _state,
    _stations,
    metric,
    running,
)
from tests.integration.test_ingest_shutdown import _stop_span
from tests.support.seedlink_server import SeedLinkFeed, SeedLinkServer, wait_until

pytestmark = pytest.mark.integration
FAST_RETRY = dict(station_retry_initial_s=0.5, station_retry_max_s=2.0, station_retry_probe_s=1.0)


def _view(feed: SeedLinkFeed, stations: list[str], parts: list[Source]) -> Source:
    """One ``Source`` over several sources' stations (for the served/topic counts)."""
    view = Source.__new__(Source)
    view.__dict__.update(parts[0].__dict__, feed=feed, stations=stations)
    return view


def _retries(svc: object, outcome: str) -> float:
    return metric(svc, "eew_ingest_station_retries_total", outcome=outcome)  # type: ignore[arg-type]


def _main_link_untouched(server: SeedLinkServer, stations: list[str], svc: object) -> None:
    """The healthy stations were negotiated once, on the first connection: the main link never reconnected."""
    for sta in stations:
        assert server.negotiations(sta) == [1], (sta, server.negotiations(sta))
    assert metric(svc, "eew_ingest_link_stalls_total") == 0  # type: ignore[arg-type]
    assert metric(svc, "eew_ingest_reconnects_total") == 0  # type: ignore[arg-type]


def _served_after(
    feed: SeedLinkFeed, stations: list[str], before: dict[str, int]
) -> Counter[tuple[str, int]]:
    """(nslc, start ns) of the records served after each station's acknowledged position ``before``."""
    out: Counter[tuple[str, int]] = Counter()
    for sta in stations:
        for rec in feed.snapshot("ZI", sta):
            if rec.seq > before.get(f"ZI_{sta}", -1):
                tr = read(io.BytesIO(rec.data), format="MSEED", headonly=True)[0]
                out[(tr.id, tr.stats.starttime.ns)] += 1
    return out


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("services")
    ]


def test_refused_station_is_streamed_on_its_own_link_once_available(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.ingest")
    feed = SeedLinkFeed()
    names = _stations(3)
    live_names, late_sta = names[:2], names[2]
    live = Source(feed, live_names)
    with SeedLinkServer(feed, unknown_station="refuse_selectors") as server:
        s = _settings(broker, server, names, tmp_path, **FAST_RETRY)
        with running(s, server) as svc:
            assert svc.ingester is not None
            live.block(4.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(live), 30)
            assert metric(svc, "eew_ingest_refused_stations") == 1
            assert f"ZI_{late_sta}" in svc.ingester.station_report()[0]
            # Retried on its own schedule, refused again, while the others flow.
            assert wait_until(lambda: _retries(svc, "refused") >= 2, 60), _retries(svc, "refused")
            live.block(2.0)
            # The server starts receiving the station's data (real time: after the ingester first asked).
            late = Source(feed, [late_sta], start=UTCDateTime() - 1)
            late.block(3.0)
            assert wait_until(lambda: _retries(svc, "accepted") == 1, 60), "never accepted"
            everyone = _view(feed, names, [live, late])
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(everyone), 30)
            for _ in range(3):
                live.block(1.0)
                late.block(1.0)
                time.sleep(0.2)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(everyone), 30)
            assert metric(svc, "eew_ingest_refused_stations") == 0
            assert metric(svc, "eew_ingest_side_links") == 1
            assert svc.health is not None
            with httpx.Client(base_url=svc.health.url, timeout=5.0) as http:
                ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert f"ZI_{late_sta} streaming" in ready.json()["checks"]["side_links"]
            _main_link_untouched(server, live_names, svc)
            attempts = len(server.negotiations(late_sta))
            served = _served(everyone)
    msgs = [r.getMessage() for r in caplog.records]
    refused = [m for m in msgs if f"refused station ZI_{late_sta}" in m]
    assert len(refused) == 1, refused  # the first failure once, not every attempt
    assert sum(f"now accepts station ZI_{late_sta} on a side link" in m for m in msgs) == 1
    assert not _errors(caplog), _errors(caplog)
    print(f"\nrefused station: {attempts} negotiations of it until accepted; main link negotiated once")
    _check(served, _in_topic(broker.bootstrap, everyone, sum(served.values())), "refused, then available")


def test_silent_station_is_probed_without_touching_the_main_link(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.ingest")
    feed = SeedLinkFeed()
    src = Source(feed, _stations(3))
    dead, live = src.stations[0], src.stations[1:]
    with SeedLinkServer(feed) as server:
        s = _settings(broker, server, src.stations, tmp_path, stall_timeout_s=4.0, **FAST_RETRY)
        with running(s, server) as svc:
            src.block(4.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            # The dead station's feed stops; the others keep sending through two probes of it.
            deadline = time.monotonic() + 120
            while _retries(svc, "nothing_newer") < 2 and time.monotonic() < deadline:
                src.block(0.5, stations=live)
                time.sleep(0.1)
            assert _retries(svc, "nothing_newer") >= 2, "the silent station was never probed"
            assert metric(svc, "eew_ingest_stalled_stations") >= 1
            src.block(2.0)  # its data resume
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            src.block(2.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            _main_link_untouched(server, live, svc)
            probes = len(server.negotiations(dead)) - 1
            moved = _retries(svc, "moved")
            served = _served(src)
    closes = [r for r in caplog.records if "probe: no data newer" in r.getMessage()]
    assert closes and all(r.levelno == logging.INFO for r in closes)
    assert not _errors(caplog), _errors(caplog)
    print(f"\nsilent station: {probes} probes, moved {moved:.0f}, main link negotiated once")
    _check(served, _in_topic(broker.bootstrap, src, sum(served.values())), "silent station probed")


def test_broken_subscription_moves_the_station_to_its_own_link(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.ingest")
    feed = SeedLinkFeed()
    src = Source(feed, _stations(3))
    victim, others = src.stations[0], src.stations[1:]
    with SeedLinkServer(feed) as server:
        s = _settings(broker, server, src.stations, tmp_path, stall_timeout_s=4.0, **FAST_RETRY)
        with running(s, server) as svc:
            src.block(4.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            assert server.break_subscription(victim) == 1
            deadline = time.monotonic() + 120
            while _retries(svc, "moved") < 1 and time.monotonic() < deadline:
                src.block(0.5)  # the server holds the victim's data; the main link no longer sends them
                time.sleep(0.1)
            assert _retries(svc, "moved") == 1, "the station never moved"
            for _ in range(3):
                src.block(1.0)
                time.sleep(0.2)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            assert metric(svc, "eew_ingest_side_links") == 1
            assert metric(svc, "eew_ingest_stalled_stations") == 0
            _main_link_untouched(server, others, svc)
            skipped = metric(svc, "eew_ingest_resent_skipped_total")
            served = _served(src)
    assert sum("moved to a side link of its own" in r.getMessage() for r in caplog.records) == 1
    assert not _errors(caplog), _errors(caplog)
    print(
        f"\nbroken subscription: moved once, {skipped:.0f} re-sent records skipped, main link negotiated once"
    )
    _check(served, _in_topic(broker.bootstrap, src, sum(served.values())), "broken subscription")


def test_sigterm_during_a_side_link_backoff_ends_promptly(broker: EmbeddedBroker, tmp_path: Path) -> None:
    feed = SeedLinkFeed()
    (ok, unknown) = _stations(2)
    src = Source(feed, [ok])
    port = free_port()
    with SeedLinkServer(feed) as server:
        argv = [
            sys.executable, "-m", "services.cli", "ingest", "--bootstrap-servers", broker.bootstrap,
            "--server", server.address, "--streams", f"ZI_{ok}:HH?,ZI_{unknown}:HH?",
            "--state-file", str(tmp_path / "seedlink-state.json"), "--state-save-interval-s", "0.2",
            "--http-port", str(port), "--station-retry-initial-s", "0.5", "--station-retry-factor", "60",
            "--station-retry-max-s", "60",
        ]  # fmt: skip
        log = tmp_path / "ingest.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            assert wait_until(lambda: server.streaming_connections() >= 1, 60), log.read_text()
            src.block(2.0)

            def refused_once() -> bool:
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
                except httpx.HTTPError:
                    return False
                m = re.search(r'^eew_ingest_station_retries_total\{outcome="refused"\} (\S+)$', text, re.M)
                return m is not None and float(m.group(1)) >= 1

            # The first retry was refused: the next one waits 0.5-30 s (backoff with jitter).
            assert wait_until(refused_once, 60), log.read_text()
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    text = log.read_text()
    print(
        f"\nSIGTERM during a side link's backoff: exit {proc.returncode} after {took:.2f} s; {_stop_span(text)}"
    )
    print(
        "\n".join(
            line for line in text.splitlines() if "SIGTERM" in line or "stopped" in line or "closed" in line
        )
    )
    assert proc.returncode == 0, text
    assert "state saved" in text
    assert took < 5.0, text  # the "within 1 s", generously for a loaded machine


def test_broker_outage_with_a_side_link_resumes_every_link_without_loss(tmp_path: Path) -> None:
    """Deliveries fail on both links: every link is dropped, the positions rewound once all have
    stopped, and both resume from acknowledged data (side link included): nothing lost."""
    feed = SeedLinkFeed()
    names = _stations(2)
    main_src = Source(feed, names[:1])
    own = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    port = own.port
    restarted: EmbeddedBroker | None = None
    try:
        with SeedLinkServer(feed, unknown_station="refuse_selectors") as server:
            s = _settings(
                own, server, names, tmp_path, request_timeout_s=1.0, delivery_timeout_s=2.0, max_block_s=1.0,
                **FAST_RETRY,
            )  # fmt: skip
            with running(s, server) as svc:
                main_src.block(3.0)
                side_src = Source(feed, names[1:], start=UTCDateTime() - 1)
                side_src.block(3.0)
                everyone = _view(feed, names, [main_src, side_src])
                assert wait_until(lambda: _retries(svc, "accepted") == 1, 60), "never accepted"
                assert wait_until(lambda: _state(tmp_path) == _last_seqs(everyone), 30), (
                    _state(tmp_path), _last_seqs(everyone), svc.ingester.side_stations() if svc.ingester else None
                )  # fmt: skip
                before = _state(tmp_path)
                own.stop()
                main_src.block(5.0)
                side_src.block(5.0)
                assert wait_until(
                    lambda: metric(svc, "eew_ingest_publish_failures_total", topic=WAVEFORMS.name) >= 1, 30
                )
                assert _state(tmp_path) == before  # nothing unacknowledged recorded as done
                restarted = EmbeddedBroker(port=port, log_path=tmp_path / "tansu2.log").start()
                main_src.block(2.0)
                side_src.block(2.0)
                assert wait_until(lambda: _state(tmp_path) == _last_seqs(everyone), 90), (
                    _state(tmp_path), _last_seqs(everyone)
                )  # fmt: skip
                assert metric(svc, "eew_ingest_side_links") == 1
        after = _served_after(feed, names, before)
        assert restarted is not None
        got = _in_topic(restarted.bootstrap, everyone, sum(after.values()))
        print(
            f"\nbroker outage with a side link: {sum(after.values())} records after it, {sum((after - got).values())} missing"
        )
        assert not after - got
    finally:
        own.stop()
        if restarted is not None:
            restarted.stop()


def test_server_outage_with_a_side_link_reconnects_both_links_without_loss(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server goes away for 3 s while a station streams on its side link: the main link and the
    side link each reconnect with their own backoff and resume; nothing lost, nothing twice."""
    caplog.set_level(logging.INFO, logger="services.ingest")
    feed = SeedLinkFeed()
    names = _stations(2)
    main_src = Source(feed, names[:1])
    server = SeedLinkServer(feed, unknown_station="refuse_selectors").start()
    try:
        with running(_settings(broker, server, names, tmp_path, **FAST_RETRY), server) as svc:
            main_src.block(3.0)
            side_src = Source(feed, names[1:], start=UTCDateTime() - 1)
            side_src.block(3.0)
            everyone = _view(feed, names, [main_src, side_src])
            assert wait_until(lambda: _retries(svc, "accepted") == 1, 60), "never accepted"
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(everyone), 30)
            server.stop()
            t_down = time.monotonic()
            main_src.block(4.0)
            side_src.block(4.0)
            time.sleep(max(0.0, 3.0 - (time.monotonic() - t_down)))
            server.start()
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(everyone), 60)
            main_src.block(2.0)
            side_src.block(2.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(everyone), 30)
            assert svc.ingester is not None and svc.ingester.side_stations() == {
                f"ZI_{names[1]}": "streaming"
            }
            assert metric(svc, "eew_ingest_reconnects_total") >= 2  # each link reconnected on its own
            served = _served(everyone)
    finally:
        server.stop()
    assert not _errors(caplog), _errors(caplog)
    _check(served, _in_topic(broker.bootstrap, everyone, sum(served.values())), "server outage, side link")
