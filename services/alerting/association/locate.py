"""Grid-search hypocentre from P times (pure NumPy): the location of early alerts.

Velocity model
--------------
Default ``velocity_model="iasp91"``: the crust and uppermost mantle of IASP91 (Kennett & Engdahl
1991, GJI 105, 429-465) -- 0-20 km Vp 5.80 km/s, 20-35 km Vp 6.50 km/s, below 35 km Vp 8.04 km/s
(the mantle gradient to 8.05 km/s at 120 km is ignored) -- mapped to flat layers by the
Earth-flattening transformation (z_f = R ln(R / (R - z)), v_f = v R / (R - z) at mid-layer, at the
top for the half-space; R = 6371 km), which accounts for the curvature that speeds up Pn. The
first P arrival at a surface station is the earliest of the direct wave (Pg/p, traced through the
layers above the source by sampling the ray parameter) and the head waves along each deeper
interface with a faster layer below (P*, Pn), beyond their critical distance. The times are
tabulated once per locator configuration (``travel_time_table``: built at start-up by the
Associator, cached, never at import) on a 0.5 km distance grid to ``max_distance_km`` for each
search depth and read by linear interpolation. Against ObsPy TauP's iasp91 the first-P times
agree within 0.04 s out to 4 deg for depths 0-40 km (checked in
``tests/unit/test_alerting_locate.py``), far below pick errors. ``"homogeneous"`` uses
straight rays at ``vp_km_s`` instead (the earlier behaviour, kept for comparisons and tests).
Station elevations are ignored (< 0.3 s for stations below 1.5 km).

Positions are projected on a local plane around the earliest station (equirectangular; < 0.5 %
distance error within 300 km).

Search
------
Every node of a horizontal grid (``half_width_km`` around the earliest station, coarse step
half_width/30, then ``step_km`` around the best coarse node) at each depth of ``depths_km``. For a
node, travel times T_i give the residual offsets o_i = tp_i - T_i. Default ``norm="l1"``: the
origin time is their median and the misfit chi2 = 2 sum|o_i - t0| / b, i.e. -2 log-likelihood
for Laplace pick errors of scale b = sigma / sqrt(2) (standard deviation sigma =
``pick_sigma_s``). The L1 norm keeps one wrong pick (a detector picking 0.5 s early on emergent
onsets, a pick on a different event) from dragging the solution, which least squares does;
``norm="l2"`` gives the least-squares version (mean origin time, chi2 = sum(o_i - t0)^2 / sigma^2).
Stations that report but have *not* triggered constrain too ("not yet arrived", as in ElarmS or
PLUM). If a node predicts a silent station's P more than ``silent_margin_s`` (the time a trigger
takes) before that station's newest score, the node must explain why it has not triggered: a missed
detection, of probability ``silent_miss_prob``. So each such station adds -2 ln(silent_miss_prob)
(4.6 for 0.1) to the misfit, ramped in over ``silent_ramp_s`` of shortfall -- a bounded penalty,
so a station the detector misses cannot pull the solution away the way an unbounded
(residual-like) penalty does, while several silent stations still rule a region out. Only the
``max_silent`` silent stations nearest to the triggered ones are used: they are the ones that bound
the solution, and every silent station costs a distance per grid node (with all 488 silent
stations of a 500-station network one location took 0.54 s, with 24 about 0.03 s). The best node
wins. Uncertainty: the largest
horizontal distance from the best node to any node with chi2 <= chi2_min + 5.99 (the
likelihood-ratio 95 % region for two horizontal parameters, depth and origin time profiled out),
at least half a grid step; since sigma is a fixed pick error and not estimated from the
residuals, a bad fit does not shrink it. The
origin-time uncertainty is the spread of the origin times over the same region plus
sigma / sqrt(n). Best node on the grid edge: no location (the event is outside the grid).

Cost: the travel times of the coarse grid (nodes x depths x stations, read from the table once for
all depths) dominate; ``locate_without_each`` (the associator's retry without each pick in turn)
computes them once for all subsets that keep the same earliest pick, which makes a 12-pick retry
about 2.5x cheaper than 12 separate calls with the same results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator, model_validator

from services.common.settings import CoreModel, not_a_setting

NS = 1_000_000_000
KM_PER_DEG = 111.19
VS_FACTOR = math.sqrt(3.0)  # S travel time / P travel time (Poisson solid)
CHI2_95_2DOF = 5.99
TABLE_STEP_KM = 0.5
DEFAULT_HALF_WIDTH_KM = 150.0


@dataclass(frozen=True)
class VelocityModel:
    """Flat P-velocity layers: ``tops_km[i]`` is the top of layer i (the last one is a half-space)."""

    name: str
    tops_km: tuple[float, ...]
    vp_km_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.tops_km) != len(self.vp_km_s) or not self.tops_km or self.tops_km[0] != 0.0:
            raise ValueError("tops_km and vp_km_s must have equal length, starting at depth 0")
        if any(b <= a for a, b in zip(self.tops_km, self.tops_km[1:], strict=False)):
            raise ValueError("layer tops must increase")
        if any(v <= 0 for v in self.vp_km_s):
            raise ValueError("velocities must be > 0")


IASP91 = VelocityModel("iasp91", (0.0, 20.0, 35.0), (5.80, 6.50, 8.04))
EARTH_RADIUS_KM = 6371.0


def flatten_depth(depth_km: float) -> float:
    """Earth-flattening transformation of a depth (km)."""
    return EARTH_RADIUS_KM * math.log(EARTH_RADIUS_KM / (EARTH_RADIUS_KM - depth_km))


def flattened(model: VelocityModel) -> VelocityModel:
    """The flat-layer equivalent of a spherical ``model`` (velocities scaled at mid-layer)."""
    tops = model.tops_km
    mids = [(a + b) / 2 for a, b in zip(tops, tops[1:], strict=False)] + [tops[-1]]
    return VelocityModel(
        model.name + "-flat",
        tuple(flatten_depth(t) for t in tops),
        tuple(v * EARTH_RADIUS_KM / (EARTH_RADIUS_KM - m) for v, m in zip(model.vp_km_s, mids, strict=True)),
    )


def iasp91_first_p(depth_km: float, distances_km: npt.ArrayLike) -> np.ndarray:
    """First-P times (s) of the flattened IASP91 crust at epicentral ``distances_km`` (surface arc)."""
    return first_p_times(flattened(IASP91), flatten_depth(max(0.0, depth_km)), distances_km)


class LocatorConfig(CoreModel):
    """Knobs of the grid-search locator; the service exposes them as ``--locate-*`` (group ``locator``)."""

    velocity_model: str = not_a_setting("iasp91", "iasp91 (layered, see the module docstring) or homogeneous.")
    vp_km_s: float = Field(6.0, gt=0, description="Homogeneous P velocity of the location grid search.")
    depths_km: tuple[float, ...] = not_a_setting((2.0, 6.0, 10.0, 15.0, 20.0, 30.0), "Trial depths.")
    half_width_km: float | None = Field(
        None,
        gt=0,
        description="Half-width of the location grid around the earliest station; auto (unset): max(150 km, "
        "1.25 x the 90th-percentile link radius).",
    )
    step_km: float = not_a_setting(2.0, "Coarse grid step.")
    pick_sigma_s: float = not_a_setting(0.5, "Pick-time standard deviation.")
    silent_margin_s: float = not_a_setting(2.0, "Margin before a silent station counts against a node.")
    silent_miss_prob: float = not_a_setting(0.1, "Chance that a station the P has reached has not triggered (yet).")
    silent_ramp_s: float = not_a_setting(1.0, "Ramp of the silent-station penalty.")
    max_silent: int = not_a_setting(24, "Silent stations used: those nearest to the triggered stations.")
    min_stations: int = Field(
        4,
        description="Triggered stations with coordinates needed to locate (with 3, the stations that have not "
        "triggered yet bound the solution; an uncertain one is published flagged).",
    )
    max_uncertainty_km: float = Field(
        50.0,
        description="Locations more uncertain than this (95 %, horizontal) are published flagged "
        "uncertain (JSON location.uncertain), and not used to test which triggers join the event.",
    )
    norm: str = not_a_setting("l1", "l1 (robust to a wrong pick) or l2 (least squares).")

    @field_validator("half_width_km", mode="before")
    @classmethod
    def _auto(cls, value: object) -> object:
        return None if value == "auto" else value

    @model_validator(mode="after")
    def _check(self) -> LocatorConfig:
        if self.norm not in ("l1", "l2"):
            raise ValueError(f"norm must be l1 or l2, not {self.norm!r}")
        if not 0.0 < self.silent_miss_prob < 1.0 or self.silent_ramp_s <= 0:
            raise ValueError("silent_miss_prob must be in (0, 1) and silent_ramp_s > 0")
        if self.max_silent < 0:
            raise ValueError("max_silent must be >= 0")
        return self

    @property
    def grid_half_width_km(self) -> float:
        return DEFAULT_HALF_WIDTH_KM if self.half_width_km is None else self.half_width_km

    @property
    def max_distance_km(self) -> float:
        """Longest horizontal distance the search can ask for (grid corner to a station)."""
        return 4.0 * self.grid_half_width_km + 50.0


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    depth_km: float
    origin_time_ns: int
    uncertainty_km: float
    rms_s: float
    n_stations: int
    origin_time_uncertainty_s: float = 0.0
    bounded: bool = True  # False: the 95 % region reaches the grid edge (uncertainty is a lower bound)


def _layer_thickness_above(model: VelocityModel, depth_km: float) -> np.ndarray:
    """Thickness of each layer crossed by a ray from ``depth_km`` up to the surface."""
    tops = np.array(model.tops_km)
    bottoms = np.append(tops[1:], np.inf)
    return np.clip(np.minimum(bottoms, depth_km) - tops, 0.0, None)


def first_p_times(model: VelocityModel, depth_km: float, distances_km: npt.ArrayLike) -> np.ndarray:
    """First-arrival P time (s) at surface stations ``distances_km`` from a source at ``depth_km``."""
    x = np.asarray(distances_km, dtype=np.float64)
    v = np.array(model.vp_km_s)
    tops = np.array(model.tops_km)
    z = max(0.0, float(depth_km))
    h_up = _layer_thickness_above(model, z)
    crossed = h_up > 0
    # Direct wave: x(p), t(p) sampled towards grazing in the fastest crossed layer, then interpolated.
    if not crossed.any():
        direct = x / v[0]
    else:
        vmax = float(v[crossed].max())
        u = 1.0 - np.logspace(0.0, -10.0, 6000)  # p / p_max from 0 towards 1, dense near grazing
        p = (u / vmax)[:, None]
        cos = np.sqrt(np.clip(1.0 - (p * v) ** 2, 1e-30, None))
        xp = (h_up * p * v / cos).sum(axis=1)
        tp = (h_up / (v * cos)).sum(axis=1)
        direct = np.interp(x, xp, tp)
        beyond = x > xp[-1]
        direct[beyond] = tp[-1] + (x[beyond] - xp[-1]) / vmax
    best = direct
    # Head waves along the top of every deeper layer that is faster than all layers above it.
    for j in range(1, len(v)):
        if tops[j] < z or v[j] <= v[:j].max():
            continue
        pj = 1.0 / v[j]
        full = np.diff(tops[: j + 1])  # layers 0..j-1, up leg
        bottoms = tops[1 : j + 1]
        down = np.clip(bottoms - np.maximum(tops[:j], z), 0.0, None)  # source down to the refractor
        legs = full + down
        eta = np.sqrt(1.0 / v[:j] ** 2 - pj * pj)
        x_crit = float((legs * pj * v[:j] / np.sqrt(1.0 - (pj * v[:j]) ** 2)).sum())
        head = np.where(x >= x_crit, x * pj + float((legs * eta).sum()), np.inf)
        best = np.minimum(best, head)
    return best


@dataclass(frozen=True)
class TravelTimeTable:
    """First-P times on a (depth, distance) grid; ``times(depth_index, distances)`` interpolates."""

    depths_km: tuple[float, ...]
    step_km: float
    table: np.ndarray  # (n_depths, n_distances) seconds

    @cached_property
    def _slope(self) -> np.ndarray:
        return np.diff(self.table, axis=1)

    def _cell(self, distances_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table column left of each distance and the fraction of the step beyond it."""
        f = distances_km * (1.0 / self.step_km)
        i = np.minimum(f.astype(np.intp), self.table.shape[1] - 2)
        return i, f - i

    def times(self, depth_index: int, distances_km: np.ndarray) -> np.ndarray:
        i, w = self._cell(distances_km)
        return self.table[depth_index, i] + self._slope[depth_index, i] * w

    def times_all(self, distances_km: np.ndarray) -> np.ndarray:
        """Times at every depth: (n_depths, *distances.shape); the interpolation weights are
        computed once for all depths."""
        i, w = self._cell(distances_km)
        out = np.take(self._slope, i, axis=1)
        out *= w
        out += np.take(self.table, i, axis=1)
        return out


