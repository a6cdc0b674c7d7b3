"""Data handling: channel mapping to Z, N, E (incl. single-component stations), the fixed split by
file name, and real-noise padding (rescaled donor noise, never the target's own noise repeated)."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import (
    Record,
    _to_zne,
    live_span,
    make_split,
    noise_bursts,
    padded_history,
    real_noise_pad,
    screen_noise,
)
from models.exceptions import DataError


def test_channel_mapping_to_zne() -> None:
    d = np.arange(12, dtype=float).reshape(4, 3)  # columns E, N, Z
    out = _to_zne(d, ["HHE", "HHN", "HHZ"])
    assert np.array_equal(out[0], d[:, 2]) and np.array_equal(out[2], d[:, 0])
    single = np.zeros((4, 3))
    single[:, 2] = [1, 2, 3, 4]
    out = _to_zne(single, ["EHZ"])
    assert np.array_equal(out[0], [1, 2, 3, 4]) and not out[1:].any()
    with pytest.raises(DataError):
        _to_zne(d, ["HHX", "HHN", "HHZ"])


def test_split_is_deterministic_disjoint_and_complete() -> None:
    keys = [f"a/f{i}.npz" for i in range(100)] + [f"b/t{i}" for i in range(20)]
    s1, s2 = make_split(keys), make_split(list(reversed(keys)))
    assert s1 == s2
    parts = [set(s1[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(keys)
    assert len(s1["test"]) == 15 + 3


def _rec(key: str, rng: np.random.Generator, level: float, live=(True, True, True), n: int = 4000) -> Record:
    w = (rng.standard_normal((3, n)) * level).astype(np.float32)
    w[~np.array(live)] = 0.0
    return Record(key, w, 3000, -1, tuple(live))


def test_padding_uses_other_recordings_at_the_target_level() -> None:
    rng = np.random.default_rng(0)
    pool = [_rec(f"x/{i}", rng, 10.0 ** (i % 3)) for i in range(6)]
    target = _rec("x/target", rng, 50.0, live=(True, False, False))
    pad = real_noise_pad(rng, target, pool + [target], 5000)
    assert pad.shape == (3, 5000)
    assert not pad[1:].any()  # dead components stay dead
    assert 0.8 < pad[0].std() / 50.0 < 1.2
    own = target.noise[0]
    # the target's own noise never appears in its padding
    assert np.max(
        np.abs(np.correlate(pad[0, :2000] - pad[0, :2000].mean(), own[:500], "valid"))
    ) < 0.5 * np.dot(own[:500], own[:500])
    hist, p_idx = padded_history(rng, target, pool, 2000)
    assert hist.shape[1] == 2000 + target.wave.shape[1] and p_idx == 5000
    assert np.array_equal(hist[:, 2000 + 100 :], target.wave[:, 100:])


def test_padding_needs_distinct_donors() -> None:
    rng = np.random.default_rng(1)
    pool = [_rec("x/a", rng, 1.0)]
    with pytest.raises(DataError):
        real_noise_pad(rng, _rec("x/t", rng, 1.0), pool, 20000)


def test_padding_skips_donor_dropouts() -> None:
    """A donor whose noise holds a telemetry dropout (exact zeros) gives only its longest live span:
    the padding never holds a flat stretch."""
    rng = np.random.default_rng(2)
    pool = [_rec(f"x/{i}", rng, 10.0) for i in range(8)]
    for r in pool:
        r.wave[:, 1000:1600] = 0.0  # 6 s dropout inside the pre-P noise
    pool[0].wave[:, 2000:2300] = 7.0  # and a held value (a filled gap)
    target = _rec("x/target", rng, 10.0)
    pad = real_noise_pad(rng, target, pool, 8000)
    steps = pad.reshape(3, -1, 10)
    flat = (steps.max(axis=2) - steps.min(axis=2) < 1e-3).all(axis=0)
    assert not flat.any()
    x = rng.normal(size=(3, 100))
    x[:, 40:50] = 0.0
    x[:, 70:80] = 3.0
    assert np.array_equal(live_span(x), x[:, :40]) and live_span(np.ones((3, 50))).shape == (3, 0)


def _noise_record(rng: np.random.Generator, n_s: int = 30) -> np.ndarray:
    return rng.normal(0.0, 10.0, (3, n_s * 100))


def test_screening_trims_noise_up_to_an_earthquake_burst() -> None:
    """A 3 s burst (20x the noise) 12 s into the pre-P noise: the record keeps its P and S and only
    the noise after the burst + 5 s; the burst's windows no longer count as negatives."""
    rng = np.random.default_rng(3)
    w = _noise_record(rng)
    w[:, 1200:1500] *= 20.0
    rec = Record("x/burst", w.astype(np.float32), p=2500, s=2800, live=(True, True, True))
    assert noise_bursts(rec).tolist() == [12, 13, 14]
    (out,), trimmed = screen_noise([rec])
    cut = 1500 + 500
    assert trimmed == ["x/burst"] and out.p == 2500 - cut and out.s == 2800 - cut
    assert np.array_equal(out.wave, rec.wave[:, cut:])
    assert noise_bursts(out).size == 0


def test_screening_keeps_spikes_and_a_station_coming_alive() -> None:
    """Single-second spikes and a dead stretch followed by live data are noise the model must
    handle: not screened."""
    rng = np.random.default_rng(4)
    spiky = _noise_record(rng)
    spiky[:, 500:510] *= 50.0
    spiky[:, 1700:1710] *= 50.0
    waking = _noise_record(rng)
    waking[:, :1000] = 0.0
    waking[:, 1000:] += 1e6  # comes alive with a DC offset
    recs = [
        Record("x/spiky", spiky.astype(np.float32), 2500, -1, (True, True, True)),
        Record("x/waking", waking.astype(np.float32), 2500, -1, (True, True, True)),
    ]
    out, trimmed = screen_noise(recs)
    assert trimmed == [] and all(a is b for a, b in zip(out, recs, strict=True))
