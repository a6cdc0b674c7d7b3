"""When a station triggers: on "signal present", and anew on the next P while the last event still rings.

The model gives per 1 s chunk ``event_prob`` (earthquake signal present at the chunk end) and per
0.1 s step ``p_prob`` (a P onset in that step). ``event_prob`` stays high through a large event's
coda (tens of seconds; 90 s was seen on a strong-motion station), so a rule on it alone goes blind
after the first event of a sequence. This rule (pure NumPy, state per station in :class:`OnsetState`)
adds triggers from P onsets:

Re-arm rules
    1. **First trigger** (no episode open): ``event_prob >= detection`` after warm-up. It opens an
       *episode*; its onset is chosen by the caller (the detector's pick in the P curve, see
       ``services.common.triggers.picks``), and recorded with :meth:`OnsetRule.picked`.
    2. **Episode end**: the episode closes once ``event_prob`` has stayed below ``rearm_level``
       (default half the detection threshold) for ``rearm_s`` (3 s). A new first trigger needs a
       closed episode.
    3. **New onset inside an episode** (a re-trigger): a step whose ``p_prob`` reaches ``retrigger``
       (default: the contract's P-pick level, exceeded by 0.1% of validation noise steps)
       - at least ``min_separation_s`` (3 s) after the episode's latest onset (the P-curve run that
         gave a pick is not a new onset; the issue's sequences start 3 s after the first P), and
       - after ``p_prob`` has fallen below ``p_rearm`` (default half of ``retrigger``) at a step
         after that latest onset (one P-curve peak, one onset);
       the onset is the highest step of that run of steps at or above ``retrigger``. It becomes a
       trigger in the first chunk, at most ``hold_s`` (2 s) later, whose ``event_prob`` is at or
       above the detection threshold (the same gate as a first trigger, so noise that never reaches
       the detection level cannot re-trigger, and a P peak just before ``event_prob`` catches up
       still counts). The re-trigger's onset becomes the episode's latest onset.
    4. Warm-up and a site's preferred sensor (the caller's ``allowed``) gate both kinds.

Why these levels: on the held-out test split the P head of model 1.2.0 stays below 0.2 after the
first 2 s of every single event (S waves and coda included) and peaks at 0.23-0.95 at the first P;
its 0.1% noise-step level is 0.59. A re-trigger therefore needs a P-curve peak as rare on noise as a
first pick is, inside a stretch the event head already calls signal. Three seconds of separation
keep the P-curve run that gave a pick (and, for most stations, the S of the same event) from counting
twice. Measured with ``eew model evaluate --sequences 150 --retrigger-sweep ...`` (model card,
"Sequences"): with 1.2.0 no level from 0.3 to 0.9 re-triggers on a single event's S or coda, and
none finds many second P's (2-8%: its P head does not fire inside a coda); with a model trained on
sequences the level trades second-P detection against re-triggers on S waves (e.g. 0.6: 52% / 15
false on 31 events; 0.85: 16% / 0). So the level is the model's: chosen on validation sequences and
written into its contract (``thresholds.retrigger``; 1.3.0: 0.90, the lowest level with at most 2 false
re-triggers after the 31 validation events' P), and the detector uses it unless overridden.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_STEP = -(1 << 62)


@dataclass(frozen=True, slots=True)
class OnsetRule:
    """The levels of the rule (see module doc); times in steps of the model's P curve."""

    detection: float
    rearm_level: float
    rearm_steps: int
    retrigger: float
    p_rearm: float
    min_separation_steps: int
    hold_steps: int

    @classmethod
    def from_seconds(
        cls,
        detection: float,
        rearm_level: float,
        rearm_s: float,
        retrigger: float,
        p_rearm: float | None = None,
        min_separation_s: float = 3.0,
        hold_s: float = 2.0,
        step_s: float = 0.1,
    ) -> OnsetRule:
        """Levels with times in seconds (``step_s``: seconds per P-curve step)."""
        rule = cls(
            detection=detection,
            rearm_level=rearm_level,
            rearm_steps=int(round(rearm_s / step_s)),
            retrigger=retrigger,
            p_rearm=0.5 * retrigger if p_rearm is None else p_rearm,
            min_separation_steps=int(round(min_separation_s / step_s)),
            hold_steps=int(round(hold_s / step_s)),
        )
        rule.validate()
        return rule

    def validate(self) -> None:
        """Raise ValueError on levels that cannot work together."""
        if not 0.0 < self.detection <= 1.0 or not 0.0 < self.retrigger <= 1.0:
            raise ValueError("detection and retrigger levels must lie in (0, 1]")
        if self.rearm_level > self.detection:
            raise ValueError("rearm level must not exceed the detection level")
        if not 0.0 <= self.p_rearm <= self.retrigger:
            raise ValueError("p_rearm must lie in [0, retrigger]")
        if self.rearm_steps < 0 or self.min_separation_steps < 1 or self.hold_steps < 0:
            raise ValueError("rearm_s, hold_s must be >= 0 and min_separation_s >= one step")


