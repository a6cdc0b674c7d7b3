"""Earthquake sequences at one station from real recordings: a second event added into a first one.

One home for the superposition used by training (``models.augment``, the two-event augmentation) and by
``eew model evaluate --sequences`` (``models.evaluate``):

* the second event is a real recording from its P on (a 0.5 s raised-cosine ramp-in ending at its P:
  its pre-P noise is not added, so the stream's noise before P2 stays the first record's own);
* it is scaled so that its peak amplitude after P (all components, over the record) is ``ratio`` times
  the first event's: ``ratio`` 0.1-10 spans a small aftershock in a large event's coda to a larger
  event after a small foreshock;
* components dead in the first recording stay dead (one station, one set of working sensors).

The second event's own noise comes in scaled with it (its SNR is its own); in a loud coda it is buried.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data import FADE, FS, Record, _crossfade_join, noise_std, real_noise_pad
from models.openeew import visible

RAMP = 50  # samples of raised-cosine ramp-in ending at the second event's P
PEAK_SPAN = 6000  # samples after P over which an event's peak amplitude is taken (60 s)


def event_peak(wave: np.ndarray, p: int) -> float:
    """Peak |amplitude| after P (all components, demeaned by the pre-P mean), at least 1e-9."""
    pre = wave[:, max(p - 500, 0) : max(p, 1)].astype(np.float64)
    mean = pre.mean(axis=1, keepdims=True) if pre.shape[1] else 0.0
    seg = wave[:, p : p + PEAK_SPAN].astype(np.float64) - mean
    return float(max(np.abs(seg).max(initial=0.0), 1e-9))


def live_end(rec: Record, step: int = 10) -> int:
    """End of the recording's live data after P: the start of the step before its first flat step (every
    live component constant for ``step`` samples; the step before holds the jump into it): 34 of the 204
    recordings end in a held value or a step to a constant, a processing edge that is no part of the
    earthquake. Else the recording's length."""
    x = rec.wave[:, rec.p :]
    k = x.shape[1] // step
    live = np.array(rec.live)
    if not live.any() or k == 0:
        return rec.wave.shape[1]
    s = x[live][:, : k * step].reshape(int(live.sum()), k, step)
    flat = (s.max(axis=2) == s.min(axis=2)).all(axis=0)
    # the step before the flat one holds the jump into the constant: not data either
    return rec.p + max(int(np.argmax(flat)) - 1, 0) * step if flat.any() else rec.wave.shape[1]


def record_peak(rec: Record) -> float:
    """The event's peak (:func:`event_peak`) within the recording's live data."""
    return event_peak(rec.wave[:, : live_end(rec)], rec.p)


def second_event(rec: Record) -> np.ndarray:
    """The recording from RAMP samples before its P to its live end, demeaned, ramp-in applied (3, M)."""
    p0 = max(rec.p - RAMP, 0)
    pre = rec.wave[:, max(rec.p - 500, 0) : max(rec.p, 1)].astype(np.float64)
    seg = rec.wave[:, p0 : live_end(rec)].astype(np.float64) - pre.mean(axis=1, keepdims=True)
    ramp = np.ones(seg.shape[1])
    k = rec.p - p0
    ramp[:k] = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / max(k, 1))
    return seg * ramp


def superpose(
    base: np.ndarray,
    p1: int,
    rec2: Record,
    p2: int,
    ratio: float,
    live: np.ndarray | None = None,
    ref_peak: float | None = None,
) -> np.ndarray:
    """``base`` (3, N) holding an event with P at ``p1`` plus ``rec2``'s event with its P at ``p2``,
    scaled to ``ratio`` times the first event's peak (``ref_peak``, default: measured in ``base``
    after ``p1``; pass the whole first recording's when ``base`` is a cut of it); float64 (3, N)."""
    if not p1 < p2 < base.shape[1]:
        raise ValueError(f"second P at {p2} must lie after the first ({p1}) and inside the stream")
    seg = second_event(rec2)
    ref = event_peak(base, p1) if ref_peak is None else ref_peak
    k = ratio * ref / record_peak(rec2)
    out = base.astype(np.float64, copy=True)
    start = p2 - (rec2.p - max(rec2.p - RAMP, 0))
    lo = max(start, 0)
    n = min(seg.shape[1] - (lo - start), out.shape[1] - lo)
    add = k * seg[:, lo - start : lo - start + n]
    if live is None:
        live = np.abs(base).max(axis=1) > 0
    out[:, lo : lo + n] += np.where(np.asarray(live)[:, None], add, 0.0)
    return out


# ---------------------------------------------------------------- evaluation sequences

