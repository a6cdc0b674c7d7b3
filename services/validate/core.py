"""Scoring core of ``eew validate``: alerts and station scores against a catalogue.

Pure and deterministic: plain data in, plain data out, no I/O and no wall clock. The same inputs
give the same result, whatever order the scores and alerts were collected in.

Definitions
-----------
Archive coverage
    Per sensor stream (Kafka key ``NET.STA.LOC.BI?``) the merged intervals of data in the archive.

Reference P
    For a stream: the catalogue's own P pick at its station when the catalogue gives one (QuakeML
    picks/arrivals; source "catalogue pick"); else, for a station in the inventory, origin time +
    the first-P travel time of a 1-D Earth model (ObsPy TauP, iasp91 unless another is given;
    source "TauP <model>") from the epicentral distance and the event's depth. Never a constant
    velocity. The event's *first P* is the earliest reference P among the streams recording at
    their P time; when no recording stream has one, it is the first P pick of any station in the
    event window ("first pick"). Every P time in the report names its source.

Covered
    A catalogue event is covered when at least one stream has data at its reference P time (a
    stream without coordinates: data between origin and origin + ``no_coords_travel_s``). Events
    that are not covered are reported as "not covered", never as missed.

Alert events and their time
    Alert versions are grouped by ``event_id``. An alert's *decision time* is the event (data)
    time of the score that made the alerting issue it: taken from a deterministic re-run of the
    association on the collected scores when that re-run produced the same version, else
    reconstructed as the latest trigger onset among the version's stations (triggers by the
    alerting's own rule, see "Station triggers"). Telemetry and processing delays are not included:
    the run reports the measured processing delay separately (wall clock).

Matching
    An alert event is compared with every covered catalogue event through its last version that
    is not a CANCEL:
    - time: the alert's origin minus the catalogue origin when the alert is located, else the
      alert's first P minus the event's first P (minus the origin when the event has no first P);
    - distance: alert epicentre to catalogue epicentre when located, else the epicentral distance
      of the alert's earliest-P station that has coordinates, else not checked (time only).
    It matches when |time| <= ``time_tolerance_s`` and distance <= ``distance_tolerance_km``; the
    best match is the smallest |time|, then distance, then event id. A catalogue event is detected
    when at least one alert event matches it; the one decided first is its *primary* alert, any
    other is a *duplicate* (counted as a true alert for precision). Unmatched alert events are
    false alerts (``cancelled`` when their last version is a CANCEL).

Latency
    Primary alert's first decision time minus the origin time, and minus the first P.

Station triggers
    Per stream, the alerting's own trigger rule (``services.common.triggers.hysteresis``, settings
    ``ScoringConfig.trigger`` from the alerting's flags): a triggered score (the detector's flag, or
    probability >= the trigger threshold) opens a trigger, which stays on while scores stay at or
    above the detrigger level and ends ``detrigger_s`` after the last of them; one that ends before
    lasting ``min_trigger_duration_s`` is retracted (a glitch, as the alerting retracts it) and is
    not a trigger here either. Its onset is the window end of its first triggered score. Its P pick
    is the one ``services.common.triggers.picks.pick_for_trigger`` chooses among the detector's P
    onsets (at most ``pick_max_lead_s`` before the onset, never before the stream's previous trigger
    ended): a re-trigger (on S or coda) whose windows still hold the earlier P has no P pick of its
    own, and its P time is the rule's coarse P (the start of its triggering window); refused picks
    are counted (``picks_refused``). A trigger whose onset lies
    in an event window of a covered event (reference P - ``window_before_s`` to reference P +
    ``window_after_s``; stations without a reference P: origin - before to origin +
    ``no_coords_travel_s`` + after) belongs to at most one event: the one whose reference P is
    nearest its P pick (its onset when it has no pick). A trigger whose pick lies within
    ``p_tolerance_s`` of the reference P is a station *P detection*. Triggers in no event window
    are false triggers, each listed with its time. Noise hours are the scored hours whose window
    end lies outside every event window; the false-trigger rate is false triggers per noise
    station-hour.

Why an event was missed
    From what happened in the run, in this order: no scorable data (the streams' rejection
    reasons), too few stations recorded it (scored around the P), too few triggered, triggers not
    associated (which association rule failed, how many), an alert issued but not matched (its
    location or time off); "outside the network" is added when the first P comes later than
    ``outside_network_s`` after the origin.

Many events
    Detection rate, first-alert time after origin and after the 4th P, location and magnitude
    errors by magnitude bin and by distance bin (epicentre to the nearest recording station), and
    the reliability of the alerts' event probability (first version of each alert event against
    "matched a catalogue earthquake"; Brier score).

Precision = true alert events / alert events; recall = detected / covered events.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import Field

from services.alerting.association import AlertRecord, AssociationConfig, Associator, ScoreRecord
from services.alerting.association.locate import LocatorConfig
from services.common.domain import haversine_km, station_id, station_of
from services.common.inventory import StationInventory
from services.common.settings import CoreModel
from services.common.triggers.hysteresis import TriggerRule
from services.common.triggers.hysteresis import station_triggers as rule_triggers

NS = 1_000_000_000
NEW, UPDATE, CANCEL = "NEW", "UPDATE", "CANCEL"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class CatalogEvent:
    """One catalogue earthquake (times ns UTC, depth km below sea level)."""

    event_id: str
    origin_ns: int
    latitude: float
    longitude: float
    depth_km: float
    magnitude: float | None = None
    magnitude_type: str = ""
    #: The catalogue's own P picks: (NET.STA, time ns), the earliest P per station.
    p_picks: tuple[tuple[str, int], ...] = ()
    depth_given: bool = True  # False: depth_km is the default depth (the catalogue gives none)


@dataclass(frozen=True, slots=True)
class StreamCoverage:
    """Where one sensor stream ``NET.STA.LOC.BI?`` has data: sorted, merged [start, end) intervals."""

    stream: str
    intervals: tuple[tuple[int, int], ...]

    @property
    def station_id(self) -> str:
        return station_of(self.stream)

    @property
    def seconds(self) -> float:
        return sum(b - a for a, b in self.intervals) / NS

    def covers(self, t_ns: int) -> bool:
        i = bisect.bisect_right(self.intervals, (t_ns, 1 << 62)) - 1
        return i >= 0 and self.intervals[i][0] <= t_ns < self.intervals[i][1]

    def overlaps(self, a_ns: int, b_ns: int) -> bool:
        return any(s < b_ns and a_ns < e for s, e in self.intervals)


def merge_intervals(intervals: Iterable[tuple[int, int]], slack_ns: int = 0) -> tuple[tuple[int, int], ...]:
    """Sorted union of [start, end) intervals; intervals closer than ``slack_ns`` are joined."""
    out: list[list[int]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1] + slack_ns:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def replay_blocks(coverage: Iterable[StreamCoverage], gap_s: float) -> list[tuple[int | None, int | None]]:
    """Time blocks [start, end) to replay one after the other (None: open end).

    Every data gap longer than ``gap_s`` in any stream gets a block boundary inside it (the
    fewest boundaries that do: greedy interval stabbing, on whole seconds when possible), so a
    stream's data before such a gap are all replayed, and can be scored, before any data after it.
    """
    gap = int(gap_s * NS)
    gaps = sorted(
        (nxt[0], prev[1])
        for c in coverage
        for prev, nxt in zip(c.intervals, c.intervals[1:], strict=False)
        if nxt[0] - prev[1] > gap
    )
    cuts: list[int] = []
    for start, prev_end in gaps:
        if cuts and cuts[-1] > prev_end:
            continue
        whole = start - start % NS
        cuts.append(whole if whole > prev_end else start)
    edges: list[int | None] = [None, *cuts, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


@dataclass(frozen=True, slots=True)
class AlertStation:
    """One station behind an alert version (coordinates None when unknown to the alerting)."""

    network: str
    station: str
    location: str
    p_time_ns: int
    probability: float
    latitude: float | None = None
    longitude: float | None = None

    @property
    def station_id(self) -> str:
        return station_id(self.network, self.station)


@dataclass(frozen=True, slots=True)
class AlertVersion:
    """The fields of one Alert message the scoring uses (``kind`` is NEW, UPDATE or CANCEL)."""

    event_id: str
    version: int
    kind: str
    origin_time_ns: int
    first_p_time_ns: int
    probability: float
    stations: tuple[AlertStation, ...] = ()
    has_location: bool = False
    latitude: float = math.nan
    longitude: float = math.nan
    depth_km: float = math.nan
    location_uncertainty_km: float = math.nan
    has_magnitude: bool = False
    magnitude: float = math.nan
    magnitude_type: str = ""
    created_time_ns: int = 0
    latest_ingest_time_ns: int = 0
    reason: str = ""
    decision_time_ns: int = 0  # the alerting's own decision (data) time; 0: not given
    magnitude_uncertainty: float = math.nan
    location_uncertain: bool = False  # published although beyond the alerting's uncertainty limit
    magnitude_lower_bound: bool = False  # the magnitude may be saturated

    @property
    def key(self) -> tuple[str, int]:
        return (self.event_id, self.version)


class ScoringTuning(CoreModel):
    """The scoring's knobs, declared once (seconds, km): the ``scoring`` group of ``eew validate``'s
    settings (flags ``--time-tolerance-s`` ..., environment ``EEW_TIME_TOLERANCE_S`` ...)."""

    time_tolerance_s: float = Field(
        30.0, ge=0.0, allow_inf_nan=False,
        description="Largest |alert first P - reference first P| (|origin difference| when located) for a match.",
    )
    distance_tolerance_km: float = Field(
        100.0, ge=0.0, allow_inf_nan=False,
        description="Largest distance, alert epicentre (else its first station) to the catalogue epicentre, "
        "for a match.",
    )
    window_before_s: float = Field(
        10.0, ge=0.0, allow_inf_nan=False, description="Event window at a station starts this long before its P."
    )
    window_after_s: float = Field(
        60.0, ge=0.0, allow_inf_nan=False,
        description="Event window at a station ends this long after its P (triggers outside are false).",
    )
    no_coords_travel_s: float = Field(
        30.0, ge=0.0, allow_inf_nan=False,
        description="Stations without coordinates: P assumed within this long after the origin.",
    )
    p_tolerance_s: float = Field(
        3.0, ge=0.0, allow_inf_nan=False,
        description="A station trigger whose P pick lies within this of the reference P is a P detection.",
    )
    outside_network_s: float = Field(
        30.0, ge=0.0, allow_inf_nan=False,
        description="An event whose first P comes later than this after the origin is reported as outside "
        "the network.",
    )
    nth_p: int = Field(4, ge=1, description="Alert times are also reported after the n-th station's reference P.")


class ScoringConfig(ScoringTuning):
    """The tuning and what the alerting's settings decide: its trigger rule and its minimum station
    count (built with ``ScoringTuning.model_dump()`` and those facts, never field by field)."""

    #: The alerting's trigger rule (its threshold, detrigger level and time, minimum duration, pick lead).
    trigger: TriggerRule = TriggerRule()
    min_stations: int = Field(3, ge=1)


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class StationArrival:
    """One stream at one catalogue event: geometry, prediction, data and the detector's pick."""

    stream: str
    distance_km: float | None  # epicentral
    predicted_p_ns: int | None  # the reference P (see p_source)
    recording: bool
    trigger_ns: int | None  # window end of the first triggered score in the event window
    pick_ns: int | None  # the detector's P pick of that trigger (None: no pick)
    in_alert: bool  # the station is in the primary alert's last version
    p_source: str = ""  # catalogue pick | TauP <model> | "" (no reference P)
    scored: bool = False  # the detector scored this stream around the reference P
    probability: float | None = None  # the trigger's highest score
    p_detected: bool = False  # the trigger's pick (else onset) within p_tolerance_s of the reference P

    @property
    def pick_error_s(self) -> float | None:
        if self.pick_ns is None or self.predicted_p_ns is None:
            return None
        return (self.pick_ns - self.predicted_p_ns) / NS


