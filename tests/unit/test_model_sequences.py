"""Two-event sequences (issue 13): the superposition, the evaluation's sequences, the training option."""

from __future__ import annotations

import numpy as np
import pytest

from models import synthetic
from models.augment import AugmentConfig, labels, make_batch, make_stream_seq
from models.data import Record, padded_history
from models.sequences import (
    AFTER_P2_S,
    RAMP,
    build_sequences,
    event_peak,
    make_sequence,
    second_event,
    superpose,
)
from models.train import sequence_metrics

FS = 100


def record(
    key: str, seed: int, p: int = 3000, n: int = 9000, snr: float = 30.0, single: bool = False
) -> Record:
    rng = np.random.default_rng(seed)
    wave = synthetic.event_record(rng, n, FS, p_s=p / FS, s_minus_p_s=4.0, snr=snr, noise_level=50.0)
    wave = wave.astype(np.float32)
    if single:
        wave[1:] = 0.0
    live = tuple(bool(np.abs(w).max() > 0) for w in wave)
    return Record(key, wave, p, p + 400, live)  # type: ignore[arg-type]


POOL = [record(f"syn/{i}", i, snr=10.0 + 10 * i) for i in range(6)]


def test_superpose_scales_the_second_event_to_the_ratio_and_starts_at_its_p() -> None:
    a, b = POOL[0], POOL[3]
    p2 = a.p + 2000
    out = superpose(a.wave, a.p, b, p2, 2.5)
    added = out - a.wave
    assert np.all(added[:, : p2 - RAMP] == 0.0)  # nothing before the ramp-in
    assert np.abs(added[:, p2 - RAMP : p2]).max() < np.abs(added[:, p2 : p2 + 500]).max()
    k = 2.5 * event_peak(a.wave, a.p) / event_peak(b.wave, b.p)
    seg = second_event(b)
    n = out.shape[1] - (p2 - RAMP)
    assert added[:, p2 - RAMP :] == pytest.approx(k * seg[:, :n], rel=1e-5, abs=1e-3)


def test_superpose_keeps_dead_components_dead_and_refuses_a_second_p_before_the_first() -> None:
    a = record("syn/single", 11, single=True)
    out = superpose(a.wave, a.p, POOL[2], a.p + 500, 1.0)
    assert np.all(out[1:] == 0.0) and np.abs(out[0] - a.wave[0]).max() > 0
    with pytest.raises(ValueError):
        superpose(a.wave, a.p, POOL[2], a.p - 10, 1.0)


def test_build_sequences_is_fixed_by_its_seed_and_spans_the_documented_ranges() -> None:
    rng = np.random.default_rng(0)
    firsts = []
    for r in POOL:
        hist, p = padded_history(rng, r, POOL, 2000)
        firsts.append((r, hist, p))
    a = build_sequences(firsts, POOL, 30, seed=4)
    b = build_sequences(firsts, POOL, 30, seed=4)
    assert [(q.first, q.second, q.p2) for q in a] == [(q.first, q.second, q.p2) for q in b]
    assert all(np.array_equal(x.wave, y.wave) for x, y in zip(a, b, strict=True))
    for i, q in enumerate(a):
        assert q.first != q.second
        assert q.coda == (i % 3 == 2)
        assert 3.0 <= q.dt_s <= (15.0 if q.coda else 120.0)
        assert 0.1 <= q.ratio <= (1.0 if q.coda else 10.0)
        assert q.wave.shape[1] == q.p2 + int(AFTER_P2_S * FS)  # continued by donor noise when needed
        assert q.p2 - q.p1 == int(round(q.dt_s * FS))
    assert any(q.dt_s > 60 for q in a)  # beyond the first recording's end


def test_make_sequence_second_p_is_visible_where_the_first_event_has_decayed() -> None:
    r, other = POOL[4], POOL[5]
    hist, p = padded_history(np.random.default_rng(1), r, POOL, 1000)
    q = make_sequence(np.random.default_rng(2), r, hist, p, other, 80.0, 1.0, POOL)
    before = np.abs(q.wave[0, q.p2 - 300 : q.p2 - RAMP]).max()
    after = np.abs(q.wave[0, q.p2 : q.p2 + 300]).max()
    assert after > 3 * before


def test_the_evaluation_tells_a_visible_second_p_from_a_buried_one() -> None:
    """A loud second event late after the first stands out of the coda; the same event at a tenth of a
    loud first event's amplitude 3 s after its P is buried in it (the evaluation reports both groups)."""
    loud, other = POOL[5], POOL[0]
    hist, p = padded_history(np.random.default_rng(1), loud, POOL, 1000)
    late = make_sequence(np.random.default_rng(2), loud, hist, p, other, 80.0, 1.0, POOL)
    buried = make_sequence(np.random.default_rng(2), loud, hist, p, other, 5.0, 0.05, POOL)
    assert late.p2_visible
    assert not buried.p2_visible


