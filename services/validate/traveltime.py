"""Reference P travel times of ``eew validate``: ObsPy TauP (1-D Earth model) tables.

TauP is slow per call (~10 ms on a quiet machine), so first-P times are tabulated once per model
and source depth against epicentral distance and read by linear interpolation: in distance on a
grid (2.5 km steps to 200 km, then 10, 50 and 500 km steps; interpolation error < 0.01 s) and in
depth between tables every ``depth_step_km`` (5 km: < 0.05 s against TauP at the exact depth).
Distances beyond ``NEAR_KM`` are tabulated only when asked for. The first P is the earliest
arrival of TauP's ``ttp`` phase group (p, P, Pn, Pdiff, ...). Station elevation is ignored
(sources below sea level, receivers at the surface).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from services.common.exceptions import ConfigError

NEAR_KM = 1000.0
#: Epicentral distances (km) of the tables: dense near the source, coarser far away.
GRID_KM = np.concatenate([np.arange(0.0, 200.0, 2.5), np.arange(200.0, 1000.0, 10.0),
                          np.arange(1000.0, 3000.0, 50.0), np.arange(3000.0, 20001.0, 500.0)])
KM_PER_DEG = 111.19492664455873  # 6371 km sphere, as ObsPy's kilometer2degrees
#: Tables built in this process, by model name, depth and near/far part (deterministic, so shared).
_TABLES: dict[str, dict[tuple[float, bool], np.ndarray]] = {}


class TauPTravelTimes:
    """First-P travel times (s) by epicentral distance (km) and source depth (km) from a TauP model."""

    def __init__(self, model: str = "iasp91", depth_step_km: float = 5.0) -> None:
        if not depth_step_km > 0:
            raise ConfigError("depth_step_km must be > 0")
        self.model_name = model
        self.depth_step_km = depth_step_km
        self._tables = _TABLES.setdefault(model, {})  # shared by every instance of the same model

    @cached_property
    def _model(self):  # noqa: ANN202 -- obspy.taup.TauPyModel, imported lazily (slow import)
        from obspy.taup import TauPyModel

        try:
            return TauPyModel(self.model_name)
        except Exception as exc:  # noqa: BLE001 -- ObsPy raises several types for unknown models
            raise ConfigError(f"TauP model {self.model_name!r} cannot be loaded: {exc}") from exc

    @property
    def label(self) -> str:
        """How the report names these times."""
        return f"TauP {self.model_name}"

    def _part(self, depth_km: float, far: bool) -> np.ndarray:
        key = (depth_km, far)
        tab = self._tables.get(key)
        if tab is None:
            grid = GRID_KM[GRID_KM > NEAR_KM] if far else GRID_KM[GRID_KM <= NEAR_KM]
            times = []
            for km in grid:
                arr = self._model.get_travel_times(source_depth_in_km=depth_km, distance_in_degree=km / KM_PER_DEG,
                                                   phase_list=["ttp"])
                times.append(min((a.time for a in arr), default=math.nan))
            tab = np.asarray(times, dtype=np.float64)
            ok = np.isfinite(tab)
            if not ok.any():
                raise ConfigError(f"TauP {self.model_name}: no P arrival at depth {depth_km} km")
            tab = np.interp(grid, grid[ok], tab[ok])  # fill the rare distance without a P
            self._tables[key] = tab
        return tab

    def table(self, depth_km: float, far: bool = False) -> np.ndarray:
        """First-P times at ``GRID_KM`` (the near part only unless ``far``) for a tabulated depth."""
        near = self._part(depth_km, False)
        return np.concatenate([near, self._part(depth_km, True)]) if far else near

    def p_seconds(self, epicentral_km: float, depth_km: float) -> float:
        """First-P travel time in seconds."""
        d = max(0.0, float(depth_km)) if math.isfinite(depth_km) else 0.0
        far = epicentral_km > NEAR_KM
        grid = GRID_KM if far else GRID_KM[GRID_KM <= NEAR_KM]
        lo = math.floor(d / self.depth_step_km) * self.depth_step_km
        t_lo = float(np.interp(epicentral_km, grid, self.table(lo, far)))
        if d == lo:
            return t_lo
        hi = lo + self.depth_step_km
        t_hi = float(np.interp(epicentral_km, grid, self.table(hi, far)))
        return t_lo + (t_hi - t_lo) * (d - lo) / self.depth_step_km
