"""Displacement from raw counts for Pd magnitudes: one home for the detector and the alerting (pure NumPy/SciPy).

``DisplacementFilter`` filters one stream (the alerting's magnitude science, tests and benchmarks);
``DisplacementBank`` is the same causal filter (Kanamori 2005,
Wu & Zhao 2006: 2-pole Butterworth high-pass at 0.075 Hz -- 0.2 Hz for accelerometers, see
``ACCELEROMETER_CORNER_HZ`` -- then per integration a running trapezoidal integral and the same
high-pass), vectorised over a batch of stations with one
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
#: High-pass of accelerometers: 0.2 Hz keeps MEMS self-noise, which double integration turns into
#: long-period drift, out of Pd (the OpenEEW project's Pd uses a 0.2-3 Hz band, openeew-seismology
#: src/detection.py; on the openeew_mx dev earthquakes it cut the station scatter of Pd magnitudes
#: from 0.45 to 0.35 units against 0.075 Hz: services/alerting/association/magnitude.py).
ACCELEROMETER_CORNER_HZ = 0.2


def integrations_for(channel_prefix: str) -> int:
    """2 for accelerometers (``services.common.streams``: HN?, HL?, HG?, EN?), else 1 (velocity)."""
    info = classify_channel(channel_prefix[:2] + "Z")
    return 2 if not isinstance(info, str) and info.quantity == ACCELERATION else 1


class DisplacementBank:
    """Filter states for ``capacity`` station slots; ``peak`` filters one chunk per slot.

    Velocity rows use the ``corner_hz`` high-pass, accelerometer rows (two integrations) the higher
    ``accelerometer_corner_hz``: each row keeps the filter of its sensor type."""

    def __init__(
        self,
        fs: float,
        capacity: int = 64,
        corner_hz: float = CORNER_HZ,
        accelerometer_corner_hz: float = ACCELEROMETER_CORNER_HZ,
    ) -> None:
        self.fs = float(fs)
        self.coefs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for k, corner in ((1, corner_hz), (2, accelerometer_corner_hz)):
            b, a = butter(2, corner, btype="highpass", fs=fs)
            self.coefs[k] = (b, a, lfilter_zi(b, a))
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
        slots = np.asarray(slots)
        x = np.asarray(z, dtype=np.float64)
        kind = np.where(np.asarray(integrations) >= 2, 2, 1)
        out = np.zeros(len(slots))
        for k in (1, 2):
            rows = np.nonzero(kind == k)[0]
            if rows.size:
                out[rows] = self._peak(slots[rows], x[rows], k)
        return out

    def _peak(self, slots: np.ndarray, x: np.ndarray, integrations: int) -> np.ndarray:
        b, a, zi0 = self.coefs[integrations]
        zi, last, acc = self.zi[slots], self.last[slots], self.acc[slots]
        fresh = self.fresh[slots]
        if fresh.any():  # steady state on the first sample: a DC offset does not ring
            zi[fresh, 0, :] = zi0[None, :] * x[fresh, :1]
            zi[fresh, 1:, :] = 0.0
            last[fresh] = 0.0
            acc[fresh] = 0.0
        y, zi[:, 0, :] = lfilter(b, a, x, axis=1, zi=zi[:, 0, :])
        dt = 1.0 / self.fs
        for k in range(integrations):
            prev = np.concatenate([last[:, k : k + 1], y[:, :-1]], axis=1)
            integ = acc[:, k : k + 1] + np.cumsum((prev + y) * 0.5 * dt, axis=1)
            last[:, k], acc[:, k] = y[:, -1], integ[:, -1]
            y, zi[:, k + 1, :] = lfilter(b, a, integ, axis=1, zi=zi[:, k + 1, :])
        self.zi[slots], self.last[slots], self.acc[slots] = zi, last, acc
        self.fresh[slots] = False
        return np.abs(y).max(axis=1)


class DisplacementFilter:
    """Streaming raw counts -> displacement (counts*s, or counts*s^2 with ``integrations=2``).

    Causal, as in Kanamori (2005) / Wu & Zhao (2006): high-pass (2-pole Butterworth, 0.075 Hz; by
    default 0.2 Hz with two integrations, as the detector filters accelerometers),
    then for each integration a running trapezoidal integral followed by the same high-pass (which
    keeps the integral from drifting). Filter states start at steady state on the first sample, so
    a raw DC offset does not ring. ``process`` takes consecutive blocks and returns theirs.
    """

    def __init__(self, fs: float, corner_hz: float | None = None, integrations: int = 1) -> None:
        if corner_hz is None:  # the detector's: 0.075 Hz, 0.2 Hz for accelerograms (displacement.py)
            corner_hz = ACCELEROMETER_CORNER_HZ if integrations >= 2 else CORNER_HZ
        if fs <= 0 or not 0 < corner_hz < fs / 2 or integrations < 0:
            raise ValueError("need fs > 0, 0 < corner < fs/2, integrations >= 0")
        self.fs = float(fs)
        self.b, self.a = butter(2, corner_hz, btype="highpass", fs=fs)
        self._zi0 = lfilter_zi(self.b, self.a)
        self.integrations = integrations
        self._zi: list[np.ndarray] | None = None
        self._last: list[float] = [0.0] * integrations  # last input sample of each integrator
        self._acc: list[float] = [0.0] * integrations

    def process(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float64)
        if y.size == 0:
            return y.copy()
        if self._zi is None:
            self._zi = [self._zi0 * y[0]] + [self._zi0 * 0.0 for _ in range(self.integrations)]
            self._last = [0.0] * self.integrations
        y, self._zi[0] = lfilter(self.b, self.a, y, zi=self._zi[0])
        dt = 1.0 / self.fs
        for k in range(self.integrations):
            prev = np.concatenate([[self._last[k]], y[:-1]])
            integ = self._acc[k] + np.cumsum((prev + y) * 0.5 * dt)
            self._last[k], self._acc[k] = float(y[-1]), float(integ[-1])
            y, self._zi[k + 1] = lfilter(self.b, self.a, integ, zi=self._zi[k + 1])
        return np.asarray(y)
