"""Grid-search location on synthetic P times from a known hypocentre (10 km deep).

The ``services.alerting.association.synthetic`` times come from a homogeneous 6 km/s medium, so those tests use
the locator's ``homogeneous`` model; the layered IASP91 model is checked against ObsPy TauP and
used on IASP91 times. Tolerances: exact picks -> epicentre within one grid step (2 km) and origin
time within 0.2 s (depth trades off with origin time at that level); picks with 0.2 s noise ->
error inside the reported 95 % uncertainty.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from services.alerting.association import NS, AlertKind, AssociationConfig, Associator
from services.alerting.association.locate import (
    IASP91,
    LocatorConfig,
    first_p_times,
    iasp91_first_p,
    locate,
    locate_without_each,
)
from services.alerting.association.synthetic import T0, p_times, ring_stations, round_robin, station_scores
from services.alerting.formats.messages import alert_to_dict, alert_to_pb
from services.common.domain import Station, haversine_km
from services.common.inventory import StationInventory

ORIGIN = T0 + 10 * NS
LAT0, LON0 = 35.0, -118.0
HOMOG = LocatorConfig(velocity_model="homogeneous")


def _picks(stations: list[Station], jitter_s: float = 0.0, seed: int = 0) -> list[tuple[float, float, int]]:
    rng = random.Random(seed)
    pt = p_times(stations, ORIGIN)
    return [(s.latitude, s.longitude, pt[s.station] + int(rng.gauss(0, jitter_s) * NS)) for s in stations]


@pytest.mark.parametrize("n", [4, 6, 8])
def test_exact_picks_locate_within_a_grid_step(n: int) -> None:
    loc = locate(_picks(ring_stations(n, 20.0)), cfg=HOMOG)
    assert loc is not None
    err = haversine_km(LAT0, LON0, loc.latitude, loc.longitude)
    assert err <= 2.0 and abs(loc.origin_time_ns - ORIGIN) / NS < 0.2
    assert loc.n_stations == n and loc.rms_s < 0.1 and err <= loc.uncertainty_km


@pytest.mark.parametrize("seed", range(5))
def test_noisy_picks_error_within_reported_uncertainty(seed: int) -> None:
    loc = locate(_picks(ring_stations(8, 30.0), jitter_s=0.2, seed=seed), cfg=HOMOG)
    assert loc is not None
    err = haversine_km(LAT0, LON0, loc.latitude, loc.longitude)
    assert err <= loc.uncertainty_km and loc.uncertainty_km < 30.0
    assert abs(loc.origin_time_ns - ORIGIN) / NS < 1.0


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_silent_stations_constrain_a_three_station_location(norm: str) -> None:
    """Stations that report but have not triggered rule out nodes that predict an earlier P there."""
    lat, lon = LAT0 + 0.15, LON0 + 0.1  # off-centre: three picks leave a wide region
    stations = ring_stations(8, 30.0)
    pt = p_times(stations, ORIGIN, lat0=lat, lon0=lon)
    first3 = sorted(stations, key=lambda s: pt[s.station])[:3]
    others = [s for s in stations if s not in first3]
    t_now = max(pt[s.station] for s in first3) + NS  # just after the third trigger
    silent = [(s.latitude, s.longitude, t_now) for s in others]
    picks = [(s.latitude, s.longitude, pt[s.station]) for s in first3]
    cfg = LocatorConfig(velocity_model="homogeneous", norm=norm)
    free = locate(picks, cfg=cfg)
    held = locate(picks, silent, cfg=cfg)
    assert free is not None and held is not None
    assert held.uncertainty_km < 0.6 * free.uncertainty_km
    assert haversine_km(lat, lon, held.latitude, held.longitude) <= held.uncertainty_km


def test_one_bad_pick_does_not_drag_the_l1_solution() -> None:
    """A pick 1.5 s early at one of 8 stations: L1 stays within 3 km, least squares moves further."""
    stations = ring_stations(8, 30.0)
    picks = _picks(stations)
    lat, lon, t = picks[3]
    picks[3] = (lat, lon, t - 3 * NS // 2)
    l1 = locate(picks, cfg=HOMOG)
    l2 = locate(picks, cfg=LocatorConfig(velocity_model="homogeneous", norm="l2"))
    assert l1 is not None and l2 is not None
    e1 = haversine_km(LAT0, LON0, l1.latitude, l1.longitude)
    e2 = haversine_km(LAT0, LON0, l2.latitude, l2.longitude)
    assert e1 <= 3.0 and e1 < e2


def test_a_missed_station_costs_a_bounded_penalty() -> None:
    """A station the P reached long ago but that never triggered (a missed detection) does not move
    an 8-station location by more than a grid step or two."""
    stations = ring_stations(9, 30.0)
    picks = _picks(stations[:8])
    missed = stations[8]
    late = ORIGIN + 30 * NS
    loc = locate(picks, [(missed.latitude, missed.longitude, late)], cfg=HOMOG)
    assert loc is not None and haversine_km(LAT0, LON0, loc.latitude, loc.longitude) <= 4.0


def test_outside_the_grid_or_too_few_picks_gives_none() -> None:
    stations = ring_stations(5, 10.0)
    far = p_times(stations, ORIGIN, lat0=LAT0 + 3.0)  # 330 km north of the network
    picks = [(s.latitude, s.longitude, far[s.station]) for s in stations]
    assert locate(picks, cfg=LocatorConfig(velocity_model="homogeneous", half_width_km=100.0)) is None
    assert locate(_picks(stations)[:2], cfg=HOMOG) is None


def test_alerts_carry_the_location_once_enough_stations_trigger() -> None:
    """NEW (3 stations) has no location; the UPDATE with 6 does, and its origin time is the located one."""
    stations = ring_stations(6, 20.0)
    pt = p_times(stations, ORIGIN)
    streams = [station_scores(s, pt[s.station]) for s in stations]
    assoc = Associator(AssociationConfig(), StationInventory(stations), locator=HOMOG)
    alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
    assert [a.kind for a in alerts] == [AlertKind.NEW, AlertKind.UPDATE]
    assert alerts[0].location is None and alerts[0].origin_time_ns == alerts[0].first_p_time_ns
    loc = alerts[1].location
    assert loc is not None and haversine_km(LAT0, LON0, loc.latitude, loc.longitude) <= 2.0
    assert alerts[1].origin_time_ns == loc.origin_time_ns and abs(loc.origin_time_ns - ORIGIN) < NS // 5
    doc = alert_to_dict(alert_to_pb(alerts[1], T0 + 30 * NS))
    assert doc["location"]["depth_km"] == loc.depth_km and doc["location"]["uncertainty_km"] > 0
    assert assoc.stats["locations"] == 1


def test_layered_model_matches_taup_iasp91() -> None:
    """The flattened IASP91 layers give TauP's iasp91 first-P times within 0.05 s to 4 deg, 0-40 km deep."""
    from obspy.taup import TauPyModel

    model = TauPyModel("iasp91")
    for depth in (0.0, 10.0, 25.0, 40.0):
        for deg in (0.05, 0.5, 1.2, 2.0, 4.0):
            arrivals = model.get_travel_times(
                source_depth_in_km=depth, distance_in_degree=deg, phase_list=["p", "P", "Pn"]
            )
            taup = min(a.time for a in arrivals)
            mine = float(iasp91_first_p(depth, [deg * 111.195])[0])
            assert abs(mine - taup) < 0.05, (depth, deg, taup, mine)


