"""Reference P travel times of ``eew validate``: ObsPy TauP (1-D Earth model) tables.

TauP is slow per call (~10 ms), so for each source depth one table of first-P times against
epicentral distance is built once (about 130 TauP calls) and read by linear interpolation; the
interpolation error on the grid used here is below 0.01 s. The first P is the earliest arrival of
TauP's ``ttp`` phase group (p, P, Pn, Pdiff, ...). Depths are rounded to ``depth_step_km``
(1 km: < 0.1 s).
Station elevation is ignored (sources below sea level, receivers at the surface).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from services.common.exceptions import ConfigError

#: Epicentral distances (km) of the table: dense near the source, coarser far away.
GRID_KM = np.concatenate([np.arange(0.0, 200.0, 2.5), np.arange(200.0, 1000.0, 10.0),
                          np.arange(1000.0, 3000.0, 50.0), np.arange(3000.0, 20001.0, 500.0)])
KM_PER_DEG = 111.19492664455873  # 6371 km sphere, as ObsPy's kilometer2degrees
#: Tables built in this process, by model name and rounded depth (deterministic, so shared).
_TABLES: dict[str, dict[float, np.ndarray]] = {}


class TauPTravelTimes:
    """First-P travel times (s) by epicentral distance (km) and source depth (km) from a TauP model."""

    def __init__(self, model: str = "iasp91", depth_step_km: float = 1.0) -> None:
        if depth_step_km <= 0:
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

    def _depth(self, depth_km: float) -> float:
        d = max(0.0, float(depth_km)) if math.isfinite(depth_km) else 0.0
        return round(d / self.depth_step_km) * self.depth_step_km

    def table(self, depth_km: float) -> np.ndarray:
        """First-P times at ``GRID_KM`` for one (rounded) depth, built once."""
        d = self._depth(depth_km)
        tab = self._tables.get(d)
        if tab is None:
            times = []
            for km in GRID_KM:
                arr = self._model.get_travel_times(source_depth_in_km=d, distance_in_degree=km / KM_PER_DEG,
                                                   phase_list=["ttp"])
                times.append(min((a.time for a in arr), default=math.nan))
            tab = np.asarray(times, dtype=np.float64)
            ok = np.isfinite(tab)
            if not ok.any():
                raise ConfigError(f"TauP {self.model_name}: no P arrival at depth {d} km")
            tab = np.interp(GRID_KM, GRID_KM[ok], tab[ok])  # fill the rare distance without a P
            self._tables[d] = tab
        return tab

    def p_seconds(self, epicentral_km: float, depth_km: float) -> float:
        """First-P travel time in seconds."""
        return float(np.interp(epicentral_km, GRID_KM, self.table(depth_km)))
