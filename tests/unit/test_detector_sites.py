"""Sensors of one site and bad sensor input: a velocity sensor and an accelerometer at one site give
one trigger (velocity preferred; the accelerometer takes over when the velocity sensor clips), a
vertical-only accelerometer is scored, clipped samples are recognised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.codec import Packet
from services.detector import core as dc
from services.detector.core import CoreConfig, CoreDetector

T0 = 1_700_000_000_000_000_000


@dataclass
class _Out:
    event_prob: np.ndarray
    p_prob: np.ndarray
    state: np.ndarray


class StepScorer:
    """Stand-in model: event probability 0.99 from chunk 20 on (the state counts chunks)."""

    def __call__(self, wave: np.ndarray, state: np.ndarray) -> _Out:
        k = state[:, 0].astype(int)
        ev = np.where(k >= 20, 0.99, 0.01).astype(np.float32)
        pp = np.full((wave.shape[0], 10), 0.01, dtype=np.float32)
        pp[k == 20, 0] = 0.9
        new = state.copy()
        new[:, 0] += 1
        return _Out(ev, pp, new)


def _cfg() -> CoreConfig:
    return CoreConfig(state_size=2, detection_threshold=0.9, p_pick_threshold=0.5, warmup_s=5.0)


def _feed_site(det: CoreDetector, seconds: int, sensors: dict[str, tuple[float, object]]) -> list[dc.Score]:
    """Feed 1 s packets of every sensor ``prefix -> (rate, f(t_s, n) -> samples)``, 3 components each."""
    out: list[dc.Score] = []
    for sec in range(seconds):
        for prefix, (rate, make) in sensors.items():
            n = int(round(rate))
            x = make(sec, n)
            for comp in ("Z", "N", "E") if prefix[1] == "H" else ("Z", "1", "2"):
                t_ns = T0 + sec * 10**9
                assert det.feed(
                    Packet("XX", "SITE", "00" if prefix[1] == "H" else "20", prefix + comp, t_ns, rate, x)
                ) in (
                    None,
                    "duplicate",
                )
        out += det.score_ready()
    return out


def _noise(seed: int):
    rng = np.random.default_rng(seed)
    return lambda sec, n: (rng.standard_normal(n) * 100).astype(np.int32)


def test_velocity_and_accelerometer_at_one_site_give_one_trigger_from_velocity() -> None:
    det = CoreDetector(_cfg(), StepScorer())
    scores = _feed_site(det, 40, {"HH": (100.0, _noise(1)), "HN": (200.0, _noise(2))})
    new = [s for s in scores if s.new_trigger]
    assert [s.channel_prefix for s in new] == ["HH"]
    hn = [s for s in scores if s.channel_prefix == "HN" and s.warmed_up and s.probability > 0.9]
    assert hn and not any(s.triggered for s in hn)  # its probability still goes out, not as a trigger
    assert det.take_counts()[0][dc.C_SITE_SUPPRESSED] == 1


def test_accelerometer_takes_over_when_the_velocity_sensor_clips() -> None:
    """The velocity sensor clips (24-bit limit) before the event: the accelerometer triggers."""
    rng = np.random.default_rng(3)

    def clipped(sec: int, n: int) -> np.ndarray:
        x = (rng.standard_normal(n) * 100).astype(np.int32)
        if sec >= 15:
            x[10:40] = 8_388_607
        return x

    det = CoreDetector(_cfg(), StepScorer())
    scores = _feed_site(det, 40, {"HH": (100.0, clipped), "HN": (100.0, _noise(4))})
    new = [s for s in scores if s.new_trigger]
    assert [s.channel_prefix for s in new] == ["HN"]
    counts, _ = det.take_counts()
    assert counts[dc.C_CLIPPED] > 0 and counts[dc.C_SITE_SUPPRESSED] == 1


def test_flat_topped_samples_are_clipping_quiet_quantised_data_is_not() -> None:
    det = CoreDetector(_cfg(), StepScorer())
    flat = np.concatenate([np.arange(50) * 1000, np.full(10, 60_000), np.arange(40)]).astype(np.int32)
    assert det._clipped(flat)
    quiet = np.array([0, 1, 1, 1, 1, 1, 1, 0, -1] * 10, dtype=np.int32)  # dither at the last bit
    assert not det._clipped(quiet)
    assert det._clipped(np.array([1, 2, 8_000_001], dtype=np.int32))


def test_vertical_only_accelerometer_at_31_25_hz_is_scored_and_triggers() -> None:
    det = CoreDetector(_cfg(), StepScorer())
    rng = np.random.default_rng(6)
    out = []
    for sec in range(40):
        x = rng.standard_normal(32).astype(np.float32)  # 32 samples = 1.024 s at 31.25 Hz
        t_ns = T0 + int(round(sec * 32 / 31.25 * 1e9))
        assert det.feed(Packet("MX", "D9", "00", "HNZ", t_ns, 31.25, x)) is None
        out += det.score_ready()
    assert len(out) >= 30
    assert all(s.components == 1 for s in out if s.warmed_up)
    assert sum(s.new_trigger for s in out) == 1