def test_layered_first_arrivals_switch_to_pn() -> None:
    """Unflattened layers: the direct wave near the source, Pn (x/8.04 + intercept) far away."""
    near = float(first_p_times(IASP91, 10.0, [20.0])[0])
    assert near == pytest.approx(math.hypot(20.0, 10.0) / 5.8, abs=1e-3)
    far = float(first_p_times(IASP91, 0.0, [400.0])[0])
    eta = [math.sqrt(1 / v**2 - 1 / 8.04**2) for v in (5.8, 6.5)]
    assert far == pytest.approx(400.0 / 8.04 + 2 * (20.0 * eta[0] + 15.0 * eta[1]), abs=1e-6)
    t = first_p_times(IASP91, 15.0, np.linspace(0.0, 500.0, 501))
    assert np.all(np.diff(t) > 0)  # first arrivals only grow with distance


def _iasp91_picks(stations: list[Station], depth: float, origin: int) -> list[tuple[float, float, int]]:
    return [
        (
            s.latitude,
            s.longitude,
            origin
            + int(float(iasp91_first_p(depth, [haversine_km(LAT0, LON0, s.latitude, s.longitude)])[0]) * NS),
        )
        for s in stations
    ]


@pytest.mark.parametrize("depth", [6.0, 15.0])
def test_iasp91_locates_iasp91_times(depth: float) -> None:
    """Exact IASP91 picks over 20-160 km (Pg and Pn) -> epicentre within 2 km, origin within 0.3 s."""
    stations = ring_stations(8, 80.0)
    loc = locate(_iasp91_picks(stations, depth, ORIGIN), cfg=LocatorConfig())
    assert loc is not None
    assert haversine_km(LAT0, LON0, loc.latitude, loc.longitude) <= 2.0
    assert abs(loc.origin_time_ns - ORIGIN) / NS < 0.3
    assert loc.rms_s < 0.15 and loc.origin_time_uncertainty_s > 0


