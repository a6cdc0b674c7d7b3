"""Association core: station scores -> station triggers -> events -> alert records.

Pure and deterministic: no I/O, no wall clock. Everything is driven by EVENT TIME, the
``window_end_time_ns`` of the scores, so a replay at any speed gives the same alerts.

Event time and ordering
-----------------------
Scores arrive from several Kafka partitions, so stations interleave arbitrarily while each
station stays in order. The core therefore holds scores in a small reorder buffer and releases
them in event-time order ``(window_end, stream)`` up to the *low watermark*

    L = min(newest window_end of every stream that is waited for).

A stream is waited for unless it lags the newest score of any stream (``watermark_ns``) by more
than ``max_lateness_s`` of event time AND (when the caller passes wall arrival times, as the
service does) has been silent for ``station_idle_s`` of wall time; inventory stations that have
not reported yet are waited for during the first ``station_idle_s``. Whatever L says, no score
waits more than ``max_hold_s`` of wall time, which bounds the latency a slow or dead station adds.
So a burst (a fast replay, a restart backlog) is put in order even when partitions arrive
seconds of event time apart, and live operation waits at most ``max_hold_s`` for stragglers.
A score that arrives after L has passed its window_end is *late* (counted) and processed at once.
With ``express_triggers`` (live operation, lowest latency) a triggered score does not wait: its
stream's buffered scores are processed at once, so a NEW alert goes out when the third station's
triggered score arrives instead of after the slowest station's window of that second.
Consequence (express off): **any arrival order in which no score is late gives identical alerts**
(``tests/unit/test_alerting_core.py`` checks it on shuffled interleavings and partition-sized
bursts). Without wall times only the event-time rule applies. Duplicates (the detector is
at-least-once) are dropped by (stream, window_end): a score whose window_end is not after the
stream's newest one is a duplicate or a per-stream reordering, both dropped.

Station triggers
----------------
Per stream (NET.STA.LOC.BI): the first triggered score opens a trigger; its P time is the most
recent P onset picked by the detector within ``pick_lookback_s`` up to and including that
score, else the start of the triggering window (coarse). Like the detector (and STA/LTA
triggers) it uses hysteresis: the trigger stays on while the probability is at least
``detrigger_threshold`` (default 0.5, well below a typical detection threshold such as 0.99), and
ends once the stream has been below that for ``detrigger_s`` (window_end of a low score minus
that of the last high one), so a one-window dip does not end it. A trigger whose triggered scores span
less than ``min_trigger_duration_s`` when it ends is *retracted* (a glitch); one that lasts
longer is *confirmed* and its end changes nothing (the station keeps its place in its event and
may trigger again later). A station (NET.STA) holds at most one active trigger: a second sensor of
the same station triggering meanwhile is ignored (counted).

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
``max_spread_s + pick_lookback_s + tolerance_s`` seconds: greedily, nearest P times first, each
candidate kept when consistent with all kept ones; with >= ``min_stations`` stations the event is
declared -> NEW, version 1. A retracted member is removed -> UPDATE, or CANCEL when fewer than
``min_stations`` remain (the event then ends; its other triggers are not reused). An event closes
(no more updates, no message) ``event_ttl_s`` of event time after its last change. All changes
to one event at one event-time instant (one window_end) are coalesced into one alert, so
stations triggering in the same window give one NEW, not a NEW and UPDATEs.

Event id: ``eew-<first P, UTC, to the second>-<8 hex of SHA-256 over the declaring stations and
that second>``: deterministic across restarts and replays.

Event probability (``event_probability``)
-----------------------------------------
Station probabilities p_i (the max over each trigger so far) are combined by a noisy-OR
discounted for correlation between stations (same model, shared noise sources): with n stations
and pairwise correlation rho, the effective number of independent stations is
n_eff = n / (1 + rho (n - 1)) and

    p_or = 1 - (prod_i (1 - p_i)) ** (n_eff / n)

(the geometric mean of the miss probabilities, raised to n_eff). It is multiplied by a count and
geometry factor f = 1 - 0.5 ** (k - min_stations + 2), clipped to [0, 1], where k counts stations
with coordinates as 1 and those without as 0.5 (only their timing was checked): each station
beyond ``min_stations`` halves the remaining doubt (k = min_stations gives 0.75). Once the event
is located, a geometry factor g multiplies it: with the azimuthal gap G of the members around
the epicentre, g = 1 for G <= 180 deg, falling linearly to 0.5 at G = 360 deg (stations all on
one side fit many more source positions -- a distant event, a local noise source -- and the
location and magnitude are poorly constrained; network EEW systems filter alerts on the gap for
the same reason). The gap is published on the AlertRecord (``gap_deg``).

Location and origin time
------------------------
With a ``LocatorConfig`` (the service's default), every NEW/UPDATE with at least
``min_stations`` (the service: 3) members with coordinates is located by grid search
(``locate.py``), using the members' P times and, as "not yet arrived" constraints, the reporting
stations with coordinates that have not triggered. The location is published (``has_location``)
with its 95 % uncertainty, and its origin time replaces the first P time (the first P time until
then). A location whose uncertainty exceeds ``max_uncertainty_km``, or whose 95 % region reaches
the edge of the grid, is published too, flagged ``AlertRecord.location_uncertain`` (a subscriber
is better served by "about here, +-120 km" than by nothing); it is not used to decide which
triggers join the event (``_fits_location``). The grid's half-width follows the network's
geometry unless set (``NetworkGeometry``). The travel-time table of the locator's 1-D model
is built when the Associator is constructed (start-up), not on the first event.

Magnitude
---------
Each trigger folds the per-step peaks of the scores that overlap its first ``amplitude_window_s``
(3 s) of P -- counted from its P time, including steps scored before the trigger opened --
into ``peak_amplitude`` (raw counts) and ``peak_displacement`` (counts*s, from the detector) and
records how much of the window they cover. A located alert carries the Pd magnitude of its members
(``magnitude.py``: Wu & Zhao 2006, per-station gains given to the Associator, hypocentral distances
from the location). As windows fill, the magnitude of a published event is re-evaluated at each
event-time instant and an UPDATE ("magnitude Mpd x.x") is emitted when it moved by at least
``magnitude_update_step`` (0.2) since the last published value.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

from services.alerting.association.locate import (
    Location,
    LocatorConfig,
    first_p_s,
    locate,
    locate_without_each,
    travel_time_table,
)
from services.alerting.association.magnitude import (
    MagnitudeConfig,
    MagnitudeEstimate,
    PdObservation,
    estimate_magnitude,
)
from services.alerting.association.stations import StationInventory, haversine_km, neighbour_distances_km
from services.common.domain import station_id, stream_key
from services.common.exceptions import ConfigError
from services.common.streams import ACCELERATION, classify_channel

NS = 1_000_000_000


class AlertKind(StrEnum):
    NEW = "NEW"
    UPDATE = "UPDATE"
    CANCEL = "CANCEL"


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """The fields of one StationScore the association needs (times in ns UTC)."""

    network: str
    station: str
    location: str
    channel_prefix: str
    window_start_ns: int
    window_end_ns: int
    probability: float
    triggered: bool
    p_onset_ns: int | None = None
    p_onset_probability: float = 0.0
    peak_amplitude: float = 0.0
    ingest_time_ns: int = 0
    scored_time_ns: int = 0
    peak_displacement: float = 0.0  # peak |vertical displacement| in counts*s (0: not sent)

    @property
    def stream(self) -> str:
        """The sensor's stream key ``NET.STA.LOC.BI?`` (``services.common.domain``)."""
        return stream_key(self.network, self.station, self.location, self.channel_prefix)

    @property
    def station_id(self) -> str:
        return station_id(self.network, self.station)


