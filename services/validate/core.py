"""Scoring core of ``eew validate``: alerts and station scores against a catalogue.

Pure and deterministic: plain data in, plain data out, no I/O and no wall clock. The same inputs
give the same result, whatever order the scores and alerts were collected in.

Definitions
-----------
Archive coverage
    Per sensor stream (Kafka key ``NET.STA.LOC.BI?``) the merged intervals of data in the archive.

Predicted P
    For a stream whose station is in the inventory: origin time + hypocentral distance / ``vp_km_s``
    (straight ray, constant velocity, station elevation ignored). The event's *first P* is the
    earliest predicted P among the streams recording at their P time; when no recording stream
    has coordinates, it is the first P pick of any station in the event window ("first pick").

Covered
    A catalogue event is covered when at least one stream has data at its predicted P time (a
    stream without coordinates: data between origin and origin + ``no_coords_travel_s``). Events
    that are not covered are reported as "not covered", never as missed.

Alert events and their time
    Alert versions are grouped by ``event_id``. An alert's *decision time* is the event (data)
    time of the score that made the alerting issue it: taken from a deterministic re-run of the
    association on the collected scores when that re-run produced the same version, else
    reconstructed as the latest trigger onset among the version's stations (onsets computed with
    the alerting's ``detrigger_s`` rule). Telemetry and processing delays are not included: the
    runner reports the measured processing delay separately (wall clock).

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
    Per stream, a trigger is a run of triggered scores (the detector's flag, or probability >=
    ``trigger_threshold``) that ends after ``detrigger_s`` without one. A trigger whose onset lies
    in an event window of any covered event (predicted P - ``window_before_s`` to predicted P +
    ``window_after_s``; stations without coordinates: origin - before to origin +
    ``no_coords_travel_s`` + after) is an event trigger, any other a false trigger. Noise hours are
    the scored hours whose window end lies outside every event window; the false-trigger rate is
    false triggers per noise station-hour.

Precision = true alert events / alert events; recall = detected / covered events.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.alerting.core import AlertRecord, AssociationConfig, Associator, ScoreRecord
from services.alerting.locate import LocatorConfig
from services.alerting.stations import StationInventory, haversine_km
from services.common.exceptions import ConfigError

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


@dataclass(frozen=True, slots=True)
class StreamCoverage:
    """Where one sensor stream ``NET.STA.LOC.BI?`` has data: sorted, merged [start, end) intervals."""

    stream: str
    intervals: tuple[tuple[int, int], ...]

    @property
    def station_id(self) -> str:
        return ".".join(self.stream.split(".")[:2])

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
        return f"{self.network}.{self.station}"


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

    @property
    def key(self) -> tuple[str, int]:
        return (self.event_id, self.version)


@dataclass(frozen=True)
class ScoringConfig:
    """Tolerances and windows of the scoring (seconds, km, km/s)."""

    time_tolerance_s: float = 30.0
    distance_tolerance_km: float = 100.0
    vp_km_s: float = 6.0
    window_before_s: float = 10.0
    window_after_s: float = 60.0
    no_coords_travel_s: float = 30.0
    detrigger_s: float = 2.0
    trigger_threshold: float | None = None
    min_stations: int = 3

    def __post_init__(self) -> None:
        for name in ("time_tolerance_s", "distance_tolerance_km", "window_before_s", "window_after_s",
                     "no_coords_travel_s", "detrigger_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, not {v}")
        if not (math.isfinite(self.vp_km_s) and self.vp_km_s > 0):
            raise ConfigError(f"vp_km_s must be > 0, not {self.vp_km_s}")
        if self.trigger_threshold is not None and not 0.0 < self.trigger_threshold <= 1.0:
            raise ConfigError("trigger_threshold must be in (0, 1]")


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class StationArrival:
    """One stream at one catalogue event: geometry, prediction, data and the detector's pick."""

    stream: str
    distance_km: float | None  # epicentral
    predicted_p_ns: int | None
    recording: bool
    trigger_ns: int | None  # window end of the first triggered score in the event window
    pick_ns: int | None  # the detector's P pick of that trigger (None: no pick)
    in_alert: bool  # the station is in the primary alert's last version

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
    first_p_source: str  # predicted | first pick | ""
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


def stream_of(rec: ScoreRecord) -> str:
    """The stream key ``NET.STA.LOC.BI?`` of a score (as the archive coverage names it)."""
    return f"{rec.network}.{rec.station}.{rec.location}.{rec.channel_prefix}?"


def _triggered(rec: ScoreRecord, threshold: float | None) -> bool:
    return rec.probability >= threshold if threshold is not None else rec.triggered


def dedupe_scores(scores: Iterable[ScoreRecord]) -> dict[str, list[ScoreRecord]]:
    """Scores per stream, sorted by window end, duplicates (same window end) dropped (first kept)."""
    by: dict[str, dict[int, ScoreRecord]] = defaultdict(dict)
    for r in scores:
        by[stream_of(r)].setdefault(r.window_end_ns, r)
    return {k: [v[t] for t in sorted(v)] for k, v in sorted(by.items())}


