"""Association core: station scores -> station triggers -> events -> alert records.

Pure and deterministic: no I/O, no wall clock. Everything is driven by EVENT TIME, the
``window_end_time_ns`` of the scores, so a replay at any speed gives the same alerts.

``Associator`` is a small facade over the four jobs, each in its own module:

1. ``reorder.ReorderBuffer``: scores from several partitions are checked, de-duplicated and
   released in event-time order up to a low watermark (late scores processed at once; express
   triggers skip the wait).
2. ``triggers.StationTriggers``: each stream's scores through the shared trigger rule
   (``services.common.triggers.hysteresis``: hysteresis, minimum duration, re-triggers on a new
   P, the P pick that belongs to a trigger) and the peaks of each trigger's first seconds of P.
3. ``events.Association``: triggers joined into events by travel-time consistency, links and
   location (NEW / UPDATE / CANCEL changes, coalesced per event-time instant).
4. ``emission.Emitter``: each event's changes of one instant -> one ``AlertRecord``, located, with
   magnitude and event probability.

Per released score the facade advances event time (the previous instant's changes are emitted,
idle events close), feeds the score to the station triggers, and hands new and retracted triggers
to the association. The modules' docstrings state the rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from services.alerting.association.config import AssociationConfig
from services.alerting.association.emission import Emitter
from services.alerting.association.events import Association
from services.alerting.association.geometry import NetworkGeometry
from services.alerting.association.locate import LocatorConfig, travel_time_table
from services.alerting.association.magnitude import MagnitudeConfig
from services.alerting.association.records import NS, AlertRecord, ScoreRecord
from services.alerting.association.reorder import NEVER, Intake, ReorderBuffer
from services.alerting.association.triggers import StationTrigger, StationTriggers, TriggerAction
from services.common.inventory import StationInventory


class Associator:
    """Feed ScoreRecords with ``add``/``add_many``; get the AlertRecords they cause."""

    def __init__(
        self,
        config: AssociationConfig | None = None,
        inventory: StationInventory | None = None,
        ignore_before_ns: int | None = None,
        locator: LocatorConfig | None = None,
        gains: Mapping[str, float] | None = None,
        magnitude: MagnitudeConfig | None = None,
        restored_events: Mapping[str, tuple[frozenset[str], int]] | None = None,
    ) -> None:
        self.inventory = inventory or StationInventory()
        self.geometry = NetworkGeometry.of(self.inventory)
        config = config or AssociationConfig()
        if config.max_spread_s is None:
            config = config.replace(max_spread_s=self.geometry.max_spread_s(config.vp_min_km_s))
        self.config = config
        if locator is not None and locator.half_width_km is None:
            locator = locator.replace(half_width_km=self.geometry.half_width_km())
        self.locator = locator
        if locator is not None:
            travel_time_table(locator)  # build the travel-time table now, not on the first event
        self.gains: dict[str, float] = dict(gains or {})
        self.magnitude = magnitude or MagnitudeConfig()
        self.stats: Counter[str] = Counter()
        self.reorder = ReorderBuffer(config, (st.id for st in self.inventory), ignore_before_ns, self.stats)
        self.association = Association(config, self.geometry, locator, self.stats, restored_events)
        self.triggers = StationTriggers(config, self.inventory, self.stats, self._p_window_grew)
        self.emitter = Emitter(
            config, self.association, self.triggers, self.inventory, locator, self.magnitude, self.gains, self.stats
        )
        self._retain_lead = int(config.pick_max_lead_s * NS)

    # ---------------------------------------------------------------- public API

    @property
    def ignore_before_ns(self) -> int | None:
        return self.reorder.ignore_before_ns

    @property
    def watermark_ns(self) -> int | None:
        """Max window_end seen."""
        return self.reorder.watermark_ns

    @property
    def low_watermark_ns(self) -> int | None:
        until = self.reorder.released_until
        return None if until < NEVER // 2 else until

    @property
    def pending(self) -> int:
        """Scores held in the reorder buffer."""
        return len(self.reorder)

    @property
    def open_events(self) -> list[str]:
        return [e.event_id for e in self.association.events]

    def add(self, rec: ScoreRecord, now_ns: int | None = None) -> list[AlertRecord]:
        """Add one score, release what the watermark allows, return the alerts caused."""
        return self.add_many((rec,), now_ns=now_ns)

    def add_many(
        self, recs: Iterable[ScoreRecord], release: bool = True, now_ns: int | None = None
    ) -> list[AlertRecord]:
        """Add a batch of scores (e.g. one Kafka poll), then release; return the alerts caused.

        ``now_ns``: the wall time the batch arrived (the service passes it; call with no scores
        to let buffered ones time out). Without it only event time is used.
        ``release=False`` only buffers (catching up on a backlog after a restart: everything is
        held, then released in event-time order by the next call with ``release=True``).
        """
        out: list[AlertRecord] = []
        self.reorder.arrived(now_ns)
        express: set[str] = set()
        for rec in recs:
            intake = self.reorder.accept(rec, now_ns)
            if intake is Intake.LATE:
                self._process(rec)
                self.emitter.flush(out)
            elif (
                intake is Intake.BUFFERED and self.config.express_triggers and self.triggers.is_triggered(rec)
            ):
                express.add(rec.stream)
        if release:
            if express:
                self._express(express, out)
            self._release(self.reorder.low_watermark(now_ns), out)
        return out

    def flush(self) -> list[AlertRecord]:
        """Release everything buffered (end of input, or no input for a while)."""
        out: list[AlertRecord] = []
        if self.reorder.watermark_ns is not None:
            self._release(self.reorder.watermark_ns, out)
        return out

    def retain_from_ns(self) -> int | None:
        """Earliest event time whose scores the current state still depends on.

        Re-reading every score with window_end >= this value rebuilds the same state, so the
        consumer may commit past everything older. None: nothing is held (commit everything).
        """
        cands: list[int] = self.reorder.buffered_ends()
        cands.extend(t.retain_ns for t in self.triggers.open_triggers())
        cands.extend(t.retain_ns for t in self.association.pool)
        for ev in self.association.events:
            cands.extend(t.retain_ns for t in ev.members.values())
        if not cands:
            return None
        low = min(cands) - self._retain_lead - NS
        if self.reorder.watermark_ns is not None:
            low = max(low, self.reorder.watermark_ns - int(self.config.max_retain_s * NS))
        return low

    # ---------------------------------------------------------------- wiring of the four jobs

    def _express(self, streams: set[str], out: list[AlertRecord]) -> None:
        """Process the buffered scores of streams that just sent a triggered score, now.

        The reorder buffer makes every station's window of a second wait for the slowest
        station's (up to ``max_hold_s``); a station that triggers need not wait: its own scores
        stay in order, association compares P times (not arrival order), and the locator uses as
        silent only stations whose scores it has processed. The price: alert versions then depend
        on arrival order (which stations make the NEW, how changes are grouped), so replays
        that must reproduce alerts exactly leave this off.
        """
        mine = self.reorder.take(streams)
        if not mine:
            return
        for rec in mine:
            self._tick(rec.window_end_ns, out)
            self._process(rec)
        self.stats["expressed"] += len(mine)
        self.emitter.flush(out)

    def _release(self, upto: int, out: list[AlertRecord]) -> None:
        while (rec := self.reorder.pop(upto)) is not None:
            self._tick(rec.window_end_ns, out)
            self._process(rec)
        self.reorder.released(upto)
        self._tick(upto, out)
        self.emitter.flush(out)

    def _tick(self, t: int, out: list[AlertRecord]) -> None:
        """Advance event time: emit the changes of the previous instant, close idle events, forget
        unassociated triggers that can no longer pair."""
        if t <= self.association.clock:
            return
        self.emitter.flush(out)
        self.association.advance(t)

    def _process(self, rec: ScoreRecord) -> None:
        for action, trig in self.triggers.process(rec):
            if action is TriggerAction.ASSOCIATE:
                self.association.associate(trig)
            else:
                self.association.retract(trig, rec)

    def _p_window_grew(self, trig: StationTrigger, ingest_ns: int) -> None:
        self.emitter.p_window_grew(trig, ingest_ns)