@dataclass(frozen=True)
class AssociationConfig:
    """Knobs of the association (all in seconds / km/s / probabilities)."""

    min_stations: int = 3
    vp_min_km_s: float = 5.5
    tolerance_s: float = 1.0
    max_spread_s: float | None = None  # None: from the network's geometry (NetworkGeometry)
    min_trigger_duration_s: float = 2.0
    detrigger_s: float = 2.0
    detrigger_threshold: float = 0.5
    event_ttl_s: float = 60.0
    max_lateness_s: float = 3.0
    max_hold_s: float = 1.0
    station_idle_s: float = 2.0
    pick_lookback_s: float = 5.0
    trigger_threshold: float | None = None
    correlation: float = 0.3
    amplitude_window_s: float = 3.0
    max_p_window_s: float = 8.0  # the P window grows to the S arrival, at most this long (saturation)
    magnitude_update_step: float = 0.2
    max_retain_s: float = 600.0
    max_future_s: float = 120.0
    express_triggers: bool = False
    max_link_km: float | None = None  # a trigger joins only stations this close (0: any; None: per station)
    explained_coda_s: float = 30.0  # a located event explains its stations' re-triggers this long after S

    def __post_init__(self) -> None:
        if self.min_stations < 1:
            raise ConfigError("min_stations must be >= 1")
        if self.vp_min_km_s <= 0:
            raise ConfigError("vp_min_km_s must be > 0")
        for name in (
            "tolerance_s",
            "explained_coda_s",
            "min_trigger_duration_s",
            "detrigger_s",
            "event_ttl_s",
            "max_lateness_s",
            "max_hold_s",
            "station_idle_s",
            "pick_lookback_s",
            "amplitude_window_s",
            "max_p_window_s",
            "magnitude_update_step",
            "max_retain_s",
            "max_future_s",
        ):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("max_spread_s", "max_link_km"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name} must be >= 0 (or None: from the network geometry)")
        if not 0.0 <= self.correlation <= 1.0:
            raise ConfigError("correlation must be in [0, 1]")
        if self.trigger_threshold is not None and not 0.0 < self.trigger_threshold <= 1.0:
            raise ConfigError("trigger_threshold must be in (0, 1]")
        if not 0.0 < self.detrigger_threshold <= (self.trigger_threshold or 1.0):
            raise ConfigError("detrigger_threshold must be in (0, trigger_threshold]")


VS_FACTOR = math.sqrt(3.0)  # S travel time / P travel time (Poisson solid)
LINK_NEIGHBOURS = 3  # spacing of a station: the distance to its 3rd-nearest neighbour
LINK_FACTOR = 2.0  # link radius = LINK_FACTOR x spacing
MIN_SPREAD_S = 20.0
MIN_HALF_WIDTH_KM = 150.0
HALF_WIDTH_FACTOR = 1.25  # location grid half-width = this x the network's 90th-percentile link radius