@dataclass(frozen=True)
class EventResult:
    """The outcome for one catalogue event."""

    event: CatalogEvent
    status: str  # detected | missed | not covered
    note: str
    recording_streams: int
    triggered_streams: int
    first_p_ns: int | None
    first_p_stream: str
    first_p_source: str  # catalogue pick | TauP <model> | first pick | ""
    reasons: tuple[str, ...] = ()  # why missed, by code (see MISS_REASONS)
    scored_stations: int = 0
    nth_p_ns: int | None = None  # the nth_p-th earliest reference P among recording stations
    latency_after_nth_p_s: float | None = None
    nearest_station_km: float | None = None  # epicentre to the nearest recording station
    alert_event_id: str = ""
    duplicate_alerts: tuple[str, ...] = ()
    first_alert_ns: int | None = None
    latency_after_origin_s: float | None = None
    latency_after_first_p_s: float | None = None
    updates: int = 0
    cancelled: bool = False
    alert_time_error_s: float | None = None
    alert_first_p_error_s: float | None = None
    location_error_km: float | None = None
    magnitude_estimate: float | None = None
    magnitude_error: float | None = None
    alert_stations: int = 0
    alert_probability: float | None = None
    arrivals: tuple[StationArrival, ...] = ()


@dataclass(frozen=True)
class AlertResult:
    """One alert event (all versions of one event id) and what it matched."""

    event_id: str
    versions: tuple[AlertVersion, ...]
    first_decision_ns: int
    decision_source: str  # association replay | reconstructed | first P
    classification: str  # true | duplicate | false
    matched_event_id: str = ""
    time_error_s: float | None = None
    distance_km: float | None = None
    distance_basis: str = ""  # location | first station | none

    @property
    def first(self) -> AlertVersion:
        return self.versions[0]

    @property
    def last(self) -> AlertVersion:
        return self.versions[-1]

    @property
    def best(self) -> AlertVersion:
        """The last version that is not a CANCEL (the most informed estimate)."""
        for v in reversed(self.versions):
            if v.kind != CANCEL:
                return v
        return self.versions[0]

    @property
    def cancelled(self) -> bool:
        return self.last.kind == CANCEL

    @property
    def max_probability(self) -> float:
        return max(v.probability for v in self.versions)