SEQ_DT_S = (3.0, 120.0)  # second P this long after the first (log-uniform)
SEQ_RATIO = (0.1, 10.0)  # second event's peak over the first's (log-uniform)
CODA_DT_S = (3.0, 15.0)  # "coda" sequences: a smaller event soon after a large one (uniform)
CODA_RATIO = (0.1, 1.0)
AFTER_P2_S = 5.0  # the stream runs this long after the second P


@dataclass(frozen=True)
class Sequence:
    """Two real events at one station: ``wave`` (3, N) float32 holding the first record (with its donor
    noise history) and the second event added at ``p2``."""

    first: str
    second: str
    wave: np.ndarray
    p1: int
    p2: int
    dt_s: float
    ratio: float
    coda: bool
    #: the second P stands out of what precedes it: its 1-10 Hz peak in the 2 s after P2 beats 3x the RMS
    #: of the 5 s before P2 on the vertical (``models.openeew.visible``, issue 12's rule with the first
    #: event's coda as the noise); a buried second P cannot be asked of any detector
    p2_visible: bool = True


def snr(rec: Record) -> float:
    """The event's peak after P over its pre-P noise standard deviation (largest component)."""
    sd = float(np.max(noise_std(rec)))
    return record_peak(rec) / max(sd, 1e-9)


def build_sequences(
    firsts: list[tuple[Record, np.ndarray, int]], pool: list[Record], n: int, seed: int = 13
) -> list[Sequence]:
    """``n`` sequences from held-out records (module doc): ``firsts`` = (record, padded history, P
    index) as the evaluation prepares them. Each draws a first and a different second record, the
    second P ``SEQ_DT_S`` after the first and its amplitude ratio ``SEQ_RATIO`` (log-uniform); every
    third is a "coda" sequence: the first event among the louder half (SNR), the second 3-15 s later
    and 0.1-1x as large. Where the first recording ends before the second P + 5 s, real noise of other
    recordings at its station's level continues it (``models.data.real_noise_pad``; a 60 s record's
    coda has mostly decayed by then). Fixed seed: the same sequences every run."""
    rng = np.random.default_rng(seed)
    if len(firsts) < 2:
        raise ValueError("sequences need at least two records")
    order = np.argsort([-snr(r) for r, _, _ in firsts])
    loud = [int(i) for i in order[: max(1, len(order) // 2)]]
    out: list[Sequence] = []
    for i in range(n):
        coda = i % 3 == 2  # every third
        a = loud[rng.integers(len(loud))] if coda else int(rng.integers(len(firsts)))
        b = int(rng.integers(len(firsts) - 1))
        b = b + 1 if b >= a else b
        rec, hist, p1 = firsts[a]
        second = firsts[b][0]
        if coda:
            dt = float(rng.uniform(*CODA_DT_S))
            ratio = float(np.exp(rng.uniform(np.log(CODA_RATIO[0]), np.log(CODA_RATIO[1]))))
        else:
            dt = float(np.exp(rng.uniform(np.log(SEQ_DT_S[0]), np.log(SEQ_DT_S[1]))))
            ratio = float(np.exp(rng.uniform(np.log(SEQ_RATIO[0]), np.log(SEQ_RATIO[1]))))
        out.append(make_sequence(rng, rec, hist, p1, second, dt, ratio, pool, coda))
    return out


def make_sequence(
    rng: np.random.Generator,
    rec: Record,
    hist: np.ndarray,
    p1: int,
    second: Record,
    dt_s: float,
    ratio: float,
    pool: list[Record],
    coda: bool = False,
) -> Sequence:
    """One sequence: ``rec`` (as ``hist`` with its P at ``p1``) with ``second`` added ``dt_s`` after
    its P at ``ratio`` times its peak, running to the second P + AFTER_P2_S (real donor noise at the
    station's level continues a first recording whose live data (:func:`live_end`) end before that)."""
    p2 = p1 + int(round(dt_s * FS))
    base = hist[:, : p1 - rec.p + live_end(rec)].astype(np.float64)  # a flat tail is no data
    need = p2 + int(AFTER_P2_S * FS) - base.shape[1]
    if need > 0:
        tail = real_noise_pad(rng, rec, pool, need + FADE)
        base = _crossfade_join(base, tail, FADE)
    base = base[:, : p2 + int(AFTER_P2_S * FS)]
    wave = superpose(base, p1, second, p2, ratio, np.array(rec.live), record_peak(rec)).astype(np.float32)
    vis = visible(wave[0], FS, p2, noise_s=5.0, pad_s=2.0)
    return Sequence(rec.key, second.key, wave, p1, p2, dt_s, ratio, coda, vis)
