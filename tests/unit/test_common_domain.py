"""Station ids and stream keys: one spelling (``NET.STA``, ``NET.STA.LOC.BI?``) for every service."""

import pytest

from services.common.domain import Station, StreamId, haversine_km, nslc, station_id, station_of, stream_key


def test_stream_key_groups_the_components_of_one_sensor() -> None:
    assert stream_key("NC", "MEM", "", "HHZ") == stream_key("NC", "MEM", "", "HHE") == "NC.MEM..HH?"
    assert stream_key("NC", "MEM", "", "HH") == "NC.MEM..HH?"  # band+instrument alone (scores)
    assert stream_key("NC", "MEM", "00", "HNZ") != stream_key("NC", "MEM", "00", "HHZ")


def test_station_of_any_dotted_id() -> None:
    assert station_id("NC", "MEM") == "NC.MEM"
    for key in ("NC.MEM..HH?", "NC.MEM.00.HNZ", "NC.MEM"):
        assert station_of(key) == "NC.MEM"
    assert nslc("NC", "MEM", "00", "HNZ") == "NC.MEM.00.HNZ"


def test_stream_id_round_trip_and_bad_key_named() -> None:
    sid = StreamId.parse("XA.S01.00.HN?")
    assert (sid.network, sid.station, sid.location, sid.band_instrument) == ("XA", "S01", "00", "HN")
    assert sid.key == "XA.S01.00.HN?" and sid.station_id == "XA.S01"
    assert StreamId.parse("XA.S01..HHZ").key == "XA.S01..HH?"
    with pytest.raises(ValueError, match="'XA.S01'"):
        StreamId.parse("XA.S01")


def test_station_and_distance() -> None:
    """One Station type (the inventory's entries) and the great-circle distance of its coordinates."""
    from services.common.inventory import StationInventory

    st = Station("XA", "S01", "00", 35.0, -118.0)
    assert st.id == "XA.S01" and StationInventory([st]).by_stream_key("XA.S01.00.HN?") is st
    assert haversine_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(111.195, abs=1e-3)
    assert haversine_km(35.0, -118.0, 35.0, -118.0) == 0.0
