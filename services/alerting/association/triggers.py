"""Station triggers: each stream's scores through the trigger rule, and the P-window peaks.

Per stream (NET.STA.LOC.BI) the scores go through the shared score-level trigger rule
(``services.common.triggers.hysteresis``: threshold or the detector's flag, ``detrigger_threshold``
held for ``detrigger_s``, ``min_trigger_duration_s``, a re-trigger on a new P, and the P pick
chosen by ``services.common.triggers.picks.pick_for_trigger`` within ``pick_max_lead_s``). Here
a trigger becomes a ``StationTrigger``: the rule's trigger plus the station, its coordinates and
the peaks of its first seconds of P. What the association must hear of is returned as
``TriggerAction``s: a trigger to associate (OPEN) or to take back (RETRACT, a glitch); a
confirmed trigger's end changes nothing (the station keeps its place in its event and may
trigger again later). A station (NET.STA) holds at most one active trigger: a second sensor of
the same station triggering meanwhile is ignored (counted).

Peaks: each trigger folds the per-step peaks of the scores that overlap its first
``amplitude_window_s`` (3 s) of P -- counted from its P time, including steps scored before the
trigger opened -- into ``peak_amplitude`` (raw counts) and ``peak_displacement`` (counts*s, from
the detector) and records how much of the window they cover; the steps up to ``max_p_window_s``
are kept for a magnitude whose P window grows (``emission``). When a located event's member's
window grows, ``on_p_window`` is called so the magnitude is re-evaluated.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from services.alerting.association.config import AssociationConfig
from services.alerting.association.records import NS, ScoreRecord
from services.common.inventory import StationInventory
from services.common.triggers.hysteresis import StreamTriggers, Trigger, TriggerEventKind

if TYPE_CHECKING:
    from services.alerting.association.events import Event

NEVER = -(1 << 62)


@dataclass(eq=False)
class StationTrigger:
    """One trigger of one stream, as the association and emission see it."""

    seq: int
    stream: str
    station_id: str
    network: str
    station: str
    location: str
    rule: Trigger  # the trigger rule's state (times, P pick, probability, confirmed)
    ingest_time_ns: int
    coords: tuple[float, float] | None
    peak_amplitude: float = 0.0
    peak_displacement: float = 0.0
    amp_covered_ns: int = 0  # P-window time covered by the peaks (from p_time)
    p_steps: list[tuple[int, int, float]] = field(default_factory=list)  # (start, end, disp) up to max_p_window
    ended: bool = False
    ignored: bool = False
    in_pool: bool = False
    event: Event | None = None

    @property
    def trigger_ns(self) -> int:
        return self.rule.trigger_ns

    @property
    def p_time_ns(self) -> int:
        return self.rule.p_time_ns

    @property
    def p_from_pick(self) -> bool:
        return self.rule.p_from_pick

    @property
    def probability(self) -> float:
        return self.rule.probability

    @property
    def retain_ns(self) -> int:
        return min(self.trigger_ns, self.p_time_ns)


class TriggerAction(Enum):
    ASSOCIATE = "associate"  # a new trigger (not ignored): join or seed an event
    RETRACT = "retract"  # a trigger that ended before its minimum duration: take it back


@dataclass(eq=False)
class _Stream:
    rule: StreamTriggers
    last_end: int = NEVER  # newest window_end processed
    trigger: StationTrigger | None = None
    amps: deque[tuple[int, int, float, float]] = field(default_factory=deque)  # (start, end, amp, disp)


class StationTriggers:
    """All streams' trigger state; ``process`` one released score at a time."""

    def __init__(
        self,
        config: AssociationConfig,
        inventory: StationInventory,
        stats: Counter[str],
        on_p_window: Callable[[StationTrigger, int], None],
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.stats = stats
        self.on_p_window = on_p_window
        self.rule = config.trigger_rule()
        self.active: dict[str, StationTrigger] = {}  # station id -> its active trigger
        self._streams: dict[str, _Stream] = {}
        self._seq = 0
        self._lead = int(config.pick_max_lead_s * NS)
        self._amp_window = int(config.amplitude_window_s * NS)
        self.p_window_ns = max(self._amp_window, int(config.max_p_window_s * NS))

    def is_triggered(self, rec: ScoreRecord) -> bool:
        return self.rule.is_triggered(rec)

    def process(self, rec: ScoreRecord) -> list[tuple[TriggerAction, StationTrigger]]:
        """Advance ``rec``'s stream by one score; return what the association must do."""
        st = self._streams.get(rec.stream)
        if st is None:
            st = self._streams[rec.stream] = _Stream(StreamTriggers(self.rule))
        end = rec.window_end_ns
        st.last_end = max(st.last_end, end)
        st.amps.append((rec.window_start_ns, end, rec.peak_amplitude, rec.peak_displacement))
        while st.amps and st.amps[0][1] < end - self._lead - self.p_window_ns:
            st.amps.popleft()
        if st.trigger is not None:
            self.update_amplitude(
                st.trigger, rec.window_start_ns, end, rec.peak_amplitude, rec.peak_displacement, rec.ingest_time_ns
            )
        refused = st.rule.picks_refused
        actions: list[tuple[TriggerAction, StationTrigger]] = []
        for ev in st.rule.feed(rec):
            if ev.kind is TriggerEventKind.OPEN:
                trig = self._open(rec, st, ev.trigger)
                if not trig.ignored:
                    actions.append((TriggerAction.ASSOCIATE, trig))
            elif ev.kind in (TriggerEventKind.END, TriggerEventKind.RETRACT):
                trig = st.trigger
                assert trig is not None and trig.rule is ev.trigger
                st.trigger = None
                if self.active.get(trig.station_id) is trig:
                    del self.active[trig.station_id]
                if ev.kind is TriggerEventKind.RETRACT:  # ended before min_trigger_duration_s: a glitch
                    self.stats["triggers_retracted"] += 1
                    actions.append((TriggerAction.RETRACT, trig))
                else:
                    trig.ended = True
        if st.rule.picks_refused > refused:
            self.stats["picks_refused"] += st.rule.picks_refused - refused
        return actions

    def _open(self, rec: ScoreRecord, st: _Stream, rule: Trigger) -> StationTrigger:
        sta = self.inventory.get(rec.network, rec.station)
        self._seq += 1
        trig = StationTrigger(
            seq=self._seq,
            stream=rec.stream,
            station_id=rec.station_id,
            network=rec.network,
            station=rec.station,
            location=rec.location,
            rule=rule,
            ingest_time_ns=rec.ingest_time_ns,
            coords=(sta.latitude, sta.longitude) if sta is not None else None,
        )
        for a_start, a_end, amp, disp in st.amps:
            self.update_amplitude(trig, a_start, a_end, amp, disp, rec.ingest_time_ns)
        st.trigger = trig
        self.stats["triggers"] += 1
        if not trig.p_from_pick:
            self.stats["triggers_without_pick"] += 1
        if trig.coords is None:
            self.stats["triggers_without_coordinates"] += 1
        if trig.station_id in self.active:
            trig.ignored = True
            self.stats["triggers_duplicate_station"] += 1
        else:
            self.active[trig.station_id] = trig
        return trig

    def update_amplitude(
        self, trig: StationTrigger, start: int, end: int, amp: float, disp: float, ingest_ns: int
    ) -> None:
        """Fold one step's peaks into the trigger when the step overlaps its first seconds of P;
        ``ingest_ns`` (when that step's data arrived) dates a magnitude UPDATE it may cause."""
        if trig.p_time_ns < end and start < trig.p_time_ns + self.p_window_ns and (
            not trig.p_steps or end > trig.p_steps[-1][1]
        ):
            trig.p_steps.append((start, end, disp))  # the growing P window (``emission``)
            if end > trig.p_time_ns + self._amp_window:
                self.on_p_window(trig, ingest_ns)
        w_end = trig.p_time_ns + self._amp_window
        if end <= trig.p_time_ns or start >= w_end:
            return
        trig.peak_amplitude = max(trig.peak_amplitude, amp)
        trig.peak_displacement = max(trig.peak_displacement, disp)
        trig.amp_covered_ns = max(trig.amp_covered_ns, min(end, w_end) - trig.p_time_ns)
        self.on_p_window(trig, ingest_ns)

    def open_triggers(self) -> Iterator[StationTrigger]:
        """The triggers that are on now."""
        return (st.trigger for st in self._streams.values() if st.trigger is not None)

    def stream_ends(self) -> Iterator[tuple[str, int]]:
        """(stream, newest processed window_end) of every stream."""
        return ((key, st.last_end) for key, st in self._streams.items())
