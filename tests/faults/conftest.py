"""Whole-pipeline fault harness (issue 4): real recordings -> SeedLink test server -> ``eew ingest``
-> durable broker (Tansu on SeaweedFS) -> ``eew detect`` -> ``eew alert`` -> webhook receiver.

Every service runs as its own process (``ServiceProcess``), so a fault is a real ``kill -9``.
The earthquake: six real 3-component recordings (P at 30 s in each file) placed at stations
around a hypocentre with their P onsets at the straight-ray travel times (constant Vp), as
``services.pipeline.archives`` builds it, but timed just behind the wall clock (so the live checks of
the services accept it) and with two far stations whose P arrives ~10 s after the near ones (so
a test can hold the feed between the first alert and a due update). The feeder appends the data
to the SeedLink server one second per channel at a time, faster than real time.

Counts, not "no exception": the checks below compare what the server served with what the
waveform topic holds (records and samples per channel), the expected (station, window end) set
with the scores topic, and the alerts topic with what the webhook receiver accepted.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition
from obspy import Trace, UTCDateTime
from prometheus_client.parser import text_string_to_metric_families

from services.broker.embedded import EmbeddedBroker, free_port, weed_binary
from services.broker.exceptions import BrokerStartError
from services.common.codec import decode_packet
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.topics import ALERTS, SCORES, WAVEFORMS, TopicSpec
from services.pipeline.archives import REAL_FILES, _load_real
from services.pipeline.processes import ServiceProcess
from services.pipeline.receiver import WebhookReceiver
from tests.support.seedlink_server import SeedLinkFeed, SeedLinkServer, wait_until

REPO = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
FS = 100
NET = "FT"
HYPO = (37.80, -122.20, 10.0)  # lat, lon, depth km
VP_KM_S = 6.0
KM_PER_DEG = 111.195
# (station, east km, north km) from the epicentre: four near stations (P 2.0-4.4 s after the origin)
# and two far ones (P 11.5 s and 14.4 s after it).
GEOMETRY = [("F1", 8.0, 5.0), ("F2", -12.0, 9.0), ("F3", 4.0, -16.0), ("F4", -20.0, -14.0),
            ("F5", 55.0, 40.0), ("F6", -70.0, -50.0)]  # fmt: skip
NEAR = ["F1", "F2", "F3", "F4"]
FAR = ["F5", "F6"]
PRE_S = 14  # origin - first sample (whole seconds)
DURATION_S = 40  # scored seconds per station: windows end at T0 + 1 s ... T0 + 40 s
FED_S = DURATION_S + 1  # one more second so the last window is complete
LAG_S = 150  # the first sample lies this far behind the wall clock when the scenario is built


# --------------------------------------------------------------------------------- scenario


@dataclass
class Quake:
    """The travel-time-consistent earthquake: per-station Z, N, E int32 counts from T0 on."""

    t0_ns: int
    origin_ns: int
    p_ns: dict[str, int]
    waves: dict[str, np.ndarray]  # station -> (3, FED_S * FS) int32
    sources: dict[str, str]
    csv: Path

    @property
    def stations(self) -> list[str]:
        return list(self.waves)

    def second(self, sec: int) -> int:
        """Event time (ns) of second ``sec`` after T0."""
        return self.t0_ns + sec * NS

    def traces(self, station: str, sec: int) -> list[Trace]:
        """One second (sample ``sec*FS`` on) of the station's three channels."""
        start = UTCDateTime(ns=self.second(sec))
        out = []
        for row, comp in enumerate("ZNE"):
            data = np.ascontiguousarray(self.waves[station][row, sec * FS : (sec + 1) * FS])
            hdr = {"network": NET, "station": station, "location": "", "channel": f"HH{comp}",
                   "sampling_rate": float(FS), "starttime": start}  # fmt: skip
            out.append(Trace(data, header=hdr))
        return out

    def expected_windows(self) -> set[tuple[str, int]]:
        """(station, window end) of every chunk the detector must score."""
        return {(s, self.second(k)) for s in self.stations for k in range(1, DURATION_S + 1)}


