"""Unit tests of the Pd magnitude (Wu & Zhao 2006), its calibration rules and the displacement filter."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from services.alerting.association import NS, AlertKind, AssociationConfig, Associator
from services.alerting.association.locate import LocatorConfig
from services.alerting.association.magnitude import (
    MAGNITUDE_TYPE,
    MAGNITUDE_TYPE_UNCAL,
    WU_ZHAO_2006,
    MagnitudeConfig,
    PdObservation,
    estimate_magnitude,
)
from services.alerting.association.synthetic import T0, p_times, ring_stations, round_robin, station_scores
from services.alerting.formats.messages import alert_to_dict, alert_to_pb, pb_to_record
from services.common.displacement import DisplacementFilter
from services.common.domain import haversine_km
from services.common.inventory import StationInventory

GAIN = 6.0e8  # counts per m/s


def _obs(m: float, dists: list[float], window: float = 3.0, gain: float | None = GAIN) -> list[PdObservation]:
    """Observations exactly on the relation: peak displacement in counts*s = Pd (m) * gain."""
    g = gain or GAIN
    return [
        PdObservation(f"XX.S{i}", WU_ZHAO_2006.pd_m(m, r) * g, gain, r, window) for i, r in enumerate(dists)
    ]


def test_relation_by_hand() -> None:
    """M 5 at R 10 km: log10 Pd = -3.463 + 0.729 * 5 - 1.374 = -1.192 (cm)."""
    assert WU_ZHAO_2006.pd_m(5.0, 10.0) == pytest.approx(10**-1.192 / 100.0)
    assert WU_ZHAO_2006.magnitude(10**-1.192 / 100.0, 10.0) == pytest.approx(5.0)
    assert WU_ZHAO_2006.station_sigma_m == pytest.approx(0.305 / 0.729)


@pytest.mark.parametrize("m", [3.0, 4.5, 6.0])
def test_exact_observations_give_the_magnitude(m: float) -> None:
    est = estimate_magnitude(_obs(m, [12.0, 30.0, 55.0, 80.0]))
    assert est is not None and est.magnitude_type == MAGNITUDE_TYPE
    assert est.value == pytest.approx(m, abs=1e-9)
    assert est.n_stations == 4 and est.window_s == 3.0 and not est.saturated
    # zero station scatter: only the relation's event-level 0.18 remains
    assert est.uncertainty == pytest.approx(0.18)


def test_uncertainty_from_station_scatter_and_count() -> None:
    """Two stations: the relation's per-station 0.42 / sqrt(2) with 0.18; scattered stations: their std."""
    two = estimate_magnitude(_obs(5.0, [20.0, 40.0]))
    assert two is not None
    assert two.uncertainty == pytest.approx(math.sqrt((0.305 / 0.729) ** 2 / 2 + 0.18**2))
    obs = _obs(5.0, [20.0, 40.0, 60.0, 80.0])
    obs = [
        replace(o, peak_displacement=o.peak_displacement * f)
        for o, f in zip(obs, (0.5, 2.0, 0.7, 1.4), strict=True)
    ]
    est = estimate_magnitude(obs)
    assert est is not None and abs(est.value - 5.0) < 0.2
    mags = [WU_ZHAO_2006.magnitude(o.peak_displacement / GAIN, o.hypocentral_km) for o in obs]
    assert est.uncertainty == pytest.approx(math.sqrt(np.std(mags, ddof=1) ** 2 / 4 + 0.18**2))


