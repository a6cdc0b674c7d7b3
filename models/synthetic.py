"""A small generator of synthetic 3-component records (noise, P and S arrivals).

Used for unit tests, for the demo archive that must work without ``../shared``, and as an
*addition* to real data in training (never instead of it). The records are crude: coloured
noise plus band-limited, enveloped P and S wave trains; quality claims are never made on them.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt


def _bandlimited(rng: np.random.Generator, n: int, fs: float, lo: float, hi: float) -> np.ndarray:
    sos = butter(4, [lo, min(hi, 0.45 * fs)], btype="band", fs=fs, output="sos")
    x = sosfilt(sos, rng.standard_normal(n + 200))[200:]
    return x / (np.std(x) + 1e-12)


def noise(rng: np.random.Generator, n: int, fs: float = 100.0, level: float = 100.0) -> np.ndarray:
    """(3, n) coloured noise: microseism (0.1-0.5 Hz) plus broadband (1-20 Hz), rms ~ ``level``."""
    out = np.empty((3, n))
    for c in range(3):
        micro = _bandlimited(rng, n, fs, 0.1, 0.5)
        broad = _bandlimited(rng, n, fs, 1.0, 20.0)
        out[c] = level * (0.8 * micro + 0.6 * broad)
    return out


def wave_train(
    rng: np.random.Generator, n: int, fs: float, onset_s: float, amp: float, f_lo: float, f_hi: float, decay_s: float
) -> np.ndarray:
    """(n,) an enveloped band-limited arrival starting at ``onset_s`` (zero before)."""
    t = np.arange(n) / fs - onset_s
    rise = rng.uniform(0.03, 0.15)
    env = np.where(t < 0, 0.0, (1 - np.exp(-np.maximum(t, 0) / rise)) * np.exp(-np.maximum(t, 0) / decay_s))
    return amp * env * _bandlimited(rng, n, fs, f_lo, f_hi)


def event_record(
    rng: np.random.Generator,
    n: int,
    fs: float = 100.0,
    p_s: float = 30.0,
    s_minus_p_s: float = 3.0,
    snr: float = 20.0,
    noise_level: float = 100.0,
    dc_offset: float = 0.0,
) -> np.ndarray:
    """(3, n) Z, N, E record with a P arrival at ``p_s`` and S at ``p_s + s_minus_p_s``.

    ``snr`` is the ratio of the P train's peak amplitude on Z to the noise rms.
    """
    rec = noise(rng, n, fs, noise_level)
    p_amp = snr * noise_level
    f_lo, f_hi = rng.uniform(1.0, 3.0), rng.uniform(8.0, 15.0)
    p_decay = rng.uniform(1.0, 4.0)
    rec[0] += wave_train(rng, n, fs, p_s, p_amp, f_lo, f_hi, p_decay)
    for c in (1, 2):
        rec[c] += wave_train(rng, n, fs, p_s, p_amp * rng.uniform(0.2, 0.6), f_lo, f_hi, p_decay)
    s_at = p_s + s_minus_p_s
    s_amp = p_amp * rng.uniform(2.0, 5.0)
    rec[0] += wave_train(rng, n, fs, s_at, s_amp * 0.5, 0.5, 8.0, rng.uniform(3.0, 8.0))
    for c in (1, 2):
        rec[c] += wave_train(rng, n, fs, s_at, s_amp * rng.uniform(0.7, 1.0), 0.5, 8.0, rng.uniform(3.0, 8.0))
    return rec + dc_offset