def build_quake(shared: Path, out_dir: Path) -> Quake:
    """Place the real recordings (``services.pipeline.archives.REAL_FILES``) at the six stations."""
    t0 = (time.time_ns() // NS - LAG_S) * NS
    origin = t0 + PRE_S * NS
    lat0, lon0, depth = HYPO
    rows = ["network,station,location,latitude,longitude,elevation_m"]
    waves, p_ns, sources = {}, {}, {}
    for (code, east, north), fname in zip(GEOMETRY, REAL_FILES, strict=True):
        lat = lat0 + north / KM_PER_DEG
        lon = lon0 + east / (KM_PER_DEG * math.cos(math.radians(lat0)))
        dist = math.sqrt(east * east + north * north + depth * depth)
        tp_idx = round((PRE_S + dist / VP_KM_S) * FS)  # P sample index after T0, on the grid
        zne = _load_real(shared, fname)  # (3, 9001), P at sample 3000
        first = 3000 - tp_idx
        assert first >= 0 and first + FED_S * FS <= zne.shape[1], (code, first)
        waves[code] = np.round(zne[:, first : first + FED_S * FS]).astype(np.int32)
        p_ns[code] = t0 + tp_idx * (NS // FS)
        sources[code] = fname
        rows.append(f"{NET},{code},,{lat:.5f},{lon:.5f},0")
    csv = out_dir / "stations.csv"
    csv.write_text("\n".join(rows) + "\n")
    return Quake(t0, origin, p_ns, waves, sources, csv)


class Feeder:
    """Appends the quake to the SeedLink feed, one second of every channel of every station per
    step, ``speed`` x faster than real time; ``hold(sec)`` stops before second ``sec``."""

    def __init__(self, feed: SeedLinkFeed, quake: Quake, speed: float = 5.0) -> None:
        self.feed = feed
        self.quake = quake
        self.speed = speed
        self.fed_s = 0  # seconds appended so far
        self._hold: int | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        for s in quake.stations:
            feed.add_station(NET, s)
        self._thread = threading.Thread(target=self._run, name="fault-feeder", daemon=True)

    def start(self, hold_at: int | None = None) -> Feeder:
        self._hold = hold_at
        self._thread.start()
        return self

    def hold(self, sec: int | None) -> None:
        with self._cond:
            self._hold = sec
            self._cond.notify_all()

    def _run(self) -> None:
        for sec in range(FED_S):
            with self._cond:
                while self._hold is not None and sec >= self._hold and not self._stop.is_set():
                    self._cond.wait(0.1)
            if self._stop.is_set():
                return
            for sta in self.quake.stations:
                for tr in self.quake.traces(sta, sec):
                    self.feed.append_trace(tr)
            with self._cond:
                self.fed_s = sec + 1
                self._cond.notify_all()
            self._stop.wait(1.0 / self.speed)

    @property
    def done(self) -> bool:
        return self.fed_s >= FED_S

    def stop(self) -> None:
        self._stop.set()
        self.hold(None)
        if self._thread.is_alive():
            self._thread.join(10)

    def served(self) -> list[tuple[str, int, int]]:
        """(nslc, seq, samples) of every record in the feed."""
        out = []
        for sta in self.quake.stations:
            for rec in self.feed.snapshot(NET, sta):
                npts = round((rec.end_ns - rec.start_ns) * FS / NS)
                out.append((f"{NET}.{sta}.{rec.location}.{rec.channel}", rec.seq, npts))
        return out

    def last_seqs(self) -> dict[str, int]:
        return {f"{NET}_{s}": self.feed.snapshot(NET, s)[-1].seq for s in self.quake.stations}


# --------------------------------------------------------------------------------- topics


def _topic_consumer(bootstrap: str, topic: TopicSpec) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap],
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="fault-test-reader",
        fetch_max_wait_ms=100,
        reconnect_backoff_max_ms=500,
    )
    tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer


def read_all(
    bootstrap: str, topic: TopicSpec, idle_s: float = 3.0, max_s: float = 60.0
) -> dict[tuple[int, int], bytes]:
    """Every record of ``topic`` from the beginning, (partition, offset) -> value; reads until a poll
    brings nothing for ``idle_s`` (Tansu's high watermark cannot be trusted)."""
    consumer = _topic_consumer(bootstrap, topic)
    got: dict[tuple[int, int], bytes] = {}
    try:
        start = last = time.monotonic()
        while time.monotonic() - start < max_s and time.monotonic() - last < idle_s:
            for tp, records in consumer.poll(timeout_ms=300).items():
                for rec in records:
                    got[(tp.partition, rec.offset)] = rec.value
                last = time.monotonic()
    finally:
        consumer.close()
    return got


