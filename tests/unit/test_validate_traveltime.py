"""Reference P times of ``eew validate``: the TauP tables against TauP itself."""

from __future__ import annotations

import pytest

from services.common.exceptions import ConfigError
from services.validate.traveltime import KM_PER_DEG, TauPTravelTimes


def _taup(km: float, depth: float) -> float:
    from obspy.taup import TauPyModel

    arr = TauPyModel("iasp91").get_travel_times(source_depth_in_km=depth, distance_in_degree=km / KM_PER_DEG,
                                                phase_list=["ttp"])
    return min(a.time for a in arr)


@pytest.mark.parametrize(("km", "depth"), [(0.0, 0.0), (13.7, 0.0), (161.3, 0.0), (87.0, 2.5), (640.0, 0.0)])
def test_table_matches_taup(km: float, depth: float) -> None:
    """Distance and depth interpolation within 0.02 s of TauP at the exact point (iasp91: Pn beyond ~150 km)."""
    assert TauPTravelTimes("iasp91").p_seconds(km, depth) == pytest.approx(_taup(km, depth), abs=0.02)


def test_times_grow_with_distance_and_name_the_model() -> None:
    tt = TauPTravelTimes("iasp91")
    times = [tt.p_seconds(km, 0.0) for km in (0.0, 10.0, 50.0, 100.0, 300.0)]
    assert times == sorted(times) and times[0] == pytest.approx(0.0, abs=1e-6)
    assert tt.label == "TauP iasp91"


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no_such_model"):
        TauPTravelTimes("no_such_model").p_seconds(10.0, 5.0)
