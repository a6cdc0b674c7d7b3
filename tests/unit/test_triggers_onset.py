"""The detector-level trigger rule (services.common.triggers.onset): first triggers on event_prob,
re-triggers on a new P onset inside an episode, the re-arm rules, and that the core runs the same rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from services.common.triggers.onset import (
    NO_STEP,
    OnsetRule,
    OnsetState,
    decide,
    first_pick,
    picked,
    replay,
)
from services.detector.core import CoreConfig, CoreDetector

RULE = OnsetRule.from_seconds(detection=0.9, rearm_level=0.45, rearm_s=3.0, retrigger=0.6)


def outputs(seconds: int) -> tuple[np.ndarray, np.ndarray]:
    """Quiet model outputs: event_prob per 1 s chunk, p_prob per 0.1 s step."""
    return np.full(seconds, 0.05), np.full(seconds * 10, 0.01)


def test_levels_default_and_validate() -> None:
    assert RULE.p_rearm == pytest.approx(0.3)
    assert (RULE.rearm_steps, RULE.min_separation_steps, RULE.hold_steps) == (30, 30, 20)
    with pytest.raises(ValueError):
        OnsetRule.from_seconds(detection=0.9, rearm_level=0.95, rearm_s=3.0, retrigger=0.6)
    with pytest.raises(ValueError):
        OnsetRule.from_seconds(detection=0.9, rearm_level=0.4, rearm_s=3.0, retrigger=0.6, p_rearm=0.7)


def test_a_new_p_inside_the_coda_triggers_again_with_its_own_onset() -> None:
    ev, pp = outputs(60)
    ev[10:] = 0.99  # signal present from 10 s to the end: one long episode
    pp[100:103] = [0.7, 0.9, 0.5]  # first P at step 101
    pp[250:253] = [0.65, 0.8, 0.3]  # second P at step 251, 15 s later
    trig = replay(RULE, ev, pp, p_pick=0.6, max_lead_steps=100)
    assert [(t.chunk, t.onset_step, t.retrigger) for t in trig] == [(10, 101, False), (25, 251, True)]


def test_no_retrigger_within_the_minimum_separation_or_on_one_long_peak() -> None:
    ev, pp = outputs(40)
    ev[10:] = 0.99
    pp[100:103] = [0.7, 0.9, 0.5]
    pp[115:118] = 0.9  # 1.5 s after the pick: the same arrival (S of a close event, a second peak)
    pp[140:180] = 0.8  # 3.9 s after, and the P curve fell below p_rearm (103-114) since the pick
    trig = replay(RULE, ev, pp, p_pick=0.6, max_lead_steps=100)
    assert [t.onset_step for t in trig] == [101, 140]  # the 140 run is new (fell below 0.3 before it)
    ev, pp = outputs(40)
    ev[10:] = 0.99
    pp[100:200] = 0.8  # one plateau: the P curve never re-arms after the pick
    trig = replay(RULE, ev, pp, p_pick=0.6, max_lead_steps=100)
    assert len(trig) == 1 and not trig[0].retrigger


def test_a_new_onset_needs_event_prob_at_detection_within_the_hold() -> None:
    ev, pp = outputs(40)
    ev[10:15] = 0.99
    ev[15:] = 0.6  # the episode stays open (above the re-arm level) but below detection
    pp[100:102] = [0.9, 0.5]
    pp[200:202] = [0.9, 0.5]  # new onset at 20.0 s; event_prob comes back at 21 s (within 2 s)
    ev[21:23] = 0.99
    pp[300:302] = [0.9, 0.5]  # new onset at 30.0 s; event_prob only at 33 s (beyond the hold)
    ev[33] = 0.99
    trig = replay(RULE, ev, pp, p_pick=0.6, max_lead_steps=100)
    assert [(t.chunk, t.onset_step, t.retrigger) for t in trig] == [(10, 100, False), (21, 200, True)]


def test_the_episode_closes_after_rearm_s_quiet_and_the_next_pick_is_after_the_last_onset() -> None:
    ev, pp = outputs(40)
    ev[10:12] = 0.99
    pp[100] = 0.9
    ev[20:22] = 0.99  # 8 s later, after 8 s below the re-arm level: a first trigger again
    pp[195] = 0.95
    trig = replay(RULE, ev, pp, p_pick=0.6, max_lead_steps=150)
    assert [(t.chunk, t.onset_step, t.retrigger) for t in trig] == [(10, 100, False), (20, 195, False)]
    # with a long pick window the older peak (step 100, higher) must not be picked again
    ev, pp = outputs(40)
    ev[10:12] = 0.99
    pp[100] = 0.99
    ev[20:22] = 0.99  # no new P peak: the pick falls back to the chunk start, not the old onset
    trig = replay(RULE, ev, pp, p_pick=0.6, max_lead_steps=150)
    assert [(t.chunk, t.onset_step) for t in trig] == [(10, 100), (20, 200)]


def test_warmup_and_site_gate() -> None:
    st = OnsetState()
    p = np.full(10, 0.01)
    assert not decide(RULE, st, 0.99, p, 0, warm=False).new_trigger
    assert not decide(RULE, st, 0.99, p, 10, warm=True, allowed=False).new_trigger
    d = decide(RULE, st, 0.99, p, 20, warm=True)
    assert d.first and st.episode
    picked(st, 25)
    assert st.last_onset == 25 and st.pending == NO_STEP


def test_first_pick_takes_the_latest_near_maximum_peak() -> None:
    steps = np.arange(100)
    vals = np.full(100, 0.01)
    vals[20:23] = [0.7, 0.95, 0.6]  # an earlier, slightly higher peak
    vals[60:62] = [0.9, 0.4]  # the later near-maximum peak: the signal that triggered
    assert first_pick(steps, vals, 0, 100, 0.5) == (60, pytest.approx(0.9))
    assert first_pick(steps, vals, 61, 100, 0.5) is None
    assert first_pick(steps, vals, 0, 60, 0.5) == (21, pytest.approx(0.95))


@dataclass
class _Out:
    event_prob: np.ndarray
    p_prob: np.ndarray
    state: np.ndarray


class _Scripted:
    """One station's scripted model outputs, one chunk per call."""

    def __init__(self, ev: np.ndarray, pp: np.ndarray) -> None:
        self.ev, self.pp, self.k = ev, pp.reshape(len(ev), -1), 0

    def __call__(self, wave: np.ndarray, state: np.ndarray) -> _Out:
        k = self.k
        self.k += 1
        return _Out(self.ev[k : k + 1], self.pp[k : k + 1], state)


