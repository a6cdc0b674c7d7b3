"""Would a waveform gate on re-triggers let the detector re-trigger at a lower level (issue 13)?

The re-trigger level in the contract (1.3.0: 0.90) is the lowest that keeps a station from
re-triggering on its own event after single events; below it the P head finds more second P's but
also fires inside single events. If those false re-triggers were S waves, a classical polarisation
test (an S onset raises the horizontals more than the vertical; a P onset, at the steep incidence of
local events, the vertical at least as much) could veto them. This script measures it before anything
is built: at ``--level``, the detector's own rule (``models.evaluate.detector_triggers``) on the
split's single events and on its sequences (``eew model evaluate --sequences``' construction), and at
every re-trigger onset, from the 1 Hz high-passed (causal) waveform:

* ``dz``  = log(RMS of Z in the 0.5 s after the onset / RMS of Z in the 1 s before),
* ``dh``  = the same for the horizontal amplitude sqrt(N^2 + E^2),
* ``pol`` = dz - dh,

printed for each false re-trigger after a single event (with its time after P and the record's S - P),
and as quantiles for the re-triggers at a second P; then what gates ``dz >= a and pol >= b`` keep.

    .venv/bin/python bench/bench_retrigger_gate.py --split val --level 0.6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.evaluate import (  # noqa: E402
    EARLY_S,
    FS,
    PICK_TOL_S,
    _alignment,
    detector_triggers,
    far_threshold,
    onset_rule,
    prepare,
    score_ours,
    stream_batch,
)


def onset_features(w: np.ndarray, onset: float, after_s: float = 0.5, before_s: float = 1.0) -> tuple[float, float]:
    """(dz, dh) at ``onset`` (sample) of the (3, N) ZNE stream ``w`` (module doc)."""
    from scipy.signal import butter, sosfilt

    sos = butter(4, 1.0, btype="highpass", fs=FS, output="sos")
    x = np.asarray(w, np.float64)
    x = sosfilt(sos, x - x[:, :1], axis=1)
    o = int(round(onset))
    a, b = o - int(before_s * FS), o + int(after_s * FS)

    def rms(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean(v**2)) + 1e-9)

    h = np.hypot(x[1], x[2])
    return np.log(rms(x[0, o:b]) / rms(x[0, a:o])), np.log(rms(h[o:b]) / rms(h[a:o]))


def main(argv: list[str] | None = None) -> int:
    from models.data import load_dataset, screen_noise, select
    from models.runtime import StreamingModel
    from models.sequences import build_sequences, live_end

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models" / "eew_cnnlstm_v1")
    ap.add_argument("--split", default="val")
    ap.add_argument("--level", type=float, default=0.6, help="re-trigger level (P probability)")
    ap.add_argument("--sequences", type=int, default=150)
    a = ap.parse_args(argv)
    recs = [r for d in ("nc_phasenet", "stead50") for r in load_dataset(a.data_dir / "data" / d)]
    chosen, _ = screen_noise(select(recs, a.split))
    prepared = prepare(chosen, seed=2024)
    model = StreamingModel(a.model_dir, providers=["CPUExecutionProvider"], intra_op_threads=1)
    c = model.contract
    rule = onset_rule(far_threshold(np.asarray(score_ours(model, prepared).noise), 0.01), a.level)
    seqs = build_sequences([(p.rec, p.hist, p.p_idx) for p in prepared], chosen, a.sequences, 13)
    singles = [p.hist[:, : p.p_idx - p.rec.p + live_end(p.rec)] for p in prepared]
    offs_1 = [_alignment(p.p_idx, 1.0) for p in prepared]
    offs_2 = [_alignment(q.p2, 1.0) for q in seqs]

    def after_first(t: list, p: int) -> list:
        return [x for x in t if x[0] >= p - EARLY_S * FS][1:]  # the first from P on is the event's own

    false, true = [], []
    for p, o, (ev, pp), w in zip(prepared, offs_1, stream_batch(model, singles, offs_1), singles, strict=True):
        if not (np.abs(w[1]).max() > 0 and np.abs(w[2]).max() > 0):
            continue  # no horizontals: no polarisation
        for _, onset, _ in after_first(detector_triggers(rule, ev, pp, o, c.thresholds.p_pick, c.warmup_s), p.p_idx):
            s_p = (p.rec.s - p.rec.p) / FS if p.rec.s > 0 else float("nan")
            false.append((p.rec.key, (onset - p.p_idx) / FS, s_p, *onset_features(w, onset)))
    for q, o, (ev, pp) in zip(seqs, offs_2, stream_batch(model, [q.wave for q in seqs], offs_2), strict=True):
        if not (np.abs(q.wave[1]).max() > 0 and np.abs(q.wave[2]).max() > 0):
            continue
        for _, onset, _ in after_first(detector_triggers(rule, ev, pp, o, c.thresholds.p_pick, c.warmup_s), q.p1):
            if abs(onset - q.p2) <= PICK_TOL_S * FS:
                true.append(onset_features(q.wave, onset))
    print(f"split {a.split}, re-trigger level {a.level}, detection level {rule.detection:.4f} (1 % noise FAR)")
    print(f"false re-triggers after {len(prepared)} single events: {len(false)} (record, s after P, S-P s, dz, dh, pol)")
    for key, t, s_p, dz, dh in false:
        print(f"  {key:45s} {t:6.1f} {s_p:6.1f} {dz:+.2f} {dh:+.2f} {dz - dh:+.2f}")
    tz = np.array([x[0] for x in true])
    tp = tz - np.array([x[1] for x in true])
    fz = np.array([x[3] for x in false])
    fp = fz - np.array([x[4] for x in false])
    print(f"re-triggers at a second P: {len(true)}; dz quantiles 0/10/50 %: {np.round(np.quantile(tz, [0, .1, .5]), 2)}, "
          f"pol: {np.round(np.quantile(tp, [0, .1, .5]), 2)}")
    for min_dz in (0.0, 0.3, 0.5):
        for min_pol in (-0.75, -0.5, 0.0):
            kt, kf = (tz >= min_dz) & (tp >= min_pol), (fz >= min_dz) & (fp >= min_pol)
            print(f"gate dz >= {min_dz:.1f} and pol >= {min_pol:+.2f}: keeps {kt.sum()}/{len(tz)} second-P "
                  f"re-triggers, {kf.sum()}/{len(fz)} false ones")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
