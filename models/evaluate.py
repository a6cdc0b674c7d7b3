"""Side-by-side evaluation of the streaming model and peer ONNX detectors on the same real windows.

``eew model evaluate --dataset DIR [--dataset DIR2] [--peer PEER.onnx ...] [--split test] --out OUT``

Every record gets ``PAD`` samples of real noise from OTHER recordings of the evaluated set before it,
rescaled to its own noise level (``models.data.padded_history``; never mirrored, tiled or zero-padded),
so every model sees the same history behind every window end:

* noise windows end every 1 s inside the record's own pre-P noise (up to P - 0.5 s);
* event windows end at P + 0.5, 1, 2, 3, 5 s;
* our model streams the padded record through ``models.runtime.StreamingModel`` (ONNX Runtime, the
  live path) in 1 s chunks aligned so that a chunk ends exactly at each window end, and its score is the
  event_prob at that chunk end; a peer scores the window of its own length ending there (its
  preprocessing, its score: max of the P curve, or of ``det`` for EQTransformer).

Variants (``--as-rate HZ``, ``--as-acceleration``, ``--variants``): every padded record, so every
event and noise window, is also scored as another network would record it, through the detector's own
code (``models.augment``): ``--as-rate 40`` sends the 100 Hz stream to 40 Hz and back through
``services.detector.resample.Resampler`` (what the detector does with a 40 Hz station);
``--as-acceleration`` turns velocity into acceleration (first difference x rate; the model scores
accelerometers as acceleration), and with ``--as-rate`` also at each of those rates (acceleration first,
then the rate, as a MEMS sensor records it). Native is always included; the peers get the same
resampled-back 100 Hz streams. Noise-FAR thresholds are taken per variant from its own noise windows.
With variants the tables get a ``variant`` column and a summary table (rows model x variant).

Outputs ``OUT/evaluation.json`` and ``OUT/evaluation.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from models.data import NOISE_MARGIN, Record, load_dataset, padded_history, screen_noise, select

log = logging.getLogger(__name__)

FS = 100
PAD = 6000  # donor noise before each record: covers a 60 s window ending at the record's start
DELTAS = (0.5, 1.0, 2.0, 3.0, 5.0)
FARS = (0.01, 0.001)
PICK_DELTA = 5.0  # P picks are taken from the window ending at P + 5 s
CHUNK = 100


@dataclass
class Prepared:
    rec: Record
    hist: np.ndarray  # (3, PAD + N) float32
    p_idx: int
    noise_ends: np.ndarray  # window-end sample indices (exclusive) inside the own pre-P noise

    def event_ends(self) -> np.ndarray:
        return np.array([self.p_idx + int(round(d * FS)) for d in DELTAS])


def prepare(records: list[Record], pool: list[Record] | None = None, seed: int = 2024) -> list[Prepared]:
    """Pad every record with real donor noise from the other records of ``pool`` (default: the same set)."""
    rng = np.random.default_rng(seed)
    pool = records if pool is None else pool
    out = []
    for rec in records:
        hist, p_idx = padded_history(rng, rec, pool, PAD)
        if hist.shape[1] < p_idx + int(max(DELTAS) * FS):
            log.warning("%s: record ends before P+%gs, skipped", rec.key, max(DELTAS))
            continue
        ends = np.arange(PAD + CHUNK, p_idx - NOISE_MARGIN + 1, CHUNK)
        out.append(Prepared(rec, hist, p_idx, ends))
    return out


@dataclass
class Scores:
    """One model's scores on the prepared set."""

    name: str
    noise: list[float] = field(default_factory=list)
    events: list[list[float]] = field(default_factory=list)  # per record, per delta
    pick_err_s: list[float] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------- variants (other networks)

#: ``--variants all``: native, the rates the model is trained for, acceleration, a MEMS network at 31.25 Hz.
ALL_RATES = (20.0, 31.25, 40.0, 50.0)


@dataclass(frozen=True)
class Variant:
    """A stream as another network records it: another rate (there and back to 100 Hz through the
    detector's resampler) and/or acceleration instead of velocity."""

    rate_hz: float | None = None  # None: the native 100 Hz
    acceleration: bool = False

    @property
    def native(self) -> bool:
        return self.rate_hz is None and not self.acceleration

    @property
    def name(self) -> str:
        if self.native:
            return "native"
        parts = (["acceleration"] if self.acceleration else []) + (
            [f"{self.rate_hz:g} Hz"] if self.rate_hz is not None else []
        )
        return " ".join(parts)

    def apply(self, wave: np.ndarray) -> np.ndarray:
        """(3, N) native 100 Hz velocity -> (3, N) float32 as this variant reaches the model."""
        from models.augment import as_acceleration, through_rate

        if self.native:
            return wave
        x = np.asarray(wave, np.float64)
        if self.acceleration:
            x = as_acceleration(x)
        if self.rate_hz is not None:
            x = through_rate(x, self.rate_hz)
        return x.astype(np.float32)


