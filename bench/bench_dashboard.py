"""Dashboard responsiveness at network scale: N stations scoring every second, an event every few seconds.

Starts an embedded broker and ``eew dashboard`` (its own process), publishes a StationScore per
station per second (a few per cent of the stations silent, lagging or triggered at any time, so the
map changes every tick) and, every ``--event-every-s``, an earthquake's NEW/UPDATE/UPDATE alert
versions; opens the page in Debian's chromium (Playwright) and measures in the browser:

* frame times (requestAnimationFrame intervals) and long tasks (> 50 ms, PerformanceObserver);
* update latency: alert version published -> listed on the page, and -> its epicentre drawn;
* the dashboard process's CPU use and the update stream's message rate.

    .venv/bin/python bench/bench_dashboard.py --stations 2000 --event-every-s 4 --duration-s 40
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from services.broker.embedded import EmbeddedBroker, free_port
from services.common.kafka import make_producer
from services.common.timeutil import now_ns
from services.dashboard import synthetic as syn
from services.pipeline.processes import ServiceProcess

CHROMIUM = os.environ.get("EEW_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
SECRET = "bench-dashboard-token-0123456789"
NS = 1_000_000_000


def stations(n: int, rng: random.Random) -> list[syn.QuakeStation]:
    """n stations scattered over California and Nevada (34-40 N, 124-116 W)."""
    return [syn.QuakeStation("BN", f"S{i:04d}", rng.uniform(34, 40), rng.uniform(-124, -116), 0.0) for i in range(n)]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=2000)
    ap.add_argument("--event-every-s", type=float, default=4.0)
    ap.add_argument("--duration-s", type=float, default=40.0)
    ap.add_argument("--tick-s", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"no chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    rng = random.Random(a.seed)
    net = stations(a.stations, rng)
    run = Path(tempfile.mkdtemp(prefix="eew-bench-dashboard-"))
    csv = run / "stations.csv"
    csv.write_text("network,station,location,latitude,longitude,elevation_m\n"
                   + "".join(f"{s.network},{s.station},,{s.latitude:.5f},{s.longitude:.5f},0\n" for s in net))
    with EmbeddedBroker(log_path=run / "broker.log") as broker:
        port = free_port()
        dash = ServiceProcess("dashboard", ["dashboard", "--bootstrap-servers", broker.bootstrap, "--web-port",
                                            str(port), "--stations", str(csv), "--tick-s", str(a.tick_s)],
                              run / "dashboard.log", free_port()).start(env={"EEW_API_TOKENS": f"bench:{SECRET}:read"})
        dash.wait_ready(60)
        producer = make_producer(broker.bootstrap, "bench-dashboard", linger_ms=20)
        stop = threading.Event()
        published: dict[str, float] = {}  # "event:version" -> epoch ms when sent
        sent = {"scores": 0, "alerts": 0, "late_s": 0.0}

        def scores() -> None:
            silent: set[int] = set()
            lagging: set[int] = set()
            next_t = time.time()
            while not stop.is_set():
                for _ in range(max(1, a.stations // 200)):  # churn: ~0.5 % change each second
                    silent.symmetric_difference_update({rng.randrange(a.stations)})
                    lagging.symmetric_difference_update({rng.randrange(a.stations)})
                t = now_ns()
                for i, s in enumerate(net):
                    if i in silent:
                        continue
                    end = t - (30 * NS if i in lagging else 0)
                    prob = rng.random() * 0.3 if rng.random() > 0.01 else 0.9
                    producer.send("eew.scores.v1", key=f"BN.{s.station}..HH?".encode(),
                                  value=syn.score("BN", s.station, end, prob).SerializeToString())
                    sent["scores"] += 1
                producer.flush(10)
                next_t += 1.0
                delay = next_t - time.time()
                if delay < 0:
                    sent["late_s"] += -delay
                    next_t = time.time()
                stop.wait(max(0.0, delay))

        def events() -> None:
            k = 0
            while not stop.wait(a.event_every_s):
                k += 1
                c = rng.choice(net)
                near = sorted(net, key=lambda s: (s.latitude - c.latitude) ** 2 + (s.longitude - c.longitude) ** 2)[:12]
                quake = [syn.QuakeStation(s.network, s.station, s.latitude, s.longitude, 2.0 + j * 0.4)
                         for j, s in enumerate(near)]
                eid = f"bench-{k}"
                for v in syn.alert_versions(eid, now_ns() - 6 * NS, c.latitude, c.longitude, 10.0, 5.0, quake):
                    published[f"{eid}:{v.version}"] = time.time() * 1000
                    producer.send("eew.alerts.v1", key=eid.encode(), value=v.SerializeToString())
                    producer.flush(10)
                    sent["alerts"] += 1
                    stop.wait(0.5)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"http://127.0.0.1:{port}/#token={SECRET}")
            deadline = time.monotonic() + 60
            while not page.evaluate("window.eewDashboard && window.eewDashboard.ready"):
                if time.monotonic() > deadline:
                    raise RuntimeError("page not ready in 60 s")
                time.sleep(0.2)
            # long tasks, recorded from now on (observer added through CDP evaluation, not eval)
            page.evaluate("""() => { window.__long = []; new PerformanceObserver(l => { for (const e of l.getEntries())
                window.__long.push(e.duration); }).observe({entryTypes: ['longtask']}); }""")
            threads = [threading.Thread(target=f, daemon=True) for f in (scores, events)]
            for t in threads:
                t.start()
            time.sleep(3.0)  # first full second of scores on the map
            page.evaluate("window.eewDashboard.frameTimes.length = 0; window.__long.length = 0;")
            msgs0, cpu0, t0 = page.evaluate("window.eewDashboard.messages"), cpu_s(dash.proc.pid), time.monotonic()
            time.sleep(a.duration_s)
            frames = page.evaluate("window.eewDashboard.frameTimes.slice()")
            longs = page.evaluate("window.__long.slice()")
            seen = page.evaluate("window.eewDashboard.seen")
            cost = page.evaluate("window.eewDashboard.cost")
            origin = page.evaluate("performance.timeOrigin")
            counts = page.evaluate("(() => { const c = {}; for (const s of window.eewDashboard.drawn ? "
                                   "Object.keys(window.eewDashboard.drawn.stations) : []) c.n = (c.n || 0) + 1; return c; })()")
            msgs, cpu, wall = page.evaluate("window.eewDashboard.messages") - msgs0, cpu_s(dash.proc.pid) - cpu0, time.monotonic() - t0
            stop.set()
            for t in threads:
                t.join(15)
            browser.close()
        producer.close(5)
        dash.stop()

    listed = [origin + seen[k + ":listed"] - ms for k, ms in published.items() if k + ":listed" in seen]
    drawn = [origin + seen[k] - ms for k, ms in published.items() if k in seen]
    result = {
        "stations": a.stations, "stations_drawn": counts.get("n", 0), "duration_s": round(wall, 1),
        "event_every_s": a.event_every_s, "tick_s": a.tick_s,
        "scores_sent": sent["scores"], "score_publisher_behind_s": round(sent["late_s"], 1),
        "alert_versions_sent": sent["alerts"], "alert_versions_listed": len(listed),
        "frames": len(frames), "fps": round(len(frames) / wall, 1) if wall else None,
        "frame_ms_p50": round(pct(frames, 0.5), 1), "frame_ms_p95": round(pct(frames, 0.95), 1),
        "frame_ms_p99": round(pct(frames, 0.99), 1), "frame_ms_max": round(max(frames, default=float("nan")), 1),
        "long_tasks": len(longs), "long_task_ms_total": round(sum(longs), 0),
        "long_task_ms_max": round(max(longs, default=0.0), 0),
        "alert_to_listed_ms_p50": round(statistics.median(listed), 0) if listed else None,
        "alert_to_listed_ms_max": round(max(listed), 0) if listed else None,
        "alert_to_map_ms_p50": round(statistics.median(drawn), 0) if drawn else None,
        "alert_to_map_ms_max": round(max(drawn), 0) if drawn else None,
        "stream_messages_per_s": round(msgs / wall, 2) if wall else None,
        "dashboard_cpu_pct": round(100 * cpu / wall, 1) if wall else None,
        "console_errors": len(errors),
        "js_ms_per_step_mean_max": {k: [round(v[1] / v[0], 2), round(v[2], 1)] for k, v in cost.items() if v[0]},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
