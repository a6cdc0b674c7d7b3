"""The detector's streaming resampler at every listed rate: amplitude and phase of a sine sweep,
timing of a step, packet-independence (streaming == whole stream), and the detector core fed
31.25 Hz / 40 Hz / 250 Hz data on the same model-sample grid as 100 Hz."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.codec import Packet
from services.common.streams import resample_ratio
from services.detector import core as dc
from services.detector.core import CoreConfig, CoreDetector
from services.detector.resample import Resampler, latency_s

RATES = [20.0, 31.25, 40.0, 50.0, 80.0, 200.0, 250.0]
FS = 100.0


def _stream(rate: float, x: np.ndarray, n0: int, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Push ``x`` (native samples from index n0) in packets of the given sizes: (model indices, values)."""
    up, down = resample_ratio(rate, FS)
    rs = Resampler(up, down)
    js, ys = [], []
    pos = 0
    for k in sizes:
        if pos >= len(x):
            break
        j0, y = rs.push(n0 + pos, x[pos : pos + k])
        js.append(np.arange(j0, j0 + len(y)))
        ys.append(y)
        pos += k
    return np.concatenate(js), np.concatenate(ys)


@pytest.mark.parametrize("rate", RATES)
def test_sine_sweep_amplitude_and_phase(rate: float) -> None:
    """Tones across the pass band come out on the model grid with gain 1 +- 1 % (up to 60 % of the
    lower Nyquist frequency) and no phase shift (zero-phase: the group delay is compensated)."""
    nyq = min(rate, FS) / 2
    n = int(rate * 40)
    n0 = 987_654  # an arbitrary absolute native index: the grid is absolute time
    t = (n0 + np.arange(n)) / rate
    for f in np.linspace(0.5, 0.6 * nyq, 6):
        x = np.sin(2 * np.pi * f * t + 0.3)
        js, y = _stream(rate, x, n0, [int(rate)] * 60)
        assert np.all(np.diff(js) == 1)
        tj = js / FS
        keep = slice(200, -50)  # away from the start-up and the end
        ref_c, ref_s = np.cos(2 * np.pi * f * tj[keep] + 0.3), np.sin(2 * np.pi * f * tj[keep] + 0.3)
        # least-squares amplitude and phase of the output against the true tone at the model times
        a, b = np.linalg.lstsq(np.stack([ref_s, ref_c], axis=1), y[keep], rcond=None)[0]
        gain, phase = np.hypot(a, b), np.arctan2(b, a)
        assert abs(gain - 1) < 0.01, (rate, f, gain)
        assert abs(phase) < 0.01, (rate, f, phase)