NATIVE = Variant()


def _rate(text: str) -> float:
    """A variant rate the detector's resampler takes (not the model rate itself)."""
    from services.common.streams import resample_ratio

    try:
        hz = float(text)
    except ValueError:
        raise ValueError(f"variant rate {text!r}: not a number of Hz") from None
    ratio = resample_ratio(hz, FS)
    if isinstance(ratio, str):
        raise ValueError(f"variant rate {hz:g} Hz: the detector refuses it ({ratio})")
    if ratio == (1, 1):
        raise ValueError(f"variant rate {hz:g} Hz is the model rate: that is the native variant")
    return hz


def parse_variants(tokens: list[str], as_rates: list[str], as_acceleration: bool) -> list[Variant]:
    """Variants to evaluate, native first, no duplicates.

    ``tokens`` (``--variants``, comma lists allowed): ``native``, ``HZ``, ``acc`` or ``acceleration``,
    ``acc@HZ``, ``all`` (native, 20, 31.25, 40, 50 Hz, acceleration, acceleration at 31.25 Hz).
    ``as_rates`` (``--as-rate``) x ``as_acceleration``: every rate given, and with acceleration also
    acceleration at the native rate and at every rate given.
    """
    out = [NATIVE]
    for tok in (t.strip().lower() for item in tokens for t in item.split(",")):
        if not tok:
            continue
        if tok == "all":
            out += [Variant(r) for r in ALL_RATES] + [Variant(None, True), Variant(31.25, True)]
        elif tok == "native":
            pass
        elif tok in ("acc", "acceleration"):
            out.append(Variant(None, True))
        elif tok.startswith(("acc@", "acceleration@")):
            out.append(Variant(_rate(tok.split("@", 1)[1]), True))
        else:
            out.append(Variant(_rate(tok)))
    rates = [_rate(t.strip()) for item in as_rates for t in item.split(",") if t.strip()]
    out += [Variant(r) for r in rates]
    if as_acceleration:
        out += [Variant(None, True)] + [Variant(r, True) for r in rates]
    return list(dict.fromkeys(out))


def apply_variant(prepared: list[Prepared], variant: Variant) -> list[Prepared]:
    """The prepared set with every padded stream (donor history, noise and event windows) as ``variant``."""
    if variant.native:
        return prepared
    return [replace(pr, hist=variant.apply(pr.hist)) for pr in prepared]


# ---------------------------------------------------------------- our streaming model