@dataclass(frozen=True, slots=True)
class Trigger:
    """One station trigger: onset (window end of its first triggered score), P pick, last window end."""

    stream: str
    onset_ns: int
    pick_ns: int | None
    last_ns: int


def station_triggers(
    scores: Sequence[ScoreRecord], detrigger_s: float, threshold: float | None = None
) -> list[Trigger]:
    """Trigger episodes of one stream's time-sorted scores (see the module docstring)."""
    out: list[Trigger] = []
    off = int(detrigger_s * NS)
    cur: list[int | None] | None = None  # onset, pick, last
    stream = stream_of(scores[0]) if scores else ""
    for r in scores:
        if not _triggered(r, threshold):
            continue
        if cur is not None and r.window_end_ns - int(cur[2] or 0) <= off:
            cur[2] = r.window_end_ns
            continue
        if cur is not None:
            out.append(Trigger(stream, int(cur[0] or 0), cur[1], int(cur[2] or 0)))
        cur = [r.window_end_ns, r.p_onset_ns, r.window_end_ns]
    if cur is not None:
        out.append(Trigger(stream, int(cur[0] or 0), cur[1], int(cur[2] or 0)))
    return out


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


class _Geo:
    """Station coordinates by NET.STA and per-event predictions."""

    def __init__(self, inventory: StationInventory, vp_km_s: float) -> None:
        self.inventory = inventory
        self.vp = vp_km_s

    def coords(self, station_id: str) -> tuple[float, float] | None:
        net, _, sta = station_id.partition(".")
        st = self.inventory.get(net, sta)
        return None if st is None else (st.latitude, st.longitude)

    def epi_km(self, station_id: str, ev: CatalogEvent) -> float | None:
        c = self.coords(station_id)
        return None if c is None else haversine_km(ev.latitude, ev.longitude, c[0], c[1])

    def predicted_p(self, station_id: str, ev: CatalogEvent) -> int | None:
        d = self.epi_km(station_id, ev)
        if d is None:
            return None
        hypo = math.hypot(d, max(ev.depth_km, 0.0))
        return ev.origin_ns + int(round(hypo / self.vp * NS))


def _event_windows(
    ev: CatalogEvent, streams: Sequence[str], geo: _Geo, cfg: ScoringConfig
) -> dict[str, tuple[int, int, int | None]]:
    """Per stream: (window start, window end, predicted P or None)."""
    before, after = int(cfg.window_before_s * NS), int(cfg.window_after_s * NS)
    out = {}
    for s in streams:
        tp = geo.predicted_p(".".join(s.split(".")[:2]), ev)
        if tp is not None:
            out[s] = (tp - before, tp + after, tp)
        else:
            out[s] = (ev.origin_ns - before, ev.origin_ns + int(cfg.no_coords_travel_s * NS) + after, None)
    return out


def _decision_time(
    v: AlertVersion, onsets: Mapping[str, list[int]], known: Mapping[tuple[str, int], int]
) -> tuple[int, str]:
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