def test_uncalibrated_is_flagged_not_faked() -> None:
    """No gain: no magnitude, unless a nominal gain is configured (then Mpd_uncal, +1 unit uncertainty)."""
    obs = _obs(5.0, [20.0, 40.0, 60.0], gain=None)
    assert estimate_magnitude(obs) is None
    est = estimate_magnitude(obs, MagnitudeConfig(nominal_gain=GAIN))
    assert est is not None and est.magnitude_type == MAGNITUDE_TYPE_UNCAL
    assert est.value == pytest.approx(5.0) and est.uncertainty == pytest.approx(math.sqrt(0.18**2 + 1.0))
    # calibrated stations win over uncalibrated ones
    mixed = _obs(5.0, [20.0, 40.0]) + [
        replace(o, gain=None, peak_displacement=o.peak_displacement * 100) for o in obs
    ]
    est = estimate_magnitude(mixed, MagnitudeConfig(nominal_gain=GAIN))
    assert est is not None and est.magnitude_type == MAGNITUDE_TYPE and est.n_stations == 2


def test_short_windows_far_stations_and_saturation() -> None:
    assert estimate_magnitude(_obs(5.0, [20.0, 40.0], window=0.5)) is None  # < min_window_s
    assert estimate_magnitude(_obs(5.0, [250.0, 300.0])) is None  # beyond max_distance_km
    est = estimate_magnitude(_obs(5.0, [20.0], window=1.5) + _obs(5.0, [40.0]))
    assert est is not None and est.window_s == 1.5
    big = estimate_magnitude(_obs(6.8, [20.0, 40.0]))
    assert big is not None and big.saturated


def test_displacement_filter_integrates_velocity() -> None:
    """1 Hz velocity sine of amplitude A on a DC offset -> displacement amplitude A / (2 pi), in any chunking."""
    fs, a = 100.0, 1000.0
    t = np.arange(int(60 * fs)) / fs
    v = 5000.0 + a * np.sin(2 * np.pi * 1.0 * t)
    whole = DisplacementFilter(fs).process(v)
    assert np.abs(whole[-1000:]).max() == pytest.approx(a / (2 * np.pi), rel=0.03)
    f = DisplacementFilter(fs)
    pieces = np.concatenate([f.process(v[i : i + 137]) for i in range(0, len(v), 137)])
    assert np.allclose(pieces, whole, rtol=1e-9, atol=1e-9)
    acc = DisplacementFilter(fs, integrations=2).process(a * np.sin(2 * np.pi * 2.0 * t))
    assert np.abs(acc[-1000:]).max() == pytest.approx(a / (2 * np.pi * 2.0) ** 2, rel=0.03)
    with pytest.raises(ValueError):
        DisplacementFilter(fs, corner_hz=60.0)


def _event_streams(m: float, gains: dict[str, float]) -> tuple[list, list]:
    """Synthetic scores (homogeneous 6 km/s, 10 km deep) whose peak displacement follows Wu & Zhao."""
    stations = ring_stations(6, 20.0)
    origin = T0 + 10 * NS
    pt = p_times(stations, origin)
    streams = []
    for s in stations:
        r = math.hypot(haversine_km(35.0, -118.0, s.latitude, s.longitude), 10.0)
        pd_counts = WU_ZHAO_2006.pd_m(m, r) * gains.get(s.id, GAIN)
        recs = station_scores(s, pt[s.station])
        # the displacement grows over the first 3 s of P, then stays
        streams.append(
            [
                replace(
                    rec,
                    peak_displacement=pd_counts
                    * min(1.0, max(0.0, (rec.window_end_ns - pt[s.station]) / (3 * NS)))
                    if rec.window_end_ns > pt[s.station]
                    else 1e-3 * pd_counts,
                )
                for rec in recs
            ]
        )
    return stations, streams


