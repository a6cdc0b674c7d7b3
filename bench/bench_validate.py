"""Replay rate of ``eew validate`` (data hours per wall minute) on a synthetic archive of N stations x H hours.

Prints numbers, asserts nothing. The archive is crude synthetic noise (``models.synthetic.noise``,
three components, 100 Hz, one miniSEED file per component and hour) with an empty catalogue: it
measures throughput of replay -> broker -> detector -> alerting -> scoring -> report, not quality
(for quality use real data). The target (issue 15) is >= 30 station-hours of 100 Hz data per wall
minute for 20 stations x 1 hour on the 2-core development machine; the 1-minute load average is
printed before and after, since a shared machine makes the figure pessimistic. Example::

    .venv/bin/python bench/bench_validate.py --stations 20 --hours 1 --packet-seconds 10
    .venv/bin/python bench/bench_validate.py --stations 20 --hours 1 --mode in-process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from obspy import Stream, Trace, UTCDateTime

START = UTCDateTime("2024-03-01T00:00:00Z")
FS = 100.0


def build(root: Path, stations: int, hours: float, seed: int = 1) -> tuple[Path, Path, Path]:
    from models.synthetic import noise

    rng = np.random.default_rng(seed)
    arch = root / "archive"
    arch.mkdir(parents=True)
    rows = ["network,station,location,latitude,longitude,elevation_m"]
    n_hour = int(3600 * FS)
    for i in range(stations):
        code = f"B{i:03d}"
        rows.append(f"XB,{code},,{37.0 + 0.05 * (i % 10):.3f},{-122.0 + 0.05 * (i // 10):.3f},0")
        level = float(rng.uniform(50, 200))
        for h in range(int(np.ceil(hours))):
            n = min(n_hour, int(round((hours - h) * 3600 * FS)))
            zne = noise(rng, n, FS, level)  # (3, n)
            for comp, row in zip("ZNE", zne, strict=True):
                tr = Trace(np.round(row).astype(np.int32))
                tr.stats.network, tr.stats.station, tr.stats.channel = "XB", code, f"HH{comp}"
                tr.stats.sampling_rate, tr.stats.starttime = FS, START + 3600 * h
                Stream([tr]).write(str(arch / f"XB.{code}..HH{comp}.{h:03d}.mseed"), format="MSEED",
                                   encoding="STEIM2", reclen=4096)
    (root / "stations.csv").write_text("\n".join(rows) + "\n")
    (root / "catalog.csv").write_text("time,latitude,longitude,depth,magnitude\n")
    return arch, root / "stations.csv", root / "catalog.csv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=10)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--keep", type=Path, default=None, help="write the archive and report here")
    ap.add_argument("--mode", choices=["services", "in-process"], default="services",
                    help="eew validate --mode: the services through the broker, or the cores in one process")
    ap.add_argument("--packet-seconds", type=float, default=None,
                    help="eew validate --packet-seconds (default: eew validate's own default)")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="eew-bench-validate-"))
    t0 = time.monotonic()
    if (root / "in" / "archive").is_dir():
        arch, stations, catalog = root / "in" / "archive", root / "in" / "stations.csv", root / "in" / "catalog.csv"
    else:
        arch, stations, catalog = build(root / "in", args.stations, args.hours)
    print(f"archive: {args.stations} stations x {args.hours:g} h built in {time.monotonic() - t0:.1f} s at {root}")
    cmd = [sys.executable, "-m", "services.cli", "validate", "--archive", str(arch), "--stations", str(stations),
           "--catalog", str(catalog), "--out", str(root / "out"), "--plots", "false", "--mode", args.mode,
           *(["--packet-seconds", str(args.packet_seconds)] if args.packet_seconds else [])]
    load0 = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t1 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t1
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)  # validate and every service it waited for
    if res.returncode != 0:
        print(res.stdout[-2000:], res.stderr[-2000:])
        if not (root / "out" / "summary.json").is_file():
            return 1
    s = json.loads((root / "out" / "summary.json").read_text())
    run, sm = s["run"], s["summary"]
    print(f"eew validate: {wall:.1f} s wall (command), {sm['scores']} station scores, "
          f"{sm['station_data_hours']:.2f} station-hours, {sm['archive_data_hours']:.2f} data hours")
    print(f"replay rate: {run['replay_rate_data_hours_per_wall_minute']:.3f} data hours per wall minute "
          f"({run['processing_s']:.1f} s replay start -> last output; start-up {run['startup_s']:.1f} s; "
          f"{run['blocks']} block(s))")
    rate = sm["station_data_hours"] / (run["processing_s"] / 60)
    print(f"= {rate:.2f} station-hours per wall minute (target >= 30); "
          f"alerts on synthetic noise: {sm['alert_events']}, station triggers: {sm['station_triggers']}")
    print(f"= {sm['station_data_hours'] / (wall / 60):.2f} station-hours per wall minute for the whole command")
    print(f"CPU time of the command and its services: {cpu:.1f} s = "
          f"{sm['station_data_hours'] / (cpu / 60):.2f} station-hours per CPU-minute (a busy machine inflates "
          "wall time far more than CPU time)")
    print(f"load average (1 min) before {load0:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"run status: {s['status'][0] if s.get('status') else 'n/a'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
