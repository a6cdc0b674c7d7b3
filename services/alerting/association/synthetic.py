"""Synthetic station-score streams: an event seen by stations around it (unit tests, demos).

Each station emits one score per second (window_end = t0 + k s). Scores are triggered from the
first window that contains the station's P arrival for ``trigger_s`` seconds; that window also
carries the P pick. P times follow a uniform 6 km/s medium from a 10 km deep source, so they are
travel-time consistent under the default vp_min = 5.5 km/s.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from services.alerting.association.records import NS, ScoreRecord
from services.common.domain import Station, haversine_km
from services.common.inventory import StationInventory

T0 = 1_700_000_000 * NS  # 2023-11-14T22:13:20Z, a round start time


def ring_stations(
    n: int, radius_km: float, lat0: float = 35.0, lon0: float = -118.0, net: str = "XA"
) -> list[Station]:
    """n stations on rings around (lat0, lon0), alternately at radius and 2 x radius."""
    out = []
    for i in range(n):
        r = radius_km * (1 + (i % 2))
        az = 2 * math.pi * i / n
        lat = lat0 + (r * math.cos(az)) / 111.19
        lon = lon0 + (r * math.sin(az)) / (111.19 * math.cos(math.radians(lat0)))
        out.append(Station(net, f"S{i:02d}", "00", lat, lon, 0.0))
    return out


def p_times(
    stations: list[Station],
    origin_ns: int,
    lat0: float = 35.0,
    lon0: float = -118.0,
    v_km_s: float = 6.0,
    depth_km: float = 10.0,
) -> dict[str, int]:
    out = {}
    for st in stations:
        d = haversine_km(lat0, lon0, st.latitude, st.longitude)
        out[st.station] = origin_ns + int(math.hypot(d, depth_km) / v_km_s * NS)
    return out


def station_scores(
    st: Station,
    p_ns: int | None,
    n: int = 60,
    t0: int = T0,
    trigger_s: int = 20,
    prob: float = 0.9,
    glitch_at_ns: int | None = None,
    glitch_s: int = 1,
    ingest_ns: int = 0,
) -> list[ScoreRecord]:
    """One station's scores, in order. ``glitch_at_ns`` adds a short false trigger (no pick)."""
    out = []
    for k in range(1, n + 1):
        end = t0 + k * NS
        start = end - NS
        trig, pick, p = False, None, 0.02
        if p_ns is not None and 0 < end - p_ns <= trigger_s * NS:
            trig, p = True, prob
            if start <= p_ns:
                pick = p_ns
        if glitch_at_ns is not None and glitch_at_ns < end <= glitch_at_ns + glitch_s * NS:
            trig, p = True, max(p, 0.7)
        out.append(
            ScoreRecord(
                network=st.network,
                station=st.station,
                location=st.location,
                channel_prefix="HH",
                window_start_ns=start,
                window_end_ns=end,
                probability=p,
                triggered=trig,
                p_onset_ns=pick,
                p_onset_probability=0.8 if pick is not None else 0.0,
                peak_amplitude=1000.0 if trig else 10.0,
                ingest_time_ns=ingest_ns or end + 200_000_000,
                scored_time_ns=end + 300_000_000,
            )
        )
    return out


def inventory(stations: list[Station]) -> StationInventory:
    return StationInventory(stations)


def interleave(streams: list[list[ScoreRecord]], rng: random.Random, max_delay_s: float) -> list[ScoreRecord]:
    """Arrival order with per-record network delays up to ``max_delay_s``, per-stream order kept."""
    arrivals = []
    for si, recs in enumerate(streams):
        last = -math.inf
        for ri, r in enumerate(recs):
            t = r.window_end_ns / NS + rng.uniform(0, max_delay_s)
            last = max(last, t)
            arrivals.append((last, ri, rng.random(), si, r))
    arrivals.sort(key=lambda a: (a[0], a[1], a[2]))
    return [a[4] for a in arrivals]


def round_robin(streams: list[list[ScoreRecord]]) -> list[ScoreRecord]:
    out = []
    for k in range(max(len(s) for s in streams)):
        for s in streams:
            if k < len(s):
                out.append(s[k])
    return out


def with_ingest(recs: list[ScoreRecord], ingest_ns: int) -> list[ScoreRecord]:
    return [replace(r, ingest_time_ns=ingest_ns) for r in recs]
