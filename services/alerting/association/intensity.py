"""Expected shaking and warning time at a subscriber's site (pure NumPy, no I/O).

Given an event (epicentre, depth, magnitude, origin time) and a site, ``predict_site`` returns
the distances, the expected P and S arrival times at the site, the warning time left
(``warning_s_at(now_ns)``: S arrival minus now), the median peak ground acceleration and
velocity and the Modified Mercalli Intensity expected there. ``predict_sites`` does the same for
arrays of sites (many subscribers at once); ``blind_zone_km`` gives the radius inside which the
S wave arrives before an alert issued at a given time after origin.

Travel times
------------
Straight rays from the hypocentre in a uniform medium: t_S = R / vs, t_P = R / vp with the
hypocentral distance R = sqrt(epicentral^2 + depth^2), vs = 3.5 km/s and vp = 6.0 km/s (average
upper-crust values; the strong shaking of local events is carried by direct S, Sg). Good to
~1 s within ~150 km; beyond that Sn/Pn arrive earlier than predicted, so warning times at large
distance are slightly optimistic. The epicentral distance is the great-circle distance on a
sphere of radius 6371 km.

Location uncertainty: an alert's location may be published with a large 95 % uncertainty (a sparse
network, the first seconds; ``locate.py``). ``predict_sites(..., uncertainty_km=u,
origin_time_uncertainty_s=dt)`` then also gives the range of the S arrival over every epicentre
within u of the published one and origin times within dt: the earliest (epicentral distance
max(0, D - u), origin - dt) -- the warning time a subscriber can count on -- and the latest
(D + u, origin + dt). ``warning_range_s_at(now_ns)`` returns both.

Ground-motion prediction equation (GMPE)
----------------------------------------
Boore & Atkinson (2008), "Ground-motion prediction equations for the average horizontal
component of PGA, PGV, and 5%-damped PSA at spectral periods between 0.01 s and 10.0 s",
Earthquake Spectra 24(1), 99-138 (an NGA-West1 model for shallow crustal earthquakes), with the
"unspecified" mechanism term and coefficients of its Tables 3, 6, 7 and 8:

    ln Y = F_M(M) + F_D(R_JB, M) + F_S(Vs30, R_JB, M)
    F_M = e1 + e5 (M - Mh) + e6 (M - Mh)^2       (M <= Mh)      e1 + e7 (M - Mh)   (M > Mh)
    F_D = [c1 + c2 (M - 4.5)] ln(R / 1 km) + c3 (R - 1 km),   R = sqrt(R_JB^2 + h^2)
    F_S = blin ln(Vs30 / 760) + nonlinear term (eqs. 8a-c, 13a-d, driven by the rock PGA)

              e1        e5       e6        e7   Mh    c1       c2      c3        h    sigma_T(ln)
    PGA  -0.53804  0.28805 -0.10164  0.00000  6.75  -0.6605  0.1197 -0.01151  1.35   0.564
    PGV   5.00121  0.18322 -0.12736  0.00000  8.50  -0.8737  0.1006 -0.00334  2.54   0.560
    site (blin, b1, b2):  PGA -0.36 -0.64 -0.14   PGV -0.60 -0.50 -0.06

Y is PGA in g or PGV in cm/s (median, geometric mean of the horizontals). The site is
characterised by Vs30 (default 760 m/s, the reference rock for which F_S = 0). Limits, stated
rather than hidden: a point source is used, R_JB ~ epicentral distance, so for M > ~6.5 (rupture
tens of km long) shaking near the fault is under-predicted for sites off the epicentre along
strike; the model is fit for M 5-8 and R_JB < 200 km, and extrapolating to M 3-5 over-predicts
somewhat (Atkinson & Boore 2011); the median has a total scatter of a factor ~1.76 (sigma 0.564 in
ln), so about one MMI unit either way.

Intensity conversion (GMICE)
----------------------------
Worden, Gerstenberger, Rhoades & Wald (2012), "Probabilistic relationships between
ground-motion parameters and Modified Mercalli Intensity in California", BSSA 102(1), 204-221,
Table 1 (the form used by ShakeMap), PGA in cm/s^2, PGV in cm/s:

    MMI_PGA = 1.78 + 1.55 log10(PGA)   (log10 PGA <= 1.57)    -1.60 + 3.70 log10(PGA)  otherwise
    MMI_PGV = 3.78 + 1.47 log10(PGV)   (log10 PGV <= 0.53)     2.89 + 3.16 log10(PGV)  otherwise

As in ShakeMap (Wald et al. 1999, Earthquake Spectra 15(3)), the intensity is taken from PGA
below MMI 5, from PGV above MMI 7 and a linear blend in between (PGA-based weight falling from 1
to 0), then clipped to [1, 10]. The conversion scatter is ~0.7 MMI units (Worden et al. 2012).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.common.timeutil import ns_to_iso

NS = 1_000_000_000
EARTH_RADIUS_KM = 6371.0
G_CM_S2 = 980.665
DEFAULT_VS_KM_S = 3.5
DEFAULT_VP_KM_S = 6.0
REFERENCE_VS30 = 760.0

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _BA08:
    """Boore & Atkinson (2008) coefficients for one intensity measure (unspecified mechanism)."""

    e1: float
    e5: float
    e6: float
    e7: float
    mh: float
    c1: float
    c2: float
    c3: float
    h: float
    sigma_ln: float
    blin: float
    b1: float
    b2: float


BA08_PGA = _BA08(
    -0.53804, 0.28805, -0.10164, 0.0, 6.75, -0.6605, 0.1197, -0.01151, 1.35, 0.564, -0.36, -0.64, -0.14
)
BA08_PGV = _BA08(
    5.00121, 0.18322, -0.12736, 0.0, 8.50, -0.8737, 0.1006, -0.00334, 2.54, 0.560, -0.60, -0.50, -0.06
)
BA08_MREF = 4.5
BA08_RREF_KM = 1.0

# Worden et al. (2012), Table 1: (c1, c2, c3, c4, t1) with t1 in log10 units of the motion.
WORDEN12_PGA = (1.78, 1.55, -1.60, 3.70, 1.57)
WORDEN12_PGV = (3.78, 1.47, 2.89, 3.16, 0.53)


def haversine_km_np(
    lat1: float | FloatArray, lon1: float | FloatArray, lat2: float | FloatArray, lon2: float | FloatArray
) -> FloatArray:
    """Great-circle distance (km) on a sphere of radius 6371 km, vectorised."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a))), dtype=np.float64)


