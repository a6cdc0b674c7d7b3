"""Unit tests of the detector's pure core (buffers, chunking, batching, triggering) with a stand-in
scorer: the buffering logic is what is under test here; the real ONNX model is exercised in
tests/integration/test_detector_service.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from models import synthetic
from services.common.codec import Packet
from services.detector import core as dc
from services.detector import resample as rs
from services.detector.core import CoreConfig, CoreDetector

FS = 100
T0 = 1_700_000_000 * 1_000_000_000  # an epoch time in ns (a whole second)
DT = 10_000_000  # ns per sample at 100 Hz


@dataclass
class FakeStep:
    event_prob: np.ndarray
    p_prob: np.ndarray
    state: np.ndarray


class FakeScorer:
    """Stateful stand-in scorer that depends only on (wave, state), like the real model.

    state[:, 0] counts chunks seen; state[:, 1] is 1 when the previous chunk exceeded ``level``.
    event_prob is 0.95 when |Z| exceeds ``level`` anywhere in the chunk, else 0.05; p_prob is 0.9
    at the first exceeding step of an exceedance that follows a quiet chunk, else 0.01. Every call
    is recorded (waves and batch size).
    """

    def __init__(self, steps: int = 10, level: float = 1000.0) -> None:
        self.steps = steps
        self.level = level
        self.calls: list[np.ndarray] = []
        self.states_in: list[np.ndarray] = []

    def __call__(self, wave: np.ndarray, state: np.ndarray) -> FakeStep:
        self.calls.append(wave.copy())
        self.states_in.append(state.copy())
        b, _, n = wave.shape
        step = n // self.steps
        z = np.abs(wave[:, 0, :]).reshape(b, self.steps, step).max(axis=2)  # (B, steps)
        exceed = z > self.level
        any_ex = exceed.any(axis=1)
        new = state.copy()
        new[:, 0] += 1
        new[:, 1] = any_ex
        pp = np.full((b, self.steps), 0.01, dtype=np.float32)
        first = np.argmax(exceed, axis=1)
        onset = any_ex & (state[:, 1] == 0)
        pp[np.nonzero(onset)[0], first[onset]] = 0.9
        ev = np.where(any_ex, 0.95, 0.05).astype(np.float32)
        return FakeStep(ev, pp, new)

    @property
    def batch_sizes(self) -> list[int]:
        return [w.shape[0] for w in self.calls]


def config(**kw: object) -> CoreConfig:
    base: dict[str, object] = dict(
        state_size=8,
        detection_threshold=0.5,
        p_pick_threshold=0.3,
        warmup_s=5.0,
        rearm_s=3.0,
        max_component_wait_s=3.0,
        buffer_s=40.0,
        max_gap_s=20.0,
    )
    base.update(kw)
    return CoreConfig(**base)  # type: ignore[arg-type]


def make_packets(
    rec: np.ndarray,
    t0_ns: int = T0,
    fs: float = FS,
    size: int = 100,
    sta: str = "S1",
    prefix: str = "HH",
    comps: str = "ZNE",
    jitter_ns: int = 0,
    ingest: int = 0,
) -> list[Packet]:
    """Split a (3, n) record into packets of ``size`` samples, interleaved by time across components."""
    out = []
    n = rec.shape[1]
    for s in range(0, n, size):
        for row, comp in enumerate(comps):
            t = t0_ns + int(round(s * 1e9 / fs)) + jitter_ns
            out.append(
                Packet(
                    "XX", sta, "00", prefix + comp, t, float(fs), rec[row, s : s + size].copy(), ingest + s
                )
            )
    return out


def run(det: CoreDetector, pkts: list[Packet], score_every: int = 1) -> list[dc.Score]:
    scores: list[dc.Score] = []
    for i, p in enumerate(pkts):
        det.feed(p)
        if (i + 1) % score_every == 0:
            scores += det.score_ready()
    scores += det.score_ready()
    return scores


def noise_rec(n: int, seed: int = 0, level: float = 100.0) -> np.ndarray:
    return synthetic.noise(np.random.default_rng(seed), n, FS, level)


def test_scores_are_aligned_to_absolute_chunk_boundaries_with_jitter_snapped() -> None:
    """Start times off the grid by < half a sample snap to it; windows are whole seconds since the epoch."""
    rec = noise_rec(1000)
    det = CoreDetector(config(), FakeScorer())
    t0 = T0 + 37 * DT + 3_000_000  # 0.37 s + 3 ms jitter into a second
    scores = run(det, make_packets(rec, t0_ns=t0, size=64))
    assert scores
    for s in scores:
        assert s.window_start_ns % 1_000_000_000 == 0
        assert s.window_end_ns - s.window_start_ns == 1_000_000_000
    # the first full chunk starts at the next whole second and the data inside it are the record's
    # the first chunk starts at the whole second before the data, backfilled with the first sample
    assert scores[0].window_start_ns == T0
    det2 = CoreDetector(config(), sc := FakeScorer())
    run(det2, make_packets(rec, t0_ns=t0, size=64))
    want = np.concatenate([np.full(37, rec[0, 0]), rec[0, :163]]).astype(np.float32)
    np.testing.assert_allclose(np.concatenate([c[0, 0] for c in sc.calls[:2]]), want)


def test_chunk_results_do_not_depend_on_packet_size_or_scoring_cadence() -> None:
    """Same record cut into 37-, 100- and 512-sample packets, scored after every packet or at the end."""
    rec = synthetic.event_record(np.random.default_rng(3), 6000, FS, p_s=30.0)
    ref = None
    for size, every in ((37, 1), (100, 7), (512, 1), (999, 1000)):
        det = CoreDetector(config(), FakeScorer())
        scores = run(det, make_packets(rec, size=size), score_every=every)
        got = [(s.window_end_ns, round(s.probability, 6), s.triggered, s.p_onset_ns) for s in scores]
        if ref is None:
            ref = got
        assert got == ref, f"packet size {size}"
    assert ref is not None and len(ref) == 60


def test_out_of_order_packets_within_a_batch_fill_the_gap_before_scoring() -> None:
    """Swapped packets arrive before their chunk is scored: identical scores, late-fill counted."""
    rec = noise_rec(3000, seed=1)
    pkts = make_packets(rec, size=50)
    swapped = []
    for i in range(0, len(pkts) - 5, 6):  # swap time-adjacent packets of the same component
        swapped += pkts[i + 3 : i + 6] + pkts[i : i + 3]
    swapped += pkts[len(swapped) :]
    a = CoreDetector(config(), sa := FakeScorer())
    b = CoreDetector(config(), sb := FakeScorer())
    ra = run(a, pkts, score_every=6)
    rb = run(b, swapped, score_every=6)
    assert [s.window_end_ns for s in ra] == [s.window_end_ns for s in rb]
    np.testing.assert_array_equal(np.concatenate(sa.calls), np.concatenate(sb.calls))
    counts, _ = b.take_counts()
    assert counts[dc.C_LATE_FILLED] > 0
    assert counts[dc.C_LATE_SAMPLES] == 0


def test_gap_is_hold_filled_and_counted() -> None:
    """A missing Z packet becomes a hold-last gap in the scored wave; the gap is counted."""
    rec = noise_rec(2000, seed=2)
    pkts = make_packets(rec, size=100)
    missing = pkts[3 * 7]  # Z packet with samples 700..799
    assert missing.channel == "HHZ"
    det = CoreDetector(config(), sc := FakeScorer())
    run(det, [p for p in pkts if p is not missing])
    counts, _ = det.take_counts()
    assert counts[dc.C_GAPS] == 1 and counts[dc.C_GAP_SAMPLES] == 100
    waves = np.concatenate(sc.calls)  # chunk k covers samples 100k..100k+99 (record starts on a second)
    z7 = waves[7, 0]
    np.testing.assert_array_equal(z7, np.float32(rec[0, 699]))
    np.testing.assert_allclose(waves[8, 0], rec[0, 800:900].astype(np.float32))


def test_late_packet_after_scoring_is_dropped_and_counted() -> None:
    rec = noise_rec(2000, seed=4)
    pkts = make_packets(rec, size=100)
    late = pkts[3 * 5]
    det = CoreDetector(config(), FakeScorer())
    run(det, [p for p in pkts if p is not late])
    assert det.feed(late) == "late"
    counts, _ = det.take_counts()
    assert counts[dc.C_LATE_SAMPLES] == 100 and counts[dc.C_LATE_PACKETS] == 1


def test_duplicates_and_overlaps_are_dropped_and_counted() -> None:
    """A repeated packet is a duplicate; a half-overlapping one contributes only its new half."""
    rec = noise_rec(1000, seed=5)
    pkts = make_packets(rec, size=100)
    det = CoreDetector(config(), sc := FakeScorer())
    for p in pkts[:9]:
        assert det.feed(p) is None
    assert det.feed(pkts[6]) == "duplicate"  # Z 200..299 again, not yet scored
    z = pkts[9]  # Z 300..399; send 250..399 instead
    overlap = Packet("XX", "S1", "00", "HHZ", T0 + 250 * DT, 100.0, rec[0, 250:400].copy())
    assert overlap.start_time_ns < z.start_time_ns
    assert det.feed(overlap) is None
    counts, _ = det.take_counts()
    assert counts[dc.C_DUP_SAMPLES] == 100 + 50 and counts[dc.C_DUP_PACKETS] == 1
    for p in pkts[10:]:
        det.feed(p)
    det.score_ready()
    waves = np.concatenate(sc.calls)
    np.testing.assert_allclose(waves[:, 0].reshape(-1), rec[0, : 100 * len(waves)].astype(np.float32))


def test_component_that_never_arrives_is_dead_after_the_wait() -> None:
    """Z only (like a one-component station): scored with N and E zero once Z is max_component_wait_s ahead."""
    rec = noise_rec(2000, seed=6)
    det = CoreDetector(config(max_component_wait_s=3.0), sc := FakeScorer())
    pkts = [p for p in make_packets(rec, size=100) if p.channel.endswith("Z")]
    scores = []
    for i, p in enumerate(pkts):
        det.feed(p)
        got = det.score_ready()
        if i < 3:
            assert not got, "must wait for the other components"
        scores += got
    assert all(s.components == 1 for s in scores)
    waves = np.concatenate(sc.calls)
    assert not waves[:, 1:].any()
    counts, _ = det.take_counts()
    assert counts[dc.C_DEAD] == 2
    assert len(scores) == 20


def test_component_that_stops_is_hold_filled_then_dead() -> None:
    """N stops at 10 s: hold-last while it lags less than max_gap_s, zeros (dead) after that."""
    rec = noise_rec(6000, seed=7)
    det = CoreDetector(config(max_gap_s=15.0, max_component_wait_s=3.0), sc := FakeScorer())
    pkts = [
        p
        for p in make_packets(rec, size=100)
        if not (p.channel.endswith("N") and p.start_time_ns >= T0 + 10 * 10**9)
    ]
    scores = run(det, pkts)
    comps = {s.window_start_ns // 10**9 - T0 // 10**9: s.components for s in scores}
    waves = np.concatenate(sc.calls)
    assert comps[5] == 3 and comps[12] == 3 and comps[30] == 2
    np.testing.assert_array_equal(waves[12, 1], np.float32(rec[1, 999]))  # held
    assert not waves[30, 1].any()  # dead: zeros
    counts, _ = det.take_counts()
    assert counts[dc.C_DEAD] == 1


def test_decimation_200_to_100_hz_is_anti_aliased_and_time_aligned() -> None:
    """200 Hz input: a 5 Hz sine passes at the right times, a 70 Hz sine (would alias to 30 Hz) is removed."""
    fs_in = 200
    n = 200 * 30
    t = np.arange(n) / fs_in
    sig5 = 1000.0 * np.sin(2 * np.pi * 5.0 * t)
    sig70 = 1000.0 * np.sin(2 * np.pi * 70.0 * t)
    rec = np.stack([sig5 + sig70, sig5, np.zeros(n)])
    det = CoreDetector(config(), sc := FakeScorer())
    run(det, make_packets(rec, fs=fs_in, size=173))
    waves = np.concatenate(sc.calls)  # chunk k: samples at 100 Hz from k s after T0
    z = waves[:, 0].reshape(-1)
    t_out = np.arange(len(z)) / 100.0
    want = 1000.0 * np.sin(2 * np.pi * 5.0 * t_out)
    # skip the filter's start-up (first 0.5 s)
    err = np.abs(z[50:] - want[50:]).max()
    assert err < 20.0, f"max error {err:.1f} of 1000 (alias or misalignment)"
    naive = rec[0, ::2][: len(z)]
    assert np.abs(naive[50:] - want[50:]).max() > 500  # naive decimation would have aliased


def test_unsupported_inputs_are_rejected_with_a_reason() -> None:
    det = CoreDetector(config(), FakeScorer())
    x = np.ones(100)
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 15.0, x)) == "rate_below_minimum"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 37.3, x)) == "unsupported_rate"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 2000.0, x)) == "rate_above_maximum"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, float("nan"), x)) == "bad_rate"
    assert det.feed(Packet("XX", "S", "", "HMZ", T0, 100.0, x)) == "unsupported_instrument"
    assert det.feed(Packet("XX", "S", "", "HHX", T0, 100.0, x)) == "unknown_component"
    assert det.feed(Packet("XX", "S", "", "HZ", T0, 100.0, x)) == "bad_channel"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 100.0, np.array([1.0, np.nan]))) == "non_finite"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 100.0, np.array([1e300, 1.0]))) == "non_finite"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 100.0, np.array([]))) == "empty"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0 + 3600 * 10**9, 100.0, x), now_ns=T0) == "future_time"
    assert det.feed(Packet("XX", "S", "", "HHZ", T0, 100.00001, x)) is None  # header rounding tolerated


def test_many_stations_are_scored_in_one_call_per_round() -> None:
    """300 stations -> one scorer call per chunk round; max_batch splits the round into calls."""
    rec = noise_rec(500, seed=8)
    pkts = []
    for k in range(300):
        pkts += make_packets(rec, size=500, sta=f"S{k:03d}")
    det = CoreDetector(config(), sc := FakeScorer())
    for p in pkts:
        det.feed(p)
    scores = det.score_ready()
    assert len(scores) == 300 * 5
    assert sc.batch_sizes == [300] * 5
    det2 = CoreDetector(config(max_batch=128), sc2 := FakeScorer())
    for p in pkts:
        det2.feed(p)
    det2.score_ready()
    assert sc2.batch_sizes == [128, 128, 44] * 5


def test_state_is_carried_per_station_and_not_shared() -> None:
    """The scorer sees each station's own state: chunk counters advance independently."""
    rec = noise_rec(1000, seed=9)
    det = CoreDetector(config(), sc := FakeScorer())
    for p in make_packets(rec, size=1000, sta="A") + make_packets(rec[:, :500], size=500, sta="B"):
        det.feed(p)
    det.score_ready()
    a, b = det.stations["XX.A.00.HH?"], det.stations["XX.B.00.HH?"]
    assert det.states[a.slot, 0] == 10 and det.states[b.slot, 0] == 5
    assert sc.states_in[0][:, 0].tolist() == [0.0, 0.0]