def test_only_the_silent_stations_nearest_to_the_picks_are_used() -> None:
    """A 500-station network: the 488 silent stations beyond the ``max_silent`` nearest to the
    triggered ones are left out, so the location equals the one with only those near ones."""
    lat, lon = LAT0 + 0.15, LON0 + 0.1
    near = ring_stations(8, 30.0)
    pt = p_times(near, ORIGIN, lat0=lat, lon0=lon)
    first3 = sorted(near, key=lambda s: pt[s.station])[:3]
    t_now = max(pt[s.station] for s in first3) + NS
    near_silent = [(s.latitude, s.longitude, t_now) for s in near if s not in first3]
    rng = random.Random(3)
    far_silent = [  # 300-600 km away: beyond the nearest ones, whatever they would add
        (LAT0 + r * math.cos(a) / 111.19, LON0 + r * math.sin(a) / (111.19 * math.cos(math.radians(LAT0))), t_now)
        for r, a in ((rng.uniform(300, 600), rng.uniform(0, 2 * math.pi)) for _ in range(488))
    ]
    picks = [(s.latitude, s.longitude, pt[s.station]) for s in first3]
    cfg = LocatorConfig(velocity_model="homogeneous", max_silent=len(near_silent))
    assert locate(picks, near_silent + far_silent, cfg) == locate(picks, near_silent, cfg)
    with pytest.raises(ValueError):
        LocatorConfig(max_silent=-1)


def test_a_wrong_pick_that_spoils_the_location_is_left_out() -> None:
    """One station triggered 12 s early (on an earlier small event) and was associated: with all
    picks the grid search has no usable solution (95% region > 50 km); the associator then locates
    without each pick in turn and keeps the best fit, within a grid step of the epicentre."""
    stations = ring_stations(7, 25.0)
    origin = T0 + 20 * NS
    pt = p_times(stations, origin)
    pt[stations[1].station] -= 12 * NS
    picks = [(s.latitude, s.longitude, pt[s.station]) for s in stations]
    full = locate(picks, cfg=HOMOG)
    assert full is None or full.uncertainty_km > HOMOG.max_uncertainty_km
    streams = [station_scores(s, pt[s.station], n=80) for s in stations]
    assoc = Associator(AssociationConfig(), StationInventory(stations), locator=HOMOG)
    alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
    loc = alerts[-1].location
    assert len(alerts[-1].stations) == 7 and loc is not None
    assert haversine_km(LAT0, LON0, loc.latitude, loc.longitude) <= 2.0
    assert assoc.stats["locations_one_pick_dropped"] >= 1


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("n_silent", [0, 5, 40])
def test_leave_one_out_equals_locating_each_subset(norm: str, n_silent: int) -> None:
    """``locate_without_each`` shares the coarse grid between the subsets (and re-grids without the
    earliest pick): every result equals ``locate`` on that subset, outliers and silent stations
    (more than ``max_silent``, so the nearest set changes with the subset) included."""
    rng = np.random.default_rng(n_silent)
    stations = ring_stations(9 + n_silent, 45.0)
    rng.shuffle(stations)
    pt = p_times(stations, ORIGIN)
    picks = [(s.latitude, s.longitude, pt[s.station] + int(rng.normal(0, 0.3) * NS)) for s in stations[:9]]
    picks[3] = (picks[3][0], picks[3][1], picks[3][2] - 6 * NS)  # a trigger on something else
    silent = [(s.latitude, s.longitude, ORIGIN + int(rng.uniform(0, 9) * NS)) for s in stations[9:]]
    cfg = LocatorConfig(norm=norm, max_silent=8)
    loo = locate_without_each(picks, silent, cfg)
    assert len(loo) == len(picks) and any(loc is not None for loc in loo)
    for i, got in enumerate(loo):
        want = locate(picks[:i] + picks[i + 1 :], silent, cfg)
        assert (got is None) == (want is None), i
        if got is not None:
            assert got.origin_time_ns == pytest.approx(want.origin_time_ns, abs=2)
            for f in ("latitude", "longitude", "depth_km", "uncertainty_km", "rms_s"):
                assert getattr(got, f) == pytest.approx(getattr(want, f), abs=1e-9), (i, f)
    assert locate_without_each(picks[:3], silent, cfg) == [None, None, None]


@pytest.mark.parametrize("late_s", [0.0, -6.0])
def test_a_located_event_takes_only_triggers_its_location_predicts(late_s: float) -> None:
    """A station 90 km out whose trigger comes 6 s before the P the location predicts passes the
    pairwise travel-time test (it allows up to ~17 s at that distance) but no single hypocentre
    explains it: once the event is located it stays out. At the predicted time it joins."""
    ring = ring_stations(6, 20.0)
    far = Station("XA", "FAR", "", LAT0 + 90.0 / 111.19, LON0)
    pt = p_times([*ring, far], ORIGIN)
    pt[far.station] += int(late_s * NS)
    streams = [station_scores(s, pt[s.station], n=80) for s in [*ring, far]]
    assoc = Associator(AssociationConfig(), StationInventory([*ring, far]), locator=HOMOG)
    alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
    assert alerts[-1].location is not None and len({a.event_id for a in alerts}) == 1
    members = {s.station for s in alerts[-1].stations}
    if late_s == 0.0:
        assert "FAR" in members and assoc.stats["triggers_rejected_by_location"] == 0
    else:
        assert "FAR" not in members and len(members) == 6
        assert assoc.stats["triggers_rejected_by_location"] >= 1