@dataclass(frozen=True)
class VersionResult:
    """One alert version with its decision time (data time) and what it said."""

    event_id: str
    version: int
    kind: str
    decision_ns: int
    decision_source: str
    stations: tuple[str, ...]
    matched_event_id: str = ""
    after_origin_s: float | None = None
    after_nth_p_s: float | None = None  # after the n-th reference P, n = the version's station count
    location_error_km: float | None = None
    magnitude_error: float | None = None


@dataclass(frozen=True)
class RunFacts:
    """What the run says about the data, for the reasons of the misses.

    ``rejected_streams``: stream -> reason the system does not score it (``services.common.streams``);
    ``rejected_packets``: the detector's rejected packets by reason (its Prometheus counter).
    """

    rejected_streams: Mapping[str, str] = field(default_factory=dict)
    rejected_packets: Mapping[str, int] = field(default_factory=dict)


#: Codes of the reasons an event was missed (in the order they are looked for).
MISS_REASONS = ("no scorable data", "too few stations recorded it", "too few triggered", "not associated",
                "alert not matched", "outside the network")


@dataclass(frozen=True)
class StationResult:
    """Trigger statistics of one stream."""

    stream: str
    in_inventory: bool
    latitude: float | None
    longitude: float | None
    data_hours: float
    scored_hours: float
    noise_hours: float
    triggers: int
    event_triggers: int
    false_triggers: int
    alerts: int  # alert events this station contributed to

    @property
    def false_rate_per_hour(self) -> float | None:
        return self.false_triggers / self.noise_hours if self.noise_hours > 0 else None


@dataclass(frozen=True)
class ValidationResult:
    """Everything the report shows (deterministic for given inputs)."""

    config: ScoringConfig
    events: tuple[EventResult, ...]
    alerts: tuple[AlertResult, ...]
    stations: tuple[StationResult, ...]
    summary: dict
    warnings: tuple[str, ...] = field(default=())
    false_triggers: tuple[Trigger, ...] = ()
    versions: tuple[VersionResult, ...] = ()
    bins: dict = field(default_factory=dict)  # by magnitude / by distance (see summary_bins)
    reliability: dict = field(default_factory=dict)
    travel_model: str = ""


# --------------------------------------------------------------------------- helpers


