"""Detector throughput without a broker: packets -> CoreDetector -> ONNX model, for N stations.

Prints station-chunks scored per second (one chunk = one station x one stride) through
  * core + real model (the service's hot path minus Kafka and protobuf), and
  * core + a no-op scorer (the buffering/batching overhead alone),
plus the model call latency by batch size. Inputs are synthetic 3-component 100 Hz noise records
in 1 s packets, all stations advancing together as in live operation.

    .venv/bin/python bench/bench_detector.py --stations 10 100 500 --seconds 20 --threads 2
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from models import synthetic
from models.runtime import StreamingModel
from services.common.codec import Packet
from services.detector.core import CoreDetector
from services.detector.settings import DetectorSettings

T0 = 1_700_000_000 * 10**9


@dataclass
class _Noop:
    event_prob: np.ndarray
    p_prob: np.ndarray
    state: np.ndarray


def noop_scorer(steps: int):  # noqa: ANN201
    def score(wave: np.ndarray, state: np.ndarray) -> _Noop:
        b = wave.shape[0]
        return _Noop(np.zeros(b, np.float32), np.zeros((b, steps), np.float32), state)

    return score


def packets(n_stations: int, seconds: int, seed: int = 0) -> list[list[Packet]]:
    """Per second, the 3 x n_stations packets of that second."""
    rng = np.random.default_rng(seed)
    base = synthetic.noise(rng, seconds * 100, 100.0, 200.0).astype(np.float32)
    out: list[list[Packet]] = []
    for s in range(seconds):
        sec = []
        for k in range(n_stations):
            shift = (k * 37) % 100  # decorrelate stations cheaply
            for c, comp in enumerate("ZNE"):
                seg = np.roll(base[c], shift)[s * 100 : (s + 1) * 100]
                sec.append(Packet("BN", f"S{k:04d}", "", "HH" + comp, T0 + s * 10**9, 100.0, seg))
        out.append(sec)
    return out


def run(det: CoreDetector, feed: list[list[Packet]]) -> tuple[int, float]:
    n = 0
    t = time.perf_counter()
    for sec in feed:
        for p in sec:
            det.feed(p)
        n += len(det.score_ready())
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, nargs="+", default=[10, 100, 500])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--max-batch", type=int, nargs="+", default=[512], help="max_batch values to compare")
    ap.add_argument(
        "--providers", default="", help="comma-separated providers (default: CUDA if offered, CPU)"
    )
    args = ap.parse_args()

    providers = [p for p in args.providers.split(",") if p] or None
    model = StreamingModel(providers=providers, intra_op_threads=args.threads)
    cfg = DetectorSettings().core_config(model.contract)
    print(
        f"model {model.contract.model_id} {model.contract.model_version}, provider {model.provider}, "
        f"{args.threads} intra-op threads, stride {cfg.chunk_samples} samples"
    )

    print("\nmodel call latency (ms) by batch size (median of 20 calls):")
    for b in (1, 8, 64, 256, 512):
        wave = np.random.default_rng(1).normal(0, 100, (b, 3, cfg.chunk_samples)).astype(np.float32)
        state = model.initial_state(b)
        model.step(wave, state)
        ts = []
        for _ in range(20):
            t = time.perf_counter()
            model.step(wave, state)
            ts.append(time.perf_counter() - t)
        med = float(np.median(ts))
        print(f"  batch {b:4d}: {med * 1e3:8.2f} ms  -> {b / med:10.0f} station-chunks/s")

    head = f"{'stations':>8} {'max_batch':>9} {'chunks':>8} {'core+model /s':>14} {'real-time x':>12}"
    print(f"\n{head} {'core only /s':>13}")
    for n in args.stations:
        feed = packets(n, args.seconds)
        for mb in args.max_batch:
            c = DetectorSettings(max_batch=mb).core_config(model.contract)
            chunks, dt = run(CoreDetector(c, model.step), feed)
            chunks0, dt0 = run(CoreDetector(c, noop_scorer(c.chunk_samples // c.step_samples)), feed)
            rate = chunks / dt
            print(f"{n:8d} {mb:9d} {chunks:8d} {rate:14.0f} {rate / n:12.1f} {chunks0 / dt0:13.0f}")
    print("\nreal-time x: how many times faster than real time N stations are scored (1 chunk/s each).")


if __name__ == "__main__":
    main()