@dataclass(slots=True)
class OnsetState:
    """One station's state under the rule."""

    episode: bool = False
    quiet_steps: int = 0  # consecutive steps (whole chunks) of event_prob below the re-arm level
    last_onset: int = NO_STEP  # step of the episode's latest onset (first pick or re-trigger)
    p_armed: bool = False  # p_prob fell below p_rearm at a step after last_onset
    pending: int = NO_STEP  # step of a new onset that waits for event_prob to reach detection

    def close(self) -> None:
        """End the episode (the latest onset is kept: a later first pick must not precede it)."""
        self.episode, self.quiet_steps, self.pending = False, 0, NO_STEP

    def reset(self) -> None:
        """Forget everything (the station restarts)."""
        self.close()
        self.last_onset, self.p_armed = NO_STEP, False


@dataclass(frozen=True, slots=True)
class Decision:
    """What one chunk means: ``first`` (open an episode; the caller picks its onset), ``retrigger``
    (a new onset inside the episode at step ``onset_step``), or neither."""

    first: bool = False
    retrigger: bool = False
    onset_step: int = NO_STEP

    @property
    def new_trigger(self) -> bool:
        return self.first or self.retrigger


NOTHING = Decision()


def new_onsets(rule: OnsetRule, st: OnsetState, p: np.ndarray, s0: int) -> None:
    """Scan one chunk's P curve ``p`` (steps ``s0 ...``): arm, and record the first new onset as pending."""
    p = np.asarray(p, dtype=np.float64)
    n = len(p)
    i = 0
    while i < n:
        s = s0 + i
        if s <= st.last_onset:
            i += 1
            continue
        if not st.p_armed:
            if p[i] < rule.p_rearm:
                st.p_armed = True
            i += 1
            continue
        if st.pending != NO_STEP:
            return  # one pending onset at a time: the earliest new P wins
        if p[i] >= rule.retrigger and s - st.last_onset >= rule.min_separation_steps:
            j = i
            while j + 1 < n and p[j + 1] >= rule.retrigger:
                j += 1
            st.pending = s0 + i + int(np.argmax(p[i : j + 1]))
            return
        i += 1


def decide(
    rule: OnsetRule, st: OnsetState, prob: float, p: np.ndarray, s0: int, warm: bool, allowed: bool = True
) -> Decision:
    """Advance the station by one chunk: ``prob`` (event_prob at its end), ``p`` (its P curve, steps
    from ``s0``), ``warm`` (past the warm-up), ``allowed`` (the site lets this sensor trigger).

    The caller records the first trigger's onset with :func:`picked`; a re-trigger's onset is
    ``Decision.onset_step`` (already recorded)."""
    n = len(p)
    above = warm and prob >= rule.detection
    if not st.episode:
        if above and allowed:
            st.episode, st.quiet_steps, st.pending = True, 0, NO_STEP
            return Decision(first=True)
        return NOTHING
    # inside an episode: new onsets, then the event-level re-arm
    if st.pending != NO_STEP and s0 + n - 1 - st.pending > rule.hold_steps:
        st.pending = NO_STEP  # event_prob never confirmed it: not a new event
    if st.pending == NO_STEP:
        new_onsets(rule, st, p, s0)
    out = NOTHING
    if st.pending != NO_STEP and above and allowed:
        out = Decision(retrigger=True, onset_step=st.pending)
        st.last_onset, st.p_armed, st.pending = st.pending, False, NO_STEP
        new_onsets(rule, st, p, s0)  # arming after the new onset may already happen in this chunk
        st.pending = NO_STEP  # a second onset in the same chunk waits for the next one
    if prob < rule.rearm_level:
        st.quiet_steps += n
        if st.quiet_steps >= rule.rearm_steps:
            st.close()
    else:
        st.quiet_steps = 0
    return out


