"""Sparse and dense networks with default settings: link distance, spread and location grid follow the
station layout; uncertain locations are published flagged; one earthquake makes one event."""

from __future__ import annotations

import math

import pytest

from services.alerting.association import (
    NS,
    AlertKind,
    AlertRecord,
    AssociationConfig,
    Associator,
    ScoreRecord,
)
from services.alerting.association.geometry import neighbour_distances_km
from services.alerting.association.locate import LocatorConfig, iasp91_first_p
from services.alerting.association.synthetic import T0, station_scores
from services.alerting.formats.messages import alert_to_dict, alert_to_pb
from services.common.domain import Station, haversine_km
from services.common.inventory import StationInventory

LAT0, LON0 = 35.0, -118.0
ORIGIN = T0 + 10 * NS


def grid(spacing_km: float, n: int = 5) -> list[Station]:
    """n x n stations ``spacing_km`` apart, centred near (LAT0, LON0) but not on it."""
    out = []
    for i in range(n):
        for j in range(n):
            x, y = (i - (n - 1) / 2 + 0.3) * spacing_km, (j - (n - 1) / 2 + 0.2) * spacing_km
            out.append(
                Station("XS", f"G{i}{j}", "00", LAT0 + y / 111.19, LON0 + x / (111.19 * math.cos(math.radians(LAT0))))
            )
    return out


def run(assoc: Associator, streams: list[list[ScoreRecord]]) -> list[AlertRecord]:
    recs = sorted((r for s in streams for r in s), key=lambda r: (r.window_end_ns, r.stream))
    return assoc.add_many(recs) + assoc.flush()


def iasp91_p_times(stations: list[Station], depth_km: float = 10.0) -> dict[str, int]:
    """First-P times of the layered model (Pn beyond ~150 km), which the locator uses too."""
    d = [haversine_km(LAT0, LON0, s.latitude, s.longitude) for s in stations]
    tt = iasp91_first_p(depth_km, d)
    return {s.station: ORIGIN + int(t * NS) for s, t in zip(stations, tt, strict=True)}


def quake_streams(stations: list[Station], n: int) -> list[list[ScoreRecord]]:
    pt = iasp91_p_times(stations)
    return [station_scores(st, pt[st.station], n=n) for st in stations]


def test_neighbour_distance_is_the_kth_other_station() -> None:
    sts = grid(10.0, 3)
    d = neighbour_distances_km(sts, 3)
    centre = "XS.G11"
    assert d[centre] == pytest.approx(10.0, rel=0.01)  # 4 neighbours at 10 km
    assert d["XS.G00"] == pytest.approx(10.0 * math.sqrt(2), rel=0.01)  # corner: 10, 10, 14.1
    assert neighbour_distances_km(sts[:1]) == {}


@pytest.mark.parametrize(("spacing", "n_windows", "max_err_km"), [(10.0, 60, 5.0), (150.0, 160, 30.0)])
def test_default_settings_work_for_dense_and_sparse_networks(spacing: float, n_windows: int, max_err_km: float) -> None:
    """A 10 km and a 150 km network, no flags: one event with every station, located near the epicentre.
    The old fixed 100 km link distance (an explicit flag now) cannot link the 150 km network at all."""
    stations = grid(spacing)
    streams = quake_streams(stations, n_windows)
    assoc = Associator(AssociationConfig(), StationInventory(stations), locator=LocatorConfig())
    alerts = run(assoc, streams)
    assert len({a.event_id for a in alerts}) == 1 and alerts[0].kind is AlertKind.NEW
    assert {c.station for c in alerts[-1].stations} == {s.station for s in stations}
    loc = alerts[-1].location
    assert loc is not None and not alerts[-1].location_uncertain
    assert haversine_km(loc.latitude, loc.longitude, LAT0, LON0) < max_err_km
    if spacing > 100:
        assert assoc.config.max_spread_s is not None and assoc.config.max_spread_s > 20.0
        fixed = Associator(AssociationConfig(max_link_km=100.0), StationInventory(stations), locator=LocatorConfig())
        assert run(fixed, streams) == []