def _ba08_rock_ln(c: _BA08, magnitude: float, rjb_km: FloatArray) -> FloatArray:
    """ln of the BA08 median on reference rock (Vs30 = 760 m/s): F_M + F_D."""
    dm = magnitude - c.mh
    fm = c.e1 + (c.e5 * dm + c.e6 * dm * dm if magnitude <= c.mh else c.e7 * dm)
    r = np.sqrt(rjb_km * rjb_km + c.h * c.h)
    fd = (c.c1 + c.c2 * (magnitude - BA08_MREF)) * np.log(r / BA08_RREF_KM) + c.c3 * (r - BA08_RREF_KM)
    return np.asarray(fm + fd, dtype=np.float64)


def _ba08_site_ln(c: _BA08, vs30: FloatArray, pga4nl_g: FloatArray) -> FloatArray:
    """BA08 site amplification F_S = F_LIN + F_NL (eqs. 6-8, 13), ln units."""
    v1, v2, vref = 180.0, 300.0, REFERENCE_VS30
    flin = c.blin * np.log(vs30 / vref)
    bnl = np.where(
        vs30 <= v1,
        c.b1,
        np.where(
            vs30 <= v2,
            (c.b1 - c.b2) * np.log(vs30 / v2) / math.log(v1 / v2) + c.b2,
            np.where(vs30 < vref, c.b2 * np.log(vs30 / vref) / math.log(v2 / vref), 0.0),
        ),
    )
    a1, a2, pga_low = 0.03, 0.09, 0.06
    dx = math.log(a2 / a1)
    dy = bnl * math.log(a2 / pga_low)
    cc = (3 * dy - bnl * dx) / dx**2
    dd = -(2 * dy - bnl * dx) / dx**3
    x = np.log(np.maximum(pga4nl_g, 1e-12) / a1)
    fnl = np.where(
        pga4nl_g <= a1,
        bnl * math.log(pga_low / 0.1),
        np.where(
            pga4nl_g <= a2,
            bnl * math.log(pga_low / 0.1) + cc * x**2 + dd * x**3,
            bnl * np.log(np.maximum(pga4nl_g, 1e-12) / 0.1),
        ),
    )
    return np.asarray(flin + fnl, dtype=np.float64)


def ground_motion(
    magnitude: float, distance_km: float | FloatArray, vs30: float | FloatArray = REFERENCE_VS30
) -> tuple[FloatArray, FloatArray]:
    """Median (PGA in g, PGV in cm/s) by Boore & Atkinson (2008) at Joyner-Boore distance(s)."""
    rjb = np.asarray(distance_km, dtype=np.float64)
    v = np.broadcast_to(np.asarray(vs30, dtype=np.float64), rjb.shape)
    pga_rock = np.exp(_ba08_rock_ln(BA08_PGA, magnitude, rjb))
    pga = np.exp(np.log(pga_rock) + _ba08_site_ln(BA08_PGA, v, pga_rock))
    pgv = np.exp(_ba08_rock_ln(BA08_PGV, magnitude, rjb) + _ba08_site_ln(BA08_PGV, v, pga_rock))
    return pga, pgv