def test_labels_peak_at_every_p() -> None:
    ev, pt = labels(2400, 500.0, more_p=(1500.0,))
    assert ev[:49].max() == 0 and ev[50:].min() == 1  # the event label starts at the first P
    assert pt[49] > 0.85 and pt[149] > 0.85 and pt[100] < 1e-3


def test_two_event_streams_carry_both_p_positions() -> None:
    cfg = AugmentConfig(p_two=1.0, p_synthetic=0.0, p_add_noise=0.0)
    rng = np.random.default_rng(7)
    got = 0
    for _ in range(10):
        x, p1, more = make_stream_seq(rng, POOL[1], POOL, cfg)
        assert x.shape == (3, cfg.length)
        if more:
            got += 1
            assert more[0] >= p1 + cfg.two_min_dt_s * FS and more[0] < cfg.length
    assert got >= 8
    waves, ev, pt, ps = make_batch(rng, POOL, POOL, cfg, 4)
    assert waves.shape == (4, 3, cfg.length) and (pt > 0.9).sum(axis=1).min() >= 2


def test_without_the_option_the_streams_are_unchanged() -> None:
    """p_two = 0 draws nothing more: the recipe of the shipped model gives the same streams."""
    a = make_batch(np.random.default_rng(3), POOL, POOL, AugmentConfig(), 3)[0]
    b = make_batch(np.random.default_rng(3), POOL, POOL, AugmentConfig(p_two=0.0), 3)[0]
    assert np.array_equal(a, b)


def test_sequence_metrics() -> None:
    p = np.full((2, 600), -5.0)
    p2 = np.array([5000, 5000])
    centre = np.arange(600) * 10 + 4.5
    p[0, np.argmin(np.abs(centre - 5000))] = 4.0  # detected at P2
    p[1, np.argmin(np.abs(centre - 4000))] = 4.0  # a false new onset in the coda, P2 missed
    m = sequence_metrics(p, p2, np.full(1000, -3.0))
    assert m["seq_det_p2+0.5"] == 0.5 and m["seq_det_p2+1.0"] == 0.5 and m["seq_coda_false_p"] == 0.5


def test_sequence_scoring_helpers() -> None:
    """Chunk alignment at P + t, what counts as detecting a P, and the trigger times of the replayed rule."""
    from models.evaluate import _alignment, _detected, _pick_error, detector_triggers, onset_rule

    assert (12345 + 50 - _alignment(12345, 0.5)) % 100 == 0  # a chunk ends exactly at P + 0.5 s
    assert (12345 + 100 - _alignment(12345, 1.0)) % 100 == 0
    p = 10_000
    trigs = [(p + 100, p + 20.0, True)]
    assert _detected(trigs, p, 1.0) and not _detected(trigs, p, 0.5)
    assert not _detected([(p + 100, p + 150.0, True)], p, 1.0)  # pick 1.5 s off
    assert _pick_error(trigs, p) == pytest.approx(0.2) and _pick_error([], p) is None
    ev = np.full(40, 0.05)
    ev[10:] = 0.99
    pp = np.full(400, 0.01)
    pp[100], pp[250] = 0.9, 0.9
    got = detector_triggers(onset_rule(0.9, 0.6), ev, pp, 37, p_pick=0.6, warmup_s=5.0)
    assert [(t, o, r) for t, o, r in got] == [(37 + 1100, 37 + 1004.5, False), (37 + 2600, 37 + 2504.5, True)]


def test_a_flat_tail_is_no_data_for_a_sequence() -> None:
    """34 of the 204 recordings end in a held value after P: neither event of a sequence carries it."""
    from models.sequences import live_end, record_peak

    r = POOL[2]
    wave = r.wave.copy()
    wave[:, 7000:] = 5000.0  # a step to a constant: the processing edge of a recording
    flat = Record("syn/flat", wave, r.p, r.s, r.live)
    assert live_end(flat) == 6990 and live_end(r) == r.wave.shape[1]  # the step into it is no data either
    assert record_peak(flat) == pytest.approx(event_peak(r.wave[:, :6990], r.p))
    assert second_event(flat).shape[1] == 6990 - (r.p - RAMP)
    hist, p = padded_history(np.random.default_rng(1), flat, POOL, 1000)
    q = make_sequence(np.random.default_rng(2), flat, hist, p, POOL[0], 50.0, 1.0, POOL)
    tail = q.wave[:, p - flat.p + 6990 : p - flat.p + 7300]
    assert (tail.max(axis=1) > tail.min(axis=1)).all()  # donor noise, not the held value