def _stream(model, wave: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Stream wave[:, start:stop] (multiple of CHUNK) from a zero state: event_prob per chunk, p_prob per step."""
    ev, pp = model.score_stream(wave[None, :, start:stop], CHUNK)
    return ev[0], pp[0]


def score_ours(model, prepared: list[Prepared]) -> Scores:
    t0 = time.perf_counter()
    sc = Scores(name=f"{model.contract.model_id} {model.contract.model_version} (ours)")
    step = model.contract.step_samples
    for pr in prepared:
        ends = pr.event_ends()
        ev_scores = np.zeros(len(ends))
        groups: dict[int, list[int]] = {}
        for i, e in enumerate(ends):
            groups.setdefault(int(e % CHUNK), []).append(i)
        for off, idx in groups.items():
            stop = int(max(ends[idx]))
            ev, pp = _stream(model, pr.hist, off, stop)
            chunk_end = off + CHUNK * (np.arange(len(ev)) + 1)
            for i in idx:
                ev_scores[i] = ev[np.flatnonzero(chunk_end == ends[i])[0]]
            if PICK_DELTA in [DELTAS[i] for i in idx]:
                e = ends[DELTAS.index(PICK_DELTA)]
                centres = off + step * np.arange(len(pp)) + (step - 1) / 2.0
                sc.pick_err_s.append((_pick(pp, centres, e - 3000, e, step) - pr.p_idx) / FS)
        sc.events.append(ev_scores.tolist())
        if len(pr.noise_ends):
            ev, _ = _stream(model, pr.hist, 0, int(pr.noise_ends[-1]))
            chunk_end = CHUNK * (np.arange(len(ev)) + 1)
            sc.noise += ev[np.isin(chunk_end, pr.noise_ends)].tolist()
    sc.seconds = time.perf_counter() - t0
    return sc


def noise_windows_ours(model, prepared: list[Prepared]) -> tuple[np.ndarray, np.ndarray]:
    """Our event_prob at every noise window end and p_prob at every noise step (for thresholds)."""
    evs, pps = [], []
    step = model.contract.step_samples
    for pr in prepared:
        if not len(pr.noise_ends):
            continue
        ev, pp = _stream(model, pr.hist, 0, int(pr.noise_ends[-1]))
        chunk_end = CHUNK * (np.arange(len(ev)) + 1)
        evs.append(ev[np.isin(chunk_end, pr.noise_ends)])
        step_end = step * (np.arange(len(pp)) + 1)
        pps.append(pp[(step_end > pr.noise_ends[0] - CHUNK) & (step_end <= pr.noise_ends[-1])])
    return np.concatenate(evs), np.concatenate(pps)


def _pick(curve: np.ndarray, centres: np.ndarray, lo: float, hi: float, spacing: float) -> float:
    """Sample of the curve's maximum within (lo, hi], refined by a parabola through its neighbours."""
    sel = np.flatnonzero((centres > lo) & (centres <= hi))
    k = sel[np.argmax(curve[sel])]
    t = float(centres[k])
    if 0 < k < len(curve) - 1:
        y0, y1, y2 = curve[k - 1], curve[k], curve[k + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            t += spacing * float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return t


# ---------------------------------------------------------------- peers


@dataclass(frozen=True)
class PeerSpec:
    input_name: str
    window: int
    order: tuple[int, int, int]  # indices into our Z, N, E rows giving the peer's channel order
    norm: str  # "maxabs" | "std"
    score_output: str
    score_index: int | None  # channel of the score output holding the P curve (None: 2-D output)
    pick_output: str
    pick_index: int | None


def peer_spec(path: Path) -> PeerSpec:
    """The contract of the three shared peers (see shared/peers/README.md), chosen by file name."""
    name = Path(path).name.lower()
    if "phasenetlight" in name:
        return PeerSpec("x", 3001, (0, 1, 2), "maxabs", "psn", 0, "psn", 0)
    if "phasenet" in name:
        return PeerSpec("x", 3001, (2, 1, 0), "std", "nps", 1, "nps", 1)
    if "eqt" in name:
        return PeerSpec("wave_zne", 6000, (0, 1, 2), "std", "det", None, "p", None)
    raise ValueError(f"unknown peer model {path}: expected phasenetlight*, phasenet*, eqt*")


class Peer:
    def __init__(self, path: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.spec = peer_spec(self.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        if names != [self.spec.input_name]:
            raise ValueError(f"{path}: inputs {names}, expected [{self.spec.input_name}]")
        self.name = self.path.stem

    def preprocess(self, windows: np.ndarray) -> np.ndarray:
        """(B, 3, W) in Z, N, E -> the peer's order and per-window, per-channel normalisation."""
        x = windows[:, list(self.spec.order)].astype(np.float64)
        x = x - x.mean(axis=2, keepdims=True)
        if self.spec.norm == "maxabs":
            x = x / (np.abs(x).max(axis=2, keepdims=True) + 1e-10)
        else:
            x = x / (x.std(axis=2, keepdims=True) + 1e-10)
        return x.astype(np.float32)

    def curves(self, windows: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(score curve, pick curve), each (B, W)."""
        sc, pk = [], []
        s = self.spec
        for i in range(0, len(windows), batch):
            outs = self.session.run(
                [s.score_output, s.pick_output], {s.input_name: self.preprocess(windows[i : i + batch])}
            )
            a, b = outs
            sc.append(a[:, s.score_index] if s.score_index is not None else a)
            pk.append(b[:, s.pick_index] if s.pick_index is not None else b)
        return np.concatenate(sc), np.concatenate(pk)


def score_peer(peer: Peer, prepared: list[Prepared]) -> Scores:
    t0 = time.perf_counter()
    sc = Scores(name=peer.name)
    w = peer.spec.window
    noise_w, event_w = [], []
    for pr in prepared:
        noise_w += [pr.hist[:, e - w : e] for e in pr.noise_ends]
        event_w += [pr.hist[:, e - w : e] for e in pr.event_ends()]
    if noise_w:
        s, _ = peer.curves(np.stack(noise_w))
        sc.noise = s.max(axis=1).tolist()
    s, pk = peer.curves(np.stack(event_w))
    nd = len(DELTAS)
    score = s.max(axis=1).reshape(-1, nd)
    sc.events = score.tolist()
    ip = DELTAS.index(PICK_DELTA)
    pk = pk.reshape(len(prepared), nd, w)[:, ip]
    for pr, curve in zip(prepared, pk, strict=True):
        e = pr.event_ends()[ip]
        centres = np.arange(e - w, e, dtype=np.float64)
        sc.pick_err_s.append((_pick(curve, centres, e - w - 1, e, 1.0) - pr.p_idx) / FS)
    sc.seconds = time.perf_counter() - t0
    return sc


# ---------------------------------------------------------------- metrics


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC (ties count one half)."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def far_threshold(noise: np.ndarray, far: float) -> float:
    """Smallest threshold t such that at most ``far`` of noise windows have score > t."""
    return float(np.quantile(np.asarray(noise, np.float64), 1.0 - far, method="higher"))


def metrics(sc: Scores, op_threshold: float, stride_s: float = 1.0) -> dict:
    noise = np.asarray(sc.noise, np.float64)
    ev = np.asarray(sc.events, np.float64)  # (R, D)
    out: dict = {"model": sc.name, "n_events": int(ev.shape[0]), "n_noise_windows": int(len(noise))}
    out["noise_hours"] = len(noise) * stride_s / 3600.0
    out["roc_auc"] = roc_auc(ev.ravel(), noise)
    out["roc_auc_by_delta"] = {f"P+{d:g}s": roc_auc(ev[:, i], noise) for i, d in enumerate(DELTAS)}
    tp = int((ev.ravel() >= op_threshold).sum())
    fn = ev.size - tp
    fp = int((noise >= op_threshold).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / ev.size
    out["operating"] = {
        "threshold": op_threshold,
        "precision": prec,
        "recall": rec,
        "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "false_alarm_rate_per_window": fp / len(noise) if len(noise) else float("nan"),
        "false_alarms_per_station_hour": fp / out["noise_hours"] if len(noise) else float("nan"),
    }
    out["early_detection"] = {}
    for far in FARS:
        thr = far_threshold(noise, far)
        out["early_detection"][f"far_{far:g}"] = {
            "threshold": thr,
            "realised_noise_far": float((noise > thr).mean()),
            "false_alarms_per_station_hour": float((noise > thr).sum() / out["noise_hours"]),
            **{f"P+{d:g}s": float((ev[:, i] > thr).mean()) for i, d in enumerate(DELTAS)},
        }
    err = np.asarray(sc.pick_err_s, np.float64)
    med = float(np.median(err))
    out["p_onset_error_s"] = {
        "window_end": f"P+{PICK_DELTA:g}s",
        "median": med,
        "mad": float(np.median(np.abs(err - med))),
        "within_0.1s": float((np.abs(err) <= 0.1).mean()),
        "within_0.5s": float((np.abs(err) <= 0.5).mean()),
    }
    out["score_seconds"] = sc.seconds
    return out


SUMMARY_DELTAS = (0.5, 1.0, 2.0)  # the variant summary's columns (at every FAR)


def _row(m: dict) -> str:
    """A table row's leading cells: the model, and its variant when the run has variants."""
    return f"| {m['model']} | " + (f"{m['variant']} | " if "variant" in m else "")


def variant_summary(ms: list[dict]) -> list[str]:
    """Rows model x variant: detection at P+0.5/1/2 s at each noise FAR, ROC-AUC, P+1 s (1%) vs native."""
    head = " | ".join(f"{far:.1%}: P+{d:g}s" for far in FARS for d in SUMMARY_DELTAS)
    lines = [
        "| model | variant | " + head + " | ROC-AUC | P+1s at 1.0% vs native |",
        "|---|---|" + "---|" * (len(FARS) * len(SUMMARY_DELTAS)) + "---|---|",
    ]
    native = {m["model"]: m for m in ms if m["variant"] == NATIVE.name}
    key = f"far_{FARS[0]:g}"
    for m in ms:
        ed = m["early_detection"]
        cells = [f"{ed[f'far_{far:g}'][f'P+{d:g}s']:.3f}" for far in FARS for d in SUMMARY_DELTAS]
        ref = native.get(m["model"])
        diff = (
            "—"
            if ref is None or m is ref
            else f"{100 * (ed[key]['P+1s'] - ref['early_detection'][key]['P+1s']):+.1f} pt"
        )
        lines.append(_row(m) + " | ".join(cells) + f" | {m['roc_auc']:.4f} | {diff} |")
    return lines


def markdown(result: dict) -> str:
    ms = result["models"]
    variants = "variants" in result
    vhead, vsep = ("variant | ", "---|") if variants else ("", "")
    lines = [
        f"# Evaluation: {', '.join(result['datasets'])} (split: {result['split']})",
        "",
        f"{result['n_events']} events, {result['n_noise_windows']} real noise windows "
        f"({result['noise_hours']:.3f} station-hours at 1 s stride). Command: `{result['command']}`",
        "",
    ]
    if variants:
        lines += [
            "## Variants (every event and noise window as another network records it, through the detector's "
            "code: rate = 100 Hz -> rate -> 100 Hz through its resampler; acceleration = first difference x "
            "100 Hz, before the rate; thresholds per variant from its own noise windows)",
            "",
            *variant_summary(ms),
            "",
            "Seconds per variant (transform and all models): "
            + ", ".join(f"{k} {v:.0f}" for k, v in result["variant_seconds"].items())
            + ".",
            "",
        ]
    lines += [
        "## Early detection (fraction of events whose window ending at P+t fires, at the threshold where the "
        "given fraction of real noise windows fires)",
        "",
        "| model | " + vhead + "noise FAR | " + " | ".join(f"P+{d:g}s" for d in DELTAS) + " | ROC-AUC |",
        "|---|" + vsep + "---|" + "---|" * len(DELTAS) + "---|",
    ]
    for m in ms:
        for far in FARS:
            ed = m["early_detection"][f"far_{far:g}"]
            lines.append(
                _row(m)
                + f"{far:.1%} | "
                + " | ".join(f"{ed[f'P+{d:g}s']:.3f}" for d in DELTAS)
                + f" | {m['roc_auc']:.4f} |"
            )
    lines += [
        "",
        "## Operating threshold (ours: contract detection threshold; peers: --peer-threshold)",
        "",
        "| model | "
        + vhead
        + "threshold | precision | recall | F1 | FA / noise window | FA / station-hour |",
        "|---|" + vsep + "---|---|---|---|---|---|",
    ]
    for m in ms:
        o = m["operating"]
        lines.append(
            _row(m) + f"{o['threshold']:.4g} | {o['precision']:.3f} | {o['recall']:.3f} | {o['f1']:.3f} | "
            f"{o['false_alarm_rate_per_window']:.4f} | {o['false_alarms_per_station_hour']:.1f} |"
        )
    lines += [
        "",
        "## P-onset error (pick = maximum of the P curve in the window ending at P+5 s)",
        "",
        "| model | " + vhead + "median (s) | MAD (s) | within 0.1 s | within 0.5 s |",
        "|---|" + vsep + "---|---|---|---|",
    ]
    for m in ms:
        p = m["p_onset_error_s"]
        lines.append(
            _row(m)
            + f"{p['median']:+.3f} | {p['mad']:.3f} | {p['within_0.1s']:.3f} | {p['within_0.5s']:.3f} |"
        )
    lines += [
        "",
        "Precision counts every event window (all P+t) against every noise window, so it depends on that ratio. "
        "Noise windows end every 1 s in each record's own pre-P noise (to P-0.5 s); history before a record "
        "is real noise from other recordings of the set, rescaled to the record's noise level.",
        "",
    ]
    if result.get("noise_screened"):
        trimmed = result.get("noise_trimmed_records", [])
        lines += [
            f"Noise screening: the pre-P noise of {len(trimmed)} records held an earthquake-like burst (two or "
            "more seconds above 5x the record's median per-second peak) and was used only after it (+5 s): "
            + (", ".join(trimmed) or "none")
            + ". `--no-screen` keeps them.",
            "",
        ]
    else:
        lines += ["Noise not screened (`--no-screen`): bursts in the pre-P noise count as noise.", ""]
    return "\n".join(lines)


def evaluate(
    datasets: list[Path],
    peers: list[Path],
    split: str,
    model_dir: Path,
    peer_threshold: float = 0.5,
    seed: int = 2024,
    command: str = "",
    threads: int = 2,
    screen: bool = True,
    variants: list[Variant] | None = None,
) -> dict:
    from models.runtime import StreamingModel

    records = [r for d in datasets for r in load_dataset(d)]
    chosen = select(records, split)
    if not chosen:
        raise ValueError(f"no records of {datasets} in split {split!r} (use --split all for a foreign set)")
    trimmed: list[str] = []
    if screen:
        chosen, trimmed = screen_noise(chosen)
        log.info("noise screening trimmed the pre-P noise of %d records: %s", len(trimmed), trimmed)
    prepared = prepare(chosen, seed=seed)
    model = StreamingModel(model_dir, providers=["CPUExecutionProvider"], intra_op_threads=threads)
    peer_models = [Peer(p, threads) for p in peers]
    variants = variants or [NATIVE]
    with_variants = variants != [NATIVE]
    by_model: list[list[tuple[Variant, Scores, float]]] = [[] for _ in range(1 + len(peer_models))]
    variant_seconds: dict[str, float] = {}
    for v in variants:
        t0 = time.perf_counter()
        pv = apply_variant(prepared, v)
        by_model[0].append((v, score_ours(model, pv), model.contract.thresholds.detection))
        for i, peer in enumerate(peer_models, 1):
            by_model[i].append((v, score_peer(peer, pv), peer_threshold))
        variant_seconds[v.name] = time.perf_counter() - t0
        if with_variants:
            log.info(
                "variant %s scored by %d models in %.0f s", v.name, len(by_model), variant_seconds[v.name]
            )
    runs = [run for model_runs in by_model for run in model_runs]  # model-major: a model's variants together
    ms = []
    for v, s, thr in runs:
        m = metrics(s, thr)
        if with_variants:
            m["variant"] = v.name
        ms.append(m)
    res = {
        "datasets": [str(d) for d in datasets],
        "split": split,
        "command": command,
        "n_events": ms[0]["n_events"],
        "n_noise_windows": ms[0]["n_noise_windows"],
        "noise_hours": ms[0]["noise_hours"],
        "records": [p.rec.key for p in prepared],
        "noise_screened": screen,
        "noise_trimmed_records": trimmed,
        "models": ms,
        "scores": {
            (f"{s.name} [{v.name}]" if with_variants else s.name): {
                "noise": s.noise,
                "events": s.events,
                "pick_err_s": s.pick_err_s,
            }
            for v, s, _ in runs
        },
    }
    if with_variants:
        res["variants"] = [v.name for v in variants]
        res["variant_seconds"] = variant_seconds
    return res


def main(argv: list[str]) -> int:
    import shlex

    from models.contract import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(
        prog="eew model evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--dataset",
        type=Path,
        action="append",
        required=True,
        help="a folder in the nc_phasenet npz or stead50 HDF5 layout (repeatable)",
    )
    ap.add_argument("--peer", type=Path, action="append", default=[], help="a peer ONNX model (repeatable)")
    ap.add_argument("--split", default="test", help="train|val|test per models/splits, or all")
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--peer-threshold", type=float, default=0.5, help="operating threshold for peers")
    ap.add_argument("--seed", type=int, default=2024, help="seed of the donor-noise padding")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--no-screen",
        action="store_true",
        help="keep earthquake-like bursts in the pre-P noise (default: trimmed, see models.data.screen_noise)",
    )
    ap.add_argument(
        "--as-rate",
        action="append",
        default=[],
        metavar="HZ",
        help="also score every stream as recorded at HZ (100 Hz -> HZ -> 100 Hz through the detector's "
        "resampler; repeatable or a comma list, e.g. 20,31.25,40,50)",
    )
    ap.add_argument(
        "--as-acceleration",
        action="store_true",
        help="also score every stream as acceleration (first difference x rate), at 100 Hz and at every --as-rate",
    )
    ap.add_argument(
        "--variants",
        action="append",
        default=[],
        metavar="LIST",
        help="variants as a comma list of native, HZ, acc, acc@HZ; 'all' = native, 20, 31.25, 40, 50 Hz, "
        "acc, acc@31.25 (native is always included)",
    )
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    try:
        variants = parse_variants(a.variants, a.as_rate, a.as_acceleration)
    except ValueError as e:
        ap.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cmd = "eew model evaluate " + shlex.join(argv)
    res = evaluate(
        a.dataset,
        a.peer,
        a.split,
        a.model_dir,
        a.peer_threshold,
        a.seed,
        cmd,
        a.threads,
        not a.no_screen,
        variants,
    )
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "evaluation.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (a.out / "evaluation.md").write_text(md)
    print(md)
    return 0
