"""Soak benchmark: the whole pipeline for an hour (or more) at N stations; does anything grow?

Runs ``bench_capacity``'s live set-up (its synthetic stations and feeder, ``eew detect`` and
``eew alert`` as separate processes, exactly as deployed) against the embedded broker, by default
in durable mode with its retention janitor, with the feeder looping ``--period-s`` seconds of
pre-built data for ``--minutes``. Every ``--sample-s`` it records:

  * resident memory (RSS) of every process: tansu, weed (SeaweedFS), detector, alerting, feeder;
  * the broker's disk footprint (its data folder) and what the janitor removed;
  * lag: waveform packets sent by the feeder but not yet consumed by the detector, scores sent by
    the detector but not yet consumed by the alerting service, and the detector's backlog.

It prints, per process, the memory slope (MB per hour, least squares over the samples after
``--warmup-min``), first/last/max after warm-up; the broker's disk slope; the largest lag; and the
end-of-run counts (nothing lost: every packet sent consumed, every score sent consumed, no dead
letters or decode errors). Samples go to ``RUN_DIR/samples.jsonl``, the summary to
``RUN_DIR/summary.json`` (and ``--json``).

Compressed time (``--speed X``): the feeder sends X seconds of data per wall second, stamped so that
the run's data ends at the wall clock (``--minutes 60 --speed 24`` is a day of data time in an hour at
X times the stations' data rate: ``--stations 40 --speed 24`` loads the machine like 960 stations).
What grows with data time rather than wall time (event history, per-event state, the outbox, the
broker's data) grows X times faster; the summary gives slopes per wall hour and per data hour.

Compressed retention: the soak's default retention is ``--retention-s`` (600 s) for waveforms and
scores instead of ``topics.py``'s 24 h / 7 d, so the broker reaches the steady state a 24 h
retention reaches after a day (written = expired) within the first quarter of an hour: a flat disk
and broker memory after that is the 24 h equivalent.

    nice -n 10 .venv/bin/python bench/bench_soak.py --stations 1000 --minutes 60
    .venv/bin/python bench/bench_soak.py --stations 100 --minutes 5 --warmup-min 1 --retention-s 60
    .venv/bin/python bench/bench_soak.py --memory ...   # the memory engine, for comparison
    .venv/bin/python bench/bench_soak.py --tansu-facts 100 300 1000 2000   # retention.ms, fetch vs objects
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_capacity import Plan, feeder_main, scrape  # noqa: E402

MB = 1024 * 1024

#: ``sitecustomize`` for the alerting process with ``--trace-alerting``: tracemalloc snapshots
#: every EEW_SOAK_TRACE_S seconds into EEW_SOAK_TRACE_DIR (what grows, by allocation site).
TRACER = """
import os, threading, time, tracemalloc
_dir = os.environ.get("EEW_SOAK_TRACE_DIR")
if _dir:
    tracemalloc.start(8)
    def _dump():
        i = 0
        while True:
            time.sleep(float(os.environ.get("EEW_SOAK_TRACE_S", "120")))
            tracemalloc.take_snapshot().dump(os.path.join(_dir, "snap-%03d.pickle" % i))
            i += 1
    threading.Thread(target=_dump, name="soak-tracemalloc", daemon=True).start()
"""


def rss_mb(pid: int) -> float:
    from services.broker.embedded import rss_bytes

    return rss_bytes(pid) / MB


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against ts (seconds), per hour."""
    if len(ts) < 3:
        return math.nan
    t = np.asarray(ts, float) / 3600.0
    return float(np.polyfit(t - t[0], np.asarray(ys, float), 1)[0])


