"""Training records from a real accelerometer network (openeew_mx dev) and the augmentation options
that go with them: noise-only records, acceleration records left as recorded, S late in a stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import synthetic
from models.augment import AugmentConfig, labels, make_batch, make_stream_seq
from models.data import Record
from models.openeew import load_split
from models.openeew_train import aic_pick, dev_records, to_model_rate

FS = 100


def _event(key: str, seed: int, p: int = 3000, n: int = 9000, s_gap: int = 400) -> Record:
    rng = np.random.default_rng(seed)
    wave = synthetic.event_record(rng, n, FS, p_s=p / FS, s_minus_p_s=s_gap / FS, snr=20.0, noise_level=50.0)
    return Record(key, wave.astype(np.float32), p, p + s_gap, (True, True, True))


POOL = [_event(f"syn/{i}", i) for i in range(5)]


def test_aic_pick_finds_an_onset_in_noise() -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_normal(600)
    z[347:] += 8.0 * rng.standard_normal(253)
    assert abs(aic_pick(z) - 347) <= 3


def test_to_model_rate_keeps_a_sine_and_the_length() -> None:
    fs = 31.25
    t = np.arange(int(60 * fs)) / fs
    y = to_model_rate(np.sin(2 * np.pi * 2.0 * t), fs)
    assert len(y) == int(len(t) * 100 / fs)
    mid = y[1000:5000]
    assert 0.97 < np.abs(mid).max() < 1.03
    tt = np.arange(len(y)) / 100.0
    assert np.abs(mid - np.sin(2 * np.pi * 2.0 * tt[1000:5000])).max() < 0.05  # in phase


def test_a_noise_record_never_gets_an_event() -> None:
    rng = np.random.default_rng(2)
    noise = Record(
        "openeew_mx/x/001/noise0",
        rng.standard_normal((3, 6000)).astype(np.float32),
        6000,
        -1,
        (True, True, True),
        acc=True,
        kind="noise",
    )
    cfg = AugmentConfig(p_two=1.0, p_s_late=1.0, p_noise_only=0.0, p_late=1.0, p_synthetic=0.0)
    for _ in range(20):
        x, p_pos, more = make_stream_seq(rng, noise, POOL, cfg)
        assert p_pos > cfg.length and not more
        assert labels(cfg.length, p_pos)[0].sum() == 0


def test_an_acceleration_record_is_not_turned_into_acceleration_again() -> None:
    """p_acc = 1 would difference a velocity stream; a real accelerometer's stream keeps its spectrum."""
    rng = np.random.default_rng(3)
    acc = Record("openeew_mx/x/001", POOL[0].wave, POOL[0].p, -1, (True, True, True), acc=True)
    cfg = AugmentConfig(
        p_acc=1.0,
        p_mems=0.0,
        p_rate=0.0,
        p_dc=0.0,
        p_trend=0.0,
        p_gap=0.0,
        p_single=0.0,
        p_drop_one=0.0,
        p_synthetic=0.0,
        p_noise_only=0.0,
        p_late=0.0,
    )
    x, p_pos, _ = make_stream_seq(rng, acc, POOL, cfg)
    start = acc.p - int(p_pos)
    ref = acc.wave[:, start : start + cfg.length].astype(np.float64)
    ratio = np.abs(x).max(axis=1) / np.abs(ref).max(axis=1)
    assert np.allclose(ratio, ratio[0], rtol=1e-6)  # one gain, no differencing


def test_s_late_puts_s_in_the_last_three_seconds() -> None:
    rng = np.random.default_rng(4)
    cfg = AugmentConfig(p_s_late=1.0, p_synthetic=0.0)
    for rec in POOL:
        _, p_pos, _ = make_stream_seq(rng, rec, POOL, cfg)
        s_pos = p_pos + (rec.s - rec.p)
        assert cfg.length - 3 * FS <= s_pos < cfg.length


def test_make_batch_draws_the_real_network_share() -> None:
    rng = np.random.default_rng(5)
    marker = Record("openeew_mx/x/009", np.full((3, 9000), 7.0, np.float32), 3000, -1, (True,) * 3, acc=True)
    cfg = AugmentConfig(p_real_acc=1.0, p_synthetic=0.0)
    waves, *_ = make_batch(rng, POOL, POOL, cfg, 4, [marker])
    # every stream is the constant record (up to gain, DC and trend of the generic augmentation)
    assert all(np.ptp(np.diff(w[0, 100:200])) < 1e-3 * max(np.abs(w[0]).max(), 1e-9) for w in waves)


def test_dev_records_read_only_dev_earthquakes(shared: Path) -> None:
    root = shared / "data" / "openeew_mx"
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    recs = dev_records(root)
    dev = {f for f, part in load_split().items() if part == "dev"}
    assert {r.key.split("/")[1] for r in recs} <= dev
    events = [r for r in recs if r.kind == "event"]
    assert len(events) >= 30 and all(r.acc for r in recs)
    assert all(r.wave.shape[0] == 3 and 4500 <= r.p < r.wave.shape[1] for r in events)