def score(
    catalog: Sequence[CatalogEvent],
    coverage: Sequence[StreamCoverage],
    inventory: StationInventory,
    scores: Iterable[ScoreRecord],
    alerts: Iterable[AlertVersion],
    config: ScoringConfig | None = None,
    decision_times: Mapping[tuple[str, int], int] | None = None,
    warnings: Iterable[str] = (),
) -> ValidationResult:
    """Match alerts to catalogue events and compute every figure of the report."""
    cfg = config or ScoringConfig()
    geo = _Geo(inventory, cfg.vp_km_s)
    known = dict(decision_times or {})
    warn = list(warnings)
    cov = {c.stream: c for c in sorted(coverage, key=lambda c: c.stream)}
    by_stream = dedupe_scores(scores)
    streams = sorted(set(cov) | set(by_stream))
    trig = {s: station_triggers(by_stream.get(s, []), cfg.detrigger_s, cfg.trigger_threshold) for s in streams}
    onsets = {s: [t.onset_ns for t in ts] for s, ts in trig.items()}

    missing = sorted({".".join(s.split(".")[:2]) for s in streams} - {st.id for st in inventory})
    if missing:
        warn.append(
            f"{len(missing)} station(s) in the archive are not in the inventory (no coordinates: no predicted "
            f"P, time-only association, not on the map): {', '.join(missing)}"
        )

    # ---- alert events
    versions: dict[str, dict[int, AlertVersion]] = defaultdict(dict)
    for v in alerts:
        versions[v.event_id].setdefault(v.version, v)
    groups = {eid: tuple(vs[k] for k in sorted(vs)) for eid, vs in sorted(versions.items())}

    # ---- catalogue events: coverage, first P, windows
    events = sorted(catalog, key=lambda e: (e.origin_ns, e.event_id))
    info: dict[str, dict] = {}
    for ev in events:
        win = _event_windows(ev, streams, geo, cfg)
        recording: list[str] = []
        for s in streams:
            c = cov.get(s)
            if c is None:
                continue
            a, b, tp = win[s]
            ok = c.covers(tp) if tp is not None else c.overlaps(ev.origin_ns, ev.origin_ns + int(cfg.no_coords_travel_s * NS))
            if ok:
                recording.append(s)
        first_p, first_stream, source = None, "", ""
        preds = sorted((win[s][2], s) for s in recording if win[s][2] is not None)
        if preds:
            first_p, first_stream, source = preds[0][0], preds[0][1], "predicted"
        triggers_in = {}
        for s in recording:
            a, b, _ = win[s]
            t = next((t for t in trig[s] if a <= t.onset_ns <= b), None)
            if t is not None:
                triggers_in[s] = t
        if first_p is None and triggers_in:
            cand = sorted((t.pick_ns if t.pick_ns is not None else t.onset_ns, s) for s, t in triggers_in.items())
            first_p, first_stream, source = cand[0][0], cand[0][1], "first pick"
        info[ev.event_id] = dict(win=win, recording=recording, first_p=first_p, first_stream=first_stream,
                                 source=source, triggers=triggers_in)

    covered = [ev for ev in events if info[ev.event_id]["recording"]]

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
        for s in streams:
            a, b, tp = inf["win"][s]
            t = inf["triggers"].get(s)
            sid = ".".join(s.split(".")[:2])
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
                )
            )
        arrivals.sort(key=lambda x: (x.distance_km is None, x.distance_km or 0.0, x.stream))
        base = dict(
            event=ev,
            recording_streams=len(rec_streams),
            triggered_streams=len(inf["triggers"]),
            first_p_ns=first_p,
            first_p_stream=inf["first_stream"],
            first_p_source=inf["source"],
            arrivals=tuple(arrivals),
        )
        if not rec_streams:
            event_results.append(EventResult(status="not covered", note="no station has data at the predicted P "
                                             "time (outside the archive or in a gap)", **base))
            continue
        if prim is None:
            n_sta = len({".".join(s.split(".")[:2]) for s in rec_streams})
            n_trig = len({".".join(s.split(".")[:2]) for s in inf["triggers"]})
            if n_sta < cfg.min_stations:
                note = f"recorded at {n_sta} station(s); the alerting needs {cfg.min_stations}"
            else:
                note = f"{n_trig} of {n_sta} recording stations triggered; no alert within the tolerances"
            near = []
            for ar in alert_results:
                dt, dist, _ = _match_metrics(ar.best, ev, first_p)
                near.append((abs(dt), dt, dist, ar.event_id))
            if near:
                n = min(near)
                d = f", {n[2]:.0f} km" if n[2] is not None else ""
                note += f" (nearest alert {n[3]}: {n[1]:+.1f} s{d})"
            event_results.append(EventResult(status="missed", note=note, **base))
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
        event_results.append(
            EventResult(
                status="detected",
                note=note,
                alert_event_id=prim.event_id,
                duplicate_alerts=dups,
                first_alert_ns=first_alert,
                latency_after_origin_s=(first_alert - ev.origin_ns) / NS,
                latency_after_first_p_s=(first_alert - first_p) / NS if first_p is not None else None,
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
    windows_by_stream: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for ev in covered:
        for s, (a, b, _) in info[ev.event_id]["win"].items():
            windows_by_stream[s].append((a, b))
    contributed: dict[str, int] = defaultdict(int)
    for ar in alert_results:
        for sid in {s.station_id for v in ar.versions for s in v.stations}:
            contributed[sid] += 1
    station_results = []
    for s in streams:
        sid = ".".join(s.split(".")[:2])
        wins = merge_intervals(windows_by_stream.get(s, []))

        def in_win(t: int, wins: tuple[tuple[int, int], ...] = wins) -> bool:
            i = bisect.bisect_right(wins, (t, 1 << 62)) - 1
            return i >= 0 and wins[i][0] <= t <= wins[i][1]

        sc = by_stream.get(s, [])
        scored = sum(r.window_end_ns - r.window_start_ns for r in sc) / NS / 3600
        noise = sum(r.window_end_ns - r.window_start_ns for r in sc if not in_win(r.window_end_ns)) / NS / 3600
        ev_trig = sum(1 for t in trig[s] if in_win(t.onset_ns))
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
                event_triggers=ev_trig,
                false_triggers=len(trig[s]) - ev_trig,
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
    false_t = sum(s.false_triggers for s in station_results)
    picks = [abs(a.pick_error_s) for e in event_results if e.status != "not covered" for a in e.arrivals
             if a.pick_error_s is not None]
    summary = {
        "catalog_events": len(events),
        "covered_events": n_cov,
        "not_covered_events": len(events) - n_cov,
        "detected_events": len(det),
        "missed_events": n_cov - len(det),
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
        "location_error_km": _stats([e.location_error_km for e in det if e.location_error_km is not None]),
        "magnitude_error": _stats([e.magnitude_error for e in det if e.magnitude_error is not None]),
        "pick_abs_error_s": _stats(picks),
        "streams": len(streams),
        "stations": len({".".join(s.split(".")[:2]) for s in streams}),
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
        "scores": sum(len(v) for v in by_stream.values()),
    }
    return ValidationResult(
        config=cfg,
        events=tuple(event_results),
        alerts=tuple(alert_results),
        stations=tuple(station_results),
        summary=summary,
        warnings=tuple(warn),
    )
