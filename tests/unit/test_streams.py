"""The one scorable-stream rule: which channel codes are velocity, which acceleration, which refused;
which rates are taken (and with which resampling ratio)."""

from __future__ import annotations

import pytest

from services.common.streams import ACCELERATION, VELOCITY, classify_channel, resample_ratio, scorable


@pytest.mark.parametrize(
    ("channel", "quantity"),
    [
        ("HHZ", VELOCITY), ("BHN", VELOCITY), ("EHZ", VELOCITY), ("SHZ", VELOCITY),
        ("DPZ", VELOCITY), ("EPZ", VELOCITY),  # geophones (e.g. the BG network's DP?)
        ("ELZ", VELOCITY), ("SLZ", VELOCITY),  # SEED low-gain seismometers on short-period bands
        ("HNZ", ACCELERATION), ("EN1", ACCELERATION), ("HLZ", ACCELERATION), ("HGE", ACCELERATION),
        ("BLZ", ACCELERATION),
    ],
)  # fmt: skip
def test_channel_quantities(channel: str, quantity: str) -> None:
    info = classify_channel(channel)
    assert not isinstance(info, str) and info.quantity == quantity


def test_refusals_and_rates() -> None:
    assert classify_channel("HMZ") == "unsupported_instrument"
    assert classify_channel("HHX") == "unknown_component"
    assert classify_channel("HZ") == "bad_channel"
    assert resample_ratio(31.25, 100.0) == (16, 5)
    assert resample_ratio(250.0, 100.0) == (2, 5)
    assert resample_ratio(100.00005, 100.0) == (1, 1)  # header drift is not another rate
    assert scorable("HHZ", 15.0) == "rate_below_minimum"
    assert scorable("HHZ", 37.3) == "unsupported_rate"
    assert scorable("DPZ", 250.0) is None
