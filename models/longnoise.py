"""Long-stream check: how often the model triggers over tens of minutes of continuous real noise.

``eew model long-noise [--minutes 30] [--stations 4]`` builds, for each of the first 3-component
records of the test split, ``--minutes`` of real noise from the pre-P spans of OTHER recordings
(``models.data.real_noise_pad``: spectrally matched to the station, rescaled to its level, joined by
crossfades, never tiled; earthquake bursts screened out) and scores it from a zero state through ONNX
Runtime exactly as the live detector does (1 s chunks, state carried). It reports the chunks at or
above the contract's detection threshold after the warm-up, the trigger episodes (rising edges
with the detector's re-arm rule) per station-hour, and the dead (all-zero) steps the donor noise
contained (real telemetry dropouts of some recordings).

Caveat: 30 minutes need more distinct noise than one split holds, so donors come from all splits;
the model has seen the training split's noise. The short-window false-alarm rates of
``eew model evaluate`` stay the held-out measure; this one exposes drift over long streams.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from models.data import default_datasets, load_dataset, real_noise_pad, screen_noise, select

CHUNK = 100
REARM_S = 3.0


def episodes(above: np.ndarray, rearm_chunks: int) -> int:
    """Trigger episodes: a rising edge after at least ``rearm_chunks`` quiet chunks."""
    n, quiet, on = 0, rearm_chunks, False
    for a in above:
        if a and not on and quiet >= rearm_chunks:
            n, on = n + 1, True
        if a:
            quiet = 0
        else:
            quiet += 1
            if quiet >= rearm_chunks:
                on = False
    return n


def run(data_dir: Path, model_dir: Path, minutes: float, stations: int, seed: int) -> dict:
    from models.runtime import StreamingModel

    records = [r for d in default_datasets(data_dir) for r in load_dataset(d)]
    pool, _ = screen_noise(records)
    targets = [r for r in screen_noise(select(records, "test"))[0] if r.three_component][:stations]
    model = StreamingModel(model_dir, providers=["CPUExecutionProvider"], intra_op_threads=2)
    thr = model.contract.thresholds.detection
    warm = int(model.contract.warmup_s * model.contract.sampling_rate_hz) // CHUNK
    rng = np.random.default_rng(seed)
    rows = []
    for rec in targets:
        noise = real_noise_pad(rng, rec, pool, int(minutes * 60 * 100)).astype(np.float32)
        n = noise.shape[1] // CHUNK * CHUNK
        ev, _ = model.score_stream(noise[None, :, :n], CHUNK)
        ev = ev[0, warm:]
        above = ev >= thr
        dead = int((noise[:, :n].reshape(3, -1, 10) == 0).all(axis=2).all(axis=0).sum())
        hours = len(ev) * CHUNK / 100.0 / 3600.0
        eps = episodes(above, int(REARM_S * 100) // CHUNK)
        rows.append(
            {
                "station": rec.key,
                "chunks": int(len(ev)),
                "chunks_above": int(above.sum()),
                "max_prob": float(ev.max()),
                "episodes": eps,
                "episodes_per_hour": eps / hours,
                "dead_steps": dead,
            }
        )
    hours = sum(r["chunks"] for r in rows) / 3600.0
    total = sum(r["episodes"] for r in rows)
    return {
        "model": f"{model.contract.model_id} {model.contract.model_version}",
        "threshold": thr,
        "minutes": minutes,
        "stations": rows,
        "station_hours": hours,
        "episodes": total,
        "episodes_per_station_hour": total / hours if hours else float("nan"),
    }


def markdown(res: dict) -> str:
    lines = [
        f"{res['model']}, threshold {res['threshold']:.4f}, {res['minutes']:g} min of stitched real noise per "
        f"station: {res['episodes']} trigger episodes in {res['station_hours']:.2f} station-hours "
        f"({res['episodes_per_station_hour']:.1f} per station-hour)",
        "",
        "| station | chunks | chunks >= threshold | max prob | episodes | dead 0.1 s steps in the noise |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["stations"]:
        lines.append(
            f"| {r['station']} | {r['chunks']} | {r['chunks_above']} | {r['max_prob']:.4f} | {r['episodes']} "
            f"| {r['dead_steps']} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from models.contract import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(
        prog="eew model long-noise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EEW_SHARED_DIR", "../shared")))
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--minutes", type=float, default=30.0, help="noise per station")
    ap.add_argument("--stations", type=int, default=4, help="3-component test records used as targets")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the result as JSON here")
    a = ap.parse_args(argv)
    res = run(a.data_dir, a.model_dir, a.minutes, a.stations, a.seed)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print(markdown(res))
    return 0