def test_core_makes_the_triggers_replay_makes() -> None:
    """CoreDetector (live path) and replay (evaluation) run one rule: same triggers and onsets."""
    from services.common.codec import Packet

    rng = np.random.default_rng(3)
    n = 120
    ev = np.where(rng.random(n) < 0.5, 0.99, rng.uniform(0.0, 0.9, n))
    ev[:20] = 0.05
    pp = np.where(rng.random(n * 10) < 0.03, rng.uniform(0.6, 1.0, n * 10), rng.uniform(0.0, 0.4, n * 10))
    cfg = CoreConfig(
        state_size=4, detection_threshold=0.9, p_pick_threshold=0.6, warmup_s=5.0, max_component_wait_s=3.0
    )
    det = CoreDetector(cfg, _Scripted(ev, pp))
    t0 = 1_700_000_000 * 10**9
    scores = []
    for s in range(n):
        for comp in "ZNE":
            det.feed(Packet("XX", "S1", "00", "HH" + comp, t0 + s * 10**9, 100.0, np.zeros(100), 0))
        scores += det.score_ready()
    scores += det.score_ready()
    live = [((s.window_end_ns - t0) // 10**9 - 1, s.p_onset_ns) for s in scores if s.new_trigger]
    rule = det.onset_rule
    want = replay(rule, ev[: len(scores)], pp[: len(scores) * 10], 0.6, det.lookback_steps, warmup_chunks=5)
    assert len(want) >= 3 and any(t.retrigger for t in want)
    assert live == [(t.chunk, t0 + t.onset_step * 10**8 + 5 * 10**7) for t in want]


def test_inconsistent_retrigger_levels_are_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="p_rearm_threshold"):
        CoreConfig(
            state_size=4, detection_threshold=0.9, p_pick_threshold=0.6, warmup_s=5.0, p_rearm_threshold=0.7
        )
    CoreConfig(
        state_size=4,
        detection_threshold=0.9,
        p_pick_threshold=0.6,
        warmup_s=5.0,
        retrigger_threshold=0.8,
        p_rearm_threshold=0.7,
    )
