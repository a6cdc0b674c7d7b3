"""Which P pick belongs to a trigger: one definition for detector, alerting and validation.

A trigger is decided at ``trigger_ns`` (the end of the window whose score triggered). Its P pick is
the latest pick that lies

- not after the trigger (a pick from the future belongs to a later trigger),
- at most ``max_lead_s`` before it (an older pick is a previous arrival: the S, coda or an earlier
  event at that station), and
- not before ``not_before_ns``, the onset that opened the station's current episode or the end of
  its previous trigger (a pick earlier than the onset that triggered is never used).

Picks that fail the rule are *refused*; callers count them (metric/stat ``picks_refused``), so a
pick that would have put P seconds early is never silent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NS = 1_000_000_000
PICK_MAX_LEAD_S = 10.0
"""Default of every service's ``pick_max_lead_s``: the detector triggers within a few seconds of P
(0.5-3 s on the held-out test set, rarely later on small events); ten seconds keeps those and
refuses a pick of the previous arrival at a station that re-triggers on S or a second event."""


@dataclass(frozen=True, slots=True)
class PickChoice:
    """The chosen pick (or None) and how many candidate picks the rule refused."""

    pick_ns: int | None
    refused: int


def pick_is_timely(
    pick_ns: int, trigger_ns: int, max_lead_s: float = PICK_MAX_LEAD_S, not_before_ns: int | None = None
) -> bool:
    """True when ``pick_ns`` may be the P pick of the trigger decided at ``trigger_ns``."""
    if pick_ns > trigger_ns or trigger_ns - pick_ns > int(max_lead_s * NS):
        return False
    return not_before_ns is None or pick_ns >= not_before_ns


def pick_for_trigger(
    picks: Iterable[int],
    trigger_ns: int,
    max_lead_s: float = PICK_MAX_LEAD_S,
    not_before_ns: int | None = None,
) -> PickChoice:
    """The latest timely pick of ``picks`` for a trigger at ``trigger_ns`` (see module doc).

    Every candidate that is not timely counts as refused, except picks after the trigger (they are
    not candidates of this trigger at all)."""
    best: int | None = None
    refused = 0
    for p in picks:
        if p > trigger_ns:
            continue
        if pick_is_timely(p, trigger_ns, max_lead_s, not_before_ns):
            best = p if best is None or p > best else best
        else:
            refused += 1
    return PickChoice(best, refused)