def run(a: argparse.Namespace) -> dict[str, Any]:
    from services.broker.embedded import EmbeddedBroker, free_port
    from services.common.topics import SCORES, WAVEFORMS
    from services.pipeline.processes import ServiceProcess

    run_dir = a.run_dir or Path(tempfile.mkdtemp(prefix="eew-soak-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds = int(a.minutes * 60 * a.speed)  # data seconds
    plan = Plan(a.stations, a.period_s, a.seed, a.event_every, a.event_stations)
    plan.write_csv(run_dir / "stations.csv")
    retention = {WAVEFORMS.name: int(a.retention_s * 1000), SCORES.name: int(a.retention_s * 1000)}
    broker = EmbeddedBroker(
        durable_dir=None if a.memory else run_dir / "broker",
        log_path=run_dir / "broker.log",
        retention_ms=retention,
        retention_interval_s=a.janitor_s,
    ).start()
    services: list[ServiceProcess] = []
    feeder: Any = None
    samples_path = run_dir / "samples.jsonl"
    print(f"soak: {a.stations} stations, {a.minutes:g} min at {a.speed:g}x data time, broker {'memory' if a.memory else 'durable'}, "
          f"retention {a.retention_s:g} s, run dir {run_dir}", flush=True)  # fmt: skip
    try:
        common = ["--bootstrap-servers", broker.bootstrap, "--log-level", "WARNING"]
        det = ServiceProcess(
            "detector",
            ["detect", *common, "--intra-op-threads", "1", "--max-stations", str(a.stations + 100)],
            run_dir / "detector.log",
            free_port(),
        ).start()
        services.append(det)
        env: dict[str, str] = {}
        if a.trace_alerting:
            trace = run_dir / "trace"
            trace.mkdir(exist_ok=True)
            (trace / "sitecustomize.py").write_text(TRACER)
            env = {
                "PYTHONPATH": os.pathsep.join([str(trace), os.environ.get("PYTHONPATH", "")]),
                "EEW_SOAK_TRACE_DIR": str(trace),
                "EEW_SOAK_TRACE_S": str(a.trace_s),
            }
        alert = ServiceProcess(
            "alerting",
            ["alert", *common, "--stations", str(run_dir / "stations.csv"),
             "--outbox-db", f"sqlite:///{run_dir.resolve()}/outbox.sqlite", *a.alerting_arg],
            run_dir / "alerting.log",
            free_port(),
        ).start(env)  # fmt: skip
        services.append(alert)
        ready, out, progress = run_dir / "feeder.ready", run_dir / "feeder.json", run_dir / "feeder.progress"
        for f in (ready, out, progress):
            f.unlink(missing_ok=True)
        cfg = {
            "n": a.stations, "seconds": seconds, "period": a.period_s, "seed": a.seed,
            "event_every": a.event_every, "event_stations": a.event_stations, "shared": str(a.shared),
            "bootstrap": broker.bootstrap, "topic": WAVEFORMS.name, "slices": a.slices,
            "ready": str(ready), "out": str(out), "progress": str(progress), "linger_ms": a.linger_ms,
            "speed": a.speed,
        }  # fmt: skip
        feeder = mp.get_context("spawn").Process(target=feeder_main, args=(cfg,), name="soak-feeder")
        feeder.start()
        deadline = time.monotonic() + 300
        while not ready.exists():
            if not feeder.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("feeder did not start")
            time.sleep(0.2)
        t0 = json.loads(ready.read_text())["t0_ns"] / 1e9 + 1
        pids = {"detector": det.proc.pid, "alerting": alert.proc.pid, "feeder": feeder.pid}
        samples: list[dict[str, Any]] = []
        next_at = time.time()
        with samples_path.open("w") as fh:
            while feeder.is_alive():
                for s in services:
                    if not s.running():
                        raise RuntimeError(f"{s.name} exited:\n{s.log_tail()}")
                now = time.time()
                if now < next_at:
                    time.sleep(min(1.0, next_at - now))
                    continue
                next_at += a.sample_s
                samples.append(sample(now - t0, broker, pids, det.http_port, alert.http_port, progress))
                fh.write(json.dumps(samples[-1]) + "\n")
                fh.flush()
                if len(samples) % max(1, int(300 / a.sample_s)) == 0:
                    print(progress_line(samples[-1]), flush=True)
        feeder.join(60)
        # drain: until the alerting service has consumed every score the detector sent
        end = time.monotonic() + a.drain_s
        last = sample(time.time() - t0, broker, pids, det.http_port, alert.http_port, progress)
        while time.monotonic() < end and (last["lag_waveforms"] > 0 or last["lag_scores"] > 0):
            time.sleep(1.0)
            last = sample(time.time() - t0, broker, pids, det.http_port, alert.http_port, progress)
        return summarize(
            a, samples, last, broker, run_dir, json.loads(out.read_text()) if out.exists() else {}
        )
    finally:
        for s in reversed(services):
            s.stop()
        if feeder is not None and feeder.is_alive():
            feeder.terminate()
            feeder.join(10)
        broker.stop()


def sample(
    t: float, broker: Any, pids: dict[str, int], det_port: int, alert_port: int, progress: Path
) -> dict[str, Any]:
    """One row: RSS of every process, broker footprint, counters and lag."""
    fp = broker.footprint()
    row: dict[str, Any] = {"t": round(t, 1)}
    for k, v in fp.items():
        if k.endswith("_rss"):
            row["rss_" + k.removesuffix("_rss")] = round(v / MB, 2)
    row["disk_mb"] = round(fp.get("disk", 0) / MB, 2)
    row.update({f"rss_{k}": round(rss_mb(p), 2) for k, p in pids.items()})
    dm, am = scrape(det_port), scrape(alert_port)
    try:
        sent = int(progress.read_text())
    except (OSError, ValueError):
        sent = 0
    reg = broker.metrics.registry
    row.update(
        sent=sent,
        det_in=dm.get("eew_detector_packets_in_total", 0.0),
        scored=dm.get("eew_detector_windows_scored_total", 0.0),
        scores_acked=dm.get("eew_detector_scores_acked_total", 0.0),
        alert_in=am.get("eew_alerting_scores_in_total", 0.0),
        backlog=dm.get("eew_detector_backlog_stations", 0.0),
        deleted_objects=total(reg, "eew_broker_retention_deleted_objects_total"),
        deleted_mb=round(total(reg, "eew_broker_retention_deleted_bytes_total") / MB, 2),
        janitor_errors=total(reg, "eew_broker_retention_errors_total"),
        deadletters=sum(v for k, v in dm.items() if k.startswith("eew_detector_deadletters_total"))
        + sum(v for k, v in am.items() if k.startswith("eew_alerting_deadletters_total")),
        decode_errors=sum(v for k, v in dm.items() if k.startswith("eew_detector_decode_errors_total"))
        + sum(v for k, v in am.items() if k.startswith("eew_alerting_decode_errors_total")),
        alerts=sum(v for k, v in am.items() if k.startswith("eew_alerts_out_total")),
    )
    # the feeder's count is written once a second: a second's packets may be in flight
    row["lag_waveforms"] = max(0.0, row["sent"] - row["det_in"])
    row["lag_scores"] = max(0.0, row["scores_acked"] - row["alert_in"])
    return row


def total(registry: Any, sample_name: str) -> float:
    """Sum of a sample over all its labels in a prometheus registry."""
    return sum(s.value for m in registry.collect() for s in m.samples if s.name == sample_name)


def progress_line(r: dict[str, Any]) -> str:
    rss = " ".join(f"{k[4:]}={v:.0f}" for k, v in r.items() if k.startswith("rss_"))
    return (
        f"t={r['t'] / 60:5.1f} min  RSS MB {rss}  disk={r['disk_mb']:.0f} MB  "
        f"lag wf={r['lag_waveforms']:.0f} sc={r['lag_scores']:.0f} backlog={r['backlog']:.0f}  "
        f"deleted={r['deleted_mb']:.0f} MB"
    )


def summarize(
    a: argparse.Namespace, samples: list[dict[str, Any]], last: dict[str, Any], broker: Any, run_dir: Path,
    fstats: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    warm = [s for s in samples if s["t"] >= a.warmup_min * 60]
    keys = [k for k in samples[0] if k.startswith("rss_")] + ["disk_mb"] if samples else []
    memory: dict[str, dict[str, float]] = {}
    for k in keys:
        ts, ys = [s["t"] for s in warm], [s.get(k, math.nan) for s in warm]
        memory[k.removeprefix("rss_")] = {
            "start": ys[0] if ys else math.nan,
            "end": ys[-1] if ys else math.nan,
            "max": max(ys) if ys else math.nan,
            "slope_mb_per_h": round(slope_per_hour(ts, ys), 2),
            "slope_mb_per_data_h": round(slope_per_hour(ts, ys) / a.speed, 3),
        }
    res = {
        "stations": a.stations, "minutes": a.minutes, "speed": a.speed,
        "data_hours": round(a.minutes * a.speed / 60.0, 2), "broker": "memory" if a.memory else "durable",
        "retention_s": a.retention_s, "warmup_min": a.warmup_min, "samples": len(samples),
        "memory_mb": memory,
        "lag_waveforms_max": max((s["lag_waveforms"] for s in warm), default=math.nan),
        "lag_scores_max": max((s["lag_scores"] for s in warm), default=math.nan),
        "backlog_max": max((s["backlog"] for s in warm), default=math.nan),
        "final": {k: last[k] for k in ("sent", "det_in", "scored", "scores_acked", "alert_in", "deadletters",
                                       "decode_errors", "alerts", "deleted_objects", "deleted_mb",
                                       "janitor_errors", "lag_waveforms", "lag_scores")},
        "feeder_late_p99_s": float(np.percentile(fstats["lateness"], 99)) if fstats.get("lateness") else math.nan,
        "feeder_sent": fstats.get("sent"),
        "load_avg": os.getloadavg(),
        "run_dir": str(run_dir),
    }  # fmt: skip
    res["nothing_lost"] = bool(
        res["final"]["det_in"] >= (fstats.get("sent") or res["final"]["sent"])
        and res["final"]["alert_in"] >= res["final"]["scores_acked"]
        and res["final"]["deadletters"] == 0
        and res["final"]["decode_errors"] == 0
    )
    (run_dir / "summary.json").write_text(json.dumps(res, indent=1))
    return res


def trace_report(trace: Path, warmup_s: float, trace_s: float, top: int = 15) -> str:
    """What grew in the alerting process between the first snapshot after warm-up and the last."""
    import tracemalloc

    snaps = sorted(trace.glob("snap-*.pickle"))
    first = min(len(snaps) - 1, int(warmup_s // trace_s))
    if len(snaps) < 2 or first < 0 or first >= len(snaps) - 1:
        return f"tracemalloc: {len(snaps)} snapshots, too few to compare"
    a, b = tracemalloc.Snapshot.load(str(snaps[first])), tracemalloc.Snapshot.load(str(snaps[-1]))
    lines = [f"tracemalloc: growth from {snaps[first].name} to {snaps[-1].name} (traced total "
             f"{sum(s.size for s in a.statistics('filename')) / MB:.1f} -> "
             f"{sum(s.size for s in b.statistics('filename')) / MB:.1f} MB)"]  # fmt: skip
    for st in b.compare_to(a, "traceback")[:top]:
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(st.traceback)[:4])
        lines.append(f"  {st.size_diff / 1024:+9.0f} KiB {st.count_diff:+8d} blocks  {frames}")
    return "\n".join(lines)


def print_summary(res: dict[str, Any]) -> None:
    print(f"\n{res['stations']} stations, {res['minutes']:g} min at {res['speed']:g}x ({res['data_hours']:g} h of "
          f"data), {res['broker']} broker, retention {res['retention_s']:g} s, slopes over the samples after "
          f"{res['warmup_min']:g} min")  # fmt: skip
    print(f"{'process':<10} {'start MB':>9} {'end MB':>9} {'max MB':>9} {'MB/hour':>9} {'MB/data h':>10}")
    for k, m in res["memory_mb"].items():
        print(f"{k:<10} {m['start']:>9.1f} {m['end']:>9.1f} {m['max']:>9.1f} {m['slope_mb_per_h']:>9.2f} "
              f"{m['slope_mb_per_data_h']:>10.3f}")  # fmt: skip
    print(f"lag max after warm-up: waveforms {res['lag_waveforms_max']:.0f} packets, scores "
          f"{res['lag_scores_max']:.0f}, detector backlog {res['backlog_max']:.0f} stations; "
          f"feeder lateness p99 {res['feeder_late_p99_s']:.3f} s")  # fmt: skip
    print("final:", json.dumps(res["final"]))
    print("nothing lost:", res["nothing_lost"], " load average at the end:", res["load_avg"])


def tansu_facts(objects: list[int], wait_s: float) -> None:
    """Print what Tansu does with retention.ms (memory engine) and how a durable fetch's time grows
    with the number of batch objects in the partition (each flushed send is one object)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from services.broker.embedded import EmbeddedBroker
    from services.common.kafka import make_producer

    with EmbeddedBroker(create_topics=False) as b:
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        admin.create_topics([NewTopic("soak.retention", 1, 1, topic_configs={"retention.ms": "1000"})])
        admin.close()
        producer = make_producer(b.bootstrap, "soak-facts")
        for _ in range(100):
            producer.send("soak.retention", value=b"x" * 1000)
        producer.flush(30)
        producer.close(10)
        time.sleep(wait_s)
        c = KafkaConsumer(bootstrap_servers=b.bootstrap)
        tp = TopicPartition("soak.retention", 0)
        print(f"memory engine, retention.ms=1000: earliest offset {c.beginning_offsets([tp])[tp]} "
              f"{wait_s:.0f} s after 100 messages (retention.ms not applied)")  # fmt: skip
        c.close()
    with (
        tempfile.TemporaryDirectory(prefix="eew-facts-") as d,
        EmbeddedBroker(durable_dir=Path(d), retention_interval_s=0) as b,
    ):
        from services.common.topics import WAVEFORMS

        tp = TopicPartition(WAVEFORMS.name, 0)
        producer = make_producer(b.bootstrap, "soak-facts")
        c = KafkaConsumer(bootstrap_servers=b.bootstrap, fetch_max_wait_ms=50)
        c.assign([tp])
        n = 0
        print("durable engine: time to read the newest 20 batch objects (one message each) of a partition")
        for target in objects:
            while n < target:
                producer.send(WAVEFORMS.name, partition=0, value=b"z" * 1000)
                producer.flush(30)
                n += 1
            c.seek(tp, n - 20)
            got, t = 0, time.monotonic()
            while got < 20 and time.monotonic() - t < 120:
                got += sum(len(r) for r in c.poll(200).values())
            print(f"  {n:6d} objects in the partition: {time.monotonic() - t:6.2f} s for {got} messages")
        c.close()
        producer.close(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=60.0, help="how long the feeder streams")
    ap.add_argument(
        "--speed", type=float, default=1.0, help="data seconds per wall second (a compressed day: 24)"
    )
    ap.add_argument("--period-s", type=int, default=120, help="seconds of data built and played in a loop")
    ap.add_argument("--sample-s", type=float, default=10.0, help="sampling interval")
    ap.add_argument("--warmup-min", type=float, default=10.0, help="minutes left out of the slopes")
    ap.add_argument(
        "--retention-s", type=float, default=600.0, help="waveform and score retention (compressed)"
    )
    ap.add_argument("--janitor-s", type=float, default=30.0, help="retention janitor interval")
    ap.add_argument("--memory", action="store_true", help="memory engine instead of durable + janitor")
    ap.add_argument("--slices", type=int, default=20, help="send slots per second")
    ap.add_argument(
        "--linger-ms", type=int, default=200, help="feeder producer linger (fewer, larger batch objects)"
    )
    ap.add_argument("--event-every", type=float, default=12.0)
    ap.add_argument("--event-stations", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--drain-s", type=float, default=60.0, help="longest wait for the lag to reach 0 at the end"
    )
    ap.add_argument("--alerting-arg", action="append", default=[], help="extra eew alert argument")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="append the summary as a JSON line")
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("EEW_SHARED_DIR", REPO.parent / "shared"))
    )
    ap.add_argument("--trace-alerting", action="store_true", help="tracemalloc the alerting process")
    ap.add_argument("--trace-s", type=float, default=120.0, help="seconds between tracemalloc snapshots")
    ap.add_argument(
        "--tansu-facts", type=int, nargs="*", default=None, metavar="OBJECTS",
        help="instead of a soak: Tansu's retention.ms (memory) and durable fetch time at these object counts",
    )  # fmt: skip
    a = ap.parse_args(argv)
    if a.tansu_facts is not None:
        tansu_facts(a.tansu_facts or [100, 300, 1000, 2000], wait_s=10.0)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the children (finally) on SIGTERM
    res = run(a)
    print_summary(res)
    if a.trace_alerting:
        report = trace_report(Path(res["run_dir"]) / "trace", a.warmup_min * 60, a.trace_s)
        (Path(res["run_dir"]) / "trace.txt").write_text(report + "\n")
        print(report)
    if a.json:
        with a.json.open("a") as fh:
            fh.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
