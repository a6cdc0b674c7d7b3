"""Station inventory: the stations' coordinates and gains, read from a station file (CSV or StationXML).

CSV format (header row required, extra columns ignored; ``gain`` and ``gain_unit`` optional)::

    network,station,location,latitude,longitude,elevation_m,gain,gain_unit
    CI,PAS,,34.148,-118.171,257,6.27e8,M/S

StationXML is read with ObsPy's ``read_inventory`` (imported only then); the location code is taken
from the station's first channel, the gain from the vertical channel's InstrumentSensitivity.
Coordinates are looked up by (network, station): all sensors of a station share its coordinates,
which is precise enough for association (metres vs. kilometres). One home for every service that
reads a station file (alerting, validate, dashboard, the in-process pipeline); the network geometry
derived from the coordinates is the association's (``services.alerting.association.geometry``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.domain import Station, station_id
from services.common.exceptions import InventoryError

CSV_COLUMNS = ("network", "station", "location", "latitude", "longitude", "elevation_m")
CSV_SUFFIXES = (".csv", ".txt")


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() in CSV_SUFFIXES


def _csv_lines(path: Path) -> list[str]:
    """The file's lines without blank and ``#`` comment lines; InventoryError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read {path}: {exc}") from exc
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _read_stationxml(path: Path) -> Any:
    """ObsPy's Inventory of a StationXML file; InventoryError names the file when it cannot be read."""
    from obspy import read_inventory  # heavy import, only when StationXML is used

    try:
        return read_inventory(str(path))
    except Exception as exc:  # obspy raises many types for bad files
        raise InventoryError(f"cannot read StationXML {path}: {exc}") from exc


def _existing(path: Path | str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InventoryError(f"station file {path} does not exist")
    return path


def _check_coords(st: Station, where: str) -> None:
    if not (math.isfinite(st.latitude) and -90 <= st.latitude <= 90):
        raise InventoryError(f"{where}: {st.id} latitude {st.latitude} out of range")
    if not (math.isfinite(st.longitude) and -180 <= st.longitude <= 360):
        raise InventoryError(f"{where}: {st.id} longitude {st.longitude} out of range")


class StationInventory:
    """Stations by (network, station); immutable after construction."""

    def __init__(self, stations: Iterable[Station] = ()) -> None:
        self._by_id: dict[tuple[str, str], Station] = {}
        for st in stations:
            self._by_id[(st.network, st.station)] = st

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Station]:
        return iter(self._by_id.values())

    def __contains__(self, key: object) -> bool:
        return key in self._by_id

    def get(self, network: str, station: str) -> Station | None:
        return self._by_id.get((network, station))

    def by_stream_key(self, key: str) -> Station | None:
        """Look up by Kafka stream key "NET.STA.LOC.BI?" (or any "NET.STA[...]" dotted id)."""
        parts = key.split(".")
        if len(parts) < 2:
            return None
        return self.get(parts[0], parts[1])

    @classmethod
    def from_csv(cls, path: Path) -> StationInventory:
        path = Path(path)
        reader = csv.DictReader(_csv_lines(path))
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InventoryError(f"{path}: missing columns {missing} (need header {','.join(CSV_COLUMNS)})")
        stations = []
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            try:
                st = Station(
                    network=row["network"].strip(),
                    station=row["station"].strip(),
                    location=(row["location"] or "").strip(),
                    latitude=float(row["latitude"]),
                    longitude=float(row["longitude"]),
                    elevation_m=float(row["elevation_m"] or 0.0),
                )
            except (TypeError, ValueError) as exc:
                raise InventoryError(f"{where}: {exc}") from exc
            if not st.network or not st.station:
                raise InventoryError(f"{where}: network and station are required")
            _check_coords(st, where)
            stations.append(st)
        return cls(stations)

    @classmethod
    def from_stationxml(cls, path: Path) -> StationInventory:
        inv = _read_stationxml(Path(path))
        stations = []
        for net in inv:
            for sta in net:
                loc = sta.channels[0].location_code if sta.channels else ""
                st = Station(
                    network=net.code,
                    station=sta.code,
                    location=loc or "",
                    latitude=float(sta.latitude),
                    longitude=float(sta.longitude),
                    elevation_m=float(sta.elevation or 0.0),
                )
                _check_coords(st, str(path))
                stations.append(st)
        return cls(stations)

    @classmethod
    def load(cls, path: Path | str) -> StationInventory:
        """CSV when the file name ends in .csv/.txt, else StationXML."""
        path = _existing(path)
        return cls.from_csv(path) if _is_csv(path) else cls.from_stationxml(path)


@dataclass(frozen=True, slots=True)
class Gain:
    """Overall sensitivity of a station's vertical channel: counts per ``unit`` (M/S or M/S**2)."""

    value: float
    unit: str = "M/S"


def load_gains(path: Path | str) -> dict[str, Gain]:
    """Gains by "NET.STA" from a station CSV (optional ``gain`` and ``gain_unit`` columns; rows
    without a gain are skipped) or StationXML (the vertical channel's InstrumentSensitivity)."""
    path = _existing(path)
    out: dict[str, Gain] = {}
    if _is_csv(path):
        reader = csv.DictReader(_csv_lines(path))
        if "gain" not in (reader.fieldnames or []):
            return out
        for lineno, row in enumerate(reader, start=2):
            raw = (row.get("gain") or "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError as exc:
                raise InventoryError(f"{path}:{lineno}: gain {raw!r}: {exc}") from exc
            if not (math.isfinite(value) and value > 0):
                raise InventoryError(f"{path}:{lineno}: gain must be a positive number, got {raw!r}")
            unit = (row.get("gain_unit") or "M/S").strip().upper() or "M/S"
            out[station_id(row["network"].strip(), row["station"].strip())] = Gain(value, unit)
        return out
    for net in _read_stationxml(path):
        for sta in net:
            for cha in sta.channels:
                resp = cha.response
                sens = getattr(resp, "instrument_sensitivity", None) if resp is not None else None
                if not cha.code.endswith("Z") or sens is None or not sens.value:
                    continue
                out.setdefault(
                    station_id(net.code, sta.code), Gain(float(sens.value), str(sens.input_units or "M/S").upper())
                )
    return out


def gains_by_station(gains: Mapping[str, Gain] | None) -> dict[str, float]:
    """Plain counts-per-unit values by "NET.STA" (what the Associator takes)."""
    return {k: g.value for k, g in (gains or {}).items()}