@dataclass(frozen=True)
class NetworkGeometry:
    """The station layout's spacing and the settings derived from it (when not set explicitly).

    Rule (documented in the README): a station's *spacing* s_i is its distance to its 3rd-nearest
    neighbour (``stations.neighbour_distances_km``; the nearest would let two sensors at one site or a
    tight cluster make a sparse network look dense). Then

    - link radius r_i = 2 s_i: a trigger at station a joins (or seeds) an event only when some member
      b lies within max(r_a, r_b) -- the wavefront reaches a station from its neighbours, so a
      station's link reaches past its three nearest, and a station at the sparse edge of a network
      links as far as its own neighbours are;
    - largest P-time spread of an event: max(20 s, 2 median(r) / vp_min), the time the P front takes
      across two typical links at the slowest velocity;
    - half-width of the location grid (``LocatorConfig.half_width_km`` None): max(150 km, 1.25 p90(r)):
      the grid is centred on the earliest station, and an earthquake outside the network can lie farther
      from it than the neighbours of the sparsest stations.

    A 10 km network (s ~ 12 km) gets 24 km links, 20 s and 150 km; the openeew_mx network (median
    s 63 km, 24-161 km) 48-322 km links (median 126), 46 s and ~300 km. Without coordinates (no
    inventory) the link rule is off and the defaults (20 s, 150 km) apply.
    """

    spacing_km: Mapping[str, float]

    @classmethod
    def of(cls, inventory: StationInventory) -> NetworkGeometry:
        return cls(neighbour_distances_km(inventory, LINK_NEIGHBOURS))

    def link_km(self, station_id: str) -> float | None:
        s = self.spacing_km.get(station_id)
        return None if s is None else LINK_FACTOR * s

    def _links(self) -> list[float]:
        return sorted(LINK_FACTOR * s for s in self.spacing_km.values())

    def max_spread_s(self, vp_min_km_s: float) -> float:
        links = self._links()
        if not links:
            return MIN_SPREAD_S
        return max(MIN_SPREAD_S, 2.0 * float(np.median(links)) / vp_min_km_s)

    def half_width_km(self) -> float:
        links = self._links()
        if not links:
            return MIN_HALF_WIDTH_KM
        return max(MIN_HALF_WIDTH_KM, HALF_WIDTH_FACTOR * float(np.percentile(links, 90)))

    def describe(self) -> str:
        links = self._links()
        if not links:
            return "no station coordinates: link rule off"
        return (
            f"{len(links)} stations, link radius 2x 3rd-neighbour distance: "
            f"{links[0]:.0f}-{links[-1]:.0f} km (median {float(np.median(links)):.0f})"
        )


