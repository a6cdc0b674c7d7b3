"""Emission: an event's changes of one event-time instant -> one AlertRecord, located, with magnitude.

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
triggers join the event (``events.Association._fits_location``). The grid's half-width follows the network's
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

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from services.alerting.association.config import AssociationConfig
from services.alerting.association.events import Association, Event, usable
from services.alerting.association.locate import (
    VS_FACTOR,
    Location,
    LocatorConfig,
    first_p_s,
    locate,
    locate_without_each,
)
from services.alerting.association.magnitude import (
    MagnitudeConfig,
    MagnitudeEstimate,
    PdObservation,
    estimate_magnitude,
)
from services.alerting.association.records import NS, AlertKind, AlertRecord, Contribution
from services.alerting.association.triggers import StationTrigger, StationTriggers
from services.common.domain import haversine_km
from services.common.inventory import StationInventory
from services.common.streams import ACCELERATION, classify_channel


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


class Emitter:
    """Builds the alerts of the association's changes: location, magnitude, event probability."""

    def __init__(
        self,
        config: AssociationConfig,
        association: Association,
        triggers: StationTriggers,
        inventory: StationInventory,
        locator: LocatorConfig | None,
        magnitude: MagnitudeConfig,
        gains: Mapping[str, float],
        stats: Counter[str],
    ) -> None:
        self.config = config
        self.association = association
        self.triggers = triggers
        self.inventory = inventory
        self.locator = locator
        self.magnitude = magnitude
        self.gains = gains
        self.stats = stats
        self._mag_dirty: dict[str, Event] = {}
        self._accelerometers: set[str] = set()
        self._amp_window = int(config.amplitude_window_s * NS)
        self._ptw = triggers.p_window_ns

    def p_window_grew(self, trig: StationTrigger, ingest_ns: int) -> None:
        """A member's P window grew: a located, open event's magnitude is re-evaluated at the next flush;
        ``ingest_ns`` (when that step's data arrived) dates the UPDATE it may cause."""
        ev = trig.event
        if ev is not None and ev.location is not None and not ev.closed:
            ev.amp_ingest_ns = max(ev.amp_ingest_ns, ingest_ns)
            self._mag_dirty[ev.event_id] = ev

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
                self.association.emit(
                    ev,
                    AlertKind.UPDATE,
                    f"magnitude {mag.magnitude_type} {mag.value:.1f}",
                    ev.amp_ingest_ns,
                    max(self.association.clock, ev.last_change_ns),
                )

    def _magnitude(
        self, members: list[StationTrigger], loc: Location, count: bool = True
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

    def flush(self, out: list[AlertRecord]) -> None:
        """Turn the changes of the instant that ended into alerts (one per changed event), appended to ``out``."""
        self._check_magnitudes()
        if not self.association.changes:
            return
        changes = self.association.take_changes()
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
                    location_uncertain=loc is not None and not usable(loc, self.locator),
                )
            )

    def _locate(self, ev: Event, members: list[StationTrigger]) -> Location | None:
        """Grid-search location (possibly uncertain: see ``events.usable``), or None (no locator, too few
        stations, best node on the edge of the grid)."""
        cfg = self.locator
        if cfg is None:
            return None
        picks = [(m.coords[0], m.coords[1], m.p_time_ns) for m in members if m.coords is not None]
        if len(picks) < cfg.min_stations:
            return None
        newest: dict[str, int] = {}
        for key, last_end in self.triggers.stream_ends():
            sid = ".".join(key.split(".")[:2])
            if sid in ev.members or sid in self.triggers.active or last_end < self.association.clock - 5 * NS:
                continue
            newest[sid] = max(newest.get(sid, last_end), last_end)
        silent = []
        for sid, end in sorted(newest.items()):
            net, sta = sid.split(".", 1)
            where = self.inventory.get(net, sta)
            if where is not None:
                silent.append((where.latitude, where.longitude, end))
        loc = locate(picks, silent, cfg)
        if (
            not usable(loc, self.locator)
            and len(picks) > cfg.min_stations
            and (loc is None or loc.rms_s > 2.0 * cfg.pick_sigma_s)
        ):
            # One wrong pick (a trigger on an earlier small event, a glitch) can leave no usable
            # solution at all, or one that fits badly: try again without each pick in turn and keep
            # the best fit. A solution that fits but is too uncertain (the geometry, not a pick) is
            # not retried: dropping a pick cannot help it, and each retry is a full grid search.
            tries = locate_without_each(picks, silent, cfg)
            good = [t for t in tries if usable(t, self.locator)]
            if good:
                loc = min(good, key=lambda t: t.rms_s)  # type: ignore[union-attr]
                self.stats["locations_one_pick_dropped"] += 1
        if loc is None:
            self.stats["locations_rejected"] += 1  # best node on the grid edge: outside the search area
            return None
        self.stats["locations"] += 1
        if not usable(loc, self.locator):
            self.stats["locations_uncertain"] += 1  # published, flagged (AlertRecord.location_uncertain)
        return loc
