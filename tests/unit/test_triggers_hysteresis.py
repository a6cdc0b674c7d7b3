"""The score-level trigger rule (services.common.triggers.hysteresis): hysteresis, minimum duration,
re-triggers on a new P, and the pick that belongs to a trigger."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.common.exceptions import ConfigError
from services.common.triggers.hysteresis import (
    StreamTriggers,
    TriggerEventKind,
    TriggerRule,
    station_triggers,
)
from services.common.triggers.picks import NS

T = 1_700_000_000 * NS
OPEN, CONFIRM, END, RETRACT = (
    TriggerEventKind.OPEN,
    TriggerEventKind.CONFIRM,
    TriggerEventKind.END,
    TriggerEventKind.RETRACT,
)


@dataclass(frozen=True)
class S:
    """A score: one per second, window [k, k+1) s after T."""

    k: int
    probability: float
    triggered: bool = False
    p_onset_ns: int | None = None
    new_trigger: bool = False

    @property
    def window_start_ns(self) -> int:
        return T + self.k * NS

    @property
    def window_end_ns(self) -> int:
        return T + (self.k + 1) * NS


def run(scores: list[S], rule: TriggerRule | None = None) -> list[tuple[TriggerEventKind, int]]:
    m = StreamTriggers(rule)
    return [(ev.kind, (ev.at_ns - T) // NS) for s in scores for ev in m.feed(s)]


def test_hysteresis_keeps_a_trigger_through_a_short_dip_and_ends_it_after_detrigger_s() -> None:
    probs = [0.1, 0.99, 0.99, 0.99, 0.3, 0.7, 0.99, 0.3, 0.3, 0.3, 0.3]
    scores = [S(k, p, triggered=p >= 0.99) for k, p in enumerate(probs)]
    # opens at window_end 2, confirmed at 4 (2 s), a one-window dip (0.3) keeps it, ends at 9:
    # 2 s after window_end 7, its last score at or above the detrigger level
    assert run(scores) == [(OPEN, 2), (CONFIRM, 4), (END, 9)]


def test_short_trigger_is_retracted() -> None:
    scores = [S(0, 0.1), S(1, 0.99, True), S(2, 0.2), S(3, 0.2), S(4, 0.2)]
    assert run(scores) == [(OPEN, 2), (RETRACT, 4)]
    trig = station_triggers(scores, include_retracted=True)
    assert len(trig) == 1 and trig[0].retracted
    assert station_triggers(scores) == []


def test_threshold_replaces_the_detector_flag() -> None:
    scores = [S(0, 0.8), S(1, 0.8), S(2, 0.8)]
    assert run(scores) == []
    assert run(scores, TriggerRule(threshold=0.7)) == [(OPEN, 1), (CONFIRM, 3)]


def test_new_trigger_on_a_later_p_ends_the_current_trigger_and_opens_a_new_one() -> None:
    p1, p2 = T + 1 * NS + NS // 2, T + 20 * NS + NS // 4
    scores = [S(1, 0.99, True, p1, new_trigger=True)]
    scores += [S(k, 0.99, True, p1) for k in range(2, 20)]  # the coda: probability stays high
    scores += [S(20, 0.99, True, p2, new_trigger=True)] + [S(k, 0.99, True, p2) for k in range(21, 24)]
    m = StreamTriggers()
    events = [ev for s in scores for ev in m.feed(s)]
    assert [e.kind for e in events] == [OPEN, CONFIRM, END, OPEN, CONFIRM]
    first, second = events[0].trigger, events[3].trigger
    assert first.p_time_ns == p1 and first.end_ns == p2 and first.confirmed and not first.retracted
    assert second.p_time_ns == p2 and second.pick_ns == p2 and second.on


def test_new_trigger_ends_a_short_current_trigger_as_retracted() -> None:
    p1, p2 = T + 1 * NS, T + 2 * NS + NS // 2
    scores = [S(1, 0.99, True, p1, True), S(2, 0.99, True, p2, True)]
    assert run(scores, TriggerRule(min_trigger_duration_s=3.0)) == [(OPEN, 2), (RETRACT, 3), (OPEN, 3)]


def test_new_trigger_with_the_same_p_does_not_split() -> None:
    p1 = T + 1 * NS
    scores = [S(1, 0.99, True, p1, True), S(2, 0.99, True, p1 + NS // 2, True), S(3, 0.99, True, p1)]
    assert run(scores) == [(OPEN, 2), (CONFIRM, 4)]


def test_pick_older_than_pick_max_lead_is_refused_and_counted() -> None:
    old = T - 265 * NS  # an onset minutes before the trigger (issue 13)
    scores = [S(k, 0.1, False, old) for k in range(0, 3)] + [S(3, 0.99, True, old)]
    m = StreamTriggers(TriggerRule(pick_max_lead_s=10.0))
    events = [ev for s in scores for ev in m.feed(s)]
    trig = events[0].trigger
    assert trig.pick_ns is None and trig.p_time_ns == T + 3 * NS  # coarse: the triggering window's start
    assert trig.picks_refused == 1 and m.picks_refused == 1


def test_pick_before_the_previous_triggers_end_is_never_used() -> None:
    p1 = T + 1 * NS
    scores = [S(1, 0.99, True, p1), S(2, 0.99, True, p1), S(3, 0.99, True, p1)]
    scores += [S(k, 0.1) for k in range(4, 7)]  # ends at window_end 7
    scores += [S(7, 0.99, True, p1)]  # the detector's old onset, still carried: not this trigger's P
    m = StreamTriggers()
    events = [ev for s in scores for ev in m.feed(s)]
    assert [e.kind for e in events] == [OPEN, CONFIRM, END, OPEN]
    again = events[-1].trigger
    assert again.pick_ns is None and again.p_time_ns == T + 7 * NS and m.picks_refused == 1


def test_latest_timely_pick_is_chosen() -> None:
    scores = [S(0, 0.2, False, T - 3 * NS), S(1, 0.3, False, T + NS // 2), S(2, 0.99, True)]
    (trig,) = station_triggers(scores, TriggerRule(min_trigger_duration_s=0.0))
    assert trig.pick_ns == T + NS // 2 and trig.picks_refused == 0


def test_finish_ends_the_open_trigger() -> None:
    scores = [S(k, 0.99, True) for k in range(5)]
    (trig,) = station_triggers(scores)
    assert trig.confirmed and trig.end_ns == T + 5 * NS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 0.6, "detrigger_threshold": 0.7},
        {"detrigger_s": -1.0},
        {"pick_max_lead_s": -1.0},
    ],
)
def test_bad_rule_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TriggerRule(**kwargs)