def test_component_switching_off_or_on_restarts_the_warm_up() -> None:
    """N stops at 10 s (declared dead with the chunk at 25 s, after max_gap_s) and returns at 40 s: no trigger within warmup_s
    of either change (bursts at 27 and 42 s), triggers outside it (33 and 55 s)."""
    n = 7000
    rec = 10.0 * np.sin(np.arange(n) * 0.3)[None, :].repeat(3, axis=0)
    for t in (27, 33, 42, 55):
        rec[0, t * 100 : t * 100 + 50] = 5000.0
    det = CoreDetector(config(warmup_s=5.0, rearm_s=3.0, max_gap_s=15.0), FakeScorer())
    gone = range(10 * 10**9, 40 * 10**9)
    pkts = [p for p in make_packets(rec) if not (p.channel.endswith("N") and p.start_time_ns - T0 in gone)]
    scores = run(det, pkts)
    new = [(s.window_start_ns - T0) // 10**9 for s in scores if s.new_trigger]
    assert new == [33, 55]
    counts, _ = det.take_counts()
    assert counts[dc.C_DEAD] == 1 and counts[dc.C_REVIVED] == 1
    warm = {(s.window_start_ns - T0) // 10**9: s.warmed_up for s in scores}
    assert [t for t in range(20, 50) if not warm[t]] == [25, 26, 27, 28, 40, 41, 42, 43]


def test_trigger_pick_warmup_and_rearm() -> None:
    """An onset at 12.34 s triggers with the pick in its step; a new onset 2 s later (inside the minimum
    separation) does not; a new P onset 5.7 s later triggers anew while the episode is still open
    (issue 13: re-arm rules of services.common.triggers.onset), with its own pick; a burst after the
    episode closed triggers again; nothing triggers during warm-up."""
    n = 6000
    rec = np.zeros((3, n))
    rec[:, :] = 10.0 * np.sin(np.arange(n) * 0.3)
    rec[0, 200:250] = 5000.0  # a burst during warm-up (first 5 s): not a trigger
    rec[0, 1234:1300] = 5000.0  # event 1 (on at 12.34 s)
    rec[0, 1450:1600] = 5000.0  # a new onset 2.2 s later: inside the minimum separation (3 s)
    rec[0, 1800:1900] = 5000.0  # a new onset 5.7 s later, episode still open: a re-trigger
    rec[0, 4000:4300] = 5000.0  # after the episode closed: a first trigger again
    det = CoreDetector(config(warmup_s=5.0, rearm_s=3.0), FakeScorer())
    scores = run(det, make_packets(rec, size=100))
    new = [s for s in scores if s.new_trigger]
    assert [s.window_start_ns for s in new] == [T0 + 12 * 10**9, T0 + 18 * 10**9, T0 + 40 * 10**9]
    assert new[0].has_p_onset and new[0].p_onset_ns == T0 + 12_350_000_000  # step 12.3-12.4 s, centre
    assert new[1].p_onset_ns == T0 + 18_050_000_000
    assert new[2].p_onset_ns == T0 + 40_050_000_000
    early = [s for s in scores if s.window_end_ns < T0 + 5 * 10**9]  # warm once 5 s were scored
    assert all(not s.triggered and not s.warmed_up for s in early)
    assert any(s.probability > 0.5 for s in early)
    trig = [s for s in scores if s.triggered]
    assert all(s.p_onset_ns == new[0].p_onset_ns for s in trig if s.window_start_ns < T0 + 18 * 10**9)
    assert all(
        s.p_onset_ns == new[1].p_onset_ns
        for s in trig
        if T0 + 18 * 10**9 <= s.window_start_ns < T0 + 30 * 10**9
    )
    counts, _ = det.take_counts()
    assert counts[dc.C_TRIGGERS] == 3 and counts[dc.C_RETRIGGERS] == 1


def test_peak_amplitude_is_demeaned_vertical() -> None:
    rec = np.full((3, 300), 1000.0)
    rec[0, 150] = 1300.0
    det = CoreDetector(config(), FakeScorer())
    scores = run(det, make_packets(rec, size=100))
    assert scores[0].peak_amplitude == 0.0
    assert scores[1].peak_amplitude == pytest.approx(300.0 - 3.0, abs=0.01)


def test_single_wild_timestamp_is_ignored_but_a_confirmed_jump_resets() -> None:
    """One packet an hour ahead does not move the station; an outage confirmed by 3 packets restarts it."""
    rec = noise_rec(6000, seed=10)
    pkts = make_packets(rec[:, :2000], size=100)
    det = CoreDetector(config(), FakeScorer())
    run(det, pkts[:30])
    wild = Packet("XX", "S1", "00", "HHZ", T0 + 3600 * 10**9, 100.0, rec[0, :100].copy())
    assert det.feed(wild) is None  # held as a possible discontinuity
    scores = run(det, pkts[30:])
    counts, _ = det.take_counts()
    assert counts[dc.C_TIME_JUMP] == 1 and counts[dc.C_RESETS] == 0
    assert scores[-1].window_end_ns == T0 + 20 * 10**9
    # a real outage: the station resumes 10 minutes later on all components
    later = make_packets(rec[:, 2000:], t0_ns=T0 + 600 * 10**9, size=100)
    scores = run(det, later)
    counts, _ = det.take_counts()
    assert counts[dc.C_RESETS] == 1
    assert scores[0].window_start_ns == T0 + 600 * 10**9 and not scores[0].warmed_up
    assert len(scores) == 40
    assert det.states[det.stations["XX.S1.00.HH?"].slot, 0] == 40  # state restarted from zero


def test_earliest_needed_keeps_unscored_data_and_warmup_history() -> None:
    """Tags (offsets) older than the warm-up history of the scored position are released."""
    rec = noise_rec(3000, seed=11)
    pkts = make_packets(rec, size=100)
    det = CoreDetector(config(warmup_s=5.0), FakeScorer())
    for off, p in enumerate(pkts):
        det.feed(p, tag=off)
    det.score_ready()
    key = "XX.S1.00.HH?"
    # all 30 s scored; keep packets ending after 30 s - warm-up (5 s) = 25 s
    st = det.stations[key]
    assert st.scored(100) - T0 // DT == 3000
    need = det.earliest_needed(key)
    assert need is not None
    assert pkts[need].start_time_ns == T0 + 25 * 10**9 and pkts[need].channel == "HHZ"
    det.drop_stations([key])
    assert det.earliest_needed(key) is None


def test_huge_packets_make_room_by_scoring() -> None:
    """A 120 s packet per component (3x the ring) is scored through without losing the Z data.

    In data time Z runs 120 s ahead of N and E, so the chunks that had to be scored to make room
    have N and E dead (zeros); N and E revive where they are still unscored, the rest is late.
    """
    rec = noise_rec(12000, seed=12)
    det = CoreDetector(config(buffer_s=40.0), sc := FakeScorer())
    scores = run(det, make_packets(rec, size=12000), score_every=3)
    assert len(scores) == 120
    waves = np.concatenate(sc.calls)
    np.testing.assert_allclose(waves[:, 0].reshape(-1), rec[0].astype(np.float32))
    np.testing.assert_allclose(waves[80:, 1].reshape(-1), rec[1, 8000:].astype(np.float32))
    assert not waves[:80, 1:].any()
    counts, _ = det.take_counts()
    assert counts[dc.C_FORCED] > 0 and counts[dc.C_DEAD] == 2 and counts[dc.C_REVIVED] == 2
    assert counts[dc.C_LATE_SAMPLES] == 2 * 8000


def test_config_rejects_a_buffer_too_small() -> None:
    with pytest.raises(ValueError):
        CoreDetector(config(buffer_s=10.0), FakeScorer())
    with pytest.raises(ValueError):
        CoreDetector(config(chunk_samples=105), FakeScorer())


def test_sampling_rate_change_mid_stream_keeps_scoring() -> None:
    """A channel switching from 100 Hz to 200 Hz: the anti-alias filter starts on the new data (no gap,
    a short start-up transient) and the 200 Hz part is scored decimated, aligned with the 100 Hz part."""
    t = np.arange(2000) / 100.0
    sig = 1000.0 * np.sin(2 * np.pi * 2.0 * t)
    rec100 = np.stack([sig, sig, sig])[:, :1000]
    t2 = 10.0 + np.arange(2000) / 200.0
    sig2 = 1000.0 * np.sin(2 * np.pi * 2.0 * t2)
    rec200 = np.stack([sig2, sig2, sig2])
    det = CoreDetector(config(), sc := FakeScorer())
    pkts = make_packets(rec100, size=100) + make_packets(rec200, t0_ns=T0 + 10 * 10**9, fs=200, size=200)
    scores = run(det, pkts)
    assert len(scores) == 19  # the filter holds back its last DECIM_HALF outputs until more data come
    counts, _ = det.take_counts()
    assert counts[dc.C_GAPS] == 0 and counts[dc.C_DUP_SAMPLES] == 0 and counts[dc.C_LATE_SAMPLES] == 0
    z = np.concatenate(sc.calls)[:, 0].reshape(-1)
    k = 1000 + 2 * rs.HALF_WIDTH
    err = np.abs(z[k:] - sig[k : len(z)]).max()
    assert err < 20.0


def test_data_buffered_before_a_confirmed_jump_is_scored_before_the_reset() -> None:
    """A fast replay delivers the data before and after an outage in one poll: nothing before it is lost."""
    rec = noise_rec(4000, seed=12)
    before = make_packets(rec[:, :2000], size=100)
    after = make_packets(rec[:, 2000:], t0_ns=T0 + 600 * 10**9, size=100)
    det = CoreDetector(config(), FakeScorer())
    for p in before + after:  # no scoring in between
        det.feed(p)
    scores = det.score_ready()
    ends = [s.window_end_ns for s in scores]
    assert [e for e in ends if e <= T0 + 20 * 10**9] == [T0 + k * 10**9 for k in range(1, 21)]
    assert len([e for e in ends if e > T0 + 600 * 10**9]) == 20
    assert det.take_counts()[0][dc.C_RESETS] == 1


class TwoPeakScorer:
    """Stand-in model with two P-curve peaks before a trigger: a precursor at 17.3 s (no trigger)
    and the onset of the triggering signal at 20.0 s; event_prob is high from 20 s on."""

    def __init__(self, precursor: float, onset: float, after: float = 0.01) -> None:
        self.precursor, self.onset, self.after = precursor, onset, after

    def __call__(self, wave: np.ndarray, state: np.ndarray) -> FakeStep:
        b = wave.shape[0]
        k = state[:, 0].astype(int)  # chunk index (1 s chunks from the stream start)
        pp = np.full((b, 10), 0.01, dtype=np.float32)
        pp[k == 17, 3] = self.precursor
        pp[k == 20, 0] = self.onset
        pp[k == 20, 1] = self.after  # the same peak's next step
        ev = np.where(k >= 20, 0.95, 0.05).astype(np.float32)
        new = state.copy()
        new[:, 0] += 1
        return FakeStep(ev, pp, new)


@pytest.mark.parametrize(
    ("precursor", "onset", "after", "want_s"),
    [(0.94, 0.92, 0.01, 20.05), (0.92, 0.94, 0.01, 20.05), (0.95, 0.5, 0.01, 17.35), (0.5, 0.95, 0.9, 20.05)],
    ids=["near-equal-precursor", "higher-onset", "weak-onset", "peak-over-two-steps"],
)
def test_pick_prefers_the_onset_of_the_triggering_signal(
    precursor: float, onset: float, after: float, want_s: float
) -> None:
    """A real record (demo station S06) has a P-curve peak 2.7 s before its P as high as the P's own:
    the pick takes the latest peak within 90% of the highest, i.e. the onset that triggered; a
    clearly weaker late peak does not win over a strong earlier one; within one peak (consecutive
    steps) the highest step is the pick, not its last one."""
    det = CoreDetector(config(warmup_s=5.0), TwoPeakScorer(precursor, onset, after))
    scores = run(det, make_packets(np.ones((3, 3000)), size=100))
    new = [s for s in scores if s.new_trigger]
    assert len(new) == 1 and new[0].window_start_ns == T0 + 20 * 10**9
    assert new[0].p_onset_ns == T0 + int(want_s * 1e9)
