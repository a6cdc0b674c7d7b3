"""Capacity benchmark: N simulated 3-component stations streaming live through the real pipeline.

For each N: a fresh embedded broker (Tansu), ``eew detect`` (and with ``--alerting`` also
``eew alert``) as separate processes exactly as deployed, and a feeder process that publishes
every station's previous second (3 packets of 100 samples at 100 Hz, ``WaveformPacket``,
``ingest_time_ns`` stamped at send) in real time, data time = wall clock. It prints numbers; it
is not a test.

Data: real recordings from ``$EEW_SHARED_DIR/data/nc_phasenet`` (read in place, never copied):
the 3-component ones (115 of 154). Noise is their real pre-P noise (samples 1-29 s, demeaned);
a station plays a sequence of different recordings' noise (never the same segment twice), each
scaled to the station's first one per component, joined by 1 s equal-power cross-fades at
staggered times. Events: every ``--event-every`` seconds an epicentre on the virtual network
(a jittered grid, 15 km spacing, written as the alerting service's station CSV); its
``--event-stations`` nearest stations play a real event recording (5 s of its pre-P noise, P,
coda), scaled by the same factor, placed so P arrives at origin + hypocentral distance / 6 km/s.

Arrival pattern: ``spread`` (default) sends each station at its own fixed phase within the
second, as independent data loggers would; ``burst`` sends every station at the second boundary.

Measured per N (steady state: data after the first ``--settle-s`` seconds):
  * window-scoring delay = scored_time_ns - ingest_time_ns of the packet that completed the
    window (from every StationScore on the scores topic, read after the run), p50/p99/max;
  * coverage of the expected (station, window) pairs; drain time after the feed stops;
  * the feeder's own lateness against its schedule (when it lags, the feeder is the bottleneck)
    and broker acknowledgement latency; CPU cores used by each process (/proc);
  * with ``--alerting``: alert latency (packet arrival -> alert created; created_time_ns -
    latest_ingest_time_ns) and its split at the score that completed the alert;
  * with ``--probe``: broker delivery latency (ingest -> a plain consumer receives the packet).
Real time = p99 delay < 1 s, coverage >= 99 %, drained within 3 s, feeder on schedule.

    .venv/bin/python bench/bench_capacity.py --stations 250 500 1000 2000 4000 --seconds 60
    .venv/bin/python bench/bench_capacity.py --stations 100 500 --alerting --probe --seconds 60
    .venv/bin/python bench/bench_capacity.py --stations 2000 --detectors 2 --threads 1
    .venv/bin/python bench/bench_capacity.py --stations 1000 --profile-s 20   # py-spy the detector
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NS = 1_000_000_000
FS = 100
NOISE_A, NOISE_Z = 100, 2900  # pre-P noise samples used (P at 3000)
XFADE = FS  # 1 s cross-fades
PRE_P = 500  # event segments start 5 s before P
SPACING_KM = 15.0
VP_KM_S = 6.0
DEPTH_KM = 8.0
LAT0, LON0 = 37.0, -120.0
KM_PER_DEG = 111.19


# ----------------------------------------------------------------------------------------------
# the virtual network and what each station plays (deterministic from N, seconds, seed)


@dataclass
class Plan:
    n: int
    seconds: int
    seed: int
    event_every: float
    event_stations: int
    xy_km: np.ndarray = field(init=False)  # (n, 2)
    events: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        side = math.ceil(math.sqrt(self.n))
        g = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[: self.n]
        self.xy_km = (g + rng.uniform(-0.3, 0.3, g.shape)) * SPACING_KM
        self.events = []
        t = 20.0
        while t + 8.0 < self.seconds:
            centre = self.xy_km[rng.integers(self.n)] + rng.uniform(-SPACING_KM / 2, SPACING_KM / 2, 2)
            d = np.hypot(*(self.xy_km - centre).T)
            near = np.argsort(d)[: self.event_stations]
            travel = np.hypot(d[near], DEPTH_KM) / VP_KM_S
            origin = t - float(travel.min())
            self.events.append(
                {
                    "origin_s": origin,
                    "x_km": float(centre[0]),
                    "y_km": float(centre[1]),
                    "stations": [int(k) for k in near],
                    "p_s": [origin + float(tt) for tt in travel],
                }
            )
            t += self.event_every

    @staticmethod
    def name(k: int) -> str:
        return f"S{k:04d}"

    def latlon(self, k: int) -> tuple[float, float]:
        x, y = self.xy_km[k]
        return LAT0 + y / KM_PER_DEG, LON0 + x / (KM_PER_DEG * math.cos(math.radians(LAT0)))

    def write_csv(self, path: Path) -> None:
        lines = ["network,station,location,latitude,longitude,elevation_m"]
        for k in range(self.n):
            lat, lon = self.latlon(k)
            lines.append(f"BN,{self.name(k)},,{lat:.5f},{lon:.5f},0")
        path.write_text("\n".join(lines) + "\n")


def load_recordings(shared: Path) -> list[np.ndarray]:
    """(3, 9001) float64 Z, N, E of every 3-component recording (file order of waveform.csv)."""
    folder = shared / "data" / "nc_phasenet"
    out = []
    for line in (folder / "waveform.csv").read_text().splitlines()[1:]:
        fname, _, _, chans = line.split(",")
        names = chans.split("_")
        if len(names) != 3:
            continue
        z = np.load(folder / "waveform_train" / fname)
        rows = {n[-1]: i for i, n in enumerate(names)}
        if set(rows) != {"Z", "N", "E"}:
            continue
        out.append(np.stack([z["data"][:, rows[c]] for c in "ZNE"]))
    return out


def _fade(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, np.pi / 2, n)
    return np.cos(t), np.sin(t)  # equal power: out**2 + in**2 == 1


def _put(out: np.ndarray, seg: np.ndarray, at: int) -> None:
    """Add ``seg`` at sample ``at`` with a cross-fade from what is there (clipped to ``out``)."""
    n = out.shape[1]
    a, z = max(at, 0), min(at + seg.shape[1], n)
    if a >= z:
        return
    seg = seg[:, a - at : z - at]
    f = min(XFADE, z - a)
    fo, fi = _fade(f)
    out[:, a : a + f] = out[:, a : a + f] * fo + seg[:, :f] * fi
    out[:, a + f : z] = seg[:, f:]


def build_streams(plan: Plan, recs: list[np.ndarray]) -> np.ndarray:
    """(n, 3, seconds*FS) float32: what every station sends."""
    n_samp = plan.seconds * FS
    out = np.zeros((plan.n, 3, n_samp), np.float32)
    noise = [r[:, NOISE_A:NOISE_Z] - r[:, NOISE_A:NOISE_Z].mean(axis=1, keepdims=True) for r in recs]
    rms = [np.maximum(x.std(axis=1), 1e-9) for x in noise]
    rng = np.random.default_rng(plan.seed + 1)
    block = NOISE_Z - NOISE_A
    step = block - XFADE
    level: list[np.ndarray] = []
    for k in range(plan.n):
        order = rng.permutation(len(recs))
        first = order[0]
        level.append(rms[first])
        row = np.zeros((3, n_samp))
        at = -int(rng.integers(step))  # stagger the joins between stations
        j = 0
        while at < n_samp:
            r = order[j % len(order)]
            _put(row, noise[r] * (rms[first] / rms[r])[:, None], at)
            at += step
            j += 1
        out[k] = row
    for ev in plan.events:
        for k, p_s in zip(ev["stations"], ev["p_s"], strict=True):
            r = int(rng.integers(len(recs)))
            seg = recs[r][:, 3000 - PRE_P :]
            seg = seg - seg[:, :PRE_P].mean(axis=1, keepdims=True)
            pre = np.maximum(recs[r][:, NOISE_A:NOISE_Z].std(axis=1), 1e-9)
            row = out[k].astype(np.float64)
            _put(row, seg * (level[k] / pre)[:, None], int(round(p_s * FS)) - PRE_P)
            out[k] = row
    return out


# ----------------------------------------------------------------------------------------------
# feeder (its own process)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


#: Tag of WaveformPacket.ingest_time_ns (field 11, varint): appended at send time. A protobuf
#: message may carry its fields in any order, so a pre-serialised packet + this field is the
#: packet with ingest_time_ns set (decode_packet reads it like any other).
INGEST_TAG = bytes([11 << 3])


def feeder_main(cfg: dict[str, Any]) -> None:
    """Publish every station's previous second, in real time; write stats to cfg['out'].

    With ``cfg["speed"]`` > 1 (the soak's compressed run) data time passes that many times faster than
    wall time: second s is sent at t0 + (s + 1) / speed and stamped so that the last one ends at the
    wall clock (data starts ``seconds * (1 - 1/speed)`` in the past, so nothing lies in the future).

    Packets are serialised before the start (``encode_packet``, ingest_time_ns appended at send
    time), so the feeder's cost during the run is the Kafka producer's alone. With
    ``cfg["period"]`` (the soak benchmark) only that many seconds are built and played in a loop
    for ``cfg["seconds"]``, and the packets sent so far are written to ``cfg["progress"]`` each
    second.
    """
    from services.common.codec import Packet, encode_packet
    from services.common.kafka import make_producer

    period = int(cfg.get("period") or cfg["seconds"])
    plan = Plan(cfg["n"], period, cfg["seed"], cfg["event_every"], cfg["event_stations"])
    streams = build_streams(plan, load_recordings(Path(cfg["shared"])))
    raw: list[list[tuple[bytes, bytes]]] = []  # per second: (key, value) of station-major packets
    keys = [f"BN.{plan.name(k)}..HH?".encode() for k in range(plan.n)]
    for s in range(plan.seconds):
        sec = []
        for k in range(plan.n):
            for c, comp in enumerate("ZNE"):
                p = Packet(
                    "BN", plan.name(k), "", "HH" + comp, 0, float(FS), streams[k, c, s * FS : (s + 1) * FS]
                )
                sec.append((keys[k], encode_packet(p)))
        raw.append(sec)
    del streams
    slices = cfg["slices"]
    by_slice = [list(range(j, plan.n, slices)) for j in range(slices)]  # station k: phase (k % slices)
    extra = {"linger_ms": cfg["linger_ms"]} if cfg.get("linger_ms") else {}
    producer = make_producer(cfg["bootstrap"], "bench-feeder", **extra)
    acks: list[float] = []
    lateness: list[float] = []
    sent = 0

    def track(t_sent: float):  # noqa: ANN202
        def done(_meta: Any) -> None:
            acks.append(time.monotonic() - t_sent)

        return done

    # start_time_ns (field 6, varint) was left 0, i.e. out of the serialised packet: it is
    # appended at send time like ingest_time_ns, once the start t0 is known
    t0_ns = (time.time_ns() // NS + 1) * NS
    speed = float(cfg.get("speed") or 1.0)
    data0_ns = t0_ns - int(cfg["seconds"] * NS * (1.0 - 1.0 / speed))
    Path(cfg["ready"] + ".tmp").write_text(json.dumps({"t0_ns": t0_ns}))
    os.replace(cfg["ready"] + ".tmp", cfg["ready"])
    start_tag = bytes([6 << 3])
    topic = cfg["topic"]
    cpu0, wall0 = time.process_time(), time.monotonic()
    progress = cfg.get("progress")
    for s in range(cfg["seconds"]):
        start = start_tag + _varint(data0_ns + s * NS)
        sec = raw[s % period]
        for j, stations in enumerate(by_slice):
            due_ns = t0_ns + int(((s + 1) * NS + j * NS // slices) / speed)
            delay = (due_ns - time.time_ns()) / NS
            if delay > 0:
                time.sleep(delay)
            lateness.append(max(0.0, -delay))
            for k in stations:
                for c in range(3):
                    key, value = sec[3 * k + c]
                    value = value + start + INGEST_TAG + _varint(time.time_ns())
                    fut = producer.send(topic, key=key, value=value)
                    sent += 1
                    if sent % 20 == 0:
                        fut.add_callback(track(time.monotonic()))
        if period == cfg["seconds"]:
            raw[s] = []
        if progress:
            Path(progress + ".tmp").write_text(str(sent))
            os.replace(progress + ".tmp", progress)
    producer.flush(60)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    producer.close(10)
    Path(cfg["out"]).write_text(
        json.dumps({"sent": sent, "cpu_s": cpu, "wall_s": wall, "acks": acks, "lateness": lateness})
    )


# ----------------------------------------------------------------------------------------------
# helpers


def pct(xs: Any, q: float) -> float:
    a = np.asarray(xs, float)
    return float(np.percentile(a, q)) if a.size else float("nan")


def cpu_s(pid: int) -> float:
    """utime + stime of a process (seconds)."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def busy_cores_s() -> float:
    """CPU seconds spent busy on the whole machine so far (all processes, /proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[str, float]:
    """Every unlabelled-or-labelled sample of a /metrics page (labels kept in the key)."""
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def hist_quantile(m: dict[str, float], name: str, q: float) -> float:
    """Quantile of a Prometheus histogram by linear interpolation inside its bucket."""
    buckets = []
    for key, v in m.items():
        mm = re.fullmatch(rf'{name}_bucket\{{le="([^"]+)"\}}', key)
        if mm:
            buckets.append((float(mm.group(1)), v))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    target = q * buckets[-1][1]
    lo_b, lo_c = 0.0, 0.0
    for b, c in buckets:
        if c >= target:
            if math.isinf(b):
                return lo_b
            return lo_b + (b - lo_b) * ((target - lo_c) / max(c - lo_c, 1e-12))
        lo_b, lo_c = b, c
    return float("nan")


def read_topic(bootstrap: str, topic: str, partitions: int, idle_s: float = 3.0) -> list[Any]:
    """Every record of ``topic`` (no group); reads until nothing arrives for ``idle_s``."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, max_poll_records=50_000,
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
    )  # fmt: skip
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out: list[Any] = []
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        for recs in c.poll(timeout_ms=300).values():
            out.extend(recs)
            last = time.monotonic()
    c.close()
    return out