def _worden(coefs: tuple[float, float, float, float, float], log_y: FloatArray) -> FloatArray:
    c1, c2, c3, c4, t1 = coefs
    return np.where(log_y <= t1, c1 + c2 * log_y, c3 + c4 * log_y)


def mmi_from_motion(pga_g: float | FloatArray, pgv_cm_s: float | FloatArray) -> FloatArray:
    """MMI from PGA (g) and PGV (cm/s): Worden et al. (2012), blended as in ShakeMap (docstring)."""
    lpga = np.log10(np.maximum(np.asarray(pga_g, dtype=np.float64) * G_CM_S2, 1e-9))
    lpgv = np.log10(np.maximum(np.asarray(pgv_cm_s, dtype=np.float64), 1e-9))
    m_a, m_v = _worden(WORDEN12_PGA, lpga), _worden(WORDEN12_PGV, lpgv)
    w_a = np.clip((7.0 - m_a) / 2.0, 0.0, 1.0)  # 1 below MMI 5, 0 above MMI 7
    return np.asarray(np.clip(w_a * m_a + (1.0 - w_a) * m_v, 1.0, 10.0), dtype=np.float64)


def blind_zone_km(alert_delay_s: float, depth_km: float, vs_km_s: float = DEFAULT_VS_KM_S) -> float:
    """Epicentral radius (km) inside which the S wave arrives before an alert issued
    ``alert_delay_s`` after the origin time (0 when the S wave has not reached the surface yet)."""
    reach = vs_km_s * max(0.0, alert_delay_s)
    return math.sqrt(max(0.0, reach * reach - depth_km * depth_km))


@dataclass(frozen=True, slots=True)
class SitePrediction:
    """What one event means for one site. Times are ns UTC; motions are medians."""

    epicentral_km: float
    hypocentral_km: float
    p_arrival_ns: int
    s_arrival_ns: int
    pga_g: float | None  # None when the magnitude is unknown
    pgv_cm_s: float | None
    mmi: float | None

    def warning_s_at(self, now_ns: int) -> float:
        """Seconds until the S wave reaches the site (negative: it has already arrived)."""
        return (self.s_arrival_ns - now_ns) / NS


@dataclass(frozen=True, slots=True)
class SitePredictions:
    """``predict_sites`` output: one entry per site (arrays)."""

    epicentral_km: FloatArray
    hypocentral_km: FloatArray
    p_arrival_ns: npt.NDArray[np.int64]
    s_arrival_ns: npt.NDArray[np.int64]
    pga_g: FloatArray | None
    pgv_cm_s: FloatArray | None
    mmi: FloatArray | None
    s_arrival_earliest_ns: npt.NDArray[np.int64] | None = None  # over the location's uncertainty
    s_arrival_latest_ns: npt.NDArray[np.int64] | None = None

    def warning_s_at(self, now_ns: int) -> FloatArray:
        return np.asarray((self.s_arrival_ns - now_ns) / NS, dtype=np.float64)

    def warning_range_s_at(self, now_ns: int) -> tuple[FloatArray, FloatArray]:
        """(shortest, longest) warning time over the location's uncertainty (both the median
        warning time when no uncertainty was given)."""
        lo = self.s_arrival_ns if self.s_arrival_earliest_ns is None else self.s_arrival_earliest_ns
        hi = self.s_arrival_ns if self.s_arrival_latest_ns is None else self.s_arrival_latest_ns
        return (
            np.asarray((lo - now_ns) / NS, dtype=np.float64),
            np.asarray((hi - now_ns) / NS, dtype=np.float64),
        )