def test_alerts_carry_magnitude_and_update_as_windows_fill() -> None:
    """With gains, located alerts carry Mpd; as the P windows grow the (low) early magnitude rises to the
    true one in UPDATEs (located from 3 stations, so the NEW alert already has partial windows)."""
    stations = ring_stations(6, 20.0)
    gains = {s.id: GAIN for s in stations}
    stations, streams = _event_streams(4.8, gains)
    assoc = Associator(
        AssociationConfig(),
        StationInventory(stations),
        locator=LocatorConfig(velocity_model="homogeneous", min_stations=3),
        gains=gains,
    )
    alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
    with_mag = [a for a in alerts if a.magnitude is not None]
    assert with_mag and all(a.magnitude.magnitude_type == MAGNITUDE_TYPE for a in with_mag)
    assert alerts[0].kind is AlertKind.NEW
    final = with_mag[-1].magnitude
    assert abs(final.value - 4.8) < 0.1 and final.window_s == pytest.approx(3.0)
    assert any("magnitude" in a.reason for a in alerts) and assoc.stats["magnitude_updates"] >= 1
    assert with_mag[0].magnitude.window_s < 3.0 and with_mag[0].magnitude.value < final.value
    # each version is dated by the data that caused it (magnitude UPDATEs: the score that grew
    # the P window, which arrives 0.2 s after its step here), or latency metrics would be inflated
    assert all(0 <= a.latest_ingest_time_ns - a.event_time_ns < NS for a in alerts)
    assert all(a.gap_deg is not None and a.gap_deg < 180 for a in alerts if a.location is not None)
    doc = alert_to_dict(alert_to_pb(with_mag[-1], T0 + 60 * NS))
    assert doc["magnitude"]["type"] == "Mpd" and doc["magnitude"]["value"] == pytest.approx(final.value)
    assert (
        doc["magnitude"]["uncertainty"] == pytest.approx(final.uncertainty)
        and not doc["magnitude"]["lower_bound"]
    )
    back = pb_to_record(alert_to_pb(with_mag[-1], T0))
    assert back.magnitude is not None and back.magnitude.value == pytest.approx(final.value)


def test_no_gains_no_magnitude() -> None:
    stations, streams = _event_streams(4.8, {})
    assoc = Associator(
        AssociationConfig(), StationInventory(stations), locator=LocatorConfig(velocity_model="homogeneous")
    )
    alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
    assert any(a.location is not None for a in alerts)
    assert all(a.magnitude is None for a in alerts) and assoc.stats["magnitudes_unavailable"] >= 1


def test_a_long_rupture_grows_the_p_window_and_stays_a_lower_bound() -> None:
    """A large earthquake whose Pd keeps growing for 8 s (from M 6.6 at 3 s to M 7.3 at 8 s of P):
    the 3 s magnitude saturates near 6.6 and is flagged; the P window then grows to each station's S
    arrival (at most 8 s) and the published magnitude follows the rupture, still flagged as a lower
    bound. With ``max_p_window_s`` 3 the magnitude stays at the 3 s value."""
    stations = ring_stations(6, 60.0)  # 60-120 km: S - P of 8-15 s
    gains = {s.id: GAIN for s in stations}
    origin = T0 + 10 * NS
    pt = p_times(stations, origin)
    streams = []
    for s in stations:
        r = math.hypot(haversine_km(35.0, -118.0, s.latitude, s.longitude), 10.0)

        def pd(t: float, r: float = r) -> float:
            m = 6.6 + 0.7 * min(max(t - 3.0, 0.0), 5.0) / 5.0
            return WU_ZHAO_2006.pd_m(m, r) * GAIN * min(1.0, max(t, 0.0) / 3.0)

        recs = station_scores(s, pt[s.station], n=60)
        streams.append(
            [replace(rec, peak_displacement=max(pd((rec.window_end_ns - pt[s.station]) / NS), 1e-3)) for rec in recs]
        )
    finals = {}
    for ptw in (8.0, 3.0):
        assoc = Associator(
            AssociationConfig(max_p_window_s=ptw),
            StationInventory(stations),
            locator=LocatorConfig(velocity_model="homogeneous"),
            gains=gains,
        )
        alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
        finals[ptw] = [a for a in alerts if a.magnitude is not None][-1].magnitude
    assert finals[3.0] is not None and abs(finals[3.0].value - 6.6) < 0.15 and finals[3.0].saturated
    assert finals[8.0] is not None and finals[8.0].value > 7.0 and finals[8.0].saturated
    assert finals[8.0].window_s > 6.0
