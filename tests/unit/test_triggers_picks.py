"""The shared pick-belongs-to-trigger rule (services.common.triggers.picks)."""

from __future__ import annotations

from services.common.triggers.picks import NS, PICK_MAX_LEAD_S, pick_for_trigger, pick_is_timely

T = 1_700_000_000 * NS


def test_latest_timely_pick_is_chosen_and_older_ones_refused() -> None:
    picks = [T - 30 * NS, T - 4 * NS, T - 2 * NS, T + NS]
    choice = pick_for_trigger(picks, T, max_lead_s=5.0)
    assert choice.pick_ns == T - 2 * NS
    assert choice.refused == 1  # the one 30 s before; the future one is not a candidate


def test_pick_before_the_onset_that_triggered_is_never_used() -> None:
    onset = T - 3 * NS
    choice = pick_for_trigger([T - 5 * NS], T, not_before_ns=onset)
    assert choice.pick_ns is None and choice.refused == 1
    assert pick_is_timely(onset, T, not_before_ns=onset)


def test_default_lead() -> None:
    assert pick_is_timely(T - int(PICK_MAX_LEAD_S * NS), T)
    assert not pick_is_timely(T - int(PICK_MAX_LEAD_S * NS) - 1, T)
