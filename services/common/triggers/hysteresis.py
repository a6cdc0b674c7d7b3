"""Score-level triggers with hysteresis: how one stream's scores become triggers (pure, event time).

One rule for alerting and validation. Fed one score at a time (``StreamTriggers.feed``, in
window_end order), a stream's state machine returns what happened:

- **OPEN**: a score is *triggered* -- its probability is at least ``TriggerRule.threshold``, or,
  with no threshold set, the detector flagged it (``triggered``) -- and no trigger is on. Its P
  time is the pick ``picks.pick_for_trigger`` chooses among the P onsets of the stream's recent
  scores (latest pick at most ``pick_max_lead_s`` before the trigger, never before the end of the
  stream's previous trigger or the onset that re-triggered it; refused picks are counted), else
  the start of the triggering window (coarse P).
- **CONFIRM**: the trigger has been on for ``min_trigger_duration_s`` (triggered scores from
  its trigger time): it is a station trigger, not a glitch.
- The trigger stays on while scores are at least ``detrigger_threshold`` (or triggered); it ends
  once the stream has been below for ``detrigger_s`` (window_end of a low score minus that of the
  last high one), so a one-window dip does not end it. Then **END** when it was confirmed, else
  **RETRACT** (it lasted less than the minimum duration).
- **Re-trigger on a new P**: a score with ``new_trigger`` whose P onset lies more than
  ``retrigger_separation_s`` after the current trigger's P ends the current trigger (END when it
  lasted ``min_trigger_duration_s`` up to that onset, else RETRACT) and OPENs a new one at that
  onset. The detector sends such scores on the next P while the probability is still high (a
  second earthquake in the coda of the first), so a station is not blind after its first event.

``station_triggers`` runs the machine over one stream's scores (a batch) and returns its
triggers. Scores need only the attributes of ``TriggerScore``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from services.common.exceptions import ConfigError
from services.common.triggers.picks import NS, PICK_MAX_LEAD_S, pick_for_trigger

RETRIGGER_SEPARATION_S = 1.0
"""Least time between the current trigger's P and a re-trigger's P onset for the re-trigger to
open a new trigger: closer onsets are the same arrival picked again (the detector's pick moves by
a fraction of a second as its window fills)."""


class TriggerScore(Protocol):
    """What the rule reads of a score (``services.alerting.association.ScoreRecord`` has it)."""

    @property
    def window_start_ns(self) -> int: ...
    @property
    def window_end_ns(self) -> int: ...
    @property
    def probability(self) -> float: ...
    @property
    def triggered(self) -> bool: ...
    @property
    def p_onset_ns(self) -> int | None: ...
    @property
    def new_trigger(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class TriggerRule:
    """The trigger rule's settings (seconds, probabilities); see the module docstring."""

    threshold: float | None = None  # None: the detector's flag (StationScore.triggered)
    detrigger_threshold: float = 0.5
    detrigger_s: float = 2.0
    min_trigger_duration_s: float = 2.0
    pick_max_lead_s: float = PICK_MAX_LEAD_S
    retrigger_separation_s: float = RETRIGGER_SEPARATION_S

    def __post_init__(self) -> None:
        for name in ("detrigger_s", "min_trigger_duration_s", "pick_max_lead_s", "retrigger_separation_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"trigger threshold must be in (0, 1] (got {self.threshold})")
        if not 0.0 < self.detrigger_threshold <= (self.threshold or 1.0):
            raise ConfigError(
                f"detrigger_threshold must be in (0, trigger threshold] (got {self.detrigger_threshold})"
            )

    def is_triggered(self, score: TriggerScore) -> bool:
        """The score opens (or keeps on) a trigger."""
        return score.triggered if self.threshold is None else score.probability >= self.threshold


@dataclass(eq=False, slots=True)
class Trigger:
    """One trigger of one stream; the state machine updates it in place while it is on."""

    trigger_ns: int  # window_end of the score that opened it
    p_time_ns: int  # its P pick, else the start of the triggering window
    pick_ns: int | None  # the P pick (None: coarse P)
    probability: float  # highest probability while on
    last_on_ns: int  # window_end of its newest score at or above the detrigger level
    picks_refused: int = 0  # picks the pick rule refused when it opened
    confirmed: bool = False
    end_ns: int | None = None  # when it ended (window_end of the ending score, or the re-trigger's onset)
    retracted: bool = False
    on_new_onset: bool = False  # opened by a re-trigger on a new P onset inside the previous trigger

    @property
    def p_from_pick(self) -> bool:
        return self.pick_ns is not None

    @property
    def on(self) -> bool:
        return self.end_ns is None


class TriggerEventKind(StrEnum):
    OPEN = "OPEN"
    CONFIRM = "CONFIRM"
    END = "END"
    RETRACT = "RETRACT"


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """What one score did to a stream's triggers (``at_ns``: that score's window_end)."""

    kind: TriggerEventKind
    trigger: Trigger
    at_ns: int


class StreamTriggers:
    """The trigger state machine of one stream: ``feed`` its scores in window_end order."""

    def __init__(self, rule: TriggerRule | None = None) -> None:
        self.rule = rule or TriggerRule()
        self.trigger: Trigger | None = None
        self.picks_refused = 0  # all picks refused on this stream
        self._picks: deque[tuple[int, int]] = deque()  # (window_end, P onset) of recent scores
        self._not_before: int | None = None  # end of the previous trigger
        self._lead = int(self.rule.pick_max_lead_s * NS)
        self._off = int(self.rule.detrigger_s * NS)
        self._min_dur = int(self.rule.min_trigger_duration_s * NS)
        self._sep = int(self.rule.retrigger_separation_s * NS)

    def feed(self, score: TriggerScore) -> list[TriggerEvent]:
        """Advance by one score; return the events it caused (in order)."""
        rule, end = self.rule, score.window_end_ns
        onset = score.p_onset_ns
        if onset is not None:
            if self._picks and self._picks[-1][1] == onset:
                self._picks.pop()  # the same onset carried again: kept as long as scores carry it
            self._picks.append((end, onset))
        while self._picks and self._picks[0][0] < end - self._lead:
            self._picks.popleft()
        trig = self.trigger
        if trig is None:
            return [self._open(score, self._not_before)] if rule.is_triggered(score) else []
        if getattr(score, "new_trigger", False) and onset is not None and onset > trig.p_time_ns + self._sep:
            if not trig.confirmed and onset >= trig.trigger_ns + self._min_dur:
                trig.confirmed = True
            ended = self._end(trig, onset, end)
            opened = self._open(score, onset)
            opened.trigger.on_new_onset = opened.trigger.pick_ns is not None
            return [ended, opened]
        if rule.is_triggered(score) or score.probability >= rule.detrigger_threshold:
            trig.last_on_ns = end
            trig.probability = max(trig.probability, score.probability)
            if not trig.confirmed and end >= trig.trigger_ns + self._min_dur:
                trig.confirmed = True
                return [TriggerEvent(TriggerEventKind.CONFIRM, trig, end)]
            return []
        if end - trig.last_on_ns < self._off:
            return []  # a short dip below the detrigger level does not end the trigger
        return [self._end(trig, end, end)]

    def finish(self) -> list[TriggerEvent]:
        """End of input: end the trigger that is on (END when confirmed, else RETRACT)."""
        trig = self.trigger
        return [] if trig is None else [self._end(trig, trig.last_on_ns, trig.last_on_ns)]

    def _open(self, score: TriggerScore, not_before: int | None) -> TriggerEvent:
        end = score.window_end_ns
        choice = pick_for_trigger((p for _, p in self._picks), end, self.rule.pick_max_lead_s, not_before)
        self.picks_refused += choice.refused
        coarse = score.window_start_ns if not_before is None else max(score.window_start_ns, min(not_before, end))
        trig = Trigger(
            trigger_ns=end,
            p_time_ns=choice.pick_ns if choice.pick_ns is not None else coarse,
            pick_ns=choice.pick_ns,
            probability=score.probability,
            last_on_ns=end,
            picks_refused=choice.refused,
            confirmed=self._min_dur == 0,
        )
        self.trigger = trig
        return TriggerEvent(TriggerEventKind.OPEN, trig, end)

    def _end(self, trig: Trigger, end_ns: int, at_ns: int) -> TriggerEvent:
        self.trigger = None
        trig.end_ns = end_ns
        self._not_before = end_ns
        if trig.confirmed:
            return TriggerEvent(TriggerEventKind.END, trig, at_ns)
        trig.retracted = True  # ended before lasting min_trigger_duration_s: a glitch
        return TriggerEvent(TriggerEventKind.RETRACT, trig, at_ns)


def station_triggers(
    records: Iterable[TriggerScore], rule: TriggerRule | None = None, include_retracted: bool = False
) -> list[Trigger]:
    """The triggers of one stream's scores (sorted by window_end), ended at the end of input.

    Retracted triggers (shorter than ``min_trigger_duration_s``) are left out unless
    ``include_retracted``."""
    machine = StreamTriggers(rule)
    out: list[Trigger] = []
    for rec in records:
        out.extend(ev.trigger for ev in machine.feed(rec) if ev.kind is TriggerEventKind.OPEN)
    machine.finish()
    return out if include_retracted else [t for t in out if not t.retracted]