@pytest.mark.parametrize("rate", RATES)
def test_step_timing_within_one_model_sample(rate: float) -> None:
    """A step at a known time crosses half its height within one model sample (10 ms) of that time."""
    n = int(rate * 20)
    n0 = 123_457
    step_native = n0 + n // 2
    x = np.where(np.arange(n0, n0 + n) >= step_native, 1000.0, 0.0)
    js, y = _stream(rate, x, n0, [int(rate // 2) + 1] * 100)
    t_step = (step_native - 0.5) / rate  # midway between the last low and the first high sample
    k = int(np.argmax(y >= 500.0))
    # interpolate the half-height crossing
    t_cross = (js[k - 1] + (500.0 - y[k - 1]) / (y[k] - y[k - 1])) / FS
    assert abs(t_cross - t_step) < 1.0 / FS, (rate, t_cross - t_step)


@pytest.mark.parametrize("rate", [31.25, 40.0, 250.0])
def test_streaming_equals_one_call_whatever_the_packets(rate: float) -> None:
    """State is carried across packets: any packetisation gives the same samples as one push."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(int(rate * 30))
    n0 = 5_555_555
    j_all, y_all = _stream(rate, x, n0, [len(x)])
    j_pk, y_pk = _stream(rate, x, n0, list(rng.integers(1, int(rate * 3), 200)))
    m = min(len(j_all), len(j_pk))
    assert j_all[0] == j_pk[0]
    np.testing.assert_allclose(y_pk[:m], y_all[:m], rtol=0, atol=1e-5)


def test_latency_documented_per_rate() -> None:
    """The look-ahead each rate adds (README / model card table): at most 0.5 s, 0.32 s at 31.25 Hz."""
    lat = {r: latency_s(r, *resample_ratio(r, FS)) for r in RATES + [100.0]}
    assert lat[100.0] == 0.0
    assert lat[31.25] == pytest.approx(0.32)
    assert lat[20.0] == pytest.approx(0.5)
    assert max(lat.values()) <= 0.5


class _Scorer:
    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, wave: np.ndarray, state: np.ndarray):  # noqa: ANN204
        self.calls.append(wave.copy())
        b = wave.shape[0]

        class Out:
            event_prob = np.zeros(b, dtype=np.float32)
            p_prob = np.zeros((b, 10), dtype=np.float32)

        Out.state = state
        return Out


def _cfg() -> CoreConfig:
    return CoreConfig(state_size=4, detection_threshold=0.9, p_pick_threshold=0.5, warmup_s=5.0)


T0 = 1_700_000_000_000_000_000


@pytest.mark.parametrize("rate", [31.25, 40.0, 250.0])
def test_core_scores_other_rates_on_the_model_grid(rate: float) -> None:
    """3 components at ``rate`` in 1 s packets: scored in 1 s chunks on the 100 Hz grid, the signal
    where a 100 Hz recording of the same ground motion would put it."""
    n = int(rate * 30)
    t = np.arange(n) / rate
    sig = 1000.0 * np.sin(2 * np.pi * 1.5 * t)
    det = CoreDetector(_cfg(), sc := _Scorer())
    per = int(round(rate))
    for i in range(0, n, per):
        for ch in ("HNZ", "HN1", "HN2"):
            t_ns = T0 + int(round(i / rate * 1e9))
            assert det.feed(Packet("MX", "D1", "00", ch, t_ns, rate, sig[i : i + per].astype(np.float32))) is None
        det.score_ready()
    waves = np.concatenate(sc.calls)
    assert len(waves) >= 28
    z = waves[:, 0].reshape(-1)
    tz = np.arange(len(z)) / FS
    want = 1000.0 * np.sin(2 * np.pi * 1.5 * tz)
    assert np.abs(z[100:] - want[100:]).max() < 10.0  # 1 %: no delay, no gain error
    counts, _ = det.take_counts()
    assert counts[dc.C_GAPS] == 0 and counts[dc.C_FRONT_RESETS] == 0


def test_core_refuses_15_hz_and_takes_a_switch_from_100_to_40_hz() -> None:
    """Below 20 Hz: refused with its reason. A station switching 100 -> 40 Hz: the resampler starts on
    the new data, counted as a rate change, and the 40 Hz part lands on the same grid."""
    det = CoreDetector(_cfg(), sc := _Scorer())
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 15.0, np.ones(15))) == "rate_below_minimum"
    t100 = np.arange(1000) / 100.0
    t40 = 10.0 + np.arange(800) / 40.0
    for i in range(0, 1000, 100):
        for ch in ("HHZ", "HHN", "HHE"):
            det.feed(Packet("XX", "S", "", ch, T0 + i * 10**7, 100.0, np.sin(2 * np.pi * t100[i : i + 100])))
        det.score_ready()
    for i in range(0, 800, 40):
        for ch in ("HHZ", "HHN", "HHE"):
            t_ns = T0 + 10 * 10**9 + i * 25 * 10**6
            det.feed(Packet("XX", "S", "", ch, t_ns, 40.0, np.sin(2 * np.pi * t40[i : i + 40])))
        det.score_ready()
    counts, _ = det.take_counts()
    assert counts[dc.C_RATE_CHANGES] == 3
    z = np.concatenate(sc.calls)[:, 0].reshape(-1)
    want = np.sin(2 * np.pi * np.arange(len(z)) / 100.0)
    assert np.abs(z[1100:] - want[1100:]).max() < 0.02
