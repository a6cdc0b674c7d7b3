"""Streaming rational resampling of one component to the model rate. NumPy/SciPy only; the detector
core owns one per component whose rate is not the model's.

Resampling (any rate r with ``r * up / down == model rate``, e.g. 31.25 Hz: up 16, down 5)
    A Kaiser-windowed sinc (``scipy.signal.firwin``) applied by SciPy's polyphase
    ``scipy.signal.upfirdn`` over the samples still needed plus the new ones, so the output is
    exactly that of filtering the whole stream at once: no edge effects at packet boundaries.
    The filter is symmetric with a delay of ``D`` up-sampled samples, ``D`` a multiple of ``down``,
    and every output is written at the model sample its filter is centred on, so the group delay is
    compensated exactly (zero phase: picks and trigger times are not shifted). The price is
    latency: an output needs input up to ``D / (r * up)`` seconds after its own time
    (``latency_s``; 0.32 s at 31.25 Hz, 0.5 s at 20 Hz, 0.1 s at 200 Hz). Cut-off at ``CUTOFF`` of the
    lower Nyquist frequency (anti-alias when going down, anti-image when going up).

Time grid
    Native sample ``n`` of a stream at rate r lies at ``n / r`` s since the epoch, model sample ``j``
    at ``j / fs``; with ``r = fs * down / up`` native ``n`` is up-sampled index ``n * up`` and model
    ``j`` is up-sampled index ``j * down``. Buffers start at native indices that are multiples of
    ``down``, so upfirdn's outputs fall on model samples.

Start and restart
    After a reset (first sample, gap, rate change, restart) the filter history is the first new
    sample repeated (its steady state: a DC offset does not ring) and output starts at the first
    model sample at or after it, so no output mixes data across a discontinuity and a reset leaves
    no hole (the first ``latency_s`` of outputs lean on the repeated sample).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import firwin, upfirdn

#: Filter half-length in samples of the faster of input and output (taps = 2*D + 1 up-sampled).
HALF_WIDTH = 10
#: Cut-off as a fraction of the lower of the input and output Nyquist frequencies.
CUTOFF = 0.8
#: Kaiser window beta (about 60 dB stop band).
KAISER_BETA = 6.0

_FILTERS: dict[tuple[int, int], tuple[np.ndarray, int]] = {}


def design(up: int, down: int) -> tuple[np.ndarray, int]:
    """(taps, delay D in up-sampled samples) of the resampling filter for up/down (cached)."""
    key = (up, down)
    got = _FILTERS.get(key)
    if got is None:
        delay = down * math.ceil(HALF_WIDTH * max(up, down) / down)
        h = firwin(2 * delay + 1, CUTOFF / max(up, down), window=("kaiser", KAISER_BETA)) * up
        got = _FILTERS[key] = (h, delay)
    return got


def latency_s(rate_hz: float, up: int, down: int) -> float:
    """Seconds of input an output waits for beyond its own time (the filter's look-ahead)."""
    if up == down == 1:
        return 0.0
    _, delay = design(up, down)
    return delay / (rate_hz * up)


class Resampler:
    """Streaming rational resampler of one component (native index in, model index out)."""

    def __init__(self, up: int, down: int) -> None:
        self.up, self.down = up, down
        self.h, self.delay = design(up, down)
        self.buf = np.zeros(0)
        self.b0 = 0  # native index of buf[0] (a multiple of down)
        self.next_j: int | None = None  # next model index to emit
        self.native_next: int | None = None  # next native index expected

    def reset(self) -> None:
        self.buf = np.zeros(0)
        self.next_j = None
        self.native_next = None

    def push(self, n0: int, x: np.ndarray) -> tuple[int, np.ndarray]:
        """Contiguous native samples from index ``n0`` -> (first model index, model samples).

        ``n0`` must equal ``native_next`` unless the resampler was just reset (the caller resets
        on gaps and trims overlaps).
        """
        up, down, delay = self.up, self.down, self.delay
        x = np.asarray(x, dtype=np.float64)
        if self.next_j is None:  # (re)start: history = the first sample repeated (steady state)
            pad = -(-delay // up) + 1
            self.b0 = ((n0 - pad) // down) * down
            self.buf = np.full(n0 - self.b0, x[0])
            self.next_j = -(-(n0 * up) // down)  # the first model sample at or after the first sample
        self.buf = np.concatenate([self.buf, x])
        self.native_next = n0 + len(x)
        y = upfirdn(self.h, self.buf, up=up, down=down)
        # output k sits at up-sampled index g = b0*up + k*down, centred on model index g/down - delay/down
        base = self.b0 * up // down - delay // down
        last_g = self.native_next * up - 1  # up-sampled indices beyond this are not zeros yet
        k_end = min(len(y), (last_g - self.b0 * up) // down + 1)
        k0 = self.next_j - base
        if k_end <= k0:
            return self.next_j, np.zeros(0, dtype=np.float32)
        out = y[k0:k_end].astype(np.float32)
        j0 = self.next_j
        self.next_j = base + k_end
        # keep only the native samples the next output still needs
        g_next = self.next_j * down + delay
        need = (g_next - 2 * delay) // up
        keep_from = max(self.b0, (need // down) * down)
        self.buf = self.buf[keep_from - self.b0 :]
        self.b0 = keep_from
        return j0, out
