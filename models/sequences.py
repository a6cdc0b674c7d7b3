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

import numpy as np

from models.data import Record

RAMP = 50  # samples of raised-cosine ramp-in ending at the second event's P
PEAK_SPAN = 6000  # samples after P over which an event's peak amplitude is taken (60 s)


def event_peak(wave: np.ndarray, p: int) -> float:
    """Peak |amplitude| after P (all components, demeaned by the pre-P mean), at least 1e-9."""
    pre = wave[:, max(p - 500, 0) : max(p, 1)].astype(np.float64)
    mean = pre.mean(axis=1, keepdims=True) if pre.shape[1] else 0.0
    seg = wave[:, p : p + PEAK_SPAN].astype(np.float64) - mean
    return float(max(np.abs(seg).max(initial=0.0), 1e-9))


def second_event(rec: Record) -> np.ndarray:
    """The recording from RAMP samples before its P on, demeaned, with the ramp-in applied (3, M)."""
    p0 = max(rec.p - RAMP, 0)
    pre = rec.wave[:, max(rec.p - 500, 0) : max(rec.p, 1)].astype(np.float64)
    seg = rec.wave[:, p0:].astype(np.float64) - pre.mean(axis=1, keepdims=True)
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
    k = ratio * ref / event_peak(rec2.wave, rec2.p)
    out = base.astype(np.float64, copy=True)
    start = p2 - (rec2.p - max(rec2.p - RAMP, 0))
    lo = max(start, 0)
    n = min(seg.shape[1] - (lo - start), out.shape[1] - lo)
    add = k * seg[:, lo - start : lo - start + n]
    if live is None:
        live = np.abs(base).max(axis=1) > 0
    out[:, lo : lo + n] += np.where(np.asarray(live)[:, None], add, 0.0)
    return out
