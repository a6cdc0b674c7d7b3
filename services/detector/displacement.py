"""Peak vertical displacement per scored chunk, for the alerting's Pd magnitude (pure NumPy/SciPy).

The same causal filter as ``services.alerting.magnitude.DisplacementFilter`` (Kanamori 2005,
Wu & Zhao 2006: 2-pole Butterworth high-pass at 0.075 Hz, then per integration a running
trapezoidal integral and the same high-pass), vectorised over a batch of stations with one
filter state per station slot, so the detector adds three ``lfilter`` calls per batch rather than
three per station. Velocity sensors are integrated once, accelerometers (``services.common.streams``:
instrument codes N, L, G) twice: the result is displacement in counts*s or counts*s^2, to be divided
by the gain.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, lfilter, lfilter_zi

from services.common.streams import ACCELERATION, classify_channel

CORNER_HZ = 0.075


def integrations_for(channel_prefix: str) -> int:
    """2 for accelerometers (``services.common.streams``: HN?, HL?, HG?, EN?), else 1 (velocity)."""
    info = classify_channel(channel_prefix[:2] + "Z")
    return 2 if not isinstance(info, str) and info.quantity == ACCELERATION else 1


class DisplacementBank:
    """Filter states for ``capacity`` station slots; ``peak`` filters one chunk per slot."""

    def __init__(self, fs: float, capacity: int = 64, corner_hz: float = CORNER_HZ) -> None:
        self.fs = float(fs)
        self.b, self.a = butter(2, corner_hz, btype="highpass", fs=fs)
        self.zi0 = lfilter_zi(self.b, self.a)
        self.zi = np.zeros((capacity, 3, 2))
        self.last = np.zeros((capacity, 2))
        self.acc = np.zeros((capacity, 2))
        self.fresh = np.ones(capacity, dtype=bool)

    def ensure(self, capacity: int) -> None:
        """Grow to at least ``capacity`` slots (new slots start fresh)."""
        old = self.zi.shape[0]
        if capacity <= old:
            return
        self.zi = np.concatenate([self.zi, np.zeros((capacity - old, 3, 2))])
        self.last = np.concatenate([self.last, np.zeros((capacity - old, 2))])
        self.acc = np.concatenate([self.acc, np.zeros((capacity - old, 2))])
        self.fresh = np.concatenate([self.fresh, np.ones(capacity - old, dtype=bool)])

    def reset(self, slot: int) -> None:
        """The station in ``slot`` starts afresh (new station, reset, or slot reused)."""
        self.fresh[slot] = True

    def peak(self, slots: np.ndarray, z: np.ndarray, integrations: np.ndarray) -> np.ndarray:
        """Peak |displacement| over each row of ``z`` (B, C) raw counts, continuing each slot's filter."""
        x = np.asarray(z, dtype=np.float64)
        zi, last, acc = self.zi[slots], self.last[slots], self.acc[slots]
        fresh = self.fresh[slots]
        if fresh.any():  # steady state on the first sample: a DC offset does not ring
            zi[fresh, 0, :] = self.zi0[None, :] * x[fresh, :1]
            zi[fresh, 1:, :] = 0.0
            last[fresh] = 0.0
            acc[fresh] = 0.0
        y, zi[:, 0, :] = lfilter(self.b, self.a, x, axis=1, zi=zi[:, 0, :])
        dt = 1.0 / self.fs
        peaks = []
        for k in range(2):
            prev = np.concatenate([last[:, k : k + 1], y[:, :-1]], axis=1)
            integ = acc[:, k : k + 1] + np.cumsum((prev + y) * 0.5 * dt, axis=1)
            last[:, k], acc[:, k] = y[:, -1], integ[:, -1]
            y, zi[:, k + 1, :] = lfilter(self.b, self.a, integ, axis=1, zi=zi[:, k + 1, :])
            peaks.append(np.abs(y).max(axis=1))
        self.zi[slots], self.last[slots], self.acc[slots] = zi, last, acc
        self.fresh[slots] = False
        return np.where(np.asarray(integrations) >= 2, peaks[1], peaks[0])