@lru_cache(maxsize=8)
def travel_time_table(cfg: LocatorConfig) -> TravelTimeTable:
    """The table of ``cfg``'s velocity model and depths (built once per configuration, cached)."""
    n = int(math.ceil(cfg.max_distance_km / TABLE_STEP_KM)) + 2
    dist = np.arange(n) * TABLE_STEP_KM
    if cfg.velocity_model == "homogeneous":
        rows = [np.sqrt(dist**2 + z * z) / cfg.vp_km_s for z in cfg.depths_km]
    elif cfg.velocity_model == "iasp91":
        rows = [iasp91_first_p(z, dist) for z in cfg.depths_km]
    else:
        raise ValueError(f"unknown velocity model {cfg.velocity_model!r} (iasp91 or homogeneous)")
    return TravelTimeTable(tuple(cfg.depths_km), TABLE_STEP_KM, np.vstack(rows))


def first_p_s(cfg: LocatorConfig, depth_km: float, distance_km: float) -> float:
    """The locator's first-P travel time (s) from a source at one of ``cfg.depths_km``."""
    k = cfg.depths_km.index(depth_km)
    return float(travel_time_table(cfg).times(k, np.array([distance_km]))[0])


def locate(
    picks: Sequence[tuple[float, float, int]],
    silent: Sequence[tuple[float, float, int]] = (),
    cfg: LocatorConfig | None = None,
) -> Location | None:
    """Locate from ``picks`` (lat, lon, P time ns) and ``silent`` (lat, lon, newest score end ns of
    stations that have not triggered). None with fewer than 3 picks or a best node on the edge."""
    cfg = cfg or LocatorConfig()
    if len(picks) < 3:
        return None
    return _Search(picks, silent, cfg).solve(np.arange(len(picks)))