def test_an_uncertain_location_is_published_and_flagged() -> None:
    """Three stations of a sparse network, all on one side of the earthquake: the location is poorly
    constrained but published, with its 95 % uncertainty and the flag, in the record and the JSON."""
    stations = [s for s in grid(80.0, 3) if s.station in ("G21", "G22", "G12")]  # all north-east of it
    pt = iasp91_p_times(stations)
    streams = [station_scores(s, pt[s.station], n=60) for s in stations]
    assoc = Associator(AssociationConfig(), StationInventory(stations), locator=LocatorConfig(min_stations=3))
    alerts = run(assoc, streams)
    assert alerts and alerts[0].kind is AlertKind.NEW and alerts[0].location is not None
    loc = alerts[0].location
    assert alerts[0].location_uncertain and loc.uncertainty_km > LocatorConfig().max_uncertainty_km
    # honest: the epicentre lies within the published uncertainty
    assert haversine_km(loc.latitude, loc.longitude, LAT0, LON0) <= loc.uncertainty_km
    body = alert_to_dict(alert_to_pb(alerts[0], created_time_ns=alerts[0].event_time_ns))
    assert body["location"]["uncertain"] is True
    assert body["location"]["uncertainty_km"] == pytest.approx(loc.uncertainty_km)
    assert assoc.stats["locations_uncertain"] >= 1


def test_s_wave_retriggers_that_the_location_explains_do_not_make_a_second_event() -> None:
    """Every station triggers on P, stops, and triggers again on S (a strong S, as on accelerometers):
    the S triggers are consistent with each other and would seed a second event; the first event's
    location explains them, so there is one event."""
    stations = grid(30.0, 3)
    pt = iasp91_p_times(stations)
    streams = []
    for st in stations:
        tp = pt[st.station]
        ts = ORIGIN + int((tp - ORIGIN) * math.sqrt(3.0))
        recs = []
        for k in range(1, 80):
            end = T0 + k * NS
            on_p = 0 < end - tp <= 4 * NS
            on_s = end - ts > 7 * NS and end - ts <= 12 * NS
            pick = tp if on_p and end - NS <= tp else (ts + 7 * NS if on_s and end - NS <= ts + 7 * NS else None)
            recs.append(
                ScoreRecord(
                    st.network, st.station, st.location, "HN", end - NS, end,
                    0.95 if (on_p or on_s) else 0.01, on_p or on_s, pick, 0.9 if pick else 0.0,
                )
            )
        streams.append(recs)
    assoc = Associator(
        AssociationConfig(detrigger_s=1.0, min_trigger_duration_s=2.0),
        StationInventory(stations),
        locator=LocatorConfig(),
    )
    alerts = run(assoc, streams)
    assert len({a.event_id for a in alerts}) == 1
    assert assoc.stats["triggers_explained_by_event"] >= 3


def test_flags_override_the_geometry_and_auto_is_the_default() -> None:
    """``eew alert`` defaults are ``auto`` (derived from --stations); explicit flags win."""
    from services.alerting.settings import AlertingSettings
    from services.common.settings import load_settings

    inv = StationInventory(grid(150.0))
    auto = load_settings(AlertingSettings, [])
    assert auto.association.max_link_km is None and auto.association.max_spread_s is None
    assert auto.locator.half_width_km is None  # auto
    a = Associator(auto.association_config(), inv, locator=auto.locator_config())
    assert a.config.max_link_km is None and a.config.max_spread_s == pytest.approx(2 * 300.0 / 5.5, rel=0.01)
    assert a.locator is not None and a.locator.half_width_km is not None and a.locator.half_width_km > 300
    fixed = load_settings(
        AlertingSettings, ["--max-link-km", "100", "--max-spread-s", "20", "--locate-half-width-km", "150"]
    )
    b = Associator(fixed.association_config(), inv, locator=fixed.locator_config())
    assert (b.config.max_link_km, b.config.max_spread_s) == (100.0, 20.0)
    assert b.locator is not None and b.locator.half_width_km == 150.0
