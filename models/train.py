"""Training (CPU, fixed seeds, early stopping on the validation split).

``eew model train [--data-dir ../shared] [--minutes 15] [--out models/eew_cnnlstm_v1]`` writes
``weights.pt`` (state dict + network config + training log) into ``--out``; ``eew model export``
turns it into ``model.onnx`` + ``contract.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from models.augment import STEP, AugmentConfig, make_batch
from models.data import (
    SPLITS_DIR,
    Record,
    default_datasets,
    load_dataset,
    make_split,
    padded_history,
    read_split,
    screen_noise,
    write_split,
)
from models.exceptions import DataError

log = logging.getLogger(__name__)

VAL_BEFORE = 3500  # samples of history before P in a validation stream (donor-padded)
VAL_AFTER = 500
VAL_WARM = 500  # noise windows start after this many samples


def fixed_split(records: list[Record]) -> dict[str, list[Record]]:
    """Train/val/test records; writes the split files the first time, then checks them."""
    split = make_split([r.key for r in records])
    if not (SPLITS_DIR / "train.txt").exists():
        write_split(split)
        log.info("wrote split files to %s", SPLITS_DIR)
    out = {}
    for name in ("train", "val", "test"):
        keys = read_split(name)
        out[name] = [r for r in records if r.key in keys]
    missing = {r.key for r in records} - set().union(*(read_split(n) for n in ("train", "val", "test")))
    if missing:
        raise DataError(
            f"{len(missing)} records in no split (e.g. {sorted(missing)[0]}): the split files are stale"
        )
    return out


def validation_streams(records: list[Record], pool: list[Record], seed: int = 1234) -> dict[str, np.ndarray]:
    """Fixed validation streams: 35 s of real history before P (donor-padded), 5 s after."""
    rng = np.random.default_rng(seed)
    waves = []
    for rec in records:
        hist, p_idx = padded_history(rng, rec, pool, max(VAL_BEFORE - rec.p + 1, 0))
        waves.append(hist[:, p_idx - VAL_BEFORE : p_idx + VAL_AFTER])
    return {"wave": np.stack(waves).astype(np.float32)}


SEQ_AFTER = 2200  # samples after the first P in a validation sequence stream (second P by P1 + 20 s)


def sequence_streams(records: list[Record], pool: list[Record], seed: int = 4321) -> dict[str, np.ndarray]:
    """Fixed validation sequences (issue 13): each record's event with another one's added, its P
    3-20 s after the first (log-uniform), amplitude ratio 0.1-10 (log-uniform); 35 s of history before
    the first P. Returns the waves and both P positions (samples)."""
    from models.sequences import superpose

    rng = np.random.default_rng(seed)
    waves, p2s = [], []
    for i, rec in enumerate(records):
        hist, p_idx = padded_history(rng, rec, pool, max(VAL_BEFORE - rec.p + 1, 0))
        base = hist[:, p_idx - VAL_BEFORE : p_idx + SEQ_AFTER]
        if base.shape[1] < VAL_BEFORE + SEQ_AFTER:
            continue
        others = [r for j, r in enumerate(records) if j != i and r.p >= 50]
        other = others[rng.integers(len(others))]
        dt = float(np.exp(rng.uniform(np.log(3.0), np.log(20.0))))
        ratio = float(np.exp(rng.uniform(np.log(0.1), np.log(10.0))))
        p2 = VAL_BEFORE + int(dt * 100)
        waves.append(superpose(base, VAL_BEFORE, other, p2, ratio, ref_peak=None))
        p2s.append(p2)
    return {"wave": np.stack(waves).astype(np.float32), "p2": np.asarray(p2s)}


def sequence_metrics(p_logits: np.ndarray, p2: np.ndarray, noise_p_logits: np.ndarray) -> dict[str, float]:
    """Second-P detection by the P head at P2 + 0.5/1 s (its peak from P2 - 0.5 s on above the level
    that 0.1% of validation noise steps exceed) and the share of sequences whose P head fires between
    P1 + 1 s and P2 - 1 s (a false new onset in the first event's coda)."""
    thr = float(np.quantile(noise_p_logits, 0.999, method="higher"))
    centre = np.arange(p_logits.shape[1]) * STEP + (STEP - 1) / 2.0
    out: dict[str, float] = {"seq_thr_p_logit": thr}
    for d in (0.5, 1.0):
        hits = [
            p_logits[i, (centre >= q - 50) & (centre <= q + d * 100)].max() > thr for i, q in enumerate(p2)
        ]
        out[f"seq_det_p2+{d}"] = float(np.mean(hits))
    fp = [
        p_logits[i, (centre >= VAL_BEFORE + 100) & (centre <= q - 100)].max(initial=-1e9) > thr
        for i, q in enumerate(p2)
    ]
    out["seq_coda_false_p"] = float(np.mean(fp))
    return out


#: Validation variants of every stream (issue "any real network"): as other networks record it.
VAL_VARIANTS: tuple[tuple[str, float | None, bool], ...] = (
    ("acc", None, True),
    ("31.25Hz", 31.25, False),
    ("20Hz", 20.0, False),
    ("acc@31.25Hz", 31.25, True),
)


def variant_streams(wave: np.ndarray) -> dict[str, np.ndarray]:
    """The validation streams as acceleration and/or at another rate (deterministic)."""
    from models.augment import as_acceleration, through_rate

    out = {}
    for name, rate, acc in VAL_VARIANTS:
        ws = []
        for w in wave.astype(np.float64):
            live = np.abs(w).max(axis=1) > 0
            x = as_acceleration(w) if acc else w
            x = through_rate(x, rate) if rate else x
            x[~live] = 0.0
            ws.append(x)
        out[name] = np.stack(ws).astype(np.float32)
    return out


def init_from(model, path: Path, member: int | None) -> None:
    """Start from trained weights: a model folder's weights.pt (member ``member`` of an ensemble)."""
    import torch

    sd = torch.load(path / "weights.pt", map_location="cpu", weights_only=False)["state_dict"]
    if member is not None:
        prefix = f"members.{member}."
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    model.load_state_dict(sd)


def validation_metrics(ev_logits: np.ndarray) -> dict[str, float]:
    """Detection at P+0.5 s / P+1 s at the 1% noise-window false-alarm threshold, and ROC-AUC."""
    steps_p = VAL_BEFORE // STEP  # the step that starts at P
    noise_idx = np.arange(VAL_WARM // STEP + 9, (VAL_BEFORE - 50) // STEP, 10)  # 1 s chunk ends
    noise = ev_logits[:, noise_idx].ravel()
    thr = np.quantile(noise, 0.99)
    out = {"thr_logit_1pct": float(thr)}
    for d_s in (0.5, 1.0, 2.0):
        idx = steps_p + int(d_s * 10) - 1
        out[f"det_p{d_s}"] = float(np.mean(ev_logits[:, idx] > thr))
    ev = ev_logits[:, steps_p + 4 : steps_p + 50 : 5].ravel()
    out["auc"] = float(roc_auc(ev, noise))
    out["det_p3.0"] = float(np.mean(ev_logits[:, steps_p + 29] > thr))
    early = (out["det_p0.5"] + out["det_p1.0"] + out["det_p2.0"] + out["det_p3.0"]) / 4.0
    # at 0.1% of noise windows (about the loudest one): the early-warning operating point, and the
    # part of the score that does not saturate once the 1% numbers reach 1
    thr01 = np.quantile(noise, 0.999, method="higher")
    out["thr_logit_01pct"] = float(thr01)
    for d_s in (0.5, 1.0):
        out[f"det01_p{d_s}"] = float(np.mean(ev_logits[:, steps_p + int(d_s * 10) - 1] > thr01))
    strict = (out["det01_p0.5"] + out["det01_p1.0"]) / 2.0
    out["score"] = early + 0.25 * out["auc"] + 0.5 * strict
    return out


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC (ties count one half)."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def train(
    data_dirs: list[Path],
    out_dir: Path,
    minutes: float = 15.0,
    seed: int = 0,
    batch: int = 32,
    lr: float = 2e-3,
    eval_every: int = 100,
    patience: int = 10,
    threads: int = 2,
    head_hidden: int = 0,
    highpass: bool = False,
    init: Path | None = None,
    init_member: int | None = None,
    variants: bool = False,
    sequences: bool = False,
    sequence_share: float = 0.3,
    openeew: Path | None = None,
    openeew_share: float = 0.2,
    s_late: float = 0.0,
) -> dict:
    import torch

    from models.network import StreamingDetector

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    records = [r for d in data_dirs for r in load_dataset(d)]
    parts = fixed_split(records)
    # other earthquakes inside the pre-P "noise" would be taught as negatives: trim them
    parts = {k: screen_noise(v)[0] for k, v in parts.items()}
    train_recs, val_recs = parts["train"], parts["val"]
    log.info("records: train %d, val %d, test %d", len(train_recs), len(val_recs), len(parts["test"]))
    cfg = AugmentConfig(p_acc=0.35, p_rate=0.35) if variants else AugmentConfig()
    if sequences:
        cfg = replace(cfg, p_two=sequence_share)
    if s_late > 0:
        cfg = replace(cfg, p_s_late=s_late)
    real_acc: list[Record] = []
    if openeew is not None:  # real accelerometer-network records (dev earthquakes only)
        from models.openeew_train import dev_records

        real_acc = dev_records(openeew)
        cfg = replace(cfg, p_real_acc=openeew_share)
        log.info(
            "openeew dev records: %d events, %d noise spans",
            sum(r.kind == "event" for r in real_acc),
            sum(r.kind == "noise" for r in real_acc),
        )
    val = validation_streams(val_recs, val_recs)
    seq = sequence_streams(val_recs, val_recs) if sequences else None
    val_wave = torch.from_numpy(val["wave"])
    val_var = {k: torch.from_numpy(v) for k, v in variant_streams(val["wave"]).items()} if variants else {}

    model = StreamingDetector(head_hidden=head_hidden, highpass=highpass)
    if init is not None:
        init_from(model, init, init_member)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    deadline = time.monotonic() + minutes * 60
    t0 = time.monotonic()
    best: dict = {"score": -1.0}
    best_state = None
    history = []
    bad = 0
    it = 0
    while time.monotonic() < deadline:
        waves, ev, pt, _ = make_batch(rng, train_recs, train_recs, cfg, batch, real_acc)
        model.train()
        x = torch.from_numpy(waves)
        ev_t, pt_t = torch.from_numpy(ev), torch.from_numpy(pt)
        ev_l, p_l, _ = model.forward_logits(x, model.initial_state(batch))
        w = torch.ones_like(ev_t)
        w[:, : int(2.0 * 10)] = 0.3
        onset = torch.cumsum(ev_t, dim=1)  # steps since P (1 at the first event step)
        w = w + 3.0 * ((onset > 0) & (onset <= 30)).float()  # the first 3 s after P count 4x
        w = w + 1.0 * ((onset > 30) & (onset <= 100)).float()  # and up to P+10 s 2x: no decay after P
        loss_ev = (bce(ev_l, ev_t, reduction="none") * w).sum() / w.sum()
        wp = 1.0 + 9.0 * pt_t
        loss_p = (bce(p_l, pt_t, reduction="none") * wp).sum() / wp.sum()
        loss = loss_ev + 0.5 * loss_p
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        frac = min((time.monotonic() - t0) / (minutes * 60), 1.0)
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        opt.step()
        it += 1
        if it % eval_every == 0 or time.monotonic() >= deadline:
            model.eval()
            with torch.no_grad():
                v_ev, v_p, _ = model.forward_logits(val_wave, model.initial_state(val_wave.shape[0]))
                m = validation_metrics(v_ev.numpy())
                if seq is not None:  # + the second P's detection, - false new onsets in the coda
                    sw = torch.from_numpy(seq["wave"])
                    _, s_p, _ = model.forward_logits(sw, model.initial_state(sw.shape[0]))
                    noise_p = v_p.numpy()[:, VAL_WARM // STEP : (VAL_BEFORE - 50) // STEP]
                    m.update(sequence_metrics(s_p.numpy(), seq["p2"], noise_p.ravel()))
                    m["first_event_score"] = m["score"]
                    m["score"] += (
                        0.5 * (m["seq_det_p2+0.5"] + m["seq_det_p2+1.0"]) - 0.5 * m["seq_coda_false_p"]
                    )
                if val_var:  # the score: mean of native and the variants' mean
                    var_scores = {}
                    for name, w in val_var.items():
                        e, _, _ = model.forward_logits(w, model.initial_state(w.shape[0]))
                        var_scores[name] = validation_metrics(e.numpy())["score"]
                    m["native_score"] = m["score"]
                    m.update({f"score_{k}": v for k, v in var_scores.items()})
                    m["score"] = 0.5 * (m["native_score"] + float(np.mean(list(var_scores.values()))))
            m.update(it=it, loss=float(loss.detach()), elapsed_s=round(time.monotonic() - t0, 1))
            history.append(m)
            log.info(
                "it %d loss %.4f val %s", it, float(loss.detach()), {k: round(v, 4) for k, v in m.items()}
            )
            if m["score"] >= best["score"]:  # a tie keeps the later (longer-trained) weights
                bad = 0 if m["score"] > best["score"] else bad + 1
                best = m
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            if bad >= patience:
                log.info("early stop at it %d (no val improvement in %d evaluations)", it, patience)
                break
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "config": model.config(),
        "augment": asdict(cfg),
        "seed": seed,
        "init": None if init is None else f"{init.name} member {init_member}",
        "variants": variants,
        "sequences": sequences,
        "openeew": None if openeew is None else {"dev_records": len(real_acc), "share": openeew_share},
        "iterations": it,
        "train_seconds": round(time.monotonic() - t0, 1),
        "best_val": best,
        "history": history,
        "threads": threads,
        "records": {k: len(v) for k, v in parts.items()},
    }
    torch.save({"state_dict": best_state or model.state_dict(), "meta": result}, out_dir / "weights.pt")
    (out_dir / "training_log.json").write_text(json.dumps(result, indent=1))
    log.info("saved %s (best val %s)", out_dir / "weights.pt", best)
    return result


def main(argv: list[str]) -> int:
    from models.contract import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(prog="eew model train", description=__doc__)
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("EEW_SHARED_DIR", "../shared")),
        help="the shared folder holding data/nc_phasenet and data/stead50",
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_MODEL_DIR, help="model folder to write weights.pt into"
    )
    ap.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--head-hidden",
        type=int,
        default=0,
        help="width of MLP heads over LSTM + step features (0: linear heads)",
    )
    ap.add_argument(
        "--highpass",
        action="store_true",
        help="also feed each component's normalised first difference (suppresses microseisms)",
    )
    ap.add_argument("--init", type=Path, default=None, help="start from this model folder's weights.pt")
    ap.add_argument(
        "--init-member", type=int, default=None, help="member of an ensemble --init to start from"
    )
    ap.add_argument(
        "--variants",
        action="store_true",
        help="train and select also on other networks' data: acceleration (+MEMS noise), 20-50 Hz",
    )
    ap.add_argument(
        "--sequences",
        action="store_true",
        help="two-event streams (a second real event 3 s or more after the first, amplitude ratio 0.1-10, "
        "P target at both P's) and selection also on second-P detection (models.sequences)",
    )
    ap.add_argument(
        "--sequence-share",
        type=float,
        default=0.3,
        help="with --sequences: share of real event streams that get a second event",
    )
    ap.add_argument(
        "--openeew",
        type=Path,
        default=None,
        help="data/openeew_mx folder: mix its dev earthquakes' real accelerometer records (events and "
        "noise between earthquakes) into training (models.openeew_train; test earthquakes never read)",
    )
    ap.add_argument(
        "--openeew-share", type=float, default=0.2, help="share of a batch from --openeew records"
    )
    ap.add_argument(
        "--s-late",
        type=float,
        default=0.0,
        help="share of event streams (records with an S pick) whose S lies in the stream's last 3 s: the P "
        "head learns that S is not a new P",
    )
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(
        default_datasets(a.data_dir),
        a.out,
        a.minutes,
        a.seed,
        a.batch,
        a.lr,
        a.eval_every,
        a.patience,
        a.threads,
        a.head_hidden,
        a.highpass,
        a.init,
        a.init_member,
        a.variants,
        a.sequences,
        a.sequence_share,
        a.openeew,
        a.openeew_share,
        a.s_late,
    )
    return 0