def predict_sites(
    latitude: float,
    longitude: float,
    depth_km: float,
    magnitude: float | None,
    origin_time_ns: int,
    site_lat: npt.ArrayLike,
    site_lon: npt.ArrayLike,
    vs_km_s: float = DEFAULT_VS_KM_S,
    vp_km_s: float = DEFAULT_VP_KM_S,
    vs30: npt.ArrayLike = REFERENCE_VS30,
    uncertainty_km: float = 0.0,
    origin_time_uncertainty_s: float = 0.0,
) -> SitePredictions:
    """Vectorised ``predict_site`` for arrays of site coordinates (and optionally of Vs30); with a
    location uncertainty, also the earliest and latest S arrival (module docstring)."""
    if vs_km_s <= 0 or vp_km_s <= 0:
        raise ValueError("velocities must be > 0")
    if not (uncertainty_km >= 0 and origin_time_uncertainty_s >= 0):
        raise ValueError("uncertainties must be >= 0")
    lat = np.atleast_1d(np.asarray(site_lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(site_lon, dtype=np.float64))
    epi = haversine_km_np(latitude, longitude, lat, lon)
    z = max(0.0, float(depth_km))
    hyp = np.sqrt(epi * epi + z * z)
    t_s = np.rint(hyp / vs_km_s * NS).astype(np.int64) + np.int64(origin_time_ns)
    t_p = np.rint(hyp / vp_km_s * NS).astype(np.int64) + np.int64(origin_time_ns)
    pga = pgv = mmi = None
    if magnitude is not None and math.isfinite(magnitude):
        pga, pgv = ground_motion(float(magnitude), epi, np.asarray(vs30, dtype=np.float64))
        mmi = mmi_from_motion(pga, pgv)
    early = late = None
    if uncertainty_km > 0 or origin_time_uncertainty_s > 0:
        dt = np.int64(round(origin_time_uncertainty_s * NS))
        near = np.hypot(np.maximum(epi - uncertainty_km, 0.0), z)
        far = np.hypot(epi + uncertainty_km, z)
        early = np.rint(near / vs_km_s * NS).astype(np.int64) + np.int64(origin_time_ns) - dt
        late = np.rint(far / vs_km_s * NS).astype(np.int64) + np.int64(origin_time_ns) + dt
    return SitePredictions(epi, hyp, t_p, t_s, pga, pgv, mmi, early, late)


def predict_site(
    latitude: float,
    longitude: float,
    depth_km: float,
    magnitude: float | None,
    origin_time_ns: int,
    site_lat: float,
    site_lon: float,
    vs_km_s: float = DEFAULT_VS_KM_S,
    vp_km_s: float = DEFAULT_VP_KM_S,
    vs30: float = REFERENCE_VS30,
) -> SitePrediction:
    """Distances, P/S arrival times, median PGA/PGV and MMI at one site (see the module docstring).

    ``magnitude=None`` (not yet estimated) gives times and distances only (motions None)."""
    p = predict_sites(
        latitude,
        longitude,
        depth_km,
        magnitude,
        origin_time_ns,
        [site_lat],
        [site_lon],
        vs_km_s,
        vp_km_s,
        vs30,
    )
    return SitePrediction(
        epicentral_km=float(p.epicentral_km[0]),
        hypocentral_km=float(p.hypocentral_km[0]),
        p_arrival_ns=int(p.p_arrival_ns[0]),
        s_arrival_ns=int(p.s_arrival_ns[0]),
        pga_g=None if p.pga_g is None else float(p.pga_g[0]),
        pgv_cm_s=None if p.pgv_cm_s is None else float(p.pgv_cm_s[0]),
        mmi=None if p.mmi is None else float(p.mmi[0]),
    )


@dataclass(frozen=True)
class SiteForecast:
    """One event at one subscriber's site (from ``predict_sites``); ``as_dict`` is its JSON ``site`` object."""

    latitude: float
    longitude: float
    epicentral_km: float
    hypocentral_km: float
    p_arrival_ns: int
    s_arrival_ns: int
    warning_time_s: float  # S arrival minus the alert's created time
    mmi: float | None
    pga_g: float | None
    pgv_cm_s: float | None
    # shortest / longest warning time over the location's (and origin time's) uncertainty
    warning_time_min_s: float | None = None
    warning_time_max_s: float | None = None

    def as_dict(self, subscriber_id: str) -> dict[str, Any]:
        def r(x: float | None, nd: int) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), nd)

        return {
            "subscriber_id": subscriber_id,
            "latitude": r(self.latitude, 6),
            "longitude": r(self.longitude, 6),
            "epicentral_km": r(self.epicentral_km, 2),
            "hypocentral_km": r(self.hypocentral_km, 2),
            "p_arrival_time": ns_to_iso(self.p_arrival_ns),
            "s_arrival_time": ns_to_iso(self.s_arrival_ns),
            "warning_time_s": r(self.warning_time_s, 2),
            "warning_time_min_s": r(self.warning_time_min_s, 2),
            "warning_time_max_s": r(self.warning_time_max_s, 2),
            "expected_intensity_mmi": r(self.mmi, 2),
            "expected_pga_g": r(self.pga_g, 5),
            "expected_pgv_cm_s": r(self.pgv_cm_s, 3),
        }