def _median(xs: Sequence[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def _stats(xs: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(xs),
        "median": _median(xs),
        "min": min(xs) if xs else None,
        "max": max(xs) if xs else None,
    }


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def dedupe_scores(scores: Iterable[ScoreRecord]) -> dict[str, list[ScoreRecord]]:
    """Scores per stream, sorted by window end, duplicates (same window end) dropped (first kept)."""
    by: dict[str, dict[int, ScoreRecord]] = defaultdict(dict)
    for r in scores:
        by[r.stream].setdefault(r.window_end_ns, r)
    return {k: [v[t] for t in sorted(v)] for k, v in sorted(by.items())}


@dataclass(frozen=True, slots=True)
class Trigger:
    """One station trigger: onset (window end of its first triggered score), P pick, last window end
    at or above the detrigger level, highest score, P time (the pick, else the rule's coarse P)."""

    stream: str
    onset_ns: int
    pick_ns: int | None
    last_ns: int
    probability: float = 0.0
    p_time_ns: int | None = None  # None: the pick, else the onset
    picks_refused: int = 0  # picks the pick rule refused for it (stale or too early)

    @property
    def p_ns(self) -> int:
        """The trigger's P time: its pick, else the rule's coarse P (else its onset)."""
        if self.p_time_ns is not None:
            return self.p_time_ns
        return self.pick_ns if self.pick_ns is not None else self.onset_ns


def station_triggers(scores: Sequence[ScoreRecord], rule: TriggerRule | None = None) -> list[Trigger]:
    """The triggers of one stream's time-sorted scores by the shared rule (see the module docstring);
    retracted ones (shorter than the minimum duration) are left out."""
    stream = scores[0].stream if scores else ""
    return [Trigger(stream, t.trigger_ns, t.pick_ns, t.last_on_ns, t.probability, t.p_time_ns, t.picks_refused)
            for t in rule_triggers(scores, rule)]


def reassociate(
    scores: Iterable[ScoreRecord],
    inventory: StationInventory,
    config: AssociationConfig,
    locator: LocatorConfig | None = None,
) -> list[AlertRecord]:
    """The association core run on all scores in event-time order: the reference alert sequence."""
    assoc = Associator(config, inventory, locator=locator)
    ordered = sorted(scores, key=lambda r: (r.window_end_ns, r.stream, r.window_start_ns))
    return assoc.add_many(ordered) + assoc.flush()


def _alert_signature(stations: Iterable[tuple[str, str, str, int]]) -> tuple[tuple[str, str, str, int], ...]:
    return tuple(sorted(stations))


def compare_with_reference(
    alerts: Sequence[AlertVersion], reference: Sequence[AlertRecord]
) -> tuple[dict[tuple[str, int], int], list[str]]:
    """Decision times of the alerts the reference reproduces exactly, and the differences found."""
    ref = {r.key: r for r in reference}
    times: dict[tuple[str, int], int] = {}
    diffs: list[str] = []
    for a in alerts:
        r = ref.get(a.key)
        if r is None:
            diffs.append(f"{a.event_id} v{a.version}: not produced by the re-association")
            continue
        sa = _alert_signature((s.network, s.station, s.location, s.p_time_ns) for s in a.stations)
        sr = _alert_signature((s.network, s.station, s.location, s.p_time_ns) for s in r.stations)
        if a.kind != r.kind.value or sa != sr:
            diffs.append(f"{a.event_id} v{a.version}: differs from the re-association ({a.kind} vs {r.kind.value})")
            continue
        times[a.key] = r.event_time_ns
    have = {a.key for a in alerts}
    for key in sorted(set(ref) - have):
        diffs.append(f"{key[0]} v{key[1]}: produced by the re-association but not found on the alerts topic")
    return times, diffs


# --------------------------------------------------------------------------- scoring


class TravelTimes(Protocol):
    """First-P travel times of a 1-D Earth model (``services.validate.traveltime``)."""

    label: str

    def p_seconds(self, epicentral_km: float, depth_km: float) -> float: ...


class _Geo:
    """Station coordinates by NET.STA and per-event reference P times."""

    def __init__(self, inventory: StationInventory, travel: TravelTimes) -> None:
        self.inventory = inventory
        self.travel = travel

    def coords(self, station_id: str) -> tuple[float, float] | None:
        net, _, sta = station_id.partition(".")
        st = self.inventory.get(net, sta)
        return None if st is None else (st.latitude, st.longitude)

    def epi_km(self, station_id: str, ev: CatalogEvent) -> float | None:
        c = self.coords(station_id)
        return None if c is None else haversine_km(ev.latitude, ev.longitude, c[0], c[1])

    def reference_p(self, station_id: str, ev: CatalogEvent) -> tuple[int | None, str]:
        """(reference P ns, its source): the catalogue's pick, else the travel-time model."""
        for sid, t in ev.p_picks:
            if sid == station_id:
                return t, "catalogue pick"
        d = self.epi_km(station_id, ev)
        if d is None:
            return None, ""
        return ev.origin_ns + int(round(self.travel.p_seconds(d, ev.depth_km) * NS)), self.travel.label


def _event_windows(
    ev: CatalogEvent, streams: Sequence[str], geo: _Geo, cfg: ScoringConfig
) -> dict[str, tuple[int, int, int | None, str]]:
    """Per stream: (window start, window end, reference P or None, its source)."""
    before, after = int(cfg.window_before_s * NS), int(cfg.window_after_s * NS)
    out = {}
    for s in streams:
        tp, src = geo.reference_p(station_of(s), ev)
        if tp is not None:
            out[s] = (tp - before, tp + after, tp, src)
        else:
            out[s] = (ev.origin_ns - before, ev.origin_ns + int(cfg.no_coords_travel_s * NS) + after, None, "")
    return out


def _decision_time(
    v: AlertVersion, onsets: Mapping[str, list[int]], known: Mapping[tuple[str, int], int]
) -> tuple[int, str]:
    if v.decision_time_ns > 0:
        return v.decision_time_ns, "alert message"
    if v.key in known:
        return known[v.key], "association replay"
    times = []
    for s in v.stations:
        prefix = f"{s.network}.{s.station}.{s.location}."
        cands = [t for k, ts in onsets.items() if k.startswith(prefix) for t in ts if t >= s.p_time_ns]
        if not cands:
            break
        times.append(min(cands))
    else:
        if times:
            return max(times), "reconstructed"
    return max((s.p_time_ns for s in v.stations), default=v.first_p_time_ns), "first P"


def _match_metrics(
    a: AlertVersion, ev: CatalogEvent, ev_first_p: int | None
) -> tuple[float, float | None, str]:
    """(time error s, distance km or None, distance basis) of alert version ``a`` vs event ``ev``."""
    if a.has_location and math.isfinite(a.latitude) and math.isfinite(a.longitude):
        dt = (a.origin_time_ns - ev.origin_ns) / NS
        return dt, haversine_km(a.latitude, a.longitude, ev.latitude, ev.longitude), "location"
    ref = ev_first_p if ev_first_p is not None else ev.origin_ns
    dt = (a.first_p_time_ns - ref) / NS
    with_coords = sorted(
        (s for s in a.stations if s.latitude is not None and s.longitude is not None),
        key=lambda s: (s.p_time_ns, s.station_id),
    )
    if with_coords:
        s = with_coords[0]
        return dt, haversine_km(float(s.latitude), float(s.longitude), ev.latitude, ev.longitude), "first station"
    return dt, None, "none"


def _association_problems(
    trigs: Mapping[str, Trigger], geo: _Geo, assoc: AssociationConfig | None, min_stations: int
) -> str:
    """Which association rule keeps these triggers (one per station) apart, and how many."""
    if assoc is None:
        return "the association was not run"
    long_ = sorted(trigs.items())  # triggers shorter than the minimum duration were retracted by the rule
    parts: list[str] = []
    coords = {s: geo.coords(station_of(s)) for s, _ in long_}
    bad_time = bad_spread = pairs = 0
    link: dict[str, set[str]] = {s: set() for s, _ in long_}
    for i, (a, ta) in enumerate(long_):
        for b, tb in long_[i + 1:]:
            pairs += 1
            dt = abs(ta.p_ns - tb.p_ns) / NS
            ca, cb = coords[a], coords[b]
            if assoc.max_spread_s is not None and dt > assoc.max_spread_s:
                bad_spread += 1
            elif ca is not None and cb is not None and dt > haversine_km(*ca, *cb) / assoc.vp_min_km_s + assoc.tolerance_s:
                bad_time += 1
            if ca is None or cb is None or not assoc.max_link_km or haversine_km(*ca, *cb) <= assoc.max_link_km:
                link[a].add(b)
                link[b].add(a)
    if bad_spread:
        parts.append(f"{bad_spread} of {pairs} pair(s) with P times more than --max-spread-s "
                     f"{assoc.max_spread_s:g} apart")
    if bad_time:
        parts.append(f"{bad_time} of {pairs} pair(s) with P times farther apart than their distance allows "
                     f"(--vp-min-km-s {assoc.vp_min_km_s:g}, --tolerance-s {assoc.tolerance_s:g})")
    if assoc.max_link_km and long_:
        seen: set[str] = set()
        biggest = 0
        for s0 in link:
            if s0 in seen:
                continue
            comp, todo = set(), [s0]
            while todo:
                x = todo.pop()
                if x in comp:
                    continue
                comp.add(x)
                todo += list(link[x] - comp)
            seen |= comp
            biggest = max(biggest, len(comp))
        if biggest < min_stations:
            parts.append(f"the largest group of triggered stations within --max-link-km {assoc.max_link_km:g} "
                         f"of each other has {biggest} (need {min_stations})")
    if not parts:
        parts.append("no rule failed in this check: the triggers' P times were consistent (the alerting may have "
                     "taken some into another event, or rejected them against a location)")
    return "; ".join(parts)


def _bin_label(x: float | None, edges: Sequence[float], unit: str) -> str:
    if x is None:
        return "unknown"
    lo = None
    for e in edges:
        if x < e:
            return f"< {e:g}{unit}" if lo is None else f"{lo:g}-{e:g}{unit}"
        lo = e
    return f">= {edges[-1]:g}{unit}"


MAGNITUDE_EDGES = (3.0, 4.0, 5.0, 6.0)
DISTANCE_EDGES_KM = (20.0, 50.0, 100.0, 200.0)
PROBABILITY_EDGES = (0.5, 0.7, 0.8, 0.9, 0.95)


def summary_bins(events: Sequence[EventResult]) -> dict[str, list[dict]]:
    """Per magnitude bin and per distance bin: counts, detection rate, medians of the figures."""
    def rows(key: str, label_of: Callable[[EventResult], str], order: list[str]) -> list[dict]:
        groups: dict[str, list[EventResult]] = defaultdict(list)
        for e in events:
            groups[label_of(e)].append(e)
        out = []
        for lab in [o for o in order if o in groups] + sorted(set(groups) - set(order)):
            es = groups[lab]
            cov = [e for e in es if e.status != "not covered"]
            det = [e for e in es if e.status == "detected"]
            out.append({
                key: lab,
                "events": len(es),
                "covered": len(cov),
                "detected": len(det),
                "detection_rate": _ratio(len(det), len(cov)),
                "alert_after_origin_s": _median([e.latency_after_origin_s for e in det
                                                 if e.latency_after_origin_s is not None]),
                "alert_after_nth_p_s": _median([e.latency_after_nth_p_s for e in det
                                                if e.latency_after_nth_p_s is not None]),
                "location_error_km": _median([e.location_error_km for e in det if e.location_error_km is not None]),
                "magnitude_error": _median([e.magnitude_error for e in det if e.magnitude_error is not None]),
            })
        return out

    mag_order = [_bin_label(x, MAGNITUDE_EDGES, "") for x in (0.0, 3.5, 4.5, 5.5, 7.0)] + ["unknown"]
    dist_order = [_bin_label(x, DISTANCE_EDGES_KM, " km") for x in (0.0, 30.0, 60.0, 150.0, 300.0)] + ["unknown"]
    return {
        "magnitude": rows("magnitude", lambda e: _bin_label(e.event.magnitude, MAGNITUDE_EDGES, ""), mag_order),
        "distance": rows("distance", lambda e: _bin_label(e.nearest_station_km, DISTANCE_EDGES_KM, " km"), dist_order),
    }


def reliability(alerts: Sequence[AlertResult]) -> dict:
    """Event probability of each alert event's first version against "matched a catalogue earthquake"."""
    pts = [(float(a.first.probability), 1.0 if a.classification in ("true", "duplicate") else 0.0) for a in alerts]
    bins = []
    edges = (0.0, *PROBABILITY_EDGES, 1.0 + 1e-9)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = [(p, o) for p, o in pts if lo <= p < hi]
        bins.append({
            "probability": f"{lo:.2f}-{min(hi, 1.0):.2f}",
            "alerts": len(sel),
            "mean_probability": statistics.fmean(p for p, _ in sel) if sel else None,
            "matched_share": statistics.fmean(o for _, o in sel) if sel else None,
        })
    brier = statistics.fmean((p - o) ** 2 for p, o in pts) if pts else None
    return {"alerts": len(pts), "brier": brier, "bins": bins}


def score(
    catalog: Sequence[CatalogEvent],
    coverage: Sequence[StreamCoverage],
    inventory: StationInventory,
    scores: Iterable[ScoreRecord],
    alerts: Iterable[AlertVersion],
    config: ScoringConfig | None = None,
    decision_times: Mapping[tuple[str, int], int] | None = None,
    warnings: Iterable[str] = (),
    travel: TravelTimes | None = None,
    facts: RunFacts | None = None,
    association: AssociationConfig | None = None,
) -> ValidationResult:
    """Match alerts to catalogue events and compute every figure of the report."""
    cfg = config or ScoringConfig()
    if travel is None:
        from services.validate.traveltime import TauPTravelTimes

        travel = TauPTravelTimes()
    facts = facts or RunFacts()
    geo = _Geo(inventory, travel)
    known = dict(decision_times or {})
    warn = list(warnings)
    cov = {c.stream: c for c in sorted(coverage, key=lambda c: c.stream)}
    by_stream = dedupe_scores(scores)
    streams = sorted(set(cov) | set(by_stream))
    trig = {s: station_triggers(by_stream.get(s, []), cfg.trigger) for s in streams}
    onsets = {s: [t.onset_ns for t in ts] for s, ts in trig.items()}
    score_ends = {s: [r.window_end_ns for r in v] for s, v in by_stream.items()}

    def scored_near(s: str, a: int, b: int) -> bool:
        ends = score_ends.get(s, [])
        i = bisect.bisect_left(ends, a)
        return i < len(ends) and ends[i] <= b

    missing = sorted({station_of(s) for s in streams} - {st.id for st in inventory})
    if missing:
        warn.append(
            f"{len(missing)} station(s) in the archive are not in the inventory (no coordinates: no model P, "
            f"time-only association, not on the map): {', '.join(missing)}"
        )

    # ---- alert events
    versions: dict[str, dict[int, AlertVersion]] = defaultdict(dict)
    for v in alerts:
        versions[v.event_id].setdefault(v.version, v)
    groups = {eid: tuple(vs[k] for k in sorted(vs)) for eid, vs in sorted(versions.items())}

    # ---- catalogue events: coverage, reference P, windows
    events = sorted(catalog, key=lambda e: (e.origin_ns, e.event_id))
    info: dict[str, dict] = {}
    for ev in events:
        win = _event_windows(ev, streams, geo, cfg)
        recording: list[str] = []
        for s in streams:
            c = cov.get(s)
            if c is None:
                continue
            _a, _b, tp, _src = win[s]
            ok = c.covers(tp) if tp is not None else c.overlaps(ev.origin_ns, ev.origin_ns + int(cfg.no_coords_travel_s * NS))
            if ok:
                recording.append(s)
        info[ev.event_id] = dict(win=win, recording=recording, triggers={})
    covered = [ev for ev in events if info[ev.event_id]["recording"]]

    # ---- each trigger to at most one event: the covered event whose reference P is nearest its P
    windows_by_stream: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for ev in covered:
        for s, (a, b, _tp, _src) in info[ev.event_id]["win"].items():
            windows_by_stream[s].append((a, b))
    false_triggers: list[Trigger] = []
    for s in streams:
        for t in trig[s]:
            cands = []
            for ev in covered:
                a, b, tp, _src = info[ev.event_id]["win"][s]
                if a <= t.onset_ns <= b:
                    cands.append((abs(t.p_ns - (tp if tp is not None else ev.origin_ns)), ev.origin_ns, ev.event_id))
            if not cands:
                false_triggers.append(t)
                continue
            eid = min(cands)[2]
            mine = info[eid]["triggers"]
            if s in info[eid]["recording"] and s not in mine:
                mine[s] = t
    for ev in covered:
        inf = info[ev.event_id]
        first_p, first_stream, source = None, "", ""
        preds = sorted((inf["win"][s][2], s, inf["win"][s][3]) for s in inf["recording"] if inf["win"][s][2] is not None)
        if preds:
            first_p, first_stream, source = preds[0]
        elif inf["triggers"]:
            cand = sorted((t.p_ns, s) for s, t in inf["triggers"].items())
            first_p, first_stream, source = cand[0][0], cand[0][1], "first pick"
        inf.update(first_p=first_p, first_stream=first_stream, source=source,
                   ref_ps=sorted(p[0] for p in preds))
    for ev in events:
        info[ev.event_id].setdefault("first_p", None)
        info[ev.event_id].setdefault("first_stream", "")
        info[ev.event_id].setdefault("source", "")
        info[ev.event_id].setdefault("ref_ps", [])

    # ---- matching
    decision: dict[str, tuple[int, str]] = {}
    match: dict[str, tuple[str, float, float | None, str]] = {}
    for eid, vs in groups.items():
        decision[eid] = _decision_time(vs[0], onsets, known)
        best = next((v for v in reversed(vs) if v.kind != CANCEL), vs[0])
        cands = []
        for ev in covered:
            dt, dist, basis = _match_metrics(best, ev, info[ev.event_id]["first_p"])
            if abs(dt) <= cfg.time_tolerance_s and (dist is None or dist <= cfg.distance_tolerance_km):
                cands.append((abs(dt), dist if dist is not None else 0.0, ev.event_id, dt, dist, basis))
        if cands:
            c = min(cands)
            match[eid] = (c[2], c[3], c[4], c[5])

    per_event: dict[str, list[str]] = defaultdict(list)
    for eid, (cat_id, *_rest) in match.items():
        per_event[cat_id].append(eid)
    primary: dict[str, str] = {}
    for cat_id, eids in per_event.items():
        primary[cat_id] = min(eids, key=lambda e: (decision[e][0], e))

    alert_results = []
    for eid, vs in groups.items():
        m = match.get(eid)
        if m is None:
            cls = "false"
        else:
            cls = "true" if primary[m[0]] == eid else "duplicate"
        alert_results.append(
            AlertResult(
                event_id=eid,
                versions=vs,
                first_decision_ns=decision[eid][0],
                decision_source=decision[eid][1],
                classification=cls,
                matched_event_id=m[0] if m else "",
                time_error_s=m[1] if m else None,
                distance_km=m[2] if m else None,
                distance_basis=m[3] if m else "",
            )
        )
    alert_by_id = {a.event_id: a for a in alert_results}
    cat_by_id = {ev.event_id: ev for ev in events}

    # ---- every alert version with its decision time
    version_results = []
    for ar in alert_results:
        ev = cat_by_id.get(ar.matched_event_id)
        ref_ps = info[ev.event_id]["ref_ps"] if ev else []
        for v in ar.versions:
            t, src = _decision_time(v, onsets, known)
            n = len(v.stations)
            loc_err = mag_err = None
            if ev is not None and v.has_location and math.isfinite(v.latitude) and math.isfinite(v.longitude):
                loc_err = haversine_km(v.latitude, v.longitude, ev.latitude, ev.longitude)
            if ev is not None and v.has_magnitude and math.isfinite(v.magnitude) and ev.magnitude is not None:
                mag_err = v.magnitude - ev.magnitude
            version_results.append(VersionResult(
                event_id=v.event_id, version=v.version, kind=v.kind, decision_ns=t, decision_source=src,
                stations=tuple(sorted(s.station_id for s in v.stations)),
                matched_event_id=ar.matched_event_id,
                after_origin_s=(t - ev.origin_ns) / NS if ev else None,
                after_nth_p_s=(t - ref_ps[n - 1]) / NS if ev and 0 < n <= len(ref_ps) else None,
                location_error_km=loc_err, magnitude_error=mag_err,
            ))

    # ---- per event results
    event_results = []
    for ev in events:
        inf = info[ev.event_id]
        rec_streams: list[str] = inf["recording"]
        first_p = inf["first_p"]
        pid = primary.get(ev.event_id)
        prim = alert_by_id.get(pid) if pid else None
        alert_sta = {s.station_id for s in prim.best.stations} if prim else set()
        arrivals = []
        tol = int(cfg.p_tolerance_s * NS)
        for s in streams:
            a, b, tp, src = inf["win"][s]
            t = inf["triggers"].get(s)
            sid = station_of(s)
            if s not in rec_streams and t is None and sid not in alert_sta:
                continue
            arrivals.append(
                StationArrival(
                    stream=s,
                    distance_km=geo.epi_km(sid, ev),
                    predicted_p_ns=tp,
                    recording=s in rec_streams,
                    trigger_ns=t.onset_ns if t else None,
                    pick_ns=t.pick_ns if t else None,
                    in_alert=sid in alert_sta,
                    p_source=src,
                    scored=scored_near(s, a, b),
                    probability=t.probability if t else None,
                    p_detected=t is not None and tp is not None and abs(t.p_ns - tp) <= tol,
                )
            )
        arrivals.sort(key=lambda x: (x.distance_km is None, x.distance_km or 0.0, x.stream))
        ref_ps = inf["ref_ps"]
        nth = ref_ps[cfg.nth_p - 1] if len(ref_ps) >= cfg.nth_p else None
        dists = [x.distance_km for x in arrivals if x.recording and x.distance_km is not None]
        rec_sta = {station_of(s) for s in rec_streams}
        scored_sta = {station_of(x.stream) for x in arrivals if x.recording and x.scored}
        base = dict(
            event=ev,
            recording_streams=len(rec_streams),
            triggered_streams=len(inf["triggers"]),
            first_p_ns=first_p,
            first_p_stream=inf["first_stream"],
            first_p_source=inf["source"],
            arrivals=tuple(arrivals),
            scored_stations=len(scored_sta),
            nth_p_ns=nth,
            nearest_station_km=min(dists) if dists else None,
        )
        if not rec_streams:
            event_results.append(EventResult(status="not covered", note="no station has data at the reference P "
                                             "time (outside the archive or in a gap)", **base))
            continue
        outside = (first_p is not None and inf["source"] != "first pick"
                   and (first_p - ev.origin_ns) / NS > cfg.outside_network_s)
        if prim is None:
            reasons: list[str] = []
            trig_sta = {station_of(s) for s in inf["triggers"]}
            if not scored_sta:
                rej = sorted({f"{s}: {facts.rejected_streams[s]}" for s in rec_streams if s in facts.rejected_streams})
                pk = ", ".join(f"{k} {v}" for k, v in sorted(facts.rejected_packets.items()) if v)
                note = (f"no scorable data: {len(rec_sta)} station(s) recorded it but none was scored around its P"
                        + (f" (not scorable: {'; '.join(rej[:5])})" if rej else "")
                        + (f"; the detector rejected packets: {pk}" if pk else ""))
                reasons.append("no scorable data")
            elif len(scored_sta) < cfg.min_stations:
                note = (f"too few stations recorded it: {len(scored_sta)} scored around the P "
                        f"({len(rec_sta)} with data); the alerting needs {cfg.min_stations}")
                reasons.append("too few stations recorded it")
            elif len(trig_sta) < cfg.min_stations:
                note = (f"too few triggered: {len(trig_sta)} of {len(scored_sta)} scored stations triggered; "
                        f"the alerting needs {cfg.min_stations}")
                reasons.append("too few triggered")
            else:
                near = []
                reach = max(5 * cfg.time_tolerance_s, 120.0)  # an alert of another earthquake is no candidate
                for ar in alert_results:
                    dt, dist, basis = _match_metrics(ar.best, ev, first_p)
                    shared = len(trig_sta & {s.station_id for s in ar.best.stations})
                    if abs(dt) <= reach:
                        near.append((-shared, abs(dt), dt, dist, basis, ar.event_id))
                hit = min(near) if near else None
                if hit is not None and hit[0] < 0:
                    d = f"{hit[3]:.0f} km ({hit[4]})" if hit[3] is not None else "distance unknown"
                    b = alert_by_id[hit[5]].best
                    why = ""
                    if b.has_location and b.location_uncertain:
                        why = (f"; its location was published flagged uncertain ({b.location_uncertainty_km:.0f} km, "
                               "beyond the alerting's limit)")
                    note = (f"alert not matched: alert {hit[5]} holds {-hit[0]} of its triggered stations but is "
                            f"{hit[2]:+.1f} s / {d} off (tolerances {cfg.time_tolerance_s:g} s, "
                            f"{cfg.distance_tolerance_km:g} km){why}")
                    reasons.append("alert not matched")
                else:
                    note = (f"not associated: {len(trig_sta)} stations triggered, no alert: "
                            + _association_problems(inf["triggers"], geo, association, cfg.min_stations))
                    reasons.append("not associated")
            if outside:
                note = (f"outside the network: first P {(first_p - ev.origin_ns) / NS:.1f} s after origin "
                        f"(> {cfg.outside_network_s:g} s); " + note)
                reasons.append("outside the network")
            event_results.append(EventResult(status="missed", note=note, reasons=tuple(reasons), **base))
            continue
        first_alert = prim.first_decision_ns
        best = prim.best
        loc_err = None
        t_err = None
        if best.has_location and math.isfinite(best.latitude) and math.isfinite(best.longitude):
            loc_err = haversine_km(best.latitude, best.longitude, ev.latitude, ev.longitude)
            t_err = (best.origin_time_ns - ev.origin_ns) / NS
        mag_est = best.magnitude if best.has_magnitude and math.isfinite(best.magnitude) else None
        mag_err = mag_est - ev.magnitude if mag_est is not None and ev.magnitude is not None else None
        dups = tuple(sorted(e for e in per_event[ev.event_id] if e != pid))
        note = f"primary alert {pid}" + (f"; {len(dups)} duplicate alert event(s)" if dups else "")
        if prim.cancelled:
            note += "; the alert was later cancelled"
        if outside:
            note += f"; outside the network (first P {(first_p - ev.origin_ns) / NS:.1f} s after origin)"
        event_results.append(
            EventResult(
                status="detected",
                note=note,
                reasons=("outside the network",) if outside else (),
                alert_event_id=prim.event_id,
                duplicate_alerts=dups,
                first_alert_ns=first_alert,
                latency_after_origin_s=(first_alert - ev.origin_ns) / NS,
                latency_after_first_p_s=(first_alert - first_p) / NS if first_p is not None else None,
                latency_after_nth_p_s=(first_alert - nth) / NS if nth is not None else None,
                updates=len(prim.versions) - 1,
                cancelled=prim.cancelled,
                alert_time_error_s=t_err,
                alert_first_p_error_s=(best.first_p_time_ns - first_p) / NS if first_p is not None else None,
                location_error_km=loc_err,
                magnitude_estimate=mag_est,
                magnitude_error=mag_err,
                alert_stations=len(best.stations),
                alert_probability=float(best.probability),
                **base,
            )
        )

    # ---- station statistics
    contributed: dict[str, int] = defaultdict(int)
    for ar in alert_results:
        for sid in {s.station_id for v in ar.versions for s in v.stations}:
            contributed[sid] += 1
    false_by_stream: dict[str, int] = defaultdict(int)
    for t in false_triggers:
        false_by_stream[t.stream] += 1
    station_results = []
    for s in streams:
        sid = station_of(s)
        wins = merge_intervals(windows_by_stream.get(s, []))

        def in_win(t: int, wins: tuple[tuple[int, int], ...] = wins) -> bool:
            i = bisect.bisect_right(wins, (t, 1 << 62)) - 1
            return i >= 0 and wins[i][0] <= t <= wins[i][1]

        sc = by_stream.get(s, [])
        scored = sum(r.window_end_ns - r.window_start_ns for r in sc) / NS / 3600
        noise = sum(r.window_end_ns - r.window_start_ns for r in sc if not in_win(r.window_end_ns)) / NS / 3600
        c = geo.coords(sid)
        station_results.append(
            StationResult(
                stream=s,
                in_inventory=c is not None,
                latitude=c[0] if c else None,
                longitude=c[1] if c else None,
                data_hours=cov[s].seconds / 3600 if s in cov else 0.0,
                scored_hours=scored,
                noise_hours=noise,
                triggers=len(trig[s]),
                event_triggers=len(trig[s]) - false_by_stream[s],
                false_triggers=false_by_stream[s],
                alerts=contributed.get(sid, 0),
            )
        )
    for s in streams:
        if s not in cov:
            warn.append(f"{s}: scores were collected for a stream the archive index does not list")

    # ---- summary
    det = [e for e in event_results if e.status == "detected"]
    n_cov = len(covered)
    n_true = sum(1 for a in alert_results if a.classification == "true")
    n_dup = sum(1 for a in alert_results if a.classification == "duplicate")
    n_false = sum(1 for a in alert_results if a.classification == "false")
    precision = _ratio(n_true + n_dup, len(alert_results))
    recall = _ratio(len(det), n_cov)
    f1 = (2 * precision * recall / (precision + recall)) if precision and recall else None
    all_iv = merge_intervals(iv for c in cov.values() for iv in c.intervals)
    noise_h = sum(s.noise_hours for s in station_results)
    false_t = len(false_triggers)
    picks = [abs(a.pick_error_s) for e in event_results if e.status != "not covered" for a in e.arrivals
             if a.pick_error_s is not None and a.p_detected]
    arrivals_rec = [a for e in event_results if e.status != "not covered" for a in e.arrivals
                    if a.recording and a.predicted_p_ns is not None]
    miss_reasons: dict[str, int] = defaultdict(int)
    for e in event_results:
        if e.status == "missed":
            for r in e.reasons or ("unexplained",):
                miss_reasons[r] += 1
    p_sources: dict[str, int] = defaultdict(int)
    for a in arrivals_rec:
        p_sources[a.p_source] += 1
    summary = {
        "catalog_events": len(events),
        "covered_events": n_cov,
        "not_covered_events": len(events) - n_cov,
        "detected_events": len(det),
        "missed_events": n_cov - len(det),
        "missed_by_reason": dict(sorted(miss_reasons.items())),
        "alert_events": len(alert_results),
        "alert_versions": sum(len(a.versions) for a in alert_results),
        "true_alerts": n_true,
        "duplicate_alerts": n_dup,
        "false_alerts": n_false,
        "false_alerts_cancelled": sum(1 for a in alert_results if a.classification == "false" and a.cancelled),
        "cancelled_alerts": sum(1 for a in alert_results if a.cancelled),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "latency_after_origin_s": _stats([e.latency_after_origin_s for e in det if e.latency_after_origin_s is not None]),
        "latency_after_first_p_s": _stats(
            [e.latency_after_first_p_s for e in det if e.latency_after_first_p_s is not None]
        ),
        "latency_after_nth_p_s": _stats([e.latency_after_nth_p_s for e in det if e.latency_after_nth_p_s is not None]),
        "nth_p": cfg.nth_p,
        "location_error_km": _stats([e.location_error_km for e in det if e.location_error_km is not None]),
        "magnitude_error": _stats([e.magnitude_error for e in det if e.magnitude_error is not None]),
        "pick_abs_error_s": _stats(picks),
        "station_p_detections": sum(1 for a in arrivals_rec if a.p_detected),
        "station_p_arrivals": len(arrivals_rec),
        "reference_p_sources": dict(sorted(p_sources.items())),
        "travel_time_model": travel.label,
        "streams": len(streams),
        "stations": len({station_of(s) for s in streams}),
        "stations_not_in_inventory": missing,
        "archive_start_ns": all_iv[0][0] if all_iv else None,
        "archive_end_ns": all_iv[-1][1] if all_iv else None,
        "archive_data_hours": sum(b - a for a, b in all_iv) / NS / 3600,
        "station_data_hours": sum(s.data_hours for s in station_results),
        "station_scored_hours": sum(s.scored_hours for s in station_results),
        "station_noise_hours": noise_h,
        "station_triggers": sum(s.triggers for s in station_results),
        "false_triggers": false_t,
        "false_triggers_per_station_hour": false_t / noise_h if noise_h > 0 else None,
        "picks_refused": sum(t.picks_refused for ts in trig.values() for t in ts),
        "scores": sum(len(v) for v in by_stream.values()),
    }
    return ValidationResult(
        config=cfg,
        events=tuple(event_results),
        alerts=tuple(alert_results),
        stations=tuple(station_results),
        summary=summary,
        warnings=tuple(warn),
        false_triggers=tuple(sorted(false_triggers, key=lambda t: (t.onset_ns, t.stream))),
        versions=tuple(version_results),
        bins=summary_bins(event_results),
        reliability=reliability(alert_results),
        travel_model=travel.label,
    )