@dataclass(frozen=True, slots=True)
class Contribution:
    """One station behind an alert."""

    network: str
    station: str
    location: str
    p_time_ns: int
    probability: float
    latitude: float | None = None
    longitude: float | None = None
    peak_amplitude: float = 0.0
    peak_displacement: float = 0.0  # counts*s, over the first amplitude_window_s of P
    amplitude_window_s: float = 0.0  # seconds of P covered by the two peaks so far


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One version of one event, before it is stamped with a created time and serialised."""

    event_id: str
    version: int
    kind: AlertKind
    origin_time_ns: int
    first_p_time_ns: int
    probability: float
    stations: tuple[Contribution, ...]
    latest_ingest_time_ns: int
    reason: str = ""
    event_time_ns: int = 0  # event time (watermark) at which this version was decided
    location: Location | None = None
    magnitude: MagnitudeEstimate | None = None
    gap_deg: float | None = None  # azimuthal gap of the members around the epicentre (located only)
    location_uncertain: bool = False  # 95 % uncertainty above LocatorConfig.max_uncertainty_km, or open

    @property
    def key(self) -> tuple[str, int]:
        return (self.event_id, self.version)


def event_probability(
    probs: Iterable[float], k: float, min_stations: int, rho: float, gap_deg: float | None = None
) -> float:
    """Combine station probabilities; see the module docstring for the formula."""
    ps = [min(max(float(p), 0.0), 1.0 - 1e-9) for p in probs]
    n = len(ps)
    if n == 0:
        return 0.0
    n_eff = n / (1.0 + rho * (n - 1))
    log_miss = sum(math.log1p(-p) for p in ps) / n
    p_or = 1.0 - math.exp(log_miss * n_eff)
    f = 1.0 - 0.5 ** max(0.0, k - min_stations + 2)
    g = 1.0 if gap_deg is None else 1.0 - 0.5 * min(1.0, max(0.0, (gap_deg - 180.0) / 180.0))
    return float(min(1.0, max(0.0, p_or * f * g)))


def azimuthal_gap_deg(lat: float, lon: float, stations: Iterable[tuple[float, float]]) -> float:
    """Largest azimuth interval (degrees) around (lat, lon) without a station (360 with fewer than 2)."""
    az = sorted(
        math.degrees(
            math.atan2(
                math.sin(math.radians(slon - lon)) * math.cos(math.radians(slat)),
                math.cos(math.radians(lat)) * math.sin(math.radians(slat))
                - math.sin(math.radians(lat))
                * math.cos(math.radians(slat))
                * math.cos(math.radians(slon - lon)),
            )
        )
        % 360.0
        for slat, slon in stations
    )
    if len(az) < 2:
        return 360.0
    gaps = [b - a for a, b in zip(az, az[1:], strict=False)] + [az[0] + 360.0 - az[-1]]
    return float(max(gaps))


def make_event_id(station_ids: Iterable[str], first_p_ns: int) -> str:
    sec = first_p_ns // NS
    stamp = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha256(("|".join(sorted(station_ids)) + f"|{sec}").encode()).hexdigest()[:8]
    return f"eew-{stamp}-{digest}"


@dataclass(eq=False)
class _Trigger:
    seq: int
    stream: str
    station_id: str
    network: str
    station: str
    location: str
    trigger_ns: int
    p_time_ns: int
    p_from_pick: bool
    probability: float
    peak_amplitude: float
    ingest_time_ns: int
    coords: tuple[float, float] | None
    peak_displacement: float = 0.0
    amp_covered_ns: int = 0  # P-window time covered by the peaks (from p_time)
    p_steps: list[tuple[int, int, float]] = field(default_factory=list)  # (start, end, disp) up to max_p_window
    last_on_ns: int = 0
    confirmed: bool = False
    ended: bool = False
    ignored: bool = False
    in_pool: bool = False
    event: _Event | None = None

    @property
    def retain_ns(self) -> int:
        return min(self.trigger_ns, self.p_time_ns)


@dataclass(eq=False)
class _Event:
    event_id: str
    members: dict[str, _Trigger]
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
class _Change:
    """What happened to one event within one event-time instant (emitted as one alert)."""

    event: _Event
    kind: AlertKind
    reasons: list[str]


@dataclass(eq=False)
class _Stream:
    last_arrival_end: int = -(1 << 62)
    last_wall_ns: int | None = None  # wall time of its newest score (when the caller gives wall times)
    last_end: int = -(1 << 62)  # newest window_end processed (released)
    trigger: _Trigger | None = None
    picks: deque[tuple[int, int]] = field(default_factory=deque)  # (window_end, p_time)
    amps: deque[tuple[int, int, float, float]] = field(default_factory=deque)  # (start, end, amp, disp)


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
        # event_id -> (station ids, first P) of events emitted before a restart (alerts topic)
        self._restored: dict[str, tuple[frozenset[str], int]] = dict(restored_events or {})
        self.geometry = NetworkGeometry.of(self.inventory)
        config = config or AssociationConfig()
        if config.max_spread_s is None:
            config = replace(config, max_spread_s=self.geometry.max_spread_s(config.vp_min_km_s))
        self.config = config
        if locator is not None and locator.half_width_km is None:
            locator = replace(locator, half_width_km=self.geometry.half_width_km())
        self.locator = locator
        if locator is not None:
            travel_time_table(locator)  # build the travel-time table now, not on the first event
        self.gains: dict[str, float] = dict(gains or {})
        self.magnitude = magnitude or MagnitudeConfig()
        self._mag_dirty: dict[str, _Event] = {}
        self._accelerometers: set[str] = set()
        self.ignore_before_ns = ignore_before_ns
        self.stats: Counter[str] = Counter()
        self.watermark_ns: int | None = None  # max window_end seen
        self._released_until: int = -(1 << 62)
        self._clock: int = -(1 << 62)
        self._streams: dict[str, _Stream] = {}
        self._heap: list[tuple[int, str, ScoreRecord]] = []
        self._arrivals: deque[tuple[int, int]] = deque()  # (wall arrival, window_end) of buffered scores
        # Inventory stations not seen yet: waited for (when wall times are given) until station_idle_s.
        self._unseen: dict[str, int | None] = {st.id: None for st in self.inventory}
        self._station_active: dict[str, _Trigger] = {}
        self._pool: list[_Trigger] = []
        self._events: list[_Event] = []
        self._dirty: dict[str, _Change] = {}
        self._seq = 0
        c = self.config
        self._lateness = int(c.max_lateness_s * NS)
        self._hold = int(c.max_hold_s * NS)
        self._idle_wall = int(c.station_idle_s * NS)
        self._min_dur = int(c.min_trigger_duration_s * NS)
        self._off = int(c.detrigger_s * NS)
        self._lookback = int(c.pick_lookback_s * NS)
        assert c.max_spread_s is not None  # resolved above
        self._spread = int(c.max_spread_s * NS)
        self._tol = int(c.tolerance_s * NS)
        self._ttl = int(c.event_ttl_s * NS)
        self._pool_ttl = int((c.max_spread_s + c.pick_lookback_s + c.tolerance_s) * NS)
        self._amp_window = int(c.amplitude_window_s * NS)
        self._ptw = max(self._amp_window, int(c.max_p_window_s * NS))

    # ---------------------------------------------------------------- public API

    @property
    def low_watermark_ns(self) -> int | None:
        return None if self._released_until < -(1 << 61) else self._released_until

    @property
    def pending(self) -> int:
        """Scores held in the reorder buffer."""
        return len(self._heap)

    @property
    def open_events(self) -> list[str]:
        return [e.event_id for e in self._events]

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
        if now_ns is not None:
            for sid, since in self._unseen.items():
                if since is None:
                    self._unseen[sid] = now_ns
        express: set[str] = set()
        for rec in recs:
            if self._accept(rec, out, now_ns) and self.config.express_triggers and self._is_triggered(rec):
                express.add(rec.stream)
        if release:
            if express:
                self._express(express, out)
            self._release(self._low_watermark(now_ns), out)
        return out

    def _express(self, streams: set[str], out: list[AlertRecord]) -> None:
        """Process the buffered scores of streams that just sent a triggered score, now.

        The reorder buffer makes every station's window of a second wait for the slowest
        station's (up to ``max_hold_s``); a station that triggers need not wait: its own scores
        stay in order, association compares P times (not arrival order), and the locator uses as
        silent only stations whose scores it has processed. The price: alert versions then depend
        on arrival order (which stations make the NEW, how changes are grouped), so replays
        that must reproduce alerts exactly leave this off.
        """
        mine = [e for e in self._heap if e[1] in streams]
        if not mine:
            return
        self._heap = [e for e in self._heap if e[1] not in streams]
        heapq.heapify(self._heap)
        for end, _, rec in sorted(mine, key=lambda e: (e[0], e[1])):
            self._tick(end, out)
            self._process(rec, out)
        self.stats["expressed"] += len(mine)
        self._flush_dirty(out)

    def flush(self) -> list[AlertRecord]:
        """Release everything buffered (end of input, or no input for a while)."""
        out: list[AlertRecord] = []
        if self.watermark_ns is not None:
            self._release(self.watermark_ns, out)
        return out

    def retain_from_ns(self) -> int | None:
        """Earliest event time whose scores the current state still depends on.

        Re-reading every score with window_end >= this value rebuilds the same state, so the
        consumer may commit past everything older. None: nothing is held (commit everything).
        """
        cands: list[int] = [end for end, _, _ in self._heap]
        for st in self._streams.values():
            if st.trigger is not None:
                cands.append(st.trigger.retain_ns)
        for t in self._pool:
            cands.append(t.retain_ns)
        for ev in self._events:
            cands.extend(t.retain_ns for t in ev.members.values())
        if not cands:
            return None
        low = min(cands) - self._lookback - NS
        if self.watermark_ns is not None:
            low = max(low, self.watermark_ns - int(self.config.max_retain_s * NS))
        return low

    # ---------------------------------------------------------------- intake and ordering

    def _accept(self, rec: ScoreRecord, out: list[AlertRecord], now_ns: int | None) -> bool:
        """Check and buffer one score (a late one is processed at once); True when buffered."""
        if not (math.isfinite(rec.probability) and 0.0 <= rec.probability <= 1.0) or rec.window_end_ns <= 0:
            self.stats["invalid"] += 1
            return False
        if rec.scored_time_ns > 0 and rec.window_end_ns > rec.scored_time_ns + int(
            self.config.max_future_s * NS
        ):
            self.stats["future_time"] += 1
            return False
        if self.ignore_before_ns is not None and rec.window_end_ns < self.ignore_before_ns:
            self.stats["before_horizon"] += 1
            return False
        self.stats["scores"] += 1
        st = self._streams.get(rec.stream)
        if st is None:
            st = self._streams[rec.stream] = _Stream()
            self._unseen.pop(rec.station_id, None)
        if rec.window_end_ns <= st.last_arrival_end:
            self.stats["duplicates"] += 1
            return False
        st.last_arrival_end = rec.window_end_ns
        st.last_wall_ns = now_ns
        if self.watermark_ns is None or rec.window_end_ns > self.watermark_ns:
            self.watermark_ns = rec.window_end_ns
        if rec.window_end_ns <= self._released_until:
            self.stats["late"] += 1
            self._process(rec, out)
            self._flush_dirty(out)
            return False
        heapq.heappush(self._heap, (rec.window_end_ns, rec.stream, rec))
        if now_ns is not None:
            self._arrivals.append((now_ns, rec.window_end_ns))
        return True

    def _waited_for(self, st: _Stream, horizon: int, now_ns: int | None) -> bool:
        """A stream holds the others back unless it lags in event time AND is silent in wall time."""
        if st.last_arrival_end >= horizon:
            return True
        return (
            now_ns is not None and st.last_wall_ns is not None and now_ns - st.last_wall_ns <= self._idle_wall
        )

    def _low_watermark(self, now_ns: int | None) -> int:
        if self.watermark_ns is None:
            return self._released_until
        horizon = self.watermark_ns - self._lateness
        low = min(
            (s.last_arrival_end for s in self._streams.values() if self._waited_for(s, horizon, now_ns)),
            default=self.watermark_ns,
        )
        if now_ns is not None:
            if any(
                since is not None and now_ns - since <= self._idle_wall for since in self._unseen.values()
            ):
                low = self._released_until  # an inventory station has not reported yet: wait a little
            # No score waits longer than max_hold_s of wall time for slower stations.
            while self._arrivals and self._arrivals[0][0] <= now_ns - self._hold:
                low = max(low, self._arrivals.popleft()[1])
        return low

    def _release(self, upto: int, out: list[AlertRecord]) -> None:
        while self._heap and self._heap[0][0] <= upto:
            end, _, rec = heapq.heappop(self._heap)
            self._tick(end, out)
            self._process(rec, out)
        if upto > self._released_until:
            self._released_until = upto
        self._tick(upto, out)
        self._flush_dirty(out)

    def _tick(self, t: int, out: list[AlertRecord]) -> None:
        """Advance event time: emit the changes of the previous instant, close idle events, forget
        unassociated triggers that can no longer pair."""
        if t <= self._clock:
            return
        self._flush_dirty(out)
        self._clock = t
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

    # ---------------------------------------------------------------- per-stream triggers

    def _is_triggered(self, rec: ScoreRecord) -> bool:
        thr = self.config.trigger_threshold
        return rec.triggered if thr is None else rec.probability >= thr

    def _process(self, rec: ScoreRecord, out: list[AlertRecord]) -> None:
        st = self._streams[rec.stream]
        end = rec.window_end_ns
        st.last_end = max(st.last_end, end)
        if rec.p_onset_ns is not None:
            st.picks.append((end, rec.p_onset_ns))
        while st.picks and st.picks[0][0] < end - self._lookback:
            st.picks.popleft()
        st.amps.append((rec.window_start_ns, end, rec.peak_amplitude, rec.peak_displacement))
        while st.amps and st.amps[0][1] < end - self._lookback - self._ptw:
            st.amps.popleft()
        trig = st.trigger
        triggered = self._is_triggered(rec)
        if trig is None:
            if triggered:
                self._open_trigger(rec, st, out)
            return
        self._update_amplitude(
            trig, rec.window_start_ns, end, rec.peak_amplitude, rec.peak_displacement, rec.ingest_time_ns
        )
        if triggered or rec.probability >= self.config.detrigger_threshold:
            trig.last_on_ns = end
            trig.probability = max(trig.probability, rec.probability)
            if not trig.confirmed and end >= trig.trigger_ns + self._min_dur:
                trig.confirmed = True
            return
        if end - trig.last_on_ns < self._off:
            return  # a short dip below threshold does not end the trigger
        st.trigger = None
        if not trig.confirmed:  # ended before lasting min_trigger_duration_s: a glitch
            self._retract(trig, rec, out)
        else:
            trig.ended = True
            if self._station_active.get(trig.station_id) is trig:
                del self._station_active[trig.station_id]

    def _open_trigger(self, rec: ScoreRecord, st: _Stream, out: list[AlertRecord]) -> None:
        if st.picks:
            p_time, from_pick = st.picks[-1][1], True
        else:
            p_time, from_pick = rec.window_start_ns, False
        sta = self.inventory.get(rec.network, rec.station)
        self._seq += 1
        trig = _Trigger(
            seq=self._seq,
            stream=rec.stream,
            station_id=rec.station_id,
            network=rec.network,
            station=rec.station,
            location=rec.location,
            trigger_ns=rec.window_end_ns,
            last_on_ns=rec.window_end_ns,
            p_time_ns=p_time,
            p_from_pick=from_pick,
            probability=rec.probability,
            peak_amplitude=0.0,
            ingest_time_ns=rec.ingest_time_ns,
            coords=(sta.latitude, sta.longitude) if sta is not None else None,
            confirmed=self._min_dur == 0,
        )
        for a_start, a_end, amp, disp in st.amps:
            self._update_amplitude(trig, a_start, a_end, amp, disp, rec.ingest_time_ns)
        st.trigger = trig
        self.stats["triggers"] += 1
        if not from_pick:
            self.stats["triggers_without_pick"] += 1
        if trig.coords is None:
            self.stats["triggers_without_coordinates"] += 1
        if trig.station_id in self._station_active:
            trig.ignored = True
            self.stats["triggers_duplicate_station"] += 1
            return
        self._station_active[trig.station_id] = trig
        self._associate(trig, out)

    def _update_amplitude(
        self, trig: _Trigger, start: int, end: int, amp: float, disp: float, ingest_ns: int
    ) -> None:
        """Fold one step's peaks into the trigger when the step overlaps its first seconds of P;
        ``ingest_ns`` (when that step's data arrived) dates a magnitude UPDATE it may cause."""
        if trig.p_time_ns < end and start < trig.p_time_ns + self._ptw and (
            not trig.p_steps or end > trig.p_steps[-1][1]
        ):
            trig.p_steps.append((start, end, disp))  # the growing P window (``_magnitude``)
            ev = trig.event
            if ev is not None and ev.location is not None and not ev.closed and end > trig.p_time_ns + self._amp_window:
                ev.amp_ingest_ns = max(ev.amp_ingest_ns, ingest_ns)
                self._mag_dirty[ev.event_id] = ev
        w_end = trig.p_time_ns + self._amp_window
        if end <= trig.p_time_ns or start >= w_end:
            return
        trig.peak_amplitude = max(trig.peak_amplitude, amp)
        trig.peak_displacement = max(trig.peak_displacement, disp)
        trig.amp_covered_ns = max(trig.amp_covered_ns, min(end, w_end) - trig.p_time_ns)
        ev = trig.event
        if ev is not None and ev.location is not None and not ev.closed:
            ev.amp_ingest_ns = max(ev.amp_ingest_ns, ingest_ns)
            self._mag_dirty[ev.event_id] = ev

    # ---------------------------------------------------------------- association

    def _pair_ok(self, a: _Trigger, b: _Trigger) -> bool:
        dt = abs(a.p_time_ns - b.p_time_ns)
        if dt > self._spread:
            return False
        if a.coords is None or b.coords is None:
            return True
        dist = haversine_km(a.coords[0], a.coords[1], b.coords[0], b.coords[1])
        return dt <= dist / self.config.vp_min_km_s * NS + self._tol

    def _fits(self, trig: _Trigger, members: Iterable[_Trigger]) -> bool:
        ms = list(members)
        lo = min([trig.p_time_ns] + [m.p_time_ns for m in ms])
        hi = max([trig.p_time_ns] + [m.p_time_ns for m in ms])
        return hi - lo <= self._spread and all(self._pair_ok(trig, m) for m in ms) and self._linked(trig, ms)

    def _linked(self, trig: _Trigger, members: list[_Trigger]) -> bool:
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

    def _fits_location(self, trig: _Trigger, ev: _Event) -> bool:
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

    def _explained(self, trig: _Trigger) -> _Event | None:
        """The open, located event that explains ``trig``: its P time lies within the location's
        slack (as in ``_fits_location``) of the P or of the S arrival (Vp/Vs = sqrt 3) that the
        event's location predicts at that station, or -- at a station already in the event -- anywhere
        from that P to the S arrival plus ``explained_coda_s`` (its own shaking going on). Such a
        trigger is that earthquake's P seen late, its S wave or its coda, not a second earthquake: it
        must not seed one (issue: one M 5.2 became two events 72 km apart). Uncertain locations
        count too, with their larger slack. A second earthquake elsewhere, or at the same place
        but at other times, does not fit and still makes its own event."""
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
            if abs(t - t_p) <= slack or abs(t - t_s) <= VS_FACTOR * slack:
                return ev
            member = ev.members.get(trig.station_id)
            if member is not None and member is not trig and t_p - slack <= t <= (
                t_s + VS_FACTOR * slack + self.config.explained_coda_s * NS
            ):
                return ev
        return None

    def _associate(self, trig: _Trigger, out: list[AlertRecord]) -> None:
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
            self._emit(
                ev,
                AlertKind.UPDATE,
                f"station {trig.station_id} triggered",
                trig.ingest_time_ns,
                trig.trigger_ns,
                out,
            )
            return
        if self._swap_odd_member(trig, out):
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
        ev = _Event(event_id=self._new_event_id(members, first_p), members={})
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
        self._emit(
            ev,
            AlertKind.NEW,
            f"{len(members)} stations triggered",
            max(m.ingest_time_ns for m in members),
            trig.trigger_ns,
            out,
        )

    def _new_event_id(self, members: list[_Trigger], first_p: int) -> str:
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

    def _gather(self, trig: _Trigger, base: list[_Trigger], exclude: set[str]) -> list[_Trigger]:
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

    def _swap_odd_member(self, trig: _Trigger, out: list[AlertRecord]) -> bool:
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
        best: tuple[int, _Event, _Trigger, list[_Trigger]] | None = None
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
        self._emit(
            ev,
            AlertKind.UPDATE,
            f"station {odd.station_id} dropped: inconsistent with "
            f"{', '.join(a.station_id for a in added)}",
            max(a.ingest_time_ns for a in added),
            trig.trigger_ns,
            out,
        )
        return True

    def _retract(self, trig: _Trigger, rec: ScoreRecord, out: list[AlertRecord]) -> None:
        self.stats["triggers_retracted"] += 1
        if self._station_active.get(trig.station_id) is trig:
            del self._station_active[trig.station_id]
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
            self._emit(
                ev,
                AlertKind.CANCEL,
                f"trigger at {trig.station_id} retracted: {len(ev.members)} stations left, "
                f"{self.config.min_stations} needed",
                rec.ingest_time_ns,
                rec.window_end_ns,
                out,
            )
            ev.closed = True
            for m in ev.members.values():
                m.event = None
            self._events = [e for e in self._events if e is not ev]
            self.stats["events_cancelled"] += 1
        else:
            self._emit(
                ev,
                AlertKind.UPDATE,
                f"trigger at {trig.station_id} retracted",
                rec.ingest_time_ns,
                rec.window_end_ns,
                out,
            )

    def _emit(
        self, ev: _Event, kind: AlertKind, reason: str, ingest_ns: int, at_ns: int, out: list[AlertRecord]
    ) -> None:
        """Record a change; changes of one instant are coalesced into one alert (``_flush_dirty``)."""
        ev.last_change_ns = max(ev.last_change_ns, at_ns)
        ev.latest_ingest_ns = max(ev.latest_ingest_ns, ingest_ns)
        ch = self._dirty.get(ev.event_id)
        if ch is None:
            self._dirty[ev.event_id] = _Change(ev, kind, [reason])
            return
        ch.reasons.append(reason)
        if kind is AlertKind.CANCEL or ch.kind is AlertKind.CANCEL:
            ch.kind = AlertKind.CANCEL
        elif ch.kind is not AlertKind.NEW:
            ch.kind = kind

    def _check_magnitudes(self) -> None:
        """Published, located events whose P windows grew: an UPDATE when the magnitude moved by
        at least ``magnitude_update_step`` (or first became available)."""
        if not self._mag_dirty:
            return
        events, self._mag_dirty = list(self._mag_dirty.values()), {}
        for ev in events:
            if ev.closed or ev.version == 0 or ev.location is None:
                continue
            members = list(ev.members.values())
            mag = self._magnitude(members, ev.location, count=False)
            if mag is None:
                continue
            old = ev.published_magnitude
            if old is None or abs(mag.value - old) >= self.config.magnitude_update_step:
                self.stats["magnitude_updates"] += 1
                self._emit(
                    ev,
                    AlertKind.UPDATE,
                    f"magnitude {mag.magnitude_type} {mag.value:.1f}",
                    ev.amp_ingest_ns,
                    max(self._clock, ev.last_change_ns),
                    [],
                )

    def _magnitude(
        self, members: list[_Trigger], loc: Location, count: bool = True
    ) -> MagnitudeEstimate | None:
        """Pd magnitude of the members with coordinates at their hypocentral distances from ``loc``.

        First over the first ``amplitude_window_s`` (3 s) of P (Wu & Zhao's relation). When that
        estimate may be saturated (``MagnitudeEstimate.saturated`` with full windows: a rupture that
        may outlast 3 s), each station's P window grows up to its S arrival as the location predicts
        it (Vp/Vs = sqrt 3), at most ``max_p_window_s`` -- the expanding P-wave time window of
        Colombelli et al. (2012, GRL 39, L22306) -- and the larger estimate is published, so the
        magnitude keeps growing while a long rupture does (and is flagged against the saturation of
        its longer windows). Only then: on the openeew_mx M 4.6-5.2 earthquakes, whose ruptures end
        within 3 s, growing windows gather more noise and S-wave leakage than source (median final
        magnitude error 0.26 with them always on, 0.09 with 3 s)."""
        obs, long_obs = [], []
        for m in members:
            if m.coords is None:
                continue
            epi = haversine_km(loc.latitude, loc.longitude, m.coords[0], m.coords[1])
            o = PdObservation(
                station_id=m.station_id,
                peak_displacement=m.peak_displacement,
                gain=self.gains.get(m.station_id),
                hypocentral_km=math.hypot(epi, loc.depth_km),
                window_s=m.amp_covered_ns / NS,
                accelerometer=m.stream in self._accelerometers or self._is_accelerometer(m.stream),
            )
            obs.append(o)
            if self.locator is not None and m.p_steps and self._ptw > self._amp_window:
                s_minus_p = (VS_FACTOR - 1.0) * first_p_s(self.locator, loc.depth_km, epi) * NS
                w_end = m.p_time_ns + min(self._ptw, max(self._amp_window, int(s_minus_p)))
                steps = [(a, e, d) for a, e, d in m.p_steps if a < w_end]
                cover = min(max(e for _, e, _ in steps), w_end) - m.p_time_ns if steps else 0
                if cover > self._amp_window:
                    o = replace(o, peak_displacement=max(o.peak_displacement, *(d for _, _, d in steps)),
                                window_s=cover / NS)
            long_obs.append(o)
        mag = estimate_magnitude(obs, self.magnitude)
        if mag is not None and mag.saturated and mag.window_s >= self.config.amplitude_window_s - 1e-6:
            longer = estimate_magnitude(long_obs, self.magnitude)
            if longer is not None and longer.value > mag.value:
                mag = longer
                if count:
                    self.stats["magnitudes_growing_window"] += 1
        if count:
            if mag is None:
                self.stats["magnitudes_unavailable"] += 1
            else:
                self.stats[f"magnitudes_{mag.magnitude_type.lower()}"] += 1
        return mag

    def _is_accelerometer(self, stream: str) -> bool:
        """True for accelerometer streams (instrument code N, L, G of NET.STA.LOC.BI), cached."""
        bi = stream.rsplit(".", 1)[-1]
        info = classify_channel(bi[:2] + "Z") if len(bi) >= 2 else None
        acc = info is not None and not isinstance(info, str) and info.quantity == ACCELERATION
        if acc:
            self._accelerometers.add(stream)
        return acc

    def _flush_dirty(self, out: list[AlertRecord]) -> None:
        self._check_magnitudes()
        if not self._dirty:
            return
        changes, self._dirty = list(self._dirty.values()), {}
        for ch in changes:
            ev, kind = ch.event, ch.kind
            if kind is AlertKind.CANCEL and ev.version == 0:
                self.stats["events_withdrawn_unpublished"] += 1
                continue
            if ev.version == 0:
                kind = AlertKind.NEW
            ev.version += 1
            members = sorted(ev.members.values(), key=lambda t: (t.p_time_ns, t.station_id))
            k = sum(1.0 if m.coords is not None else 0.5 for m in members)
            first_p = min((m.p_time_ns for m in members), default=ev.last_change_ns)
            loc = self._locate(ev, members) if kind is not AlertKind.CANCEL else None
            mag = gap = None
            if loc is not None:
                ev.location = loc
                mag = self._magnitude(members, loc)
                if mag is not None:
                    ev.published_magnitude = mag.value
                gap = azimuthal_gap_deg(
                    loc.latitude, loc.longitude, (m.coords for m in members if m.coords is not None)
                )
            prob = event_probability(
                (m.probability for m in members), k, self.config.min_stations, self.config.correlation, gap
            )
            if kind is AlertKind.CANCEL:
                prob = 0.0
            stations = tuple(
                Contribution(
                    network=m.network,
                    station=m.station,
                    location=m.location,
                    p_time_ns=m.p_time_ns,
                    probability=float(m.probability),
                    latitude=m.coords[0] if m.coords else None,
                    longitude=m.coords[1] if m.coords else None,
                    peak_amplitude=float(m.peak_amplitude),
                    peak_displacement=float(m.peak_displacement),
                    amplitude_window_s=m.amp_covered_ns / NS,
                )
                for m in members
            )
            reasons = (
                ch.reasons if len(ch.reasons) <= 4 else [*ch.reasons[:3], f"... {len(ch.reasons) - 3} more"]
            )
            self.stats[f"alerts_{kind.value.lower()}"] += 1
            out.append(
                AlertRecord(
                    event_id=ev.event_id,
                    version=ev.version,
                    kind=kind,
                    origin_time_ns=loc.origin_time_ns if loc else first_p,
                    first_p_time_ns=first_p,
                    probability=prob,
                    stations=stations,
                    latest_ingest_time_ns=ev.latest_ingest_ns,
                    reason="; ".join(reasons),
                    event_time_ns=ev.last_change_ns,
                    location=loc,
                    magnitude=mag,
                    gap_deg=gap,
                    location_uncertain=loc is not None and not self._usable(loc),
                )
            )

    def _usable(self, loc: Location | None) -> bool:
        """A well-constrained location: a closed 95 % region within ``max_uncertainty_km``."""
        return (
            loc is not None
            and self.locator is not None
            and loc.bounded
            and loc.uncertainty_km <= self.locator.max_uncertainty_km
        )

    def _locate(self, ev: _Event, members: list[_Trigger]) -> Location | None:
        """Grid-search location (possibly uncertain: see ``_usable``), or None (no locator, too few
        stations, best node on the edge of the grid)."""
        cfg = self.locator
        if cfg is None:
            return None
        picks = [(m.coords[0], m.coords[1], m.p_time_ns) for m in members if m.coords is not None]
        if len(picks) < cfg.min_stations:
            return None
        newest: dict[str, int] = {}
        for key, st in self._streams.items():
            sid = ".".join(key.split(".")[:2])
            if sid in ev.members or sid in self._station_active or st.last_end < self._clock - 5 * NS:
                continue
            newest[sid] = max(newest.get(sid, st.last_end), st.last_end)
        silent = []
        for sid, end in sorted(newest.items()):
            net, sta = sid.split(".", 1)
            where = self.inventory.get(net, sta)
            if where is not None:
                silent.append((where.latitude, where.longitude, end))
        loc = locate(picks, silent, cfg)
        if (
            not self._usable(loc)
            and len(picks) > cfg.min_stations
            and (loc is None or loc.rms_s > 2.0 * cfg.pick_sigma_s)
        ):
            # One wrong pick (a trigger on an earlier small event, a glitch) can leave no usable
            # solution at all, or one that fits badly: try again without each pick in turn and keep
            # the best fit. A solution that fits but is too uncertain (the geometry, not a pick) is
            # not retried: dropping a pick cannot help it, and each retry is a full grid search.
            tries = locate_without_each(picks, silent, cfg)
            good = [t for t in tries if self._usable(t)]
            if good:
                loc = min(good, key=lambda t: t.rms_s)  # type: ignore[union-attr]
                self.stats["locations_one_pick_dropped"] += 1
        if loc is None:
            self.stats["locations_rejected"] += 1  # best node on the grid edge: outside the search area
            return None
        self.stats["locations"] += 1
        if not self._usable(loc):
            self.stats["locations_uncertain"] += 1  # published, flagged (AlertRecord.location_uncertain)
        return loc