class Probe(threading.Thread):
    """A plain consumer of the waveform topic: ingest -> received latency (the broker's share)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.stop = threading.Event()
        self.lat: list[float] = []

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from services.common.pb.eew.v1 import messages_pb2 as pb

        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, fetch_max_wait_ms=50)
        tps = [TopicPartition(self.topic, p) for p in range(12)]
        c.assign(tps)
        c.seek_to_end(*tps)
        msg = pb.WaveformPacket()
        n = 0
        while not self.stop.is_set():
            for recs in c.poll(timeout_ms=200).values():
                now = time.time_ns()
                for r in recs:
                    n += 1
                    if n % 10 == 0:
                        msg.ParseFromString(r.value)
                        self.lat.append((now - msg.ingest_time_ns) / NS)
        c.close()


# ----------------------------------------------------------------------------------------------
# one run


def run_once(n: int, a: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    from services.broker.embedded import EmbeddedBroker, free_port
    from services.common.pb.eew.v1 import messages_pb2 as pb
    from services.common.topics import ALERTS, SCORES, WAVEFORMS
    from services.pipeline.processes import ServiceProcess

    run_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan(n, a.seconds, a.seed, a.event_every, a.event_stations)
    plan.write_csv(run_dir / "stations.csv")
    res: dict[str, Any] = {
        "stations": n, "seconds": a.seconds, "arrival": a.arrival, "detectors": a.detectors, "threads": a.threads,
    }  # fmt: skip
    broker = EmbeddedBroker(log_path=run_dir / "broker.log").start()
    services: list[ServiceProcess] = []
    probe: Probe | None = None
    feeder: Any = None
    try:
        common = ["--bootstrap-servers", broker.bootstrap, "--log-level", "WARNING"]
        dets = [
            ServiceProcess(
                f"detector-{i}",
                ["detect", *common, "--intra-op-threads", str(a.threads), "--max-stations", str(n + 100),
                 *a.detector_arg],
                run_dir / f"detector-{i}.log",
                free_port(),
            )
            for i in range(a.detectors)
        ]  # fmt: skip
        for d in dets:
            services.append(d.start())
        det = dets[0]

        def det_metrics() -> dict[str, float]:
            """The detectors' /metrics summed (one process: its own)."""
            total: dict[str, float] = defaultdict(float)
            for d in dets:
                for k, v in scrape(d.http_port).items():
                    total[k] += v
            return total

        if a.alerting:
            alert = ServiceProcess(
                "alerting",
                ["alert", *common, "--stations", str(run_dir / "stations.csv"), *a.alerting_arg],
                run_dir / "alerting.log",
                free_port(),
            )
            services.append(alert.start())
        # the feeder builds its streams first (seconds at large N), then starts on a whole second
        ctx = mp.get_context("spawn")
        ready, out = run_dir / "feeder.ready", run_dir / "feeder.json"
        for f in (ready, out):
            f.unlink(missing_ok=True)
        cfg = {
            "n": n, "seconds": a.seconds, "seed": a.seed, "event_every": a.event_every,
            "event_stations": a.event_stations, "shared": str(a.shared), "bootstrap": broker.bootstrap,
            "topic": WAVEFORMS.name, "slices": 1 if a.arrival == "burst" else a.slices,
            "ready": str(ready), "out": str(out),
        }  # fmt: skip
        feeder = ctx.Process(target=feeder_main, args=(cfg,), name="bench-feeder")
        feeder.start()
        deadline = time.monotonic() + 120
        while not ready.exists():
            if not feeder.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("feeder did not start")
            time.sleep(0.1)
        t0_ns = json.loads(ready.read_text())["t0_ns"]
        t_start = t0_ns / NS + 1  # first packets due
        if a.probe:
            probe = Probe(broker.bootstrap, WAVEFORMS.name)
            probe.start()
        pids = {"broker": broker.proc.pid, "feeder": feeder.pid}
        pids.update({d.name: d.proc.pid for d in dets})
        if a.alerting:
            pids["alerting"] = services[1].proc.pid
        settle_at = t_start + a.settle_s
        end_at = t_start + a.seconds - 2  # the steady period ends before the feeder's last second
        samples: list[dict[str, float]] = []
        cpu_a: dict[str, float] = {}
        scored_a = math.nan
        wall_a = 0.0
        profiled = False
        while time.time() < end_at + 0.5 and feeder.is_alive():
            for s in services:
                if not s.running():
                    raise RuntimeError(f"{s.name} exited:\n{s.log_tail()}")
            now = time.time()
            if not cpu_a and now >= settle_at:
                cpu_a, wall_a = {k: cpu_s(p) for k, p in pids.items()}, time.monotonic()
                cpu_a["machine"], cpu_a["bench"] = busy_cores_s(), time.process_time()
                scored_a = det_metrics().get("eew_detector_windows_scored_total", math.nan)
            m = det_metrics()
            samples.append({"t": now, "backlog": m.get("eew_detector_backlog_stations", 0.0),
                            "scored": m.get("eew_detector_windows_scored_total", 0.0),
                            "paused": m.get("eew_detector_paused", 0.0)})  # fmt: skip
            if a.profile_s and not profiled and now >= settle_at + 2:
                profiled = True
                threading.Thread(
                    target=profile, args=(det.proc.pid, a.profile_s, run_dir, a.profile_idle), daemon=True
                ).start()
            time.sleep(1.0)
        cpu_b, wall_b = {k: cpu_s(p) for k, p in pids.items()}, time.monotonic()
        cpu_b["machine"], cpu_b["bench"] = busy_cores_s(), time.process_time()
        scored_b = det_metrics().get("eew_detector_windows_scored_total", math.nan)
        if cpu_a:
            # CPU cost per scored window (3 packets): independent of what else the machine runs
            w = max(scored_b - scored_a, 1.0)
            res["cpu_ms_per_window"] = {k: 1e3 * (cpu_b[k] - cpu_a[k]) / w for k in pids}
        cores = {k: (cpu_b[k] - cpu_a.get(k, math.nan)) / max(wall_b - wall_a, 1e-9) for k in cpu_b}
        # what the rest of the machine used meanwhile (other people's work on a shared machine)
        cores["others"] = cores.pop("machine") - sum(v for v in cores.values())
        cores["detector"] = sum(cores[d.name] for d in dets)
        res["cpu_cores"] = cores
        if "cpu_ms_per_window" in res:
            res["cpu_ms_per_window"]["detector"] = sum(res["cpu_ms_per_window"][d.name] for d in dets)
        feeder.join(120)
        if probe is not None:
            probe.stop.set()
            probe.join(10)
        # drain: until the detector's scored count stops moving
        t_feed_end = time.time()
        last, last_change = -1.0, time.monotonic()
        while time.monotonic() - last_change < 2.0 and time.time() - t_feed_end < a.drain_s:
            v = det_metrics().get("eew_detector_windows_scored_total", 0.0)
            if v != last:
                last, last_change = v, time.monotonic()
            time.sleep(0.25)
        dm = det_metrics()
        if a.alerting:
            time.sleep(2.0)  # the alerting's hold/ttl settles
            am_ = scrape(services[-1].http_port)
            res["alerting_counts"] = {
                k.removeprefix("eew_alerting_").removesuffix("_total"): v
                for k, v in am_.items()
                if k.startswith(("eew_alerting_scores_", "eew_alerting_triggers"))
            }
        for s in reversed(services):
            s.stop()
        services = []
        fstats = json.loads(out.read_text()) if out.exists() else {}
        # ---- scores
        scores = read_topic(broker.bootstrap, SCORES.name, SCORES.partitions)
        settle_ns = int((a.settle_s + 1) * NS) + t0_ns
        delays, seen, last_scored, trig = [], set(), 0, 0
        per_second: dict[int, list[float]] = defaultdict(list)
        msg = pb.StationScore()
        score_of_ingest: dict[int, int] = {}
        triggered: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # (window_end, ingest, scored)
        in_events = {plan.name(k) for ev in plan.events for k in ev["stations"]}
        noise_trig = 0  # trigger episodes (rising edges) at stations no planned event reaches
        was_on: dict[str, bool] = {}
        for r in scores:
            msg.ParseFromString(r.value)
            if msg.station not in in_events:
                noise_trig += msg.triggered and not was_on.get(msg.station, False)
                was_on[msg.station] = msg.triggered
            last_scored = max(last_scored, msg.scored_time_ns)
            trig += msg.triggered
            if msg.triggered and a.alerting:
                triggered[msg.station].append(
                    (msg.window_end_time_ns, msg.ingest_time_ns, msg.scored_time_ns)
                )
            if a.alerting:
                score_of_ingest[msg.ingest_time_ns] = msg.scored_time_ns
            if msg.window_end_time_ns < settle_ns:
                continue
            seen.add((msg.station, msg.window_end_time_ns))
            d = (msg.scored_time_ns - msg.ingest_time_ns) / NS
            delays.append(d)
            per_second[(msg.window_end_time_ns - t0_ns) // NS].append(d)
        first_end = int(a.settle_s + 1)
        expected = n * (a.seconds - first_end + 1)
        secs = sorted(per_second)
        third = max(1, len(secs) // 3)
        res.update(
            scores=len(scores),
            triggered_scores=trig,
            coverage=len(seen) / max(expected, 1),
            delay_p50=pct(delays, 50),
            delay_p99=pct(delays, 99),
            delay_max=pct(delays, 100),
            delay_p50_first_third=pct([d for s in secs[:third] for d in per_second[s]], 50),
            delay_p50_last_third=pct([d for s in secs[-third:] for d in per_second[s]], 50),
            drain_s=max(0.0, (last_scored - t_feed_end * NS) / NS) if last_scored else float("nan"),
            max_backlog=max((s["backlog"] for s in samples if s["t"] >= settle_at), default=float("nan")),
            paused_samples=sum(s["paused"] > 0 for s in samples if s["t"] >= settle_at),
            inference_p50=hist_quantile(dm, "eew_detector_inference_seconds", 0.5),
            inference_p99=hist_quantile(dm, "eew_detector_inference_seconds", 0.99),
            batch_mean=dm.get("eew_detector_batch_size_sum", 0) / max(dm.get("eew_detector_batch_size_count", 0), 1),
            detector_processing_p99_hist=hist_quantile(dm, "eew_detector_processing_latency_seconds", 0.99),
            feeder_sent=fstats.get("sent", 0),
            feeder_cpu_cores=fstats.get("cpu_s", math.nan) / max(fstats.get("wall_s", math.nan), 1e-9),
            feeder_late_p99=pct(fstats.get("lateness", []), 99),
            feeder_late_max=pct(fstats.get("lateness", []), 100),
            ack_p50=pct(fstats.get("acks", []), 50),
            ack_p99=pct(fstats.get("acks", []), 99),
        )  # fmt: skip
        if probe is not None:
            res.update(broker_p50=pct(probe.lat, 50), broker_p99=pct(probe.lat, 99))
        if a.alerting:
            alerts = read_topic(broker.bootstrap, ALERTS.name, ALERTS.partitions, idle_s=2.0)
            tot, det_part, alert_part, kinds = [], [], [], defaultdict(int)
            new_tot, new_det, new_assoc = [], [], []
            slow: list[tuple[float, str, str]] = []
            am = pb.Alert()
            lines = []
            for r in alerts:
                am.ParseFromString(r.value)
                kinds[pb.AlertType.Name(am.type).removeprefix("ALERT_TYPE_")] += 1
                lines.append(
                    f"{am.created_time_ns} {am.event_id} v{am.version} {len(am.stations)} stations "
                    + (f"located +-{am.location_uncertainty_km:.1f} km" if am.has_location else "unlocated")
                    + f" | {am.reason} | " + ",".join(st.station for st in am.stations)
                )
                if am.type == pb.ALERT_TYPE_NEW:
                    # the declaring score: of each listed station's first triggered score at or after
                    # its P time (and before the alert), the one scored last
                    firsts = []
                    for st in am.stations:
                        cand = [
                            t
                            for t in triggered.get(st.station, [])
                            if t[0] >= st.p_time_ns and t[2] <= am.created_time_ns
                        ]
                        if cand:
                            firsts.append(min(cand))
                    if firsts:
                        _, ing, sc_t = max(firsts, key=lambda t: t[2])
                        new_tot.append((am.created_time_ns - ing) / NS)
                        new_det.append((sc_t - ing) / NS)
                        new_assoc.append((am.created_time_ns - sc_t) / NS)
                if am.latest_ingest_time_ns <= 0:
                    continue
                tot.append((am.created_time_ns - am.latest_ingest_time_ns) / NS)
                slow.append((tot[-1], pb.AlertType.Name(am.type).removeprefix("ALERT_TYPE_"), am.reason[:90]))
                sc = score_of_ingest.get(am.latest_ingest_time_ns)
                if sc is not None:
                    det_part.append((sc - am.latest_ingest_time_ns) / NS)
                    alert_part.append((am.created_time_ns - sc) / NS)
            (run_dir / "alerts.txt").write_text("\n".join(sorted(lines)) + "\n")
            res.update(
                noise_triggers=noise_trig,
                noise_station_hours=(n - len(in_events)) * a.seconds / 3600.0,
                alerts=dict(kinds),
                slowest_alerts=sorted(slow, reverse=True)[:3],
                events_planned=len(plan.events),
                alert_p50=pct(tot, 50),
                alert_p99=pct(tot, 99),
                alert_max=pct(tot, 100),
                alert_detector_p50=pct(det_part, 50),
                alert_detector_p99=pct(det_part, 99),
                alert_assoc_p50=pct(alert_part, 50),
                alert_assoc_p99=pct(alert_part, 99),
                new_alerts=len(new_tot),
                new_p50=pct(new_tot, 50),
                new_max=pct(new_tot, 100),
                new_detector_p50=pct(new_det, 50),
                new_detector_max=pct(new_det, 100),
                new_assoc_p50=pct(new_assoc, 50),
                new_assoc_max=pct(new_assoc, 100),
            )
        late = res["feeder_late_p99"] > 0.5
        res["feeder_bound"] = bool(late)
        res["real_time"] = bool(
            res["delay_p99"] < 1.0 and res["coverage"] >= 0.99 and res["drain_s"] < 3.0 and not late
        )
        return res
    finally:
        if probe is not None:
            probe.stop.set()
        for s in reversed(services):
            s.stop()
        if feeder is not None and feeder.is_alive():
            feeder.terminate()
            feeder.join(10)
        broker.stop()


def profile(pid: int, seconds: float, run_dir: Path, idle: bool = False) -> None:
    """py-spy the detector for ``seconds`` (CPU samples; with ``idle`` also waiting threads, i.e.
    wall time); write the collapsed stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = run_dir / "detector.pyspy.txt"
    cmd = [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50", "--nonblocking",
           "-f", "raw", "-o", str(out), *(["--idle", "--threads"] if idle else [])]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        (run_dir / "detector.pyspy.err").write_text(r.stdout + r.stderr)


def summarize_profile(path: Path, top: int = 18) -> str:
    """Inclusive share of the samples per function (collapsed stacks from py-spy -f raw)."""
    if not path.exists():
        return "  (no profile: see detector.pyspy.err)"
    total = 0
    incl: dict[str, int] = defaultdict(int)
    self_: dict[str, int] = defaultdict(int)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        total += c
        frames = [re.sub(r" \(.*?/([^/]+\.py):\d+\)", r" (\1)", f) for f in stack.split(";")]
        for f in set(frames):
            incl[f] += c
        self_[frames[-1]] += c
    lines = [f"  {total} samples; inclusive % / self % by function:"]
    for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * c / total:5.1f} {100 * self_.get(f, 0) / total:5.1f}  {f[:110]}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def inference_sweep(threads: list[int], seconds: float) -> None:
    """Windows/s of the shipped model on ORT CPU for batch 1..256 (one call = newest 1 s chunk of
    each station, state carried), per intra-op thread count."""
    from models.runtime import StreamingModel

    batches = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    print("\n| intra-op threads | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---:|" + "---:|" * len(batches))
    rng = np.random.default_rng(0)
    for t in threads:
        m = StreamingModel(providers=["CPUExecutionProvider"], intra_op_threads=t)
        cells = []
        for b in batches:
            wave = (rng.standard_normal((b, 3, m.contract.chunk_samples)) * 300.0).astype(np.float32)
            state = m.step(wave, m.initial_state(b)).state
            n, t0 = 0, time.perf_counter()
            calls = []
            while time.perf_counter() - t0 < seconds:
                c = time.perf_counter()
                state = m.step(wave, state).state
                calls.append(time.perf_counter() - c)
                n += 1
            dt = time.perf_counter() - t0
            cells.append(f"{n * b / dt:,.0f} ({1e3 * float(np.median(calls)):.2f} ms)")
        print(f"| {t} | " + " | ".join(cells) + " |", flush=True)
    print("windows/s (median call time); a window = one station's newest 1 s chunk")


def print_table(rows: list[dict[str, Any]], alerting: bool) -> None:
    print("\n| stations | detectors x ORT threads | packets/s | real time | window-scoring delay p50 / p99 / max (s) | coverage | "
          "drain (s) | max backlog | inference p50 / p99 (ms) | mean batch | feeder late p99 (s) | "
          "CPU cores det / broker / feeder" + (" / alert" if alerting else "") + " | others' cores |")  # fmt: skip
    print("|---:|---:|---:|:---:|---|---:|---:|---:|---|---:|---:|---|---:|")
    for r in rows:
        cc = r["cpu_cores"]
        cores = f"{cc['detector']:.2f} / {cc['broker']:.2f} / {cc['feeder']:.2f}"
        if alerting:
            cores += f" / {cc.get('alerting', float('nan')):.2f}"
        print(
            f"| {r['stations']} | {r['detectors']} x {r['threads'] or 'default'} | {3 * r['stations']} | "
            f"{'yes' if r['real_time'] else 'NO'}"
            f"{' (feeder-bound)' if r['feeder_bound'] else ''} | "
            f"{r['delay_p50']:.3f} / {r['delay_p99']:.3f} / {r['delay_max']:.3f} | {100 * r['coverage']:.1f} % | "
            f"{r['drain_s']:.1f} | {r['max_backlog']:.0f} | "
            f"{1e3 * r['inference_p50']:.0f} / {1e3 * r['inference_p99']:.0f} | {r['batch_mean']:.0f} | "
            f"{r['feeder_late_p99']:.2f} | {cores} | {cc.get('others', math.nan):.2f} |"
        )
    if alerting:
        print("\n| stations | broker ack p50 / p99 (ms) | ingest -> consumer p50 / p99 (ms) | "
              "ingest -> score p50 / p99 (ms) | score -> alert p50 / p99 (ms) | "
              "ingest -> alert p50 / p99 / max (ms) | NEW alerts: declaring packet -> alert p50 / max (ms) "
              "(detector part, alerting part p50) | alerts (planned events) |")  # fmt: skip
        print("|---:|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['stations']} | {1e3 * r['ack_p50']:.0f} / {1e3 * r['ack_p99']:.0f} | "
                f"{1e3 * r.get('broker_p50', math.nan):.0f} / {1e3 * r.get('broker_p99', math.nan):.0f} | "
                f"{1e3 * r['delay_p50']:.0f} / {1e3 * r['delay_p99']:.0f} | "
                f"{1e3 * r['alert_assoc_p50']:.0f} / {1e3 * r['alert_assoc_p99']:.0f} | "
                f"{1e3 * r['alert_p50']:.0f} / {1e3 * r['alert_p99']:.0f} / {1e3 * r['alert_max']:.0f} | "
                f"{1e3 * r['new_p50']:.0f} / {1e3 * r['new_max']:.0f} ({1e3 * r['new_detector_p50']:.0f}, "
                f"{1e3 * r['new_assoc_p50']:.0f}) | "
                f"{r['alerts']} ({r['events_planned']}) |"
            )
        for r in rows:
            if "noise_triggers" in r:
                print(f"  noise triggers at {r['stations']}: {r['noise_triggers']} episodes at stations no "
                      f"planned event reaches ({r['noise_station_hours']:.1f} station-hours)")  # fmt: skip
            for lat, kind, reason in r.get("slowest_alerts", []):
                print(f"  slowest at {r['stations']}: {1e3 * lat:.0f} ms {kind} ({reason})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    ap.add_argument("--seconds", type=int, default=60, help="seconds of data streamed per run")
    ap.add_argument("--settle-s", type=float, default=15.0, help="start-up seconds left out of the stats")
    ap.add_argument(
        "--drain-s", type=float, default=30.0, help="longest wait for the detector after the feed"
    )
    ap.add_argument("--arrival", choices=["spread", "burst"], default="spread")
    ap.add_argument("--slices", type=int, default=20, help="send slots per second in 'spread' arrival")
    ap.add_argument("--detectors", type=int, default=1, help="eew detect processes in one consumer group")
    ap.add_argument(
        "--threads", type=int, default=0, help="detector ONNX Runtime intra-op threads (0: default)"
    )
    ap.add_argument("--alerting", action="store_true", help="also run eew alert (latency breakdown)")
    ap.add_argument("--probe", action="store_true", help="measure ingest -> consumer with a plain consumer")
    ap.add_argument("--event-every", type=float, default=12.0)
    ap.add_argument("--event-stations", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector-arg", action="append", default=[], help="extra eew detect argument")
    ap.add_argument("--alerting-arg", action="append", default=[], help="extra eew alert argument")
    ap.add_argument("--profile-s", type=float, default=0.0, help="py-spy the detector this long")
    ap.add_argument("--profile-idle", action="store_true", help="py-spy wall time (waits too), per thread")
    ap.add_argument(
        "--inference", type=int, nargs="*", default=None, metavar="THREADS",
        help="only the ORT CPU inference sweep (batch 1..256) for these intra-op thread counts",
    )  # fmt: skip
    ap.add_argument("--stop-after-fail", action="store_true", help="stop the search at the first miss")
    ap.add_argument("--run-dir", type=Path, default=None, help="logs (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="append the results as JSON lines")
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("EEW_SHARED_DIR", REPO.parent / "shared"))
    )
    a = ap.parse_args(argv)
    os.chdir(REPO)
    if a.inference is not None:
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()[0]:.2f}")
        inference_sweep(a.inference or [1, 2], 3.0)
        return 0
    if not (a.shared / "data" / "nc_phasenet").is_dir():
        print(f"no real data at {a.shared}/data/nc_phasenet (set EEW_SHARED_DIR)", file=sys.stderr)
        return 2
    base = a.run_dir or Path(tempfile.mkdtemp(prefix="eew-capacity-"))
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; {a.seconds} s per run, arrival {a.arrival}, detector intra-op threads "
        f"{a.threads or 'default'}; logs in {base}",
        flush=True,
    )
    rows = []
    for n in a.stations:
        t = time.monotonic()
        r = run_once(n, a, base / f"n{n}")
        r["load_before"] = os.getloadavg()[0]
        rows.append(r)
        print(
            f"  N={n}: real time {'yes' if r['real_time'] else 'NO'}, delay p50 {r['delay_p50']:.3f} p99 "
            f"{r['delay_p99']:.3f} s, coverage {100 * r['coverage']:.1f} %, drain {r['drain_s']:.1f} s, "
            f"feeder late p99 {r['feeder_late_p99']:.2f} s, cores {json.dumps({k: round(v, 2) for k, v in r['cpu_cores'].items()})} "
            f"CPU ms per window {json.dumps({k: round(v, 3) for k, v in r.get('cpu_ms_per_window', {}).items()})} "
            f"({time.monotonic() - t:.0f} s)",
            flush=True,
        )
        if a.profile_s:
            print(summarize_profile(base / f"n{n}" / "detector.pyspy.txt"), flush=True)
        if a.json:
            with a.json.open("a") as f:
                f.write(json.dumps(r) + "\n")
        if a.stop_after_fail and not r["real_time"]:
            break
    print_table(rows, a.alerting)
    return 0


if __name__ == "__main__":
    sys.exit(main())
