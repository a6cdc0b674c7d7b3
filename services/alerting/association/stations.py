"""Station inventory: coordinates by (network, station) from a CSV file or StationXML.

CSV format (header row required, extra columns ignored)::

    network,station,location,latitude,longitude,elevation_m
    CI,PAS,,34.148,-118.171,257

StationXML is read with ObsPy's ``read_inventory``; the location code is taken from the
station's first channel. Coordinates are looked up by (network, station): all sensors of a
station share its coordinates, which is precise enough for association (metres vs. kilometres).
``Station`` and ``haversine_km`` are the shared domain types of ``services.common.domain``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from services.alerting.exceptions import InventoryError
from services.common.domain import EARTH_RADIUS_KM, Station
from services.common.domain import haversine_km as haversine_km  # re-exported: the inventory's users

CSV_COLUMNS = ("network", "station", "location", "latitude", "longitude", "elevation_m")


def neighbour_distances_km(stations: Iterable[Station], k: int = 3) -> dict[str, float]:
    """Each station's distance (km) to its ``k``-th nearest other station (the farthest one it has,
    in networks of ``k`` stations or fewer); stations alone in the inventory are left out.

    The spacing of a network is what its spacing-dependent settings derive from (see
    ``services.alerting.association.geometry.NetworkGeometry``): the k-th neighbour, rather than the nearest, so that
    two sensors at one site or a tight cluster do not make a sparse network look dense."""
    sts = list({st.id: st for st in stations}.values())
    if len(sts) < 2 or k < 1:
        return {}
    from scipy.spatial import cKDTree  # nearest neighbours in O(n log n): inventories of thousands

    lat = np.radians([st.latitude for st in sts])
    lon = np.radians([st.longitude for st in sts])
    xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    kk = min(k, len(sts) - 1)
    chord, _ = cKDTree(xyz).query(xyz, k=kk + 1)  # the first neighbour is the station itself
    arc = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord)[:, kk] / 2.0, 0.0, 1.0))
    return {st.id: float(v) for st, v in zip(sts, arc, strict=True)}


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
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InventoryError(f"cannot read {path}: {exc}") from exc
        reader = csv.DictReader(
            line for line in text.splitlines() if line.strip() and not line.startswith("#")
        )
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
        from obspy import read_inventory  # heavy import, only when StationXML is used

        try:
            inv = read_inventory(str(path))
        except Exception as exc:  # obspy raises many types for bad files
            raise InventoryError(f"cannot read StationXML {path}: {exc}") from exc
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
        path = Path(path)
        if not path.exists():
            raise InventoryError(f"station file {path} does not exist")
        if path.suffix.lower() in (".csv", ".txt"):
            return cls.from_csv(path)
        return cls.from_stationxml(path)
