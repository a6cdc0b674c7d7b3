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

Sequences (``--sequences N``, issue 13): N two-event streams of the evaluated records
(``models.sequences.build_sequences``, seed ``--sequence-seed``): the second event's P 3-120 s after the
first (log-uniform), its peak 0.1-10x the first's (log-uniform), every third one a smaller event (0.1-1x)
3-15 s into the coda of one of the louder half. Our model: the detector's own trigger rule
(``services.common.triggers.onset.replay``) on its outputs, streamed so that a chunk ends exactly at
P2 + 0.5 s (and at P2 + 1 s for P2 + 1 / 2 s), at the detection thresholds of the first-event tables'
noise FARs; a P counts as detected at P + t when a new trigger decided from P - 0.5 s to P + t has its
pick within 1 s of it. The P head alone and the peers' P curves: the curve's maximum from P2 - 0.5 s to
P2 + t against the level the same share of the run's noise windows' P-curve maxima exceed. Also: the
P2 pick error, the same rule's first-event detection on the single records, and its false triggers
(after a single event's P: S and coda; in sequences: not at either P).

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
    noise_pick: list[float] = field(default_factory=list)  # max of the P curve in each noise window
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
            ev, pp = _stream(model, pr.hist, 0, int(pr.noise_ends[-1]))
            chunk_end = CHUNK * (np.arange(len(ev)) + 1)
            sel = np.isin(chunk_end, pr.noise_ends)
            sc.noise += ev[sel].tolist()
            sc.noise_pick += pp.reshape(len(ev), -1).max(axis=1)[sel].tolist()
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
        s, pk = peer.curves(np.stack(noise_w))
        sc.noise = s.max(axis=1).tolist()
        sc.noise_pick = pk.max(axis=1).tolist()
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


def band_snr(x: np.ndarray, p: int, lo: float, hi: float, after_s: float = 1.0, noise_s: float = 20.0) -> float:
    """How much of a P a band carries in its first second: ``models.openeew.band_snr`` of the 100 Hz
    stream, noise ending 0.5 s before P (nan when the stream is too short for it)."""
    from models.openeew import band_snr as snr

    r = snr(x, FS, p, lo, hi, after_s, noise_s, gap_s=0.5)
    return float("nan") if r is None else r


def variant_losses(prepared: list[Prepared], runs: list[tuple[Variant, Scores, float]], far: float = FARS[0]) -> dict:
    """Per variant of our model: the events detected natively at P+1 s (noise FAR ``far``) but not in the
    variant, with the SNR of their vertical P (native record, first second) inside the band the variant
    keeps (1 Hz to 0.8 x its Nyquist) and above it; and the same SNR's range over the events it kept.
    Shows whether a variant loses events whose P lies above its band: ``by_snr`` counts detections
    natively and in the variant among the events up to the largest lost in-band SNR and above it."""
    from services.detector.resample import CUTOFF

    i1 = DELTAS.index(1.0)

    def hits(sc: Scores) -> np.ndarray:
        thr = far_threshold(np.asarray(sc.noise), far)
        return np.asarray(sc.events)[:, i1] > thr

    native = [sc for v, sc, _ in runs if v.native][0]
    nat = hits(native)
    out: dict = {}
    for v, sc, _ in runs:
        if v.native or v.rate_hz is None:
            continue
        top = CUTOFF * v.rate_hz / 2.0
        mine = hits(sc)
        snr_in = [band_snr(pr.hist[0], pr.p_idx, 1.0, top) for pr in prepared]
        snr_above = [band_snr(pr.hist[0], pr.p_idx, top, 40.0) for pr in prepared]
        lost = [
            {"record": pr.rec.key, "snr_in_band": snr_in[i], "snr_above_band": snr_above[i]}
            for i, pr in enumerate(prepared)
            if nat[i] and not mine[i]
        ]
        edge = max((x["snr_in_band"] for x in lost), default=None)
        split = {}
        if edge is not None:  # the events up to the largest lost SNR, and above it: natively / in the variant
            low = np.asarray(snr_in) <= edge
            for part, sel in (("at_or_below", low), ("above", ~low)):
                split[part] = {"events": int(sel.sum()), "native": int(nat[sel].sum()), "variant": int(mine[sel].sum())}
        out[v.name] = {"band_hz": [1.0, top], "lost": lost, "snr_edge": edge, "by_snr": split}
    return out


def losses_markdown(losses: dict) -> list[str]:
    lines = [
        "### Events lost to a rate (ours: detected natively at P+1 s, 1.0 % noise FAR, not in the variant)",
        "",
        "SNR = peak of the native vertical band-passed, first second after P, over the pre-P noise RMS.",
        "",
        "| variant | band kept | lost events (SNR in band / above band) | events up to the largest lost SNR in band: "
        "detected natively / in the variant | events above it: natively / in the variant |",
        "|---|---|---|---|---|",
    ]
    for name, d in losses.items():
        lost = "; ".join(
            f"{x['record'].split('/')[-1]} ({x['snr_in_band']:.1f} / {x['snr_above_band']:.1f})" for x in d["lost"]
        ) or "none"
        cells = [
            "-" if part not in d["by_snr"] else
            f"{d['by_snr'][part]['native']} / {d['by_snr'][part]['variant']} of {d['by_snr'][part]['events']}"
            for part in ("at_or_below", "above")
        ]
        lines.append(f"| {name} | {d['band_hz'][0]:g}-{d['band_hz'][1]:g} Hz | {lost} | {cells[0]} | {cells[1]} |")
    return lines


# ---------------------------------------------------------------- sequences (issue 13)

SEQ_DELTAS = (0.5, 1.0, 2.0)
SEQ_PICK_DELTA = 5.0  # a P2 pick: the detector's first new trigger by P2 + 5 s / a peer's window ending there
PICK_TOL_S = 1.0  # a trigger detects a P when its pick lies this close to it
EARLY_S = 0.5  # a trigger decided up to this long before the P still counts (the second event's ramp-in)


def _alignment(p: int, delta: float) -> int:
    """Stream start offset (< CHUNK) that puts a chunk end exactly at ``p + delta``."""
    return int((p + int(round(delta * FS))) % CHUNK)


def stream_batch(model, waves: list[np.ndarray], offsets: list[int], batch: int = 32) -> list[tuple]:
    """Each wave streamed from a zero state from its offset to its last whole chunk (ends zero-padded
    within a batch; the model is causal, so padding after a stream's end changes nothing before it):
    [(event_prob per chunk, p_prob per step)]."""
    out: list[tuple] = []
    for i in range(0, len(waves), batch):
        ws = [w[:, o:] for w, o in zip(waves[i : i + batch], offsets[i : i + batch], strict=True)]
        ks = [w.shape[1] // CHUNK for w in ws]
        x = np.zeros((len(ws), 3, max(ks) * CHUNK), np.float32)
        for j, (w, k) in enumerate(zip(ws, ks, strict=True)):
            x[j, :, : k * CHUNK] = w[:, : k * CHUNK]
        ev, pp = model.score_stream(x, CHUNK)
        steps = CHUNK // model.contract.step_samples
        out += [(ev[j, :k], pp[j, : k * steps]) for j, k in enumerate(ks)]
    return out


def onset_rule(detection: float, retrigger: float):
    """The detector's onset rule (``services.common.triggers.onset``) at ``detection`` with the
    detector's default knobs (``CoreTuning``)."""
    from services.common.triggers.onset import OnsetRule
    from services.detector.core import CoreTuning

    t = CoreTuning()
    return OnsetRule.from_seconds(
        detection=detection,
        rearm_level=0.5 * detection if t.rearm_threshold is None else t.rearm_threshold,
        rearm_s=t.rearm_s,
        retrigger=retrigger if t.retrigger_threshold is None else t.retrigger_threshold,
        p_rearm=t.p_rearm_threshold,
        min_separation_s=t.retrigger_min_separation_s,
        hold_s=t.retrigger_hold_s,
    )


def detector_triggers(rule, ev: np.ndarray, pp: np.ndarray, offset: int, p_pick: float, warmup_s: float):
    """(decision sample, onset sample, retrigger) of every new trigger the detector core makes of a stream
    scored from ``offset`` (``services.common.triggers.onset.replay``)."""
    from services.common.triggers.onset import replay
    from services.common.triggers.picks import PICK_MAX_LEAD_S

    step = CHUNK // (len(pp) // max(len(ev), 1)) if len(ev) else 10
    trig = replay(
        rule, ev, pp, p_pick, int(PICK_MAX_LEAD_S * FS) // step, int(np.ceil(warmup_s * FS / CHUNK))
    )
    return [
        (offset + (t.chunk + 1) * CHUNK, offset + t.onset_step * step + (step - 1) / 2.0, t.retrigger)
        for t in trig
    ]


def _detected(trigs, p: int, delta: float) -> bool:
    """A new trigger decided from P - EARLY_S to P + delta whose pick lies within PICK_TOL_S of P."""
    lo, hi = p - EARLY_S * FS, p + delta * FS
    return any(lo <= t <= hi and abs(o - p) <= PICK_TOL_S * FS for t, o, _ in trigs)


def _pick_error(trigs, p: int) -> float | None:
    """Seconds from P to the pick of the first new trigger decided from P - EARLY_S to P + 5 s."""
    for t, o, _ in trigs:
        if p - EARLY_S * FS <= t <= p + SEQ_PICK_DELTA * FS:
            return (o - p) / FS
    return None


def _errors(err: list[float | None]) -> dict:
    e = np.asarray([x for x in err if x is not None], np.float64)
    if not len(e):
        return {"n": 0, "picked": 0.0}
    med = float(np.median(e))
    return {
        "n": int(len(e)),
        "picked": len(e) / max(len(err), 1),
        "median": med,
        "mad": float(np.median(np.abs(e - med))),
        "within_0.1s": float((np.abs(e) <= 0.1).mean()),
        "within_0.5s": float((np.abs(e) <= 0.5).mean()),
    }


SEQ_GROUPS = {
    "all": lambda q: True,
    "second P visible (1-10 Hz peak in 2 s > 3x RMS of the 5 s before)": lambda q: q.p2_visible,
    "second P buried": lambda q: not q.p2_visible,
    "coda (3-15 s after a loud event, 0.1-1x)": lambda q: q.coda,
    "second P 3-15 s after": lambda q: q.dt_s < 15.0,
    "second P 15-120 s after": lambda q: q.dt_s >= 15.0,
    "ratio < 1": lambda q: q.ratio < 1.0,
    "ratio >= 1": lambda q: q.ratio >= 1.0,
}


def evaluate_sequences(
    model,
    prepared: list[Prepared],
    pool,
    ours: Scores,
    peers: list,
    n: int,
    seed: int,
    sweep: tuple[float, ...] = (),
) -> dict:
    """Second-P detection on sequences of held-out records (``models.sequences.build_sequences``) beside
    the first P's, at the noise FARs of the first-event tables (thresholds from ``ours``/peers' noise
    windows of the same run). Ours: the detector's own trigger rule (``triggers.onset``) on the model's
    outputs, and its P head alone (max of the P curve from P - 0.5 s, against the level that the given
    share of noise windows' P-curve maxima exceed); peers: their P curve the same way."""
    from models.sequences import build_sequences, live_end

    t0 = time.perf_counter()
    seqs = build_sequences([(p.rec, p.hist, p.p_idx) for p in prepared], pool, n, seed)
    # single events up to the end of their live data (a flat tail is a processing edge, not the coda)
    singles = [p.hist[:, : p.p_idx - p.rec.p + live_end(p.rec)] for p in prepared]
    c = model.contract
    p_pick = c.thresholds.p_pick
    # the detector rule: sequences aligned at P2 + 0.5 s and at P2 + 1 s; single events at P + 0.5 / 1 s
    runs = {}
    for a in (0.5, 1.0):
        offs = [_alignment(q.p2, a) for q in seqs]
        runs[("seq", a)] = (offs, stream_batch(model, [q.wave for q in seqs], offs))
        offs = [_alignment(p.p_idx, a) for p in prepared]
        runs[("one", a)] = (offs, stream_batch(model, singles, offs))
    res: dict = {
        "n_sequences": len(seqs),
        "seed": seed,
        "fars": {},
        "sequences": [],
        "n_single": len(prepared),
    }
    post_p_hours = (
        sum(max(w.shape[1] - p.p_idx, 0) for w, p in zip(singles, prepared, strict=True)) / FS / 3600.0
    )
    for far in FARS:
        thr = far_threshold(np.asarray(ours.noise), far)
        rule = onset_rule(thr, c.thresholds.retrigger_level)
        out: dict = {"threshold": thr, "retrigger_level": rule.retrigger, "groups": {}}
        trig = {}
        for key, (offs, streams) in runs.items():
            trig[key] = [
                detector_triggers(rule, ev, pp, o, p_pick, c.warmup_s)
                for o, (ev, pp) in zip(offs, streams, strict=True)
            ]
        first = {
            d: float(
                np.mean(
                    [
                        _detected(t, p.p_idx, d)
                        for t, p in zip(trig[("one", 0.5 if d == 0.5 else 1.0)], prepared, strict=True)
                    ]
                )
            )
            for d in SEQ_DELTAS
        }
        hits = {
            d: [
                _detected(t, q.p2, d)
                for t, q in zip(trig[("seq", 0.5 if d == 0.5 else 1.0)], seqs, strict=True)
            ]
            for d in SEQ_DELTAS
        }
        hits1 = {
            d: [_detected(t, q.p1, d) for t, q in zip(trig[("seq", 1.0)], seqs, strict=True)]
            for d in (1.0, 2.0)
        }
        for name, f in SEQ_GROUPS.items():
            sel = np.array([f(q) for q in seqs])
            if not sel.any():
                continue
            out["groups"][name] = {
                "n": int(sel.sum()),
                **{f"P2+{d:g}s": float(np.mean(np.asarray(hits[d])[sel])) for d in SEQ_DELTAS},
            }
        out["first_event_single"] = {f"P+{d:g}s": v for d, v in first.items()}
        out["first_event_in_sequences"] = {f"P1+{d:g}s": float(np.mean(v)) for d, v in hits1.items()}
        out["p2_pick_error_s"] = _errors(
            [_pick_error(t, q.p2) for t, q in zip(trig[("seq", 1.0)], seqs, strict=True)]
        )
        # false triggers: singles (before P: noise; after P: a re-trigger on its own S or coda), sequences
        noise_trig = after_trig = 0
        for t, p in zip(trig[("one", 1.0)], prepared, strict=True):
            after = [x for x in t if x[0] >= p.p_idx - EARLY_S * FS]
            after_trig += max(len(after) - 1, 0)  # the first from P on is the event's own trigger
            noise_trig += sum(1 for when, _, _ in t if PAD < when < p.p_idx - EARLY_S * FS)
        seq_false = 0
        for t, q in zip(trig[("seq", 1.0)], seqs, strict=True):
            after = [x for x in t if x[0] >= q.p1 - EARLY_S * FS]
            seq_false += sum(1 for _, onset, _ in after[1:] if abs(onset - q.p2) > PICK_TOL_S * FS)
        out["false_triggers"] = {
            "single_after_p": after_trig,
            "single_after_p_per_event": after_trig / max(len(prepared), 1),
            "single_after_p_hours": post_p_hours,
            "single_noise_before_p": noise_trig,
            "sequences_not_at_a_p": seq_false,
            "sequences_not_at_a_p_per_sequence": seq_false / max(len(seqs), 1),
        }
        # the P head alone and the peers: P curve from P2 - 0.5 s to P2 + delta vs their noise maxima
        heads = {}
        thr_p = far_threshold(np.asarray(ours.noise_pick), far)
        offs, streams = runs[("seq", 1.0)]
        step = c.step_samples
        det = {d: [] for d in SEQ_DELTAS}
        for q, o, (_, pp) in zip(seqs, offs, streams, strict=True):
            ends = o + step * (np.arange(len(pp)) + 1)
            for d in SEQ_DELTAS:
                sel = (ends > q.p2 - EARLY_S * FS) & (ends <= q.p2 + d * FS)
                det[d].append(bool(pp[sel].max(initial=0.0) > thr_p))
        heads[f"{ours.name} P head"] = {f"P2+{d:g}s": float(np.mean(v)) for d, v in det.items()}
        out["p_curve"] = heads
        res["fars"][f"far_{far:g}"] = out
    for far in FARS if sweep else ():
        thr = far_threshold(np.asarray(ours.noise), far)
        for level in sweep:
            res.setdefault("retrigger_sweep", []).append(
                {
                    "far": far,
                    "retrigger": level,
                    **_sweep_row(onset_rule(thr, level), runs, seqs, prepared, p_pick, c.warmup_s),
                }
            )
    for peer, psc in peers:
        _peer_sequences(peer, psc, seqs, res)
    res["sequences"] = [
        {
            "first": q.first,
            "second": q.second,
            "dt_s": round(q.dt_s, 2),
            "ratio": round(q.ratio, 3),
            "coda": q.coda,
        }
        for q in seqs
    ]
    res["seconds"] = time.perf_counter() - t0
    return res


def _sweep_row(rule, runs: dict, seqs, prepared: list[Prepared], p_pick: float, warmup_s: float) -> dict:
    """Second-P detection at P2 + 1 s (all, coda) and false triggers after P under one re-trigger level."""
    offs, streams = runs[("seq", 1.0)]
    trig = [
        detector_triggers(rule, ev, pp, o, p_pick, warmup_s)
        for o, (ev, pp) in zip(offs, streams, strict=True)
    ]
    hits = np.array([_detected(t, q.p2, 1.0) for t, q in zip(trig, seqs, strict=True)])
    coda = np.array([q.coda for q in seqs])
    vis = np.array([q.p2_visible for q in seqs])
    seq_false = sum(
        sum(
            1
            for _, o, _ in [x for x in t if x[0] >= q.p1 - EARLY_S * FS][1:]
            if abs(o - q.p2) > PICK_TOL_S * FS
        )
        for t, q in zip(trig, seqs, strict=True)
    )
    offs, streams = runs[("one", 1.0)]
    after = 0
    for o, (ev, pp), p in zip(offs, streams, prepared, strict=True):
        t = detector_triggers(rule, ev, pp, o, p_pick, warmup_s)
        after += max(len([x for x in t if x[0] >= p.p_idx - EARLY_S * FS]) - 1, 0)
    return {
        "P2+1s": float(hits.mean()),
        "P2+1s coda": float(hits[coda].mean()) if coda.any() else float("nan"),
        "P2+1s visible": float(hits[vis].mean()) if vis.any() else float("nan"),
        "single_after_p": after,
        "sequences_not_at_a_p": seq_false,
    }


def _peer_sequences(peer: Peer, psc: Scores, seqs, res: dict) -> None:
    """A peer's P curve on the same sequences: detection of the second P at P2 + delta (its maximum from
    P2 - 0.5 s to the window end above its noise windows' P-curve maxima at each FAR) and its P2 pick
    (maximum within 1 s of P2 in the window ending at P2 + 5 s)."""
    w = peer.spec.window
    ds = (*SEQ_DELTAS, SEQ_PICK_DELTA)
    wins = []
    for q in seqs:
        for d in ds:
            e = q.p2 + int(round(d * FS))
            x = q.wave[:, max(e - w, 0) : e]
            if x.shape[1] < w:
                x = np.pad(x, ((0, 0), (w - x.shape[1], 0)), mode="edge")
            wins.append(x)
    _, pk = peer.curves(np.stack(wins))
    pk = pk.reshape(len(seqs), len(ds), w)
    for far in FARS:
        thr = far_threshold(np.asarray(psc.noise_pick), far)
        det = {}
        for i, d in enumerate(SEQ_DELTAS):
            lo = w - int(round((d + EARLY_S) * FS))
            det[f"P2+{d:g}s"] = float(np.mean(pk[:, i, lo:].max(axis=1) > thr))
        res["fars"][f"far_{far:g}"]["p_curve"][peer.name] = det
    c = w - int(round(SEQ_PICK_DELTA * FS))  # P2's sample in the pick window
    lo, hi = c - int(PICK_TOL_S * FS), c + int(PICK_TOL_S * FS) + 1
    err = [(lo + int(np.argmax(pk[j, -1, lo:hi])) - c) / FS for j in range(len(seqs))]
    res.setdefault("peer_p2_pick_error_s", {})[peer.name] = _errors(err)


def sequence_markdown(res: dict, first_tables: dict) -> str:
    """The sequence section of evaluation.md."""
    lines = [
        "## Sequences: a second earthquake at the same station (issue 13)",
        "",
        f"{res['n_sequences']} sequences of the evaluated records (seed {res['seed']}; models.sequences: second P "
        "3-120 s after the first, log-uniform, amplitude ratio 0.1-10; every third a 'coda' sequence, a smaller "
        "event 3-15 s after one of the louder half); "
        f"{res['n_single']} single events. Detector = the detector's trigger rule "
        "(services.common.triggers.onset: first trigger on event_prob, re-trigger on a new P-curve onset) on the "
        "model's outputs at the detection threshold of the given noise FAR of the first-event tables; a P counts "
        f"as detected at P+t when a new trigger is decided from P-{EARLY_S:g} s to P+t with its pick within "
        f"{PICK_TOL_S:g} s of that P.",
        "",
        "| noise FAR | group | n | P2+0.5s | P2+1s | P2+2s | first event (single records, "
        "detector) P+0.5s / P+1s / P+2s | first event (event_prob, first-event table) P+1s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for far in FARS:
        f = res["fars"][f"far_{far:g}"]
        fe = f["first_event_single"]
        ref = first_tables.get(f"far_{far:g}", {}).get("P+1s", float("nan"))
        for name, g in f["groups"].items():
            lines.append(
                f"| {far:.1%} | {name} | {g['n']} | "
                + " | ".join(f"{g[f'P2+{d:g}s']:.3f}" for d in SEQ_DELTAS)
                + f" | {fe['P+0.5s']:.3f} / {fe['P+1s']:.3f} / {fe['P+2s']:.3f} | {ref:.3f} |"
            )
    lines += [
        "",
        "P curve alone (ours: the P head; peers: their P curve), second P at P2+t: the curve's maximum from "
        f"P2-{EARLY_S:g} s to P2+t above the level that the given share of the run's noise windows' "
        "P-curve maxima exceed:",
        "",
        "| model | noise FAR | P2+0.5s | P2+1s | P2+2s |",
        "|---|---|---|---|---|",
    ]
    for far in FARS:
        for name, d in res["fars"][f"far_{far:g}"]["p_curve"].items():
            lines.append(
                f"| {name} | {far:.1%} | " + " | ".join(f"{d[f'P2+{x:g}s']:.3f}" for x in SEQ_DELTAS) + " |"
            )
    lines += [
        "",
        "P2 pick error (s; ours: the pick of the detector's first new trigger by P2+5 s; peers: "
        "P-curve maximum within 1 s of P2 in the window ending at P2+5 s):",
        "",
    ]
    lines += [
        "| model | noise FAR | picked | median | MAD | within 0.1 s | within 0.5 s |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name, far, e):
        if not e.get("n"):
            return f"| {name} | {far} | 0 | - | - | - | - |"
        return (
            f"| {name} | {far} | {e['picked']:.3f} | {e['median']:+.3f} | {e['mad']:.3f} | "
            f"{e['within_0.1s']:.3f} | {e['within_0.5s']:.3f} |"
        )

    for far in FARS:
        lines.append(row("ours (detector)", f"{far:.1%}", res["fars"][f"far_{far:g}"]["p2_pick_error_s"]))
    for name, e in res.get("peer_p2_pick_error_s", {}).items():
        lines.append(row(name, "-", e))
    lines += [
        "",
        "False triggers of the detector rule (after P: every new trigger after the event's first, "
        "in sequences one whose pick is not within 1 s of P2; before P: any in the record's own "
        "noise):",
        "",
    ]
    lines += [
        "| noise FAR | single events: after P (S, coda) | per event | single events: in their own "
        "pre-P noise | sequences: not at either P | per sequence |",
        "|---|---|---|---|---|---|",
    ]
    for far in FARS:
        ft = res["fars"][f"far_{far:g}"]["false_triggers"]
        lines.append(
            f"| {far:.1%} | {ft['single_after_p']} ({ft['single_after_p_hours']:.3f} h after P) | "
            f"{ft['single_after_p_per_event']:.3f} | {ft['single_noise_before_p']} | {ft['sequences_not_at_a_p']} | "
            f"{ft['sequences_not_at_a_p_per_sequence']:.3f} |"
        )
    if res.get("retrigger_sweep"):
        lines += [
            "",
            "Re-trigger level sweep (`--retrigger-sweep`; detector rule, second P at P2+1 s; false "
            "triggers as above):",
            "",
            "| noise FAR | re-trigger level | P2+1s all | P2+1s coda | P2+1s visible second P | "
            "single events: after P | sequences: not at either P |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["retrigger_sweep"]:
            lines.append(
                f"| {r['far']:.1%} | {r['retrigger']:.2f} | {r['P2+1s']:.3f} | {r['P2+1s coda']:.3f} | "
                f"{r.get('P2+1s visible', float('nan')):.3f} | {r['single_after_p']} | "
                f"{r['sequences_not_at_a_p']} |"
            )
    lines.append("")
    return "\n".join(lines)


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
        if result.get("variant_losses"):
            lines += [*losses_markdown(result["variant_losses"]), ""]
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
    sequences: int = 0,
    sequence_seed: int = 13,
    retrigger_sweep: tuple[float, ...] = (),
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
        res["variant_losses"] = variant_losses(prepared, by_model[0])
    if sequences > 0:
        native = [[sc for v, sc, _ in runs_of if v.native][0] for runs_of in by_model]
        res["sequence_eval"] = evaluate_sequences(
            model,
            prepared,
            chosen,
            native[0],
            list(zip(peer_models, native[1:], strict=True)),
            sequences,
            sequence_seed,
            retrigger_sweep,
        )
        res["sequence_eval"]["first_event"] = {
            k: v for k, v in ms[0]["early_detection"].items()
        }  # ours, first variant = native
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
    ap.add_argument(
        "--sequences",
        type=int,
        default=0,
        metavar="N",
        help="also N two-event sequences of the evaluated records (second P 3-120 s after the first, amplitude "
        "ratio 0.1-10, a third inside a loud event's coda): second-P detection and pick beside the first P's",
    )
    ap.add_argument("--sequence-seed", type=int, default=13, help="seed of the sequences")
    ap.add_argument(
        "--retrigger-sweep",
        default="",
        metavar="LIST",
        help="with --sequences: also these re-trigger levels (comma list), a row each",
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
        a.sequences,
        a.sequence_seed,
        tuple(float(x) for x in a.retrigger_sweep.split(",") if x.strip()),
    )
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "evaluation.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    if "sequence_eval" in res:
        md += "\n" + sequence_markdown(res["sequence_eval"], res["sequence_eval"]["first_event"])
    (a.out / "evaluation.md").write_text(md)
    print(md)
    return 0
