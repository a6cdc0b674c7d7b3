"""Unit tests of the site prediction (travel times, BA08 ground motion, Worden 2012 MMI)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.alerting.association.intensity import (
    NS,
    blind_zone_km,
    ground_motion,
    mmi_from_motion,
    predict_site,
    predict_sites,
)

T0 = 1_700_000_000 * NS


def test_ba08_rock_pga_by_hand() -> None:
    """PGA at R_JB = 0 on rock for M 6.75 (= Mh): ln Y = e1 + c1 ln(h) + c2 (6.75-4.5) ln(h) + c3 (h-1)."""
    h = 1.35
    ln_y = -0.53804 + (-0.6605 + 0.1197 * 2.25) * math.log(h) - 0.01151 * (h - 1.0)
    pga, _ = ground_motion(6.75, 0.0)
    assert float(pga) == pytest.approx(math.exp(ln_y), rel=1e-9)


def test_motion_monotonic_in_distance_and_magnitude() -> None:
    """Shaking falls with distance and grows with magnitude (where the model is defined)."""
    d = np.array([1.0, 5, 10, 20, 50, 100, 200])
    for m in (4.0, 5.0, 6.0, 7.0, 7.5):
        pga, pgv = ground_motion(m, d)
        assert np.all(np.diff(pga) < 0) and np.all(np.diff(pgv) < 0)
    for dist in (5.0, 30.0, 100.0):
        pgas = [float(ground_motion(m, dist)[0]) for m in (4.0, 5.0, 6.0, 7.0)]
        assert pgas == sorted(pgas)


def test_plausible_orders_of_magnitude() -> None:
    """M6 at 10 km: PGA ~0.1 g, MMI ~6; M4 at 100 km: barely felt (MMI <= 3)."""
    pga, pgv = ground_motion(6.0, 10.0)
    assert 0.05 < float(pga) < 0.3
    assert 5.0 <= float(mmi_from_motion(pga, pgv)) <= 7.0
    pga, pgv = ground_motion(4.0, 100.0)
    assert float(mmi_from_motion(pga, pgv)) <= 3.0


def test_soft_soil_amplifies_weak_motion() -> None:
    """BA08 linear site term: Vs30 300 m/s amplifies weak motion vs rock; 1100 m/s de-amplifies."""
    soft, rock, hard = ground_motion(5.0, np.array([50.0, 50.0, 50.0]), np.array([300.0, 760.0, 1100.0]))[0]
    assert soft > rock > hard


def test_worden_mmi_branches() -> None:
    """Worden et al. (2012): PGA-only below MMI 5 (low branch), PGV-only above 7, clipped to [1, 10]."""
    pga_g = 10**1.0 / 980.665  # log10 PGA = 1 cm/s^2 -> 1.78 + 1.55 = 3.33; PGV tiny
    assert float(mmi_from_motion(pga_g, 1e-3)) == pytest.approx(3.33, abs=1e-9)
    # Strong motion: PGV 100 cm/s -> 2.89 + 3.16 * 2 = 9.21 (PGA big too, so PGV governs)
    assert float(mmi_from_motion(2.0, 100.0)) == pytest.approx(9.21, abs=1e-9)
    assert float(mmi_from_motion(1e-9, 1e-9)) == 1.0
    assert float(mmi_from_motion(100.0, 1e5)) == 10.0


def test_site_times_and_warning() -> None:
    """S arrival = origin + R / vs; warning time counts down to it."""
    p = predict_site(35.0, -120.0, 10.0, 6.0, T0, 35.5, -120.0)
    assert p.epicentral_km == pytest.approx(55.6, abs=0.2)
    assert p.hypocentral_km == pytest.approx(math.hypot(p.epicentral_km, 10.0))
    assert p.s_arrival_ns - T0 == pytest.approx(p.hypocentral_km / 3.5 * NS, abs=2)
    assert p.p_arrival_ns - T0 == pytest.approx(p.hypocentral_km / 6.0 * NS, abs=2)
    assert p.p_arrival_ns < p.s_arrival_ns
    assert p.warning_s_at(T0 + 5 * NS) == pytest.approx(p.hypocentral_km / 3.5 - 5.0, abs=1e-6)
    assert p.warning_s_at(p.s_arrival_ns + NS) == pytest.approx(-1.0)
    assert p.mmi is not None and p.pga_g is not None and p.pga_g > 0


def test_unknown_magnitude_gives_times_only() -> None:
    p = predict_site(35.0, -120.0, 10.0, None, T0, 35.2, -120.1)
    assert p.pga_g is None and p.mmi is None and p.s_arrival_ns > T0


def test_vectorised_matches_scalar() -> None:
    lats, lons = np.array([34.0, 34.5, 36.0]), np.array([-118.0, -119.0, -117.5])
    many = predict_sites(35.0, -118.0, 8.0, 5.5, T0, lats, lons)
    assert many.mmi is not None
    for i in range(3):
        one = predict_site(35.0, -118.0, 8.0, 5.5, T0, float(lats[i]), float(lons[i]))
        assert one.s_arrival_ns == int(many.s_arrival_ns[i])
        assert one.mmi == pytest.approx(float(many.mmi[i]))
    assert np.allclose(many.warning_s_at(T0), (many.s_arrival_ns - T0) / NS)


def test_blind_zone() -> None:
    """Alert 10 s after origin, depth 10 km: S has travelled 35 km -> sqrt(35^2 - 10^2) km."""
    assert blind_zone_km(10.0, 10.0) == pytest.approx(math.sqrt(35.0**2 - 100.0))
    assert blind_zone_km(2.0, 10.0) == 0.0  # S not at the surface yet
    assert blind_zone_km(-1.0, 0.0) == 0.0


def test_bad_velocity_rejected() -> None:
    with pytest.raises(ValueError):
        predict_site(0.0, 0.0, 10.0, 5.0, T0, 0.1, 0.1, vs_km_s=0.0)


def test_warning_time_range_over_the_location_uncertainty() -> None:
    """A site 100 km from an epicentre known to +-30 km and +-1 s: the S wave may come as early as
    from 70 km away 1 s earlier, or as late as from 130 km 1 s later; none given: one value."""
    t0 = 1_700_000_000 * NS
    p = predict_sites(35.0, -118.0, 10.0, None, t0, [35.0 + 100 / 111.19], [-118.0],
                      uncertainty_km=30.0, origin_time_uncertainty_s=1.0)
    lo, hi = p.warning_range_s_at(t0)
    epi = float(p.epicentral_km[0])
    assert lo[0] == pytest.approx(math.hypot(epi - 30.0, 10.0) / 3.5 - 1.0, abs=1e-6)
    assert hi[0] == pytest.approx(math.hypot(epi + 30.0, 10.0) / 3.5 + 1.0, abs=1e-6)
    assert lo[0] < p.warning_s_at(t0)[0] < hi[0]
    plain = predict_sites(35.0, -118.0, 10.0, None, t0, [35.0 + 100 / 111.19], [-118.0])
    lo, hi = plain.warning_range_s_at(t0)
    assert lo[0] == hi[0] == pytest.approx(plain.warning_s_at(t0)[0])
    with pytest.raises(ValueError):
        predict_sites(35.0, -118.0, 10.0, None, t0, [35.0], [-118.0], uncertainty_km=-1.0)
