"""Association of station triggers into events, and the changes they make (pure, event time).

Association
-----------
Two triggers i, j are travel-time consistent when

    |tp_i - tp_j| <= dist_ij / vp_min + tolerance        (both stations have coordinates)

(the P-time difference cannot exceed the inter-station distance at the slowest P velocity),
and a set is consistent when every pair is and max(tp) - min(tp) <= ``max_spread_s``. Stations
without coordinates are checked against the spread only (counted in the stats). A new trigger
first tries to join an open event (consistent with all its members; one trigger per station
per event; linked: within the link distance of a member, see ``NetworkGeometry``) -> UPDATE.
Otherwise it is *rejected* by the nearby events it does not fit (counted); one that an open,
located event *explains* (``_explained``: near the P or S arrival the location predicts at that
station, or the coda of a member station) is dropped there -- one earthquake, one event -- and the
rest tries to seed a new event with the unassociated, unexplained triggers of the last
``max_spread_s + pick_max_lead_s + tolerance_s`` seconds: greedily, nearest P times first, each
candidate kept when consistent with all kept ones; with >= ``min_stations`` stations the event is
declared -> NEW, version 1. A retracted member is removed -> UPDATE, or CANCEL when fewer than
``min_stations`` remain (the event then ends; its other triggers are not reused). An event closes
(no more updates, no message) ``event_ttl_s`` of event time after its last change. All changes
to one event at one event-time instant (one window_end) are coalesced into one alert, so
stations triggering in the same window give one NEW, not a NEW and UPDATEs.

Event id: ``eew-<first P, UTC, to the second>-<8 hex of SHA-256 over the declaring stations and
that second>``: deterministic across restarts and replays.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from services.alerting.association.config import AssociationConfig
from services.alerting.association.geometry import NetworkGeometry
from services.alerting.association.locate import VS_FACTOR, Location, LocatorConfig, first_p_s
from services.alerting.association.records import NS, AlertKind, ScoreRecord
from services.alerting.association.triggers import StationTrigger
from services.common.domain import haversine_km

NEVER = -(1 << 62)


def make_event_id(station_ids: Iterable[str], first_p_ns: int) -> str:
    sec = first_p_ns // NS
    stamp = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha256(("|".join(sorted(station_ids)) + f"|{sec}").encode()).hexdigest()[:8]
    return f"eew-{stamp}-{digest}"



@dataclass(eq=False)
class Event:
    event_id: str
    members: dict[str, StationTrigger]
    version: int = 0
    last_change_ns: int = 0
    latest_ingest_ns: int = 0
    amp_ingest_ns: int = 0  # ingest time of the newest score that grew a member's P window
    closed: bool = False
    location: Location | None = None  # newest accepted location
    published_magnitude: float | None = None

    @property
    def first_p_ns(self) -> int:
        return min(t.p_time_ns for t in self.members.values())


@dataclass(eq=False)
class Change:
    """What happened to one event within one event-time instant (emitted as one alert)."""

    event: Event
    kind: AlertKind
    reasons: list[str]


def usable(loc: Location | None, locator: LocatorConfig | None) -> bool:
    """A well-constrained location: a closed 95 % region within ``max_uncertainty_km``."""
    return (
        loc is not None
        and locator is not None
        and loc.bounded
        and loc.uncertainty_km <= locator.max_uncertainty_km
    )


class Association:
    """Open events, unassociated triggers, and the changes of the current event-time instant."""

    def __init__(
        self,
        config: AssociationConfig,
        geometry: NetworkGeometry,
        locator: LocatorConfig | None,
        stats: Counter[str],
        restored_events: Mapping[str, tuple[frozenset[str], int]] | None = None,
    ) -> None:
        assert config.max_spread_s is not None  # resolved by the Associator
        self.config = config
        self.geometry = geometry
        self.locator = locator
        self.stats = stats
        # event_id -> (station ids, first P) of events emitted before a restart (alerts topic)
        self._restored: dict[str, tuple[frozenset[str], int]] = dict(restored_events or {})
        self.clock: int = NEVER  # the current event-time instant
        self.changes: dict[str, Change] = {}  # this instant's changes, by event id
        self._events: list[Event] = []
        self._pool: list[StationTrigger] = []
        self._spread = int(config.max_spread_s * NS)
        self._tol = int(config.tolerance_s * NS)
        self._ttl = int(config.event_ttl_s * NS)
        self._pool_ttl = int((config.max_spread_s + config.pick_max_lead_s + config.tolerance_s) * NS)

    @property
    def events(self) -> list[Event]:
        """The open events."""
        return self._events

    @property
    def pool(self) -> list[StationTrigger]:
        """Unassociated triggers that may still seed an event."""
        return self._pool

    def advance(self, t: int) -> None:
        """Advance event time to ``t`` (after the previous instant's changes were taken): close idle
        events, forget unassociated triggers that can no longer pair."""
        self.clock = t
        for ev in self._events:
            if ev.last_change_ns + self._ttl < t:
                ev.closed = True
                self.stats["events_closed"] += 1
        self._events = [e for e in self._events if not e.closed]
        keep = []
        for trig in self._pool:
            if trig.trigger_ns + self._pool_ttl < t:
                trig.in_pool = False
                self.stats["triggers_unassociated"] += 1
            else:
                keep.append(trig)
        self._pool = keep

    def take_changes(self) -> list[Change]:
        changes, self.changes = list(self.changes.values()), {}
        return changes

    def _usable(self, loc: Location | None) -> bool:
        return usable(loc, self.locator)

    def _pair_ok(self, a: StationTrigger, b: StationTrigger) -> bool:
        dt = abs(a.p_time_ns - b.p_time_ns)
        if dt > self._spread:
            return False
        if a.coords is None or b.coords is None:
            return True
        dist = haversine_km(a.coords[0], a.coords[1], b.coords[0], b.coords[1])
        return dt <= dist / self.config.vp_min_km_s * NS + self._tol

    def _fits(self, trig: StationTrigger, members: Iterable[StationTrigger]) -> bool:
        ms = list(members)
        lo = min([trig.p_time_ns] + [m.p_time_ns for m in ms])
        hi = max([trig.p_time_ns] + [m.p_time_ns for m in ms])
        return hi - lo <= self._spread and all(self._pair_ok(trig, m) for m in ms) and self._linked(trig, ms)

    def _linked(self, trig: StationTrigger, members: list[StationTrigger]) -> bool:
        """The wavefront reaches a new station from nearby ones: a trigger farther than the link
        distance from every member is not part of their event. In a large network noise triggers
        come every few seconds somewhere, and the pairwise travel-time test alone lets far ones
        through (it allows 18 s between stations 100 km apart). The link distance is ``max_link_km``
        when set (0: the rule is off), else the larger of the two stations' link radii
        (``NetworkGeometry``: twice the distance to their 3rd-nearest neighbour)."""
        limit = self.config.max_link_km
        if limit == 0 or trig.coords is None or (limit is None and not self.geometry.spacing_km):
            return True
        placed = [m.coords for m in members if m.coords is not None]
        if not placed:
            return True
        if limit is not None:
            return any(haversine_km(trig.coords[0], trig.coords[1], c[0], c[1]) <= limit for c in placed)
        mine = self.geometry.link_km(trig.station_id) or 0.0
        return any(
            haversine_km(trig.coords[0], trig.coords[1], m.coords[0], m.coords[1])
            <= max(mine, self.geometry.link_km(m.station_id) or 0.0)
            for m in members
            if m.coords is not None
        )

    def _fits_location(self, trig: StationTrigger, ev: Event) -> bool:
        """A located event predicts every station's P: a trigger joins it only within the pair
        tolerance plus what the location's uncertainty allows. The pairwise test alone admits a
        trigger 200 km away up to 36 s late, so a noise trigger or a second earthquake far away would
        join; the location rules out what no single hypocentre explains."""
        loc, cfg = ev.location, self.locator
        if loc is None or cfg is None or trig.coords is None or not self._usable(loc):
            return True
        d = haversine_km(loc.latitude, loc.longitude, trig.coords[0], trig.coords[1])
        t_pred = loc.origin_time_ns + first_p_s(cfg, loc.depth_km, d) * NS
        slack = self._tol + (loc.uncertainty_km / self.config.vp_min_km_s + loc.origin_time_uncertainty_s) * NS
        return abs(trig.p_time_ns - t_pred) <= slack

    def _explained(self, trig: StationTrigger) -> Event | None:
        """The open, located event that explains ``trig``: its P time lies within the location's
        slack (as in ``_fits_location``) of the P or of the S arrival (Vp/Vs = sqrt 3) that the
        event's location predicts at that station, or -- at a station already in the event -- anywhere
        from that P to the S arrival plus ``explained_coda_s`` (its own shaking going on). Such a
        trigger is that earthquake's P seen late, its S wave or its coda, not a second earthquake: it
        must not seed one (issue: one M 5.2 became two events 72 km apart). Uncertain locations
        count too, with their larger slack. A second earthquake elsewhere, or at the same place
        but at other times, does not fit and still makes its own event. The coda clause does not
        apply to a re-trigger on a new P onset (the detector picked a fresh P inside the shaking,
        ``Trigger.on_new_onset``), and its S clause is held to the pick tolerance: an aftershock
        seconds after its main shock arrives in that coda at every station, and near the main
        shock's S at some of them (those stay explained; the rest seed its event; issue 13)."""
        cfg = self.locator
        if cfg is None or trig.coords is None:
            return None
        for ev in self._events:
            loc = ev.location
            if ev.closed or loc is None:
                continue
            d = haversine_km(loc.latitude, loc.longitude, trig.coords[0], trig.coords[1])
            tt = first_p_s(cfg, loc.depth_km, d)
            t_p = loc.origin_time_ns + tt * NS
            t_s = loc.origin_time_ns + VS_FACTOR * tt * NS
            slack = self._tol + (loc.uncertainty_km / self.config.vp_min_km_s + loc.origin_time_uncertainty_s) * NS
            t = trig.p_time_ns
            if trig.rule.on_new_onset:
                # The detector picked a new P inside that shaking: a late P of this event only near
                # its predicted P, its S only within the pick tolerance of the predicted S (a P
                # head firing on S is picked on it); otherwise maybe a second earthquake.
                if abs(t - t_p) <= slack or abs(t - t_s) <= self._tol:
                    return ev
                continue
            if abs(t - t_p) <= slack or abs(t - t_s) <= VS_FACTOR * slack:
                return ev
            member = ev.members.get(trig.station_id)
            if member is not None and member is not trig and t_p - slack <= t <= (
                t_s + VS_FACTOR * slack + self.config.explained_coda_s * NS
            ):
                return ev
        return None

    def associate(self, trig: StationTrigger) -> None:
        pairwise = [
            ev for ev in self._events if trig.station_id not in ev.members and self._fits(trig, ev.members.values())
        ]
        joinable = [ev for ev in pairwise if self._fits_location(trig, ev)]
        if pairwise and not joinable:
            self.stats["triggers_rejected_by_location"] += 1
        if joinable:
            ev = min(
                joinable, key=lambda e: (-len(e.members), abs(trig.p_time_ns - e.first_p_ns), e.event_id)
            )
            ev.members[trig.station_id] = trig
            trig.event = ev
            if any(m.coords is None or trig.coords is None for m in ev.members.values() if m is not trig):
                self.stats["associations_time_only"] += 1
            self.emit(
                ev,
                AlertKind.UPDATE,
                f"station {trig.station_id} triggered",
                trig.ingest_time_ns,
                trig.trigger_ns,
            )
            return
        if self._swap_odd_member(trig):
            return
        if self._explained(trig) is not None:
            self.stats["triggers_explained_by_event"] += 1  # one earthquake, one event
            return
        for ev in self._events:
            if abs(trig.p_time_ns - ev.first_p_ns) <= self._spread:
                reason = "station_in_event" if trig.station_id in ev.members else "inconsistent"
                self.stats[f"triggers_rejected_{reason}"] += 1
        members = self._gather(trig, [], set())
        if len(members) < self.config.min_stations:
            trig.in_pool = True
            self._pool.append(trig)
            return
        first_p = min(m.p_time_ns for m in members)
        ev = Event(event_id=self._new_event_id(members, first_p), members={})
        for m in sorted(members, key=lambda t: (t.p_time_ns, t.station_id)):
            ev.members[m.station_id] = m
            m.event = ev
            if m.in_pool:
                m.in_pool = False
        self._pool = [t for t in self._pool if t.event is None]
        if any(m.coords is None for m in members):
            self.stats["associations_time_only"] += 1
        self._events.append(ev)
        self.stats["events"] += 1
        self.emit(
            ev,
            AlertKind.NEW,
            f"{len(members)} stations triggered",
            max(m.ingest_time_ns for m in members),
            trig.trigger_ns,
        )

    def _new_event_id(self, members: list[StationTrigger], first_p: int) -> str:
        """The id of a new event: the id an event emitted before a restart had, when this one is
        that event rebuilt, else ``make_event_id``.

        The rebuild after a restart re-reads the scores in event-time order; the run before may have
        seen them in another order (express triggers, uneven partitions) and seeded the event with
        other stations, so ``make_event_id`` would give the same earthquake a second id (two NEW
        alerts). A restored event that shares at least two stations with ``members`` (all of them
        when fewer) and whose first P lies within the spread is taken as this one, once.
        """
        own = make_event_id([m.station_id for m in members], first_p)
        if not self._restored or own in self._restored:
            self._restored.pop(own, None)
            return own
        ids = {m.station_id for m in members}
        live = {e.event_id for e in self._events}
        best: tuple[int, int, str] | None = None
        for eid, (stations, p0) in self._restored.items():
            shared = len(ids & stations)
            if eid in live or shared < min(2, len(ids)) or abs(p0 - first_p) > self._spread:
                continue
            key = (-shared, abs(p0 - first_p), eid)
            if best is None or key < best:
                best = key
        if best is None:
            return own
        self._restored.pop(best[2])
        self.stats["events_restored_id"] += 1
        return best[2]

    def _gather(self, trig: StationTrigger, base: list[StationTrigger], exclude: set[str]) -> list[StationTrigger]:
        """``trig`` plus the pool's triggers that fit ``base`` and each other, nearest P first
        (one per station; stations in ``exclude`` and ``trig``'s own are skipped)."""
        added = [trig]
        for cand in sorted(self._pool, key=lambda t: (abs(t.p_time_ns - trig.p_time_ns), t.station_id, t.seq)):
            if cand.station_id in exclude or any(a.station_id == cand.station_id for a in added):
                continue
            if not base and self._explained(cand) is not None:
                continue  # a new event is not seeded with what an open event's location explains
            if self._fits(cand, base + added):
                added.append(cand)
        return added

    def _swap_odd_member(self, trig: StationTrigger) -> bool:
        """Drop the one member of an event that the new trigger and the pool outvote.

        A station that triggered earlier on something else (a local microquake, a long glitch) can
        seed an event together with the first real stations; every later station of the real
        earthquake then conflicts with that one member alone and, without this, would declare a
        second event for the same earthquake. When ``trig`` conflicts with exactly one member and,
        with that member left out, ``trig`` plus the pool's triggers consistent with the rest make
        the event strictly larger than it is, the odd member goes back to the pool and they join.
        A stray trigger against a real event never wins: it cannot bring more support than the
        member it would replace.
        """
        best: tuple[int, Event, StationTrigger, list[StationTrigger]] | None = None
        for ev in self._events:
            if ev.closed or trig.station_id in ev.members:
                continue
            odd = [m for m in ev.members.values() if not self._pair_ok(trig, m)]
            if len(odd) != 1:
                continue
            rest = [m for m in ev.members.values() if m is not odd[0]]
            if not self._fits(trig, rest):
                continue
            added = self._gather(trig, rest, set(ev.members))
            gain = len(rest) + len(added) - len(ev.members)
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, ev, odd[0], added)
        if best is None:
            return False
        _, ev, odd, added = best
        odd.event = None
        odd.in_pool = True
        members = [m for m in ev.members.values() if m is not odd] + added
        ev.members = {m.station_id: m for m in sorted(members, key=lambda t: (t.p_time_ns, t.station_id))}
        for m in added:
            m.event = ev
            m.in_pool = False
        self._pool = [t for t in self._pool if t.event is None and t is not trig] + [odd]
        self.stats["members_swapped_out"] += 1
        self.emit(
            ev,
            AlertKind.UPDATE,
            f"station {odd.station_id} dropped: inconsistent with "
            f"{', '.join(a.station_id for a in added)}",
            max(a.ingest_time_ns for a in added),
            trig.trigger_ns,
        )
        return True

    def retract(self, trig: StationTrigger, rec: ScoreRecord) -> None:
        if trig.ignored:
            return
        if trig.in_pool:
            trig.in_pool = False
            self._pool = [t for t in self._pool if t is not trig]
            return
        ev = trig.event
        if ev is None or ev.closed:
            return
        del ev.members[trig.station_id]
        trig.event = None
        if len(ev.members) < self.config.min_stations:
            self.emit(
                ev,
                AlertKind.CANCEL,
                f"trigger at {trig.station_id} retracted: {len(ev.members)} stations left, "
                f"{self.config.min_stations} needed",
                rec.ingest_time_ns,
                rec.window_end_ns,
            )
            ev.closed = True
            for m in ev.members.values():
                m.event = None
            self._events = [e for e in self._events if e is not ev]
            self.stats["events_cancelled"] += 1
        else:
            self.emit(
                ev,
                AlertKind.UPDATE,
                f"trigger at {trig.station_id} retracted",
                rec.ingest_time_ns,
                rec.window_end_ns,
            )

    def emit(
        self, ev: Event, kind: AlertKind, reason: str, ingest_ns: int, at_ns: int
    ) -> None:
        """Record a change; changes of one instant are coalesced into one alert (``emission.Emitter.flush``)."""
        ev.last_change_ns = max(ev.last_change_ns, at_ns)
        ev.latest_ingest_ns = max(ev.latest_ingest_ns, ingest_ns)
        ch = self.changes.get(ev.event_id)
        if ch is None:
            self.changes[ev.event_id] = Change(ev, kind, [reason])
            return
        ch.reasons.append(reason)
        if kind is AlertKind.CANCEL or ch.kind is AlertKind.CANCEL:
            ch.kind = AlertKind.CANCEL
        elif ch.kind is not AlertKind.NEW:
            ch.kind = kind

