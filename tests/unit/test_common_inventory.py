"""The station inventory (``services.common.inventory``): coordinates and gains from a station file,
CSV or StationXML, and a clear InventoryError naming the file (and line) for a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.exceptions import InventoryError
from services.common.inventory import Gain, StationInventory, gains_by_station, load_gains

CSV = """network,station,location,latitude,longitude,elevation_m
# comment lines are skipped
CI,PAS,,34.148,-118.171,257
XA,S01,00,35.5,-117.5,
"""


def test_inventory_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "stations.csv"
    path.write_text(CSV)
    inv = StationInventory.load(path)
    assert len(inv) == 2
    pas = inv.get("CI", "PAS")
    assert pas is not None and pas.latitude == pytest.approx(34.148) and pas.elevation_m == 257
    assert inv.by_stream_key("XA.S01.00.HH?") == inv.get("XA", "S01")
    assert inv.get("XA", "S01").elevation_m == 0.0
    assert inv.by_stream_key("nodots") is None and inv.get("CI", "NOPE") is None


@pytest.mark.parametrize(
    "text,match",
    [
        ("network,station,latitude\nCI,PAS,1\n", "missing columns"),
        ("network,station,location,latitude,longitude,elevation_m\nCI,PAS,,91,0,0\n", "latitude"),
        ("network,station,location,latitude,longitude,elevation_m\nCI,PAS,,x,0,0\n", ":2"),
    ],
)
def test_inventory_csv_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InventoryError, match=match):
        StationInventory.load(path)
    with pytest.raises(InventoryError):
        StationInventory.load(tmp_path / "missing.csv")


def test_inventory_from_stationxml(tmp_path: Path) -> None:
    """StationXML written by ObsPy is read back with the first channel's location code."""
    from obspy import UTCDateTime
    from obspy.core.inventory import Channel, Inventory, Network, Site
    from obspy.core.inventory import Station as XStation

    cha = Channel("HHZ", "10", 34.0, -118.0, 100.0, 0.0)
    sta = XStation(
        "ABC", 34.0, -118.0, 100.0, site=Site("test"), channels=[cha], creation_date=UTCDateTime(2020, 1, 1)
    )
    inv = Inventory(networks=[Network("ZZ", stations=[sta])], source="test")
    path = tmp_path / "inv.xml"
    inv.write(str(path), format="STATIONXML")
    got = StationInventory.load(path)
    st = got.get("ZZ", "ABC")
    assert st is not None and st.location == "10" and st.latitude == 34.0 and st.elevation_m == 100.0


def test_load_gains_csv(tmp_path: Path) -> None:
    path = tmp_path / "stations.csv"
    path.write_text(
        "network,station,location,latitude,longitude,elevation_m,gain,gain_unit\n"
        "XX,A,,35,-118,0,6.0e8,\n"
        "XX,B,,35,-118,0,,\n"
        "XX,C,,35,-118,0,4e5,m/s**2\n"
    )
    gains = load_gains(path)
    assert set(gains) == {"XX.A", "XX.C"} and gains["XX.A"].value == 6.0e8 and gains["XX.C"].unit == "M/S**2"
    plain = tmp_path / "plain.csv"
    plain.write_text("network,station,location,latitude,longitude,elevation_m\nXX,A,,35,-118,0\n")
    assert load_gains(plain) == {}
    bad = tmp_path / "bad.csv"
    bad.write_text("network,station,location,latitude,longitude,elevation_m,gain\nXX,A,,35,-118,0,-3\n")
    with pytest.raises(InventoryError, match=":2"):
        load_gains(bad)


def test_load_gains_stationxml(tmp_path: Path) -> None:
    """The vertical channel's InstrumentSensitivity is the gain."""
    from obspy import UTCDateTime
    from obspy.core.inventory import Channel, Inventory, Network, Response, Station
    from obspy.core.inventory.response import InstrumentSensitivity

    def cha(code: str, value: float) -> Channel:
        c = Channel(code, "", 35.0, -118.0, 0.0, 0.0, sample_rate=100.0)
        c.response = Response(instrument_sensitivity=InstrumentSensitivity(value, 1.0, "M/S", "COUNTS"))
        return c

    sta = Station("A", 35.0, -118.0, 0.0, channels=[cha("HHE", 1.0), cha("HHZ", 6.27e8)])
    inv = Inventory([Network("XX", stations=[sta])], source="test")
    inv.networks[0].start_date = UTCDateTime(2020, 1, 1)
    path = tmp_path / "inv.xml"
    inv.write(str(path), format="STATIONXML")
    gains = load_gains(path)
    assert gains["XX.A"].value == pytest.approx(6.27e8) and gains["XX.A"].unit == "M/S"


def test_unreadable_or_missing_station_file_is_an_inventory_error(tmp_path: Path) -> None:
    """A station file that is a directory or missing gives InventoryError naming it (not OSError)."""
    folder = tmp_path / "stations.csv"
    folder.mkdir()
    for load in (StationInventory.load, load_gains):
        with pytest.raises(InventoryError, match="stations.csv"):
            load(folder)
        with pytest.raises(InventoryError, match="does not exist"):
            load(tmp_path / "missing.xml")


def test_gains_by_station_are_the_plain_values() -> None:
    assert gains_by_station({"XX.A": Gain(6.0e8), "XX.C": Gain(4e5, "M/S**2")}) == {"XX.A": 6.0e8, "XX.C": 4e5}
    assert gains_by_station(None) == {}
