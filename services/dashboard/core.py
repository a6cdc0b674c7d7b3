"""The dashboard's state: stations, events and pipeline health, from StationScore and Alert messages.

Pure (no I/O, no clock of its own): the Kafka adapter feeds messages with the wall time they
arrived (``received_ns``), the HTTP adapter asks for views at a wall time ``now_ns``.

Station states (first match wins), evaluated at ``now_ns``:

* ``rejected``: the pipeline dead-lettered data of this station within ``rejected_hold_s``;
* ``dead``: no score for ``dead_after_s`` (or never one);
* ``gap``: no score for ``gap_after_s``;
* ``lagging``: the newest scored sample is more than ``lag_after_s`` behind the clock;
* ``live``: otherwise.

The clock is the wall clock in live operation. In replay mode it is the data's clock (the newest
scored sample of the network, advanced by the wall time since it was seen), so an archive replayed
at any speed shows its P and S fronts, countdowns and lags in its own time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import CliImplicitFlag

from services.alerting.association import ScoreRecord
from services.alerting.association.intensity import DEFAULT_VP_KM_S, DEFAULT_VS_KM_S, predict_site
from services.alerting.formats.messages import alert_to_dict
from services.common.domain import Station, station_id
from services.common.exceptions import ConfigError, DecodeError
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.settings import CoreModel

NS = 1_000_000_000
STATES = ("live", "lagging", "gap", "dead", "rejected")
STATE_CODE = {name: i for i, name in enumerate(STATES)}


class CoreConfig(CoreModel):
    """Thresholds of the station states and how long events stay on the page: the one declaration,
    the nested ``core`` group of ``DashboardSettings`` (flags ``--gap-after-s`` ...)."""

    replay: CliImplicitFlag[bool] = Field(
        False,
        description="Replay mode: read the topics from their beginning and run the page's clock on the "
        "data's time (newest scored sample), so a replayed archive plays as if live; flag --replay.",
    )
    lag_after_s: float = Field(10.0, description="A station whose newest scored sample is older than this is lagging.")
    gap_after_s: float = Field(5.0, description="A station without a score for this long is in a gap.")
    dead_after_s: float = Field(60.0, description="A station without a score for this long is dead.")
    rejected_hold_s: float = Field(
        60.0, description="A station stays 'data rejected' this long after a dead-lettered record."
    )
    event_retention_s: float = Field(900.0, description="Events leave the page this long after their last alert.")
    max_events: int = Field(20, description="Most events kept on the page.")
    latency_samples: int = Field(500, ge=1, description="Latency samples kept per pipeline stage (health panel).")
    vp_km_s: float = Field(DEFAULT_VP_KM_S, gt=0.0, description="P-wave speed of the countdown, km/s.")
    vs_km_s: float = Field(DEFAULT_VS_KM_S, gt=0.0, description="S-wave speed of the countdown, km/s.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not 0 < self.gap_after_s <= self.dead_after_s:
            raise ConfigError("dashboard: need 0 < gap_after_s <= dead_after_s")
        if self.lag_after_s <= 0 or self.rejected_hold_s < 0 or self.max_events < 1:
            raise ConfigError("dashboard: lag_after_s > 0, rejected_hold_s >= 0 and max_events >= 1 needed")
        return self


@dataclass(frozen=True)
class Site:
    """A place whose warning time and intensity the page counts down (``name:lat:lon``)."""

    name: str
    latitude: float
    longitude: float


def parse_sites(text: str) -> list[Site]:
    """``name:lat:lon,...`` -> sites; a clear ConfigError on anything malformed."""
    out: list[Site] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        try:
            if len(parts) != 3 or not parts[0]:
                raise ValueError("need name:lat:lon")
            lat, lon = float(parts[1]), float(parts[2])
            if not (-90 <= lat <= 90 and -180 <= lon <= 360):
                raise ValueError("coordinates out of range")
        except ValueError as exc:
            raise ConfigError(f"dashboard site {item!r}: {exc}") from exc
        out.append(Site(parts[0], lat, lon))
    return out


def sites_from_subscribers(doc: object) -> list[Site]:
    """Sites of a subscriber API listing (``{"subscribers": [{"name", "latitude", "longitude"}, ...]}``).

    A listing of another shape raises DecodeError; a subscriber without valid coordinates is left
    out (the API validates them, so this is only a guard)."""
    subs = doc.get("subscribers") if isinstance(doc, dict) else None
    if not isinstance(subs, list):
        raise DecodeError("bad_subscriber_listing", "no 'subscribers' list")
    out = []
    for sub in subs:
        try:
            lat, lon = float(sub["latitude"]), float(sub["longitude"])
            name = str(sub.get("name") or sub.get("id") or "subscriber")
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 360:
            out.append(Site(f"subscriber {name}", lat, lon))
    return out


@dataclass
class _Station:
    index: int
    id: str
    latitude: float = math.nan
    longitude: float = math.nan
    last_received_ns: int | None = None
    window_end_ns: int = 0
    probability: float = 0.0
    triggered: bool = False
    p_onset_ns: int | None = None
    rejected_ns: int | None = None
    rejected_reason: str = ""


@dataclass
class _Event:
    event_id: str
    versions: list[dict[str, Any]] = field(default_factory=list)
    latest: pb.Alert | None = None
    received_ns: int = 0
    first_received_ns: int = 0


class DashboardCore:
    """Everything the page shows, updated message by message."""

    def __init__(self, cfg: CoreConfig, stations: Iterable[Station] = (), sites: Iterable[Site] = ()) -> None:
        self.cfg = cfg
        self.sites = list(sites)
        self.subscriber_sites: list[Site] = []  # choices only: their countdown is computed on request
        self.sites_generation = 0
        self._stations: dict[str, _Station] = {}
        self._events: dict[str, _Event] = {}
        self.events_generation = 0
        self.layout_generation = 0  # bumps when a station is added or moves
        self._data_clock: tuple[int, int] | None = None  # (newest window end, wall when seen)
        self._latency: dict[str, deque[float]] = {}
        for st in stations:
            self._station(st.id, st.latitude, st.longitude)

    # ---- updates -------------------------------------------------------------------------------

    def _station(self, sid: str, lat: float = math.nan, lon: float = math.nan) -> _Station:
        st = self._stations.get(sid)
        if st is None:
            st = _Station(len(self._stations), sid, lat, lon)
            self._stations[sid] = st
            self.layout_generation += 1
        elif math.isnan(st.latitude) and not math.isnan(lat):
            st.latitude, st.longitude = lat, lon
            self.layout_generation += 1
        return st

    def _observe(self, stage: str, seconds: float) -> None:
        q = self._latency.get(stage)
        if q is None:
            q = self._latency[stage] = deque(maxlen=self.cfg.latency_samples)
        if math.isfinite(seconds):
            q.append(seconds)

    def on_score(self, rec: ScoreRecord, received_ns: int) -> None:
        """A validated StationScore arrived (``received_ns``: wall clock at receipt)."""
        st = self._station(station_id(rec.network, rec.station))
        if rec.window_end_ns >= st.window_end_ns:
            st.window_end_ns = rec.window_end_ns
            st.probability = rec.probability
            st.triggered = rec.triggered
            if rec.p_onset_ns is not None:
                st.p_onset_ns = rec.p_onset_ns
        st.last_received_ns = received_ns
        if self._data_clock is None or rec.window_end_ns > self._data_clock[0]:
            self._data_clock = (rec.window_end_ns, received_ns)
        if rec.ingest_time_ns and rec.scored_time_ns:
            self._observe("detector", (rec.scored_time_ns - rec.ingest_time_ns) / NS)
        if rec.scored_time_ns:
            self._observe("scores_topic", (received_ns - rec.scored_time_ns) / NS)
        if not self.cfg.replay:
            self._observe("data", (received_ns - rec.window_end_ns) / NS)

    def on_rejected(self, key: str, reason: str, received_ns: int) -> None:
        """The pipeline dead-lettered a record keyed by a stream key ``NET.STA.LOC.BI?``."""
        parts = key.split(".")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            return
        st = self._station(station_id(parts[0], parts[1]))
        st.rejected_ns, st.rejected_reason = received_ns, reason or "unknown"

    def on_alert(self, msg: pb.Alert, received_ns: int) -> None:
        """An Alert version arrived; duplicates (same event_id:version) are ignored."""
        ev = self._events.get(msg.event_id)
        if ev is None:
            ev = self._events[msg.event_id] = _Event(msg.event_id, first_received_ns=received_ns)
        if any(v["version"] == msg.version for v in ev.versions):
            return
        view = alert_to_dict(msg)
        view["created_time_ns"] = msg.created_time_ns
        view["decision_time_ns"] = msg.decision_time_ns
        view["received_ns"] = received_ns
        ev.versions.append(view)
        ev.versions.sort(key=lambda v: v["version"])
        if ev.latest is None or msg.version >= ev.latest.version:
            ev.latest = msg
        ev.received_ns = received_ns
        for s in msg.stations:
            lat = s.latitude if s.latitude or s.longitude else math.nan
            self._station(station_id(s.network, s.station), lat, s.longitude if not math.isnan(lat) else math.nan)
        if msg.created_time_ns and msg.latest_ingest_time_ns:
            self._observe("alerting", (msg.created_time_ns - msg.latest_ingest_time_ns) / NS)
        self.events_generation += 1
        self._trim(received_ns)

    def _trim(self, now_ns: int) -> None:
        keep = sorted(self._events.values(), key=lambda e: e.received_ns, reverse=True)
        horizon = now_ns - int(self.cfg.event_retention_s * NS)
        keep = [e for e in keep[: self.cfg.max_events] if e.received_ns >= horizon]
        if len(keep) != len(self._events):
            self._events = {e.event_id: e for e in keep}
            self.events_generation += 1

    # ---- views ---------------------------------------------------------------------------------

    def clock_ns(self, now_ns: int) -> int:
        """The page's clock: wall time, or in replay mode the data's time (see the module docstring)."""
        if not self.cfg.replay:
            return now_ns
        if self._data_clock is None:
            return now_ns
        newest, seen = self._data_clock
        return newest + max(0, now_ns - seen)

    def state(self, st: _Station, now_ns: int, clock_ns: int) -> str:
        c = self.cfg
        if st.rejected_ns is not None and now_ns - st.rejected_ns <= c.rejected_hold_s * NS:
            return "rejected"
        if st.last_received_ns is None or now_ns - st.last_received_ns > c.dead_after_s * NS:
            return "dead"
        if now_ns - st.last_received_ns > c.gap_after_s * NS:
            return "gap"
        if clock_ns - st.window_end_ns > c.lag_after_s * NS:
            return "lagging"
        return "live"

    def station_layout(self) -> list[list[Any]]:
        """Static part per station, by index: [id, lat, lon] (null coordinates when unknown)."""
        out: list[list[Any]] = [[]] * len(self._stations)
        for st in self._stations.values():
            lat = None if math.isnan(st.latitude) else round(st.latitude, 5)
            lon = None if math.isnan(st.longitude) else round(st.longitude, 5)
            out[st.index] = [st.id, lat, lon]
        return out

    def station_rows(self, now_ns: int) -> list[tuple[int, int, float, int, str]]:
        """Dynamic part per station: (index, state code, score, triggered, reject reason).

        The score is rounded to 0.05 (the map shows it on hover only): noise wobbling in the third
        decimal then changes no row, and a tick sends only the stations whose picture changed."""
        clock = self.clock_ns(now_ns)
        rows = []
        for st in self._stations.values():
            state = self.state(st, now_ns, clock)
            reason = st.rejected_reason if state == "rejected" else ""
            rows.append((st.index, STATE_CODE[state], round(round(st.probability * 20) / 20, 2), int(st.triggered), reason))
        return rows

    def state_of(self, sid: str, now_ns: int) -> str | None:
        st = self._stations.get(sid)
        return None if st is None else self.state(st, now_ns, self.clock_ns(now_ns))

    def state_counts(self, now_ns: int) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for _, code, *_ in self.station_rows(now_ns):
            counts[STATES[code]] += 1
        return counts

    def events(self) -> list[dict[str, Any]]:
        """Recent events, newest first: the latest version's picture and every version."""
        out = []
        for ev in sorted(self._events.values(), key=lambda e: e.first_received_ns, reverse=True):
            a = ev.latest
            assert a is not None
            latest = ev.versions[-1]
            out.append({
                "event_id": ev.event_id,
                "type": latest["type"],
                "version": a.version,
                "origin_time_ns": a.origin_time_ns,
                "first_p_time_ns": a.first_p_time_ns,
                "probability": latest["probability"],
                "location": latest["location"],
                "magnitude": latest["magnitude"],
                "stations": [station_id(s.network, s.station) for s in a.stations],
                "versions": [
                    {k: v[k] for k in ("version", "type", "probability", "location", "magnitude", "reason",
                                       "created_time_ns", "decision_time_ns", "received_ns")}
                    | {"stations": len(v["stations"])}
                    for v in ev.versions
                ],
                "sites": [self._site_view(a, s.name, s.latitude, s.longitude) for s in self.sites]
                if a.has_location else [],
            })
        return out

    def _site_view(self, a: pb.Alert, name: str, lat: float, lon: float) -> dict[str, Any]:
        mag = a.magnitude if a.has_magnitude else None
        p = predict_site(a.latitude, a.longitude, a.depth_km, mag, a.origin_time_ns, lat, lon,
                         vs_km_s=self.cfg.vs_km_s, vp_km_s=self.cfg.vp_km_s)
        return {
            "name": name, "latitude": lat, "longitude": lon,
            "epicentral_km": round(p.epicentral_km, 1),
            "p_arrival_ns": p.p_arrival_ns, "s_arrival_ns": p.s_arrival_ns,
            "mmi": None if p.mmi is None else round(p.mmi, 1),
        }

    def set_subscriber_sites(self, sites: list[Site]) -> None:
        """The subscribers' sites (from the subscriber API) offered beside the configured ones."""
        if sites != self.subscriber_sites:
            self.subscriber_sites = list(sites)
            self.sites_generation += 1

    def site_choices(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "latitude": s.latitude, "longitude": s.longitude}
                for s in [*self.sites, *self.subscriber_sites]]

    def predict_for(self, lat: float, lon: float, name: str = "chosen site") -> list[dict[str, Any]]:
        """Warning time and intensity at one chosen site for every located event."""
        out = []
        for ev in self._events.values():
            if ev.latest is not None and ev.latest.has_location:
                out.append({"event_id": ev.event_id} | self._site_view(ev.latest, name, lat, lon))
        return out

    def latencies(self) -> dict[str, float | None]:
        """Median seconds per pipeline stage over the recent messages (None: none seen yet).

        ``data``: score received minus its newest sample (live only); ``detector``: score produced
        minus the packet's ingest; ``scores_topic``: score received here minus produced;
        ``alerting``: alert created minus the ingest of the newest data behind it.
        """
        return {k: (round(median(q), 3) if q else None) for k, q in sorted(self._latency.items())}

    def config_view(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "replay": c.replay, "states": list(STATES), "vp_km_s": c.vp_km_s, "vs_km_s": c.vs_km_s,
            "sites": self.site_choices(),
        }

    def event_count(self) -> int:
        return len(self._events)

    def __len__(self) -> int:
        return len(self._stations)
