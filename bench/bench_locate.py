"""Locator cost: one grid-search location and the associator's leave-one-out retry.

    .venv/bin/python bench/bench_locate.py [--picks 12] [--silent 60] [--repeat 10]

Prints milliseconds per call for ``locate`` (all picks), the retry as separate calls (one per left-out
pick, the way the associator did it before ``locate_without_each``) and ``locate_without_each``.
Synthetic picks (straight-ray P times plus 0.1 s noise) around 37 N 122 W; not-yet-triggered stations
around them, as the associator passes them (the nearest ``max_silent`` are used).
``--picks 8 --silent 12 --repeat 5`` is the one-location timing that used to print from a unit test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.alerting.association.locate import LocatorConfig, locate, locate_without_each  # noqa: E402

NS = 1_000_000_000


def _ms(fn, repeat: int) -> float:
    fn()  # warm-up (builds the travel-time table)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--picks", type=int, default=12)
    ap.add_argument("--silent", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=10)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    lat0, lon0, t0 = 37.0, -122.0, 10**18
    pts = [(lat0 + rng.uniform(-0.5, 0.5), lon0 + rng.uniform(-0.5, 0.5)) for _ in range(a.picks + a.silent)]
    picks = []
    for la, lo in pts[: a.picks]:
        d = np.hypot((la - lat0) * 111.19, (lo - lon0) * 111.19 * np.cos(np.radians(lat0)))
        picks.append((la, lo, t0 + int((np.hypot(d, 8.0) / 6.0 + rng.normal(0.0, 0.1)) * NS)))
    silent = [(la, lo, t0 + 3 * NS) for la, lo in pts[a.picks :]]
    cfg = LocatorConfig()
    n = len(picks)
    print(f"# {n} picks, {len(silent)} silent stations (nearest {cfg.max_silent} used), default LocatorConfig")
    print(f"locate: {_ms(lambda: locate(picks, silent, cfg), a.repeat):.1f} ms")
    loop = _ms(lambda: [locate(picks[:i] + picks[i + 1 :], silent, cfg) for i in range(n)], max(a.repeat // 3, 1))
    print(f"leave-one-out, {n} separate calls: {loop:.1f} ms")
    shared = _ms(lambda: locate_without_each(picks, silent, cfg), max(a.repeat // 3, 1))
    print(f"leave-one-out, locate_without_each: {shared:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
