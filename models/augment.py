"""Training streams: real recordings cut at random offsets, with the augmentation an EEW detector needs.

A training example is a stream of ``length`` raw samples (3, length) scored step by step from a zero
state (a new station), with per-step labels: ``event`` = 1 for steps ending after P, ``p_target`` = a
narrow Gaussian around P. Augmentations: P anywhere in the stream including its last 0.5 s, or after
its end (pure real pre-P noise); amplitude scaling over orders of magnitude; real noise from OTHER
recordings added at varied SNR; dead components; gaps filled hold-last; polarity flips; DC offsets
and trends; synthetic events and noise from ``models.synthetic`` only as a small addition.

Sequences (``AugmentConfig.p_two``, ``eew model train --sequences``): a share of the event streams gets
a second real event of another recording (``models.sequences.superpose``), its P 3 s or more after the
first (up to the stream's end; often in its last 3 s), amplitude ratio 0.1-10 (log-uniform), so also a
small event inside a large one's coda. Labels: ``event`` stays 1 from the first P on; ``p_target``
peaks at both P's, so the P head learns "a new onset here" also while the event head says "signal
present".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import synthetic
from models.data import Record, noise_std, padded_history
from models.sequences import record_peak, superpose

STEP = 10
FS = 100.0


@dataclass(frozen=True)
class AugmentConfig:
    length: int = 2400  # samples per training stream
    p_noise_only: float = 0.3  # stream ends before P
    p_late: float = 0.35  # among event streams: P in the last 3 s
    min_p_s: float = 2.0  # earliest P position in an event stream
    p_add_noise: float = 0.4
    add_noise_k: tuple[float, float] = (0.3, 6.0)  # added noise std / record noise std (log-uniform)
    log10_scale: tuple[float, float] = (-1.5, 2.5)
    p_dc: float = 0.5
    p_trend: float = 0.1
    p_single: float = 0.15  # keep only Z
    p_drop_one: float = 0.07
    p_gap: float = 0.12
    gap_s: tuple[float, float] = (0.2, 5.0)
    p_synthetic: float = 0.08
    p_sigma_s: float = 0.1  # P target Gaussian width
    # other networks (issue "any real network"): acceleration, other rates, MEMS self-noise
    p_acc: float = 0.0  # the stream becomes acceleration (first difference x fs)
    p_mems: float = 0.5  # of acceleration streams: white self-noise added
    mems_k: tuple[float, float] = (0.3, 5.0)  # its RMS over the pre-P noise RMS (log-uniform)
    p_rate: float = 0.0  # the stream goes 100 Hz -> r -> 100 Hz through the detector's resampler
    rates: tuple[float, ...] = (20.0, 31.25, 40.0, 50.0)
    # sequences (issue 13): a second real event after the first
    p_two: float = 0.0  # among real event streams: a second event is added
    two_min_dt_s: float = 3.0  # earliest second P after the first
    two_ratio: tuple[float, float] = (0.1, 10.0)  # its peak over the first's (log-uniform)
    two_late: float = 0.4  # second P in the stream's last 3 s (early detection of the new P)
    # S is not a new P (issue 13): among event streams of records with an S pick, S in the last 3 s
    p_s_late: float = 0.0
    # real accelerometer-network records (``Record.acc``, ``eew model train --openeew``): share of a batch
    p_real_acc: float = 0.0


def labels(
    length: int, p_pos: float, sigma_s: float = 0.1, more_p: tuple[float, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step labels for a stream with P at sample ``p_pos`` (may lie outside the stream) and
    later P's ``more_p`` of further events (the P target peaks at each; the event label starts at the
    first)."""
    t = np.arange(length // STEP)
    ends = (t + 1) * STEP
    event = (ends > p_pos).astype(np.float32)
    centre = t * STEP + (STEP - 1) / 2.0
    sigma = sigma_s * FS
    ptar = np.exp(-0.5 * ((centre - p_pos) / sigma) ** 2).astype(np.float32)
    for q in more_p:
        ptar = np.maximum(ptar, np.exp(-0.5 * ((centre - q) / sigma) ** 2).astype(np.float32))
    return event, ptar


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _synthetic_stream(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, float]:
    n = cfg.length
    level = _log_uniform(rng, 1.0, 1e4)
    if rng.random() < 0.3:
        return synthetic.noise(rng, n, FS, level), float(n + 10 * FS)
    p_s = rng.uniform(cfg.min_p_s, n / FS - 0.1)
    rec = synthetic.event_record(
        rng,
        n,
        FS,
        p_s=p_s,
        s_minus_p_s=rng.uniform(1.0, 10.0),
        snr=_log_uniform(rng, 3.0, 200.0),
        noise_level=level,
    )
    return rec, p_s * FS


def make_stream(
    rng: np.random.Generator, rec: Record, pool: list[Record], cfg: AugmentConfig
) -> tuple[np.ndarray, float]:
    """One raw stream (3, length) float64 and its P position in samples (> length: no event)."""
    x, p_pos, _ = make_stream_seq(rng, rec, pool, cfg)
    return x, p_pos


def make_stream_seq(
    rng: np.random.Generator, rec: Record, pool: list[Record], cfg: AugmentConfig
) -> tuple[np.ndarray, float, tuple[float, ...]]:
    """As :func:`make_stream`, plus the P positions of further events (``cfg.p_two``) in the stream."""
    more: tuple[float, ...] = ()
    if rng.random() < cfg.p_synthetic:
        x, p_pos = _synthetic_stream(rng, cfg)
    else:
        n = cfg.length
        two = cfg.p_two > 0 and not rec.acc and rng.random() < cfg.p_two  # no draw without the option
        s_gap = rec.s - rec.p if rec.s > rec.p else 0
        s_late = cfg.p_s_late > 0 and 0 < s_gap < n - (cfg.min_p_s + 3) * FS and rng.random() < cfg.p_s_late
        if rec.kind == "noise":  # real noise between earthquakes: the stream ends before its end
            p_pos = rng.uniform(n + 0.5 * FS, n + 20 * FS)
        elif s_late:  # S in the stream's last 3 s: the P head must not call it a new P
            p_pos = n - s_gap - rng.uniform(1, 3 * FS)
        elif two:  # a sequence: the first P early enough for a second one 3 s or more later
            p_pos = rng.uniform(
                cfg.min_p_s * FS, max(n - (cfg.two_min_dt_s + 0.5) * FS, cfg.min_p_s * FS + 1)
            )
        elif rng.random() < cfg.p_noise_only:
            p_pos = rng.uniform(n + 0.5 * FS, n + 20 * FS)
        elif rng.random() < cfg.p_late:
            p_pos = rng.uniform(n - 3 * FS, n - 1)
        else:
            p_pos = rng.uniform(cfg.min_p_s * FS, n - 1)
        p_pos = float(int(p_pos))
        # enough real history before P: pad with donor noise from other recordings where needed
        need = int(p_pos) - rec.p + 1
        hist, p_idx = padded_history(rng, rec, pool, need if need > 0 else 0)
        start = p_idx - int(p_pos)
        x = hist[:, start : start + n].astype(np.float64)
        if x.shape[1] < n:  # record too short after P for this stream: cut earlier
            x = hist[:, -n:].astype(np.float64)
            p_pos = float(p_idx - (hist.shape[1] - n))
        if two and p_pos < n:
            x, more = _second_event(rng, x, int(p_pos), rec, pool, cfg)
        if not rec.acc and rng.random() < cfg.p_add_noise:
            x = _add_real_noise(rng, x, rec, pool, cfg)
    if rec.acc:  # already as a real accelerometer network records it
        return _generic(rng, x, cfg), p_pos, more
    return _generic(rng, _network_variant(rng, x, p_pos, cfg), cfg), p_pos, more


def _second_event(
    rng: np.random.Generator, x: np.ndarray, p1: int, rec: Record, pool: list[Record], cfg: AugmentConfig
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Add another recording's event 3 s or more after the first P (see module doc), if it fits."""
    n = x.shape[1]
    lo = p1 + int(cfg.two_min_dt_s * FS)
    if lo >= n - STEP:
        return x, ()
    donors = [r for r in pool if r.key != rec.key and r.p >= 50]
    if not donors:
        return x, ()
    if rng.random() < cfg.two_late:
        p2 = int(rng.uniform(max(lo, n - 3 * FS), n - 1))
    else:
        p2 = int(rng.uniform(lo, n - 1))
    other = donors[rng.integers(len(donors))]
    ratio = _log_uniform(rng, *cfg.two_ratio)
    live = np.abs(x).max(axis=1) > 0
    y = superpose(x, p1, other, p2, ratio, live, ref_peak=record_peak(rec))
    return y, (float(p2),)


def as_acceleration(x: np.ndarray) -> np.ndarray:
    """Velocity -> acceleration (first difference times the rate), components (rows) kept."""
    return np.diff(x, axis=1, prepend=x[:, :1]) * FS


def through_rate(x: np.ndarray, rate_hz: float) -> np.ndarray:
    """100 Hz -> ``rate_hz`` -> 100 Hz through the detector's own streaming resampler (same length)."""
    from services.common.streams import resample_ratio
    from services.detector.resample import Resampler

    ratio = resample_ratio(rate_hz, FS)
    if isinstance(ratio, str):
        raise ValueError(f"{rate_hz} Hz: {ratio}")
    up, down = ratio
    n = x.shape[1]
    ext = np.pad(x, ((0, 0), (0, int(FS))), mode="edge")  # look-ahead of the two filters at the end
    out = np.empty_like(x)
    for row in range(x.shape[0]):
        if not np.any(x[row]):
            out[row] = 0.0
            continue
        j0, low = Resampler(down, up).push(0, ext[row])
        k0, back = Resampler(up, down).push(j0, low)
        out[row] = on_grid(k0, back, n)
    return out


def on_grid(k0: int, y: np.ndarray, n: int) -> np.ndarray:
    """Resampler output ``y`` whose first sample has model index ``k0`` on the grid ``0 .. n-1``; the
    edges the filter has not reached yet hold the nearest output sample (0 when there is none)."""
    out = np.full(n, y[0] if len(y) else 0.0)
    lo = max(k0, 0)
    seg = y[lo - k0 : lo - k0 + n - lo]
    out[lo : lo + len(seg)] = seg
    if lo + len(seg) < n:
        out[lo + len(seg) :] = seg[-1] if len(seg) else 0.0
    return out


def _network_variant(rng: np.random.Generator, x: np.ndarray, p_pos: float, cfg: AugmentConfig) -> np.ndarray:
    """As other networks record it: acceleration with MEMS self-noise, and/or another rate."""
    if rng.random() < cfg.p_acc:
        live = np.abs(x).max(axis=1) > 0
        x = as_acceleration(x)
        if rng.random() < cfg.p_mems:
            pre = x[:, : max(int(min(p_pos, x.shape[1])) - 10, 50)]
            sd = pre.std(axis=1) * _log_uniform(rng, *cfg.mems_k)
            x = x + rng.standard_normal(x.shape) * sd[:, None]
        x[~live] = 0.0
    if rng.random() < cfg.p_rate:
        x = through_rate(x, float(rng.choice(cfg.rates)))
    return x


def _add_real_noise(
    rng: np.random.Generator, x: np.ndarray, rec: Record, pool: list[Record], cfg: AugmentConfig
) -> np.ndarray:
    """Add a span of real pre-P noise of another 3-component recording, scaled per component to this
    record's noise level times a log-uniform factor: lowers the SNR of the event."""
    n = x.shape[1]
    donors = [r for r in pool if r.key != rec.key and r.three_component and r.noise.shape[1] >= n]
    if not donors:
        return x
    d = donors[rng.integers(len(donors))]
    off = rng.integers(0, d.noise.shape[1] - n + 1)
    seg = d.noise[:, off : off + n].astype(np.float64)
    seg = seg - seg.mean(axis=1, keepdims=True)
    sd = seg.std(axis=1, keepdims=True)
    k = _log_uniform(rng, *cfg.add_noise_k)
    want = noise_std(rec)[:, None] * k
    live = np.abs(x).max(axis=1, keepdims=True) > 0
    return x + np.where(live, seg / np.where(sd > 0, sd, 1.0) * want, 0.0)


def _generic(rng: np.random.Generator, x: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """Augmentations that apply to any stream: components, polarity, gaps, scale, DC."""
    x = x.copy()
    n = x.shape[1]
    u = rng.random()
    if u < cfg.p_single:
        x[1:] = 0.0
    elif u < cfg.p_single + cfg.p_drop_one:
        live = np.flatnonzero(np.abs(x).max(axis=1) > 0)
        if len(live) > 1:
            x[rng.choice(live)] = 0.0
    x *= np.where(rng.random(3) < 0.5, -1.0, 1.0)[:, None]
    live = np.abs(x).max(axis=1) > 0
    sd = np.maximum(x.std(axis=1), 1e-9)
    if rng.random() < cfg.p_dc:
        x += (rng.uniform(-1, 1, 3) * 10 ** rng.uniform(0, 4, 3) * sd)[:, None]
    if rng.random() < cfg.p_trend:
        x += (rng.uniform(-1, 1, 3) * sd * rng.uniform(0, 20))[:, None] * np.linspace(0, 1, n)
    if rng.random() < cfg.p_gap:
        g = int(rng.uniform(*cfg.gap_s) * FS)
        s0 = int(rng.integers(1, max(n - g, 2)))
        x[:, s0 : s0 + g] = x[:, s0 - 1 : s0]
    x *= 10 ** rng.uniform(*cfg.log10_scale)
    x[~live] = 0.0
    return x


def make_batch(
    rng: np.random.Generator,
    records: list[Record],
    pool: list[Record],
    cfg: AugmentConfig,
    size: int,
    real_acc: list[Record] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(waves (B,3,L) float32, event labels (B,T), P targets (B,T), P positions (B,)); a share
    ``cfg.p_real_acc`` of the streams comes from ``real_acc`` (a real accelerometer network)."""
    waves, evs, pts, ps = [], [], [], []
    for _ in range(size):
        if real_acc and cfg.p_real_acc > 0 and rng.random() < cfg.p_real_acc:
            rec = real_acc[rng.integers(len(real_acc))]
        else:
            rec = records[rng.integers(len(records))]
        x, p_pos, more = make_stream_seq(rng, rec, pool, cfg)
        ev, pt = labels(cfg.length, p_pos, cfg.p_sigma_s, more)
        waves.append(x.astype(np.float32))
        evs.append(ev)
        pts.append(pt)
        ps.append(p_pos)
    return np.stack(waves), np.stack(evs), np.stack(pts), np.asarray(ps)
