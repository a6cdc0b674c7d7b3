"""Live ingest end to end: ObsPy's SeedLink client against the test server, into the real broker.

Every test consumes the waveform (and dead-letter) topic back and compares with what the
server served, record by record: samples, times, keys and sequence numbers, with no gap and
no duplicate -- across a restart from the state file, a server outage and a stalled link.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime, read
from prometheus_client import CollectorRegistry

from services.broker.embedded import EmbeddedBroker, free_port
from services.common.codec import Packet, decode_packet, stream_key
from services.common.kafka import make_consumer
from services.common.lifecycle import serve_health
from services.common.topics import DEADLETTER, WAVEFORMS
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings
from tests.support.seedlink_server import SeedLinkFeed, SeedLinkServer, wait_until

pytestmark = pytest.mark.integration
NET = "ZI"
REPO = Path(__file__).resolve().parents[2]


def _stations(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:3].upper()
    return [f"{tag}{i:02d}" for i in range(n)]


class Source:
    """Writes continuous 100 Hz 3-component data per station into the feed, a block at a time."""

    def __init__(self, feed: SeedLinkFeed, stations: list[str], start: UTCDateTime | None = None) -> None:
        self.feed = feed
        self.stations = stations
        self.t = {s: start or UTCDateTime() - 120 for s in stations}
        self.rng = np.random.default_rng(7)
        for s in stations:
            feed.add_station(NET, s)

    def block(self, seconds: float = 12.0, stations: list[str] | None = None) -> None:
        n = int(seconds * 100)
        for sta in stations or self.stations:
            for cha in ("HHZ", "HHN", "HHE"):
                data = np.cumsum(self.rng.integers(-300, 300, n)).astype(np.int32)
                hdr = {"network": NET, "station": sta, "channel": cha, "sampling_rate": 100.0}
                tr = Trace(data, header={**hdr, "starttime": self.t[sta]})
                self.feed.append_trace(tr)
            self.t[sta] += n / 100.0

    def served(self) -> list[tuple[str, int, int, np.ndarray]]:
        """(nslc, seq, start_ns, samples) of every record in the feed for these stations."""
        out = []
        for sta in self.stations:
            for rec in self.feed.snapshot(NET, sta):
                tr = read(io.BytesIO(rec.data), format="MSEED")[0]
                out.append((tr.id, rec.seq, tr.stats.starttime.ns, tr.data))
        return out


def consume(
    bootstrap: str, topic: str, keep: Callable[[object], bool], expected: int, timeout_s: float = 40.0
) -> list[object]:
    """Messages of ``topic`` that ``keep`` accepts; after ``expected`` arrived, listen 1.5 s more for extras."""
    consumer = make_consumer(bootstrap, f"t-ingest-{uuid.uuid4().hex[:8]}", "t-ingest", [topic])
    out: list[object] = []
    deadline = time.monotonic() + timeout_s
    settle: float | None = None
    try:
        while time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=300).values():
                out.extend(m for m in msgs if keep(m))
            if len(out) >= expected:
                settle = settle or time.monotonic() + 1.5
                if time.monotonic() > settle:
                    break
    finally:
        consumer.close()
    return out


def _station_filter(stations: list[str]) -> Callable[[object], bool]:
    keys = {stream_key(NET, s, "", "HHZ").encode() for s in stations}
    return lambda m: m.key in keys  # type: ignore[attr-defined]


def assert_exactly_served(bootstrap: str, src: Source) -> list[Packet]:
    """The waveform topic holds every served record once, with identical samples, times, key and seq."""
    served = src.served()
    msgs = consume(bootstrap, WAVEFORMS.name, _station_filter(src.stations), len(served))
    packets = [decode_packet(m.value) for m in msgs]  # type: ignore[attr-defined]
    got = sorted((p.nslc, p.sequence, p.start_time_ns) for p in packets)
    want = sorted((nslc, seq, start) for nslc, seq, start, _ in served)
    assert got == want, f"{len(got)} packets for {len(want)} served records"
    by_id = {(p.nslc, p.sequence): p for p in packets}
    for nslc, seq, _start, data in served:
        p = by_id[(nslc, seq)]
        np.testing.assert_array_equal(p.data, data)
        assert p.data.dtype == np.int32 and p.sampling_rate == 100.0
        assert p.ingest_time_ns > p.start_time_ns
    for m in msgs:
        p = decode_packet(m.value)  # type: ignore[attr-defined]
        assert m.key == p.key.encode() and dict(m.headers)["nslc"] == p.nslc.encode()  # type: ignore[attr-defined]
    # Kafka order per channel is time order (one key, one partition).
    for nslc in {p.nslc for p in packets}:
        starts = [p.start_time_ns for p in packets if p.nslc == nslc]
        assert starts == sorted(starts)
    return packets


def _settings(
    broker: EmbeddedBroker, server: SeedLinkServer, stations: list[str], tmp: Path, **kw: object
) -> IngestSettings:
    base: dict[str, object] = dict(
        bootstrap_servers=broker.bootstrap,
        server=server.address,
        streams=",".join(f"{NET}_{s}:HH?" for s in stations),
        state_file=str(tmp / "seedlink-state.json"),
        state_save_interval_s=0.2,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        connect_timeout_s=2.0,
        stall_timeout_s=0.0,
    )
    base.update(kw)
    return IngestSettings(**base)  # type: ignore[arg-type]


@contextmanager
def running(settings: IngestSettings, server: SeedLinkServer) -> Iterator[IngestService]:
    """The real service in a thread (same code as ``eew ingest``, minus signal handlers).

    Returns once the server has the subscription (past ``END``): an ingester without state asks
    for new data only, so records written before that are not for it (issue 19, item 8: waiting
    only for the TCP connection let a loaded machine write the first records before ``END``).
    """
    svc = IngestService(settings, CollectorRegistry())
    health = serve_health(svc, svc.registry, settings.http_host, settings.http_port)
    th = threading.Thread(target=svc.run, name="ingest-under-test", daemon=True)
    th.start()
    try:
        assert wait_until(lambda: svc.ingester is not None and svc.ingester.streaming, 30), "never connected"
        assert wait_until(lambda: server.streaming_connections() >= 1, 30), "never subscribed"
        yield svc
    finally:
        svc.stop.set()
        th.join(15)
        health.stop()
        assert not th.is_alive(), "ingest did not stop"


def metric(svc: IngestService, name: str, **labels: str) -> float:
    return svc.registry.get_sample_value(name, labels) or 0.0


def _state(tmp: Path) -> dict[str, int]:
    path = tmp / "seedlink-state.json"
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {k: v["seq"] for k, v in doc["streams"].items()}


def _last_seqs(src: Source) -> dict[str, int]:
    return {f"{NET}_{s}": src.feed.snapshot(NET, s)[-1].seq for s in src.stations}


def test_live_two_stations_exact_round_trip_and_health(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """2 stations x 3 channels, data arriving while connected: the topic matches the server exactly."""
    feed = SeedLinkFeed()
    src = Source(feed, _stations(2))
    with SeedLinkServer(feed) as server, running(_settings(broker, server, src.stations, tmp_path), server) as svc:
        for _ in range(3):
            src.block(8.0)
            time.sleep(0.3)
        assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
        assert svc.health is not None
        with httpx.Client(base_url=svc.health.url, timeout=5.0) as http:
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert http.get("/healthz").status_code == 200
            assert "eew_ingest_packets_in_total" in http.get("/metrics").text
        n = len(src.served())
        assert metric(svc, "eew_ingest_packets_in_total", source="seedlink") == n
        assert metric(svc, "eew_ingest_packets_acked_total") == n
        assert metric(svc, "eew_ingest_gaps_total") == 0
        assert metric(svc, "eew_ingest_data_latency_seconds_count") == n
        latency = metric(svc, "eew_ingest_station_latency_seconds", station=f"{NET}.{src.stations[0]}")
        print(
            f"\nstation data latency after the last block: {latency:.1f} s (data written 120 s behind real time)"
        )
    assert_exactly_served(broker.bootstrap, src)


def test_restart_resumes_from_state_file_no_gap_no_duplicate(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """`eew ingest` stopped by SIGTERM, data keeps arriving, a new run resumes from the state file."""
    feed = SeedLinkFeed()
    src = Source(feed, _stations(2))
    with SeedLinkServer(feed) as server:
        s = _settings(broker, server, src.stations, tmp_path)
        argv = [
            sys.executable, "-m", "services.cli", "ingest",
            "--bootstrap-servers", s.bootstrap_servers, "--server", s.server, "--streams", s.streams,
            "--state-file", s.state_file, "--state-save-interval-s", "0.2", "--http-port", str(free_port()),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert wait_until(lambda: server.streaming_connections() == 1, 60), "eew ingest never subscribed"
            src.block(10.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
            print(f"\nSIGTERM -> exit in {time.monotonic() - t0:.2f} s")
            assert proc.returncode == 0, out
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "state saved" in out
        src.block(10.0)  # arrives while no ingester runs
        with running(s, server) as svc:
            src.block(10.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
            assert metric(svc, "eew_ingest_gaps_total") == 0 and metric(svc, "eew_ingest_overlaps_total") == 0
    assert_exactly_served(broker.bootstrap, src)


def test_reconnects_after_server_outage_and_resumes(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Server down for 3 s while data accumulate: reconnect with backoff, resume, nothing lost or doubled."""
    feed = SeedLinkFeed()
    src = Source(feed, _stations(2))
    server = SeedLinkServer(feed).start()
    try:
        with running(_settings(broker, server, src.stations, tmp_path), server) as svc:
            src.block(10.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
            server.stop()
            t_down = time.monotonic()
            src.block(10.0)
            time.sleep(max(0.0, 3.0 - (time.monotonic() - t_down)))
            server.start()
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
            src.block(5.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
            assert metric(svc, "eew_ingest_reconnects_total") >= 1
            assert metric(svc, "eew_ingest_connect_failures_total") >= 1
            print(f"\nrecovered {time.monotonic() - t_down:.1f} s after the outage began (3 s outage)")
    finally:
        server.stop()
    assert_exactly_served(broker.bootstrap, src)


def test_stall_watchdog_reconnects_a_silent_link(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """The server keeps the socket open but stops sending: the watchdog notices, reconnects, resumes."""
    feed = SeedLinkFeed()
    src = Source(feed, _stations(2))
    with SeedLinkServer(feed) as server:
        with running(_settings(broker, server, src.stations, tmp_path, stall_timeout_s=1.5), server) as svc:
            src.block(10.0)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
            server.freeze()
            src.block(10.0)
            assert wait_until(lambda: metric(svc, "eew_ingest_link_stalls_total") >= 1, 15)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
            assert metric(svc, "eew_ingest_reconnects_total") >= 1
            assert server.connections_accepted >= 2
    assert_exactly_served(broker.bootstrap, src)


def _record(sta: str, cha: str, start: UTCDateTime, data: np.ndarray, encoding: str) -> bytes:
    tr = Trace(
        data,
        header={"network": NET, "station": sta, "channel": cha, "sampling_rate": 100.0, "starttime": start},
    )
    buf = io.BytesIO()
    Stream([tr]).write(buf, format="MSEED", reclen=512, encoding=encoding)
    return buf.getvalue()[:512]


def test_poison_records_are_dead_lettered_and_valid_data_flows(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Corrupt, duplicate, future-dated, non-numeric and NaN records among valid ones, on one live link."""
    feed = SeedLinkFeed()
    (sta,) = _stations(1)
    feed.add_station(NET, sta)
    t = UTCDateTime(int(UTCDateTime().timestamp) - 60)  # whole seconds: exact in miniSEED
    good = [np.arange(100, dtype=np.int32) + 100 * i for i in range(4)]
    corrupt = bytearray(_record(sta, "HHZ", t, good[0], "INT32"))
    corrupt[6] = ord("X")  # invalid quality indicator: libmseed refuses the header
    nan = np.arange(100, dtype=np.float32)
    nan[[0, 50]] = np.nan
    with SeedLinkServer(feed) as server:
        settings = _settings(broker, server, [sta], tmp_path, streams=f"{NET}_{sta}:HH? LOG")
        with running(settings, server) as svc:
            feed.append_raw(NET, sta, _record(sta, "HHZ", t, good[0], "INT32"))
            feed.append_raw(NET, sta, bytes(corrupt))
            feed.append_raw(NET, sta, _record(sta, "HHZ", t, good[0], "INT32"))  # duplicate
            feed.append_raw(NET, sta, _record(sta, "HHZ", t + 1, good[1], "STEIM2"))
            feed.append_raw(NET, sta, _record(sta, "HHZ", UTCDateTime() + 3600, good[2], "INT32"))  # future
            feed.append_raw(NET, sta, _record(sta, "HHN", t, nan, "FLOAT32"))  # NaN: repaired
            log = Trace(
                np.frombuffer(b"station log message", dtype="|S1"),
                header={"network": NET, "station": sta, "channel": "LOG"},
            )
            buf = io.BytesIO()
            log.write(buf, format="MSEED", encoding="ASCII", reclen=512)
            feed.append_raw(NET, sta, buf.getvalue()[:512])
            feed.append_raw(NET, sta, _record(sta, "HHZ", t + 2, good[3], "STEIM2"))
            last = feed.snapshot(NET, sta)[-1].seq
            assert wait_until(lambda: _state(tmp_path).get(f"{NET}_{sta}") == last, 20)
            for reason in ("corrupt_record", "duplicate", "time_in_future", "unknown_channel"):
                assert metric(svc, "eew_ingest_rejected_total", reason=reason) == 1, reason
            assert metric(svc, "eew_ingest_repaired_total", repair="nonfinite") == 1
            assert metric(svc, "eew_ingest_deadletters_total") == 4
    keys = {stream_key(NET, sta, "", "HHZ").encode()}
    msgs = consume(broker.bootstrap, WAVEFORMS.name, lambda m: m.key in keys, 4)  # type: ignore[attr-defined]
    packets = sorted((decode_packet(m.value) for m in msgs), key=lambda p: (p.channel, p.start_time_ns))  # type: ignore[attr-defined]
    assert [(p.channel, p.start_time_ns) for p in packets] == [
        ("HHN", t.ns), ("HHZ", t.ns), ("HHZ", (t + 1).ns), ("HHZ", (t + 2).ns)
    ]  # fmt: skip
    np.testing.assert_array_equal(packets[0].data[[0, 1, 49, 50, 51]], [1.0, 1.0, 49.0, 49.0, 51.0])
    for p, g in zip(packets[1:], [good[0], good[1], good[3]], strict=True):
        np.testing.assert_array_equal(p.data, g)
    dead = consume(
        broker.bootstrap,
        DEADLETTER.name,
        lambda m: dict(m.headers).get("nslc", b"").startswith(f"{NET}.{sta}.".encode()),
        4,  # type: ignore[attr-defined]
    )
    reasons = sorted(dict(m.headers)["reason"].decode() for m in dead)  # type: ignore[attr-defined]
    assert reasons == ["corrupt_record", "duplicate", "time_in_future", "unknown_channel"]
    by_reason = {dict(m.headers)["reason"]: m for m in dead}  # type: ignore[attr-defined]
    assert by_reason[b"corrupt_record"].value == bytes(corrupt)  # the raw record is kept for inspection
    assert dict(by_reason[b"corrupt_record"].headers)["content-type"] == b"application/vnd.fdsn.mseed"
    assert os.path.exists(tmp_path / "seedlink-state.json")


def test_kill_9_then_restart_loses_nothing(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """SIGKILL mid-stream: the restarted ingester resumes from the state file; no record is missing and
    the only duplicates are records after the last saved (acknowledged) position -- SeedLink resume."""
    feed = SeedLinkFeed()
    src = Source(feed, _stations(2))
    running_feed = threading.Event()
    running_feed.set()

    def feeder() -> None:
        while running_feed.is_set():
            src.block(2.0)
            time.sleep(0.2)

    with SeedLinkServer(feed) as server:
        s = _settings(broker, server, src.stations, tmp_path)
        argv = [
            sys.executable, "-m", "services.cli", "ingest",
            "--bootstrap-servers", s.bootstrap_servers, "--server", s.server, "--streams", s.streams,
            "--state-file", s.state_file, "--state-save-interval-s", "0.2", "--http-port", str(free_port()),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        thread = threading.Thread(target=feeder, daemon=True)
        try:
            assert wait_until(lambda: server.streaming_connections() == 1, 60), "eew ingest never subscribed"
            thread.start()
            assert wait_until(lambda: len(_state(tmp_path)) == 2 and min(_state(tmp_path).values()) >= 20, 30)
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        saved = _state(tmp_path)
        time.sleep(1.0)
        with running(s, server):
            time.sleep(1.0)
            running_feed.clear()
            thread.join(5)
            assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 30)
    served = src.served()
    msgs = consume(broker.bootstrap, WAVEFORMS.name, _station_filter(src.stations), len(served))
    got: dict[tuple[str, int], int] = {}
    for m in msgs:
        p = decode_packet(m.value)  # type: ignore[attr-defined]
        got[(p.nslc, p.sequence)] = got.get((p.nslc, p.sequence), 0) + 1
    missing = [(nslc, seq) for nslc, seq, _s, _d in served if (nslc, seq) not in got]
    dups = {k: n for k, n in got.items() if n > 1}
    print(
        f"\nkill -9: {len(served)} records served, {len(missing)} missing, {len(dups)} duplicated (saved {saved})"
    )
    assert missing == []
    for (nslc, seq), n in dups.items():
        key = "_".join(nslc.split(".")[:2])
        assert n == 2 and seq > saved[key], (nslc, seq, saved)


def test_broker_outage_fails_deliveries_then_resumes_without_loss(tmp_path: Path) -> None:
    """Broker gone longer than the delivery timeout: failures are counted, the link is dropped and the
    next one asks SeedLink again from the acknowledged position, so the returning broker gets everything."""
    feed = SeedLinkFeed()
    src = Source(feed, _stations(1))
    own = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    port = own.port
    restarted: EmbeddedBroker | None = None
    try:
        with SeedLinkServer(feed) as server:
            s = _settings(
                own,
                server,
                src.stations,
                tmp_path,
                request_timeout_s=1.0,
                delivery_timeout_s=2.0,
                max_block_s=1.0,
            )
            with running(s, server) as svc:
                src.block(10.0)
                assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 20)
                before = _state(tmp_path)
                own.stop()
                src.block(10.0)
                assert wait_until(
                    lambda: metric(svc, "eew_ingest_publish_failures_total", topic=WAVEFORMS.name) >= 1, 30
                )
                assert _state(tmp_path) == before  # nothing unacknowledged was recorded as done
                restarted = EmbeddedBroker(port=port, log_path=tmp_path / "tansu2.log").start()
                src.block(5.0)
                assert wait_until(lambda: _state(tmp_path) == _last_seqs(src), 60)
        after_outage = {(n, q) for n, q, _s, _d in src.served() if q > before[f"{NET}_{src.stations[0]}"]}
        msgs = consume(restarted.bootstrap, WAVEFORMS.name, _station_filter(src.stations), len(after_outage))
        got = {(decode_packet(m.value).nslc, decode_packet(m.value).sequence) for m in msgs}  # type: ignore[attr-defined]
        print(f"\nbroker outage: {len(after_outage)} records after it, {len(after_outage - got)} missing")
        assert after_outage <= got
    finally:
        own.stop()
        if restarted is not None:
            restarted.stop()
