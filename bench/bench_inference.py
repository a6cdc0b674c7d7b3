"""ONNX Runtime throughput on CPU: our streaming model (1 s chunks, state carried) and the peer models.

    python bench/bench_inference.py [--model-dir DIR ...] [--threads 2] [--seconds 3] [--peer PEER.onnx ...]
    eew model bench ...

Prints windows/s at batch 1, 64 and 256 (one run, so the numbers are comparable with each other; runs on
a shared machine vary) and the implied number of 3-component stations scored in real time at a 1 s
stride: for our model one call scores the newest second of each station, so station-chunks/s = stations;
a peer must score one full window per station per second. Peer timings include their preprocessing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from models.contract import DEFAULT_MODEL_DIR  # noqa: E402
from models.evaluate import Peer  # noqa: E402
from models.runtime import StreamingModel  # noqa: E402

BATCHES = (1, 64, 256)


def _timed(fn, seconds: float) -> tuple[int, float]:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n, time.perf_counter() - t0


def bench_ours(m: StreamingModel, seconds: float) -> dict[int, float]:
    rng = np.random.default_rng(0)
    out = {}
    for b in BATCHES:
        wave = (rng.standard_normal((b, 3, m.contract.chunk_samples)) * 300.0).astype(np.float32)
        state = [m.initial_state(b)]

        def call(wave: np.ndarray = wave, state: list[np.ndarray] = state) -> None:
            state[0] = m.step(wave, state[0]).state

        n, dt = _timed(call, seconds)
        out[b] = n * b / dt
    return out


def bench_peer(path: Path, threads: int, seconds: float) -> dict[int, float]:
    p = Peer(path, threads)
    rng = np.random.default_rng(0)
    out = {}
    for b in BATCHES:
        win = (rng.standard_normal((b, 3, p.spec.window)) * 300.0).astype(np.float32)
        n, dt = _timed(lambda win=win, b=b: p.curves(win, batch=b), seconds)
        out[b] = n * b / dt
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        default=None,
        help="our model folder (repeatable, e.g. to time an older version in the same run; default: shipped)",
    )
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per model and batch size")
    shared = Path(os.environ.get("EEW_SHARED_DIR", REPO.parent / "shared"))
    default_peers = sorted((shared / "peers").glob("*.onnx"))
    ap.add_argument(
        "--peer", type=Path, action="append", default=None, help="peer ONNX (default: all in shared/peers)"
    )
    a = ap.parse_args(argv)
    peers = a.peer if a.peer is not None else default_peers
    print(
        f"# ONNX Runtime CPU, {a.threads} intra-op threads, {os.cpu_count()} CPUs visible, {platform.processor() or platform.machine()}"
    )
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    for d in a.model_dir or [DEFAULT_MODEL_DIR]:
        m = StreamingModel(d, providers=["CPUExecutionProvider"], intra_op_threads=a.threads)
        c = m.contract
        rows.append((f"{c.model_id} {c.model_version} (ours, {d.name}, 1 s chunk + state)", bench_ours(m, a.seconds)))
    for p in peers:
        rows.append((f"{p.stem} ({Peer(p).spec.window} samples)", bench_peer(p, a.threads, a.seconds)))
    print(
        "| model | "
        + " | ".join(f"batch {b} windows/s" for b in BATCHES)
        + " | stations in real time at 1 s stride |"
    )
    print("|---|" + "---|" * len(BATCHES) + "---|")
    for name, r in rows:
        best = max(r.values())
        print(f"| {name} | " + " | ".join(f"{r[b]:,.0f}" for b in BATCHES) + f" | {best:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