def picked(st: OnsetState, onset_step: int) -> None:
    """Record the onset the caller chose for a first trigger (the step of its pick, or of the chunk
    start when there is none): the P-curve run at and before it is not a new onset."""
    st.last_onset, st.p_armed, st.pending = onset_step, False, NO_STEP


PICK_NEAR_MAX = 0.9
"""A P-curve peak this close to the highest one in the window (as a fraction) is a pick candidate of a
first trigger; the latest candidate wins (see :func:`first_pick`)."""


def first_pick(
    steps: np.ndarray, values: np.ndarray, lo: int, end: int, p_pick: float
) -> tuple[int, float] | None:
    """The P-curve step (and its value) a first trigger picks among ``steps``/``values`` (any order)
    in ``[lo, end)``: the highest step of the latest peak (a run of consecutive steps >= ``p_pick``)
    that comes within PICK_NEAR_MAX of the highest step; None when no step reaches ``p_pick``.

    Of two near-equal peaks the later one is the onset of the signal that triggered; an earlier one
    that did not trigger is a precursor (a small arrival, a noise burst), and picking it would put the
    P seconds early. ``lo`` is where the pick window starts: ``pick_max_lead_s`` before the trigger,
    and never before the station's latest onset (``services.common.triggers.picks``)."""
    steps = np.asarray(steps)
    values = np.asarray(values)
    ok = np.flatnonzero((steps >= lo) & (steps < end) & (values >= p_pick))
    if not len(ok):
        return None
    ok = ok[np.argsort(steps[ok], kind="stable")]  # time order
    s, v = steps[ok], values[ok]
    j = int(np.flatnonzero(v >= PICK_NEAR_MAX * v.max())[-1])
    peak = np.cumsum(np.diff(s, prepend=s[0] - 2) != 1)  # consecutive steps: one peak
    run = np.flatnonzero(peak == peak[j])
    i = int(run[np.argmax(v[run])])
    return int(s[i]), float(v[i])


@dataclass(frozen=True, slots=True)
class Trigger:
    """A new trigger of :func:`replay`: decided at the end of chunk ``chunk``, onset at P-curve step
    ``onset_step`` (a first trigger without a pick: the chunk's first step), ``retrigger`` or first."""

    chunk: int
    onset_step: int
    retrigger: bool


def replay(
    rule: OnsetRule,
    event_prob: np.ndarray,
    p_prob: np.ndarray,
    p_pick: float,
    max_lead_steps: int,
    warmup_chunks: int = 0,
) -> list[Trigger]:
    """The new triggers the detector core makes of one station's model outputs, scored from a zero
    state: ``event_prob`` per chunk (K,), ``p_prob`` per step (K * steps per chunk,). Same rule as
    ``CoreDetector`` (which runs :func:`decide` and :func:`first_pick` chunk by chunk), for
    evaluating whole streams without the I/O."""
    ev = np.asarray(event_prob, dtype=np.float64)
    pp = np.asarray(p_prob, dtype=np.float64)
    k = len(ev)
    if k == 0:
        return []
    n = len(pp) // k
    if n * k != len(pp):
        raise ValueError(f"{len(pp)} P-curve steps for {k} chunks: not a whole number per chunk")
    st = OnsetState()
    steps = np.arange(len(pp))
    out: list[Trigger] = []
    for c in range(k):
        s0 = c * n
        d = decide(rule, st, float(ev[c]), pp[s0 : s0 + n], s0, c + 1 >= warmup_chunks)
        if d.first:
            lo = max(s0 + n - max_lead_steps, 0, st.last_onset + 1)
            got = first_pick(steps[: s0 + n], pp[: s0 + n], lo, s0 + n, p_pick)
            onset = s0 if got is None else got[0]
            picked(st, onset)
            out.append(Trigger(c, onset, False))
        elif d.retrigger:
            out.append(Trigger(c, d.onset_step, True))
    return out