def locate_without_each(
    picks: Sequence[tuple[float, float, int]],
    silent: Sequence[tuple[float, float, int]] = (),
    cfg: LocatorConfig | None = None,
) -> list[Location | None]:
    """``[locate(picks without pick i, silent, cfg) for i in range(len(picks))]``, with the coarse
    grid's travel times computed once for all of them (the leave-one-out retry of the associator).
    Without the earliest pick the grid moves (it is centred there), so that one is located apart."""
    cfg = cfg or LocatorConfig()
    n = len(picks)
    if n < 4:
        return [None] * n
    ref = min(range(n), key=lambda i: picks[i][2])
    without = {i: np.delete(np.arange(n), i) for i in range(n) if i != ref}
    search = _Search(picks, silent, cfg, subsets=list(without.values()))
    return [
        search.solve(without[i]) if i in without else locate(picks[:i] + picks[i + 1 :], silent, cfg)
        for i in range(n)
    ]


class _Search:
    """The grid search of ``locate`` for one reference (earliest pick) and projection; the coarse
    grid's travel times to every pick and to the silent stations any subset of picks uses are
    computed once, so several subsets of the picks can be solved for the price of one grid."""

    def __init__(
        self,
        picks: Sequence[tuple[float, float, int]],
        silent: Sequence[tuple[float, float, int]],
        cfg: LocatorConfig,
        subsets: Sequence[np.ndarray] = (),
    ) -> None:
        self.cfg = cfg
        self.ttt = travel_time_table(cfg)
        self.n_picks = len(picks)
        ref = min(picks, key=lambda p: p[2])
        self.lat0, self.lon0, self.t_ref = ref
        self.coslat = math.cos(math.radians(self.lat0))
        self.sx, self.sy = self._xy(picks)
        self.tp = np.array([(p[2] - self.t_ref) / NS for p in picks], dtype=np.float64)
        if silent:
            self.qx, self.qy = self._xy(silent)
            self.qe = np.array([(q[2] - self.t_ref) / NS - cfg.silent_margin_s for q in silent], dtype=np.float64)
        else:
            self.qx = self.qy = self.qe = np.zeros(0)
        self.silent_of: dict[bytes, np.ndarray] = {
            sub.tobytes(): self._nearest_silent(sub) for sub in [np.arange(self.n_picks), *subsets]
        }
        self.used = np.unique(np.concatenate([np.zeros(0, np.intp), *self.silent_of.values()]))
        # coarse grid over the whole area; its travel times to the picks and to the silent stations
        # some subset uses (columns in ``used`` order), computed once
        self.half_width = hw = cfg.grid_half_width_km
        self.coarse = max(cfg.step_km, hw / 30.0)
        axis = np.arange(-hw, hw + 1e-9, self.coarse)
        self.cx, self.cy = (a.ravel() for a in np.meshgrid(axis, axis, indexing="xy"))
        self.c_o, self.c_short0 = self._offsets(
            self._times(self.cx, self.cy, self.sx, self.sy),
            self._times(self.cx, self.cy, self.qx[self.used], self.qy[self.used]),
            self.tp,
            self.qe[self.used],
        )

    def _xy(self, pts: Sequence[tuple[float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
        lat = np.array([p[0] for p in pts], dtype=np.float64)
        lon = np.array([p[1] for p in pts], dtype=np.float64)
        return (lon - self.lon0) * KM_PER_DEG * self.coslat, (lat - self.lat0) * KM_PER_DEG

    def _nearest_silent(self, sub: np.ndarray) -> np.ndarray:
        """Indices of the silent stations used with the picks ``sub``: the ``max_silent`` nearest."""
        n = len(self.qx)
        if n <= self.cfg.max_silent:
            return np.arange(n)
        sx, sy = self.sx[sub], self.sy[sub]
        near = np.sqrt((self.qx[:, None] - sx) ** 2 + (self.qy[:, None] - sy) ** 2).min(axis=1)
        return np.sort(np.argsort(near, kind="stable")[: self.cfg.max_silent])

    def _times(self, gx: np.ndarray, gy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Travel times (stations, n_depths, nodes) from every node at every depth: stations first,
        so a subset of stations is a cheap row selection and sums over stations run over rows."""
        t = self.ttt.times_all(np.sqrt((x[:, None] - gx) ** 2 + (y[:, None] - gy) ** 2))
        return np.ascontiguousarray(t.transpose(1, 0, 2))

    def _offsets(
        self, t_p: np.ndarray, t_q: np.ndarray, tp: np.ndarray, qe: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pick offsets tp - T (picks, D, nodes) and silent-station shortfalls before the origin
        time, (qe - T) / ramp (silent, D, nodes): what ``_misfit`` needs, independent of t0."""
        return tp[:, None, None] - t_p, (qe[:, None, None] - t_q) * (1.0 / self.cfg.silent_ramp_s)

    def _misfit(
        self, o: np.ndarray, short0: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float, int, int, float]:
        """Per node: min-over-depth chi2 and its origin time; and the best (chi2, node, depth, t0).
        ``o``, ``short0``: see ``_offsets``."""
        cfg = self.cfg
        n = o.shape[0]
        if cfg.norm == "l1":
            srt = np.sort(o, axis=0)
            t0 = srt[n // 2] if n % 2 else (srt[n // 2 - 1] + srt[n // 2]) / 2.0
            b_lap = cfg.pick_sigma_s / math.sqrt(2.0)  # Laplace scale with standard deviation sigma
            dev = o - t0
            chi2 = (2.0 / b_lap) * np.abs(dev, out=dev).sum(axis=0)
        else:
            t0 = o.mean(axis=0)
            chi2 = ((o - t0) ** 2).sum(axis=0) / cfg.pick_sigma_s**2
        if short0.shape[0]:
            short = short0 - t0 * (1.0 / cfg.silent_ramp_s)
            miss_pen = -2.0 * math.log(cfg.silent_miss_prob)
            chi2 += miss_pen * np.clip(short, 0.0, 1.0, out=short).sum(axis=0)
        kz = np.argmin(chi2, axis=0)  # the first (shallowest) depth among equals
        nodes = np.arange(chi2.shape[1])
        flat = int(np.argmin(chi2))  # row-major: the shallowest depth, then the first node
        k, i = divmod(flat, chi2.shape[1])
        return chi2[kz, nodes], t0[kz, nodes], float(chi2[k, i]), i, k, float(t0[k, i])

    def solve(self, sub: np.ndarray) -> Location | None:
        """The location from the picks ``sub`` (indices), or None (best coarse node on the edge)."""
        cfg = self.cfg
        q = self.silent_of[sub.tobytes()]
        sx, sy, tp, qx, qy, qe = self.sx[sub], self.sy[sub], self.tp[sub], self.qx[q], self.qy[q], self.qe[q]
        c_o = self.c_o if len(sub) == self.n_picks else self.c_o[sub]
        c_chi2, c_t0, _, c_node, _, _ = self._misfit(c_o, self.c_short0[np.searchsorted(self.used, q)])
        cx, cy = self.cx, self.cy
        if abs(cx[c_node]) >= self.half_width - 1e-6 or abs(cy[c_node]) >= self.half_width - 1e-6:
            return None  # best on the edge: the event is outside the search area
        # a fine grid around the best coarse node
        k = math.ceil(self.coarse / cfg.step_km)
        fine_axis = cfg.step_km * np.arange(-k, k + 1)
        fx, fy = (a.ravel() for a in np.meshgrid(fine_axis + cx[c_node], fine_axis + cy[c_node], indexing="xy"))
        f_chi2, f_t0, chi2_min, node, kz, t0 = self._misfit(
            *self._offsets(self._times(fx, fy, sx, sy), self._times(fx, fy, qx, qy), tp, qe)
        )
        bx, by = fx[node], fy[node]
        limit = chi2_min + CHI2_95_2DOF
        cin, fin = c_chi2 <= limit, f_chi2 <= limit
        gx, gy = np.concatenate([cx[cin], fx[fin]]), np.concatenate([cy[cin], fy[fin]])
        edge = self.half_width - 1e-6
        bounded = not bool(((np.abs(cx[cin]) >= edge) | (np.abs(cy[cin]) >= edge)).any())
        unc = max(float(np.sqrt((gx - bx) ** 2 + (gy - by) ** 2).max(initial=0.0)), cfg.step_km / 2)
        t0s = np.concatenate([c_t0[cin], f_t0[fin]])
        t0_unc = float(np.abs(t0s - t0).max(initial=0.0)) + cfg.pick_sigma_s / math.sqrt(len(sub))
        d_best = np.sqrt((bx - sx) ** 2 + (by - sy) ** 2)
        rms = float(np.sqrt(np.mean((tp - self.ttt.times(kz, d_best) - t0) ** 2)))
        return Location(
            latitude=self.lat0 + by / KM_PER_DEG,
            longitude=self.lon0 + bx / (KM_PER_DEG * self.coslat),
            depth_km=float(cfg.depths_km[kz]),
            origin_time_ns=self.t_ref + int(round(t0 * NS)),
            uncertainty_km=unc,
            rms_s=rms,
            n_stations=len(sub),
            origin_time_uncertainty_s=t0_unc,
            bounded=bounded,
        )