class TopicWatcher:
    """Follows the scores and alerts topics from the beginning in a thread (deduplicated by offset,
    so a consumer reset after a broker restart cannot double-count)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._lock = threading.Lock()
        self.records: dict[str, dict[tuple[int, int], tuple[bytes, float]]] = {
            SCORES.name: {},
            ALERTS.name: {},
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-watcher", daemon=True)

    def start(self) -> TopicWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        consumers = [_topic_consumer(self.bootstrap, SCORES), _topic_consumer(self.bootstrap, ALERTS)]
        try:
            while not self._stop.is_set():
                for c in consumers:
                    try:
                        polled = c.poll(timeout_ms=100)
                    except Exception:  # noqa: BLE001 -- broker restarts in fault 4; keep following
                        time.sleep(0.2)
                        continue
                    now = time.monotonic()
                    with self._lock:
                        for tp, recs in polled.items():
                            for r in recs:
                                self.records[tp.topic].setdefault((tp.partition, r.offset), (r.value, now))
        finally:
            for c in consumers:
                c.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def scores(self) -> list[tuple[pb.StationScore, float]]:
        with self._lock:
            vals = list(self.records[SCORES.name].values())
        return [(pb.StationScore.FromString(v), t) for v, t in vals]

    def alerts(self) -> list[pb.Alert]:
        with self._lock:
            vals = sorted(self.records[ALERTS.name].items())
        return [pb.Alert.FromString(v) for _k, (v, _t) in vals]

    def windows(self) -> set[tuple[str, int]]:
        return {(s.station, s.window_end_time_ns) for s, _t in self.scores()}


# --------------------------------------------------------------------------------- counts


@dataclass
class WaveCounts:
    """Served (SeedLink) versus held (waveform topic), per record and per sample."""

    served_records: int
    served_samples: int
    missing_records: list[tuple[str, int]]
    missing_samples: int
    duplicated: dict[tuple[str, int], int]  # (nslc, seq) -> copies beyond the first
    duplicated_samples: int
    unexpected: list[tuple[str, int]]  # held but never served
    per_channel: dict[str, tuple[int, int]]  # nslc -> (samples served, distinct samples held)

    def line(self) -> str:
        return (
            f"{self.served_records} records / {self.served_samples} samples served; missing "
            f"{len(self.missing_records)} records ({self.missing_samples} samples), duplicated "
            f"{sum(self.duplicated.values())} records ({self.duplicated_samples} samples)"
        )


def waveform_counts(bootstrap: str, feeder: Feeder) -> WaveCounts:
    """Read the whole waveform topic and compare it with what the server served."""
    served = feeder.served()
    held: Counter[tuple[str, int]] = Counter()
    npts: dict[tuple[str, int], int] = {}
    for value in read_all(bootstrap, WAVEFORMS).values():
        p = decode_packet(value)
        if p.network != NET:
            continue
        held[(p.nslc, p.sequence)] += 1
        npts[(p.nslc, p.sequence)] = len(p.data)
    want = {(n, q): k for n, q, k in served}
    missing = [k for k in want if k not in held]
    dup = {k: c - 1 for k, c in held.items() if c > 1}
    per_channel: dict[str, tuple[int, int]] = {}
    for (nslc, seq), k in want.items():
        a, b = per_channel.get(nslc, (0, 0))
        per_channel[nslc] = (a + k, b + (npts[(nslc, seq)] if (nslc, seq) in held else 0))
    return WaveCounts(
        served_records=len(want),
        served_samples=sum(want.values()),
        missing_records=missing,
        missing_samples=sum(want[k] for k in missing),
        duplicated=dup,
        duplicated_samples=sum(npts[k] * c for k, c in dup.items()),
        unexpected=[k for k in held if k not in want],
        per_channel=per_channel,
    )


@dataclass
class AlertCounts:
    """The alerts topic against the webhook receiver."""

    topic: list[tuple[str, int, str, int]]  # (event_id, version, type, stations)
    delivered: list[tuple[str, int]]
    events: set[str]
    new: int
    topic_duplicates: int
    lost: set[tuple[str, int]]  # on the topic, never accepted by the receiver
    receiver_duplicates: int
    stations_final: set[str]

    def line(self) -> str:
        return (
            f"{len(self.events)} event, {len(self.topic)} versions on the topic ({self.new} NEW), "
            f"{len(self.delivered)} delivered; lost {len(self.lost)}, duplicated "
            f"{self.topic_duplicates} on the topic / {self.receiver_duplicates} at the receiver"
        )


def alert_counts(alerts: list[pb.Alert], receiver: WebhookReceiver) -> AlertCounts:
    topic = [(a.event_id, a.version, pb.AlertType.Name(a.type), len(a.stations)) for a in alerts]
    keys = [(e, v) for e, v, _t, _n in topic]
    delivered = [(r.body["event_id"], r.body["version"]) for r in receiver.snapshot()]
    final_stations: set[str] = set()
    for a in alerts:
        final_stations |= {s.station for s in a.stations}
    return AlertCounts(
        topic=topic,
        delivered=delivered,
        events={e for e, _v in keys},
        new=sum(1 for _e, _v, t, _n in topic if t == "ALERT_TYPE_NEW"),
        topic_duplicates=len(keys) - len(set(keys)),
        lost=set(keys) - set(delivered),
        receiver_duplicates=len(delivered) - len(set(delivered)),
        stations_final=final_stations,
    )


def assert_one_clean_event(ac: AlertCounts, stations: list[str]) -> None:
    """One event: exactly one NEW, versions 1..n each once on the topic and at the receiver."""
    assert len(ac.events) == 1, ac.topic
    assert ac.new == 1, ac.topic
    assert "ALERT_TYPE_CANCEL" not in {t for _e, _v, t, _n in ac.topic}, ac.topic
    assert ac.topic_duplicates == 0, ac.topic
    assert sorted(v for _e, v, _t, _n in ac.topic) == list(range(1, len(ac.topic) + 1)), ac.topic
    assert ac.lost == set(), f"never delivered: {sorted(ac.lost)}"
    assert ac.receiver_duplicates == 0, ac.delivered
    assert set(ac.delivered) <= {(e, v) for e, v, _t, _n in ac.topic}, ac.delivered
    assert ac.stations_final == set(stations), ac.stations_final


def window_counts(watcher: TopicWatcher, quake: Quake) -> tuple[int, int, int]:
    """(expected windows, windows never scored, scores beyond the first per window)."""
    expected = quake.expected_windows()
    got = Counter((s.station, s.window_end_time_ns) for s, _t in watcher.scores() if s.network == NET)
    missing = expected - set(got)
    return len(expected), len(missing), sum(c - 1 for c in got.values())


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A service's /metrics as {(sample name, labels): value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3.0).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric_sum(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


# --------------------------------------------------------------------------------- pipeline


@dataclass
class Crash:
    """A service that exited on its own."""

    service: str
    returncode: int | None
    at: float  # time.monotonic()
    log_tail: str


class FaultPipeline:
    """Durable broker, SeedLink test server, webhook receiver and the three services as processes."""

    MAX_RESTARTS = 3

    def __init__(
        self,
        run_dir: Path,
        quake: Quake,
        receiver: WebhookReceiver,
        *,
        alerting: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.quake = quake
        self.receiver = receiver
        self.broker = EmbeddedBroker(durable_dir=run_dir / "broker", log_path=run_dir / "tansu.log")
        self.feed = SeedLinkFeed()
        self.server = SeedLinkServer(self.feed)
        self.feeder = Feeder(self.feed, quake)
        self.state_file = run_dir / "seedlink-state.json"
        self.outbox = run_dir / "outbox.sqlite"
        self.alerting_flags = {
            "--restore-idle-s": "0.5",
            "--delivery-backoff-initial-s": "0.05",
            "--delivery-backoff-max-s": "0.5",
            "--delivery-connect-timeout-s": "1",
            "--delivery-read-timeout-s": "2",
            "--drain-s": "1",
            **(alerting or {}),
        }
        self.watcher: TopicWatcher | None = None
        self.services: dict[str, ServiceProcess] = {}
        self.stopped: dict[str, int | None] | None = None
        self.crashes: list[Crash] = []
        self._lock = threading.RLock()
        self._killed: set[str] = set()
        self._sup_stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="fault-supervisor", daemon=True)
        self.env = {"PYTHONPATH": str(REPO)}

    def _argv(self, name: str) -> list[str]:
        common = ["--bootstrap-servers", self.broker.bootstrap, "--log-level", "INFO"]
        if name == "ingest":
            streams = ",".join(f"{NET}_{s}:HH?" for s in self.quake.stations)
            return ["ingest", *common, "--server", self.server.address, "--streams", streams,
                    "--state-file", str(self.state_file), "--state-save-interval-s", "0.2",
                    "--reconnect-min-s", "0.2", "--reconnect-max-s", "1.0", "--connect-timeout-s", "2",
                    "--stall-timeout-s", "0"]  # fmt: skip
        if name == "detector":
            return ["detect", *common, "--intra-op-threads", "1", "--commit-interval-s", "0.5"]
        flags = [x for kv in self.alerting_flags.items() for x in kv]
        return ["alert", *common, "--stations", str(self.quake.csv), "--webhook-urls", self.receiver.url,
                "--outbox-db", f"sqlite:///{self.outbox}", *flags]  # fmt: skip

    def start_service(self, name: str) -> ServiceProcess:
        with self._lock:
            svc = ServiceProcess(name, self._argv(name), self.run_dir / f"{name}.log", free_port())
            self.services[name] = svc.start(self.env)
            self._killed.discard(name)
            return svc

    def kill(self, name: str) -> None:
        """SIGKILL, as ``kill -9``: no flush, no commit, no state save (the supervisor leaves it down)."""
        with self._lock:
            proc = self.services[name].proc
            assert proc is not None and proc.poll() is None, f"{name} is not running:\n{self.log(name)}"
            self._killed.add(name)
            proc.kill()
            proc.wait(10)

    def _supervise(self) -> None:
        """Like systemd's Restart=on-failure: a service that exits on its own is restarted at once
        (at most MAX_RESTARTS times) and the exit is recorded; tests assert there was none."""
        while not self._sup_stop.wait(0.2):
            with self._lock:
                for name, svc in list(self.services.items()):
                    if name in self._killed or svc.proc is None or svc.proc.poll() is None:
                        continue
                    self.crashes.append(Crash(name, svc.proc.returncode, time.monotonic(), svc.log_tail(30)))
                    if sum(c.service == name for c in self.crashes) <= self.MAX_RESTARTS:
                        self.start_service(name)
                    else:
                        self._killed.add(name)  # given up: check_alive fails the test

    def start(self) -> FaultPipeline:
        self.broker.start()
        self.server.start()
        self.watcher = TopicWatcher(self.broker.bootstrap).start()
        for name in ("ingest", "detector", "alerting"):
            self.start_service(name)
        self._supervisor.start()
        # A client without state starts at the server's newest record (SeedLink ``DATA`` without a
        # sequence number): the feed may only begin once the ingester's subscription is complete.
        subscribed = wait_until(
            lambda: any(line.upper() == "END" for _c, line in list(self.server.commands)), 90
        )
        assert subscribed, f"the ingester never completed its SeedLink subscription:\n{self.log('ingest')}"
        return self

    def check_alive(self) -> None:
        """Fail when a service crashed more often than the supervisor restarts it."""
        for name in self.services:
            n = sum(c.service == name for c in self.crashes)
            assert n <= self.MAX_RESTARTS, f"{name} exited {n} times:\n{self.crashes[-1].log_tail}"

    def crash_note(self) -> str:
        """The unexpected exits, for the table ("" when none)."""
        if not self.crashes:
            return ""
        return "; UNEXPECTED EXITS (supervisor restarted): " + ", ".join(
            f"{c.service} exit {c.returncode}" for c in self.crashes
        )

    def assert_no_crash(self) -> None:
        """No service may exit on its own during a fault (a supervisor would hide it otherwise)."""
        assert not self.crashes, "\n".join(
            f"{c.service} exited with {c.returncode}; its log:\n{c.log_tail}" for c in self.crashes
        )

    def metrics(self, name: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(self.services[name].http_port)

    def ready(self, name: str) -> bool:
        try:
            return (
                httpx.get(f"http://127.0.0.1:{self.services[name].http_port}/readyz", timeout=2.0).status_code
                == 200
            )
        except httpx.HTTPError:
            return False

    def log(self, name: str, lines: int = 40) -> str:
        return self.services[name].log_tail(lines)

    def state(self) -> dict[str, int]:
        """Acknowledged SeedLink position per station (the ingester's state file)."""
        try:
            doc = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v["seq"] for k, v in doc.get("streams", {}).items()}

    def ingest_caught_up(self) -> bool:
        return self.state() == self.feeder.last_seqs()

    def wait_until(self, cond: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.1) -> None:
        """Poll ``cond`` while every service stays alive; fail with the logs otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if cond():
                return
            time.sleep(poll_s)
        logs = "\n".join(f"--- {n}\n{s.log_tail(25)}" for n, s in self.services.items())
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")

    def wait_settled(self, timeout_s: float = 150.0, quiet_s: float = 5.0) -> None:
        """Everything fed, acknowledged, scored, and no new alert or delivery for ``quiet_s``."""
        assert self.watcher is not None
        expected = self.quake.expected_windows()
        self.wait_until(lambda: self.feeder.done, timeout_s, "the feeder")
        self.wait_until(self.ingest_caught_up, timeout_s, "ingest to acknowledge everything served")
        self.wait_until(lambda: expected <= self.watcher.windows(), timeout_s, "every window to be scored")
        last: list[object] = [None, time.monotonic()]

        def quiet() -> bool:
            now = (len(self.watcher.alerts()), len(self.receiver.snapshot()), self.receiver.requests)
            if now != last[0]:
                last[0], last[1] = now, time.monotonic()
            return now[0] > 0 and time.monotonic() - float(last[1]) >= quiet_s  # type: ignore[arg-type]

        self.wait_until(quiet, timeout_s, "alerts to settle")

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service (in parallel), then the server and the broker; idempotent."""
        if self.stopped is not None:
            return self.stopped
        t0 = time.monotonic()
        self._sup_stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(5)
        self.feeder.stop()
        threads, codes = [], {}
        for name, svc in self.services.items():
            t = threading.Thread(target=lambda n=name, s=svc: codes.__setitem__(n, s.stop()), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(20)
        t1 = time.monotonic()
        if self.watcher is not None:
            self.watcher.stop()
        t2 = time.monotonic()
        self.server.stop()
        t3 = time.monotonic()
        # Tansu often ignores SIGTERM for the full 10 s grace after a run (EmbeddedBroker.stop then
        # SIGKILLs it); its data are thrown away here, so kill it at once, then stop SeaweedFS.
        self.broker.kill()
        self.broker.stop()
        print(
            f"stop: services {t1 - t0:.1f} s, watcher {t2 - t1:.1f} s, server {t3 - t2:.1f} s, broker {time.monotonic() - t3:.1f} s"
        )
        self.stopped = codes
        return codes


def _need_weed() -> None:
    try:
        weed_binary()
    except BrokerStartError as exc:
        pytest.skip(f"the fault tests use the durable broker, which needs SeaweedFS: {exc}")


@pytest.fixture
def quake(shared: Path, tmp_path: Path) -> Quake:
    return build_quake(shared, tmp_path)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as rx:
        yield rx


@pytest.fixture
def make_pipeline(
    tmp_path: Path, quake: Quake, receiver: WebhookReceiver
) -> Iterator[Callable[..., FaultPipeline]]:
    """Builds and starts the pipeline (once per test) and always tears it down."""
    _need_weed()
    made: list[FaultPipeline] = []

    def make(**kw: object) -> FaultPipeline:
        pipe = FaultPipeline(tmp_path / "run", quake, receiver, **kw)  # type: ignore[arg-type]
        pipe.run_dir.mkdir(parents=True, exist_ok=True)
        made.append(pipe)
        return pipe.start()

    yield make
    for pipe in made:
        t0 = time.monotonic()
        codes = pipe.stop()
        print(f"teardown {time.monotonic() - t0:.1f} s, exit codes {codes}")


# --------------------------------------------------------------------------------- the table


@dataclass
class Row:
    fault: str
    observed: str
    packets: str  # lost / duplicated
    alerts: str  # lost / duplicated
    recovery: str


@dataclass
class Table:
    """The fault table's rows of one test, kept on its report (``user_properties``) so that the table is
    whole also when pytest-xdist runs the tests in worker processes."""

    node: pytest.Item

    def add(self, row: Row) -> None:
        self.node.user_properties.append((FAULT_ROW, asdict(row)))
        print(
            f"\nFAULT | {row.fault} | {row.observed} | packets {row.packets} | alerts {row.alerts} | {row.recovery}"
        )


FAULT_ROW = "fault_row"  # the key tests/conftest.py prints the fault table from (in the controller)


@pytest.fixture
def table(request: pytest.FixtureRequest) -> Table:
    return Table(request.node)
