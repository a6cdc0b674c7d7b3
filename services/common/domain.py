"""Identifiers of the domain, spelt one way by every service.

- *Station id* ``NET.STA``: a site; all its sensors share its coordinates (inventory, association,
  dashboard, validation).
- *Stream key* ``NET.STA.LOC.BI?``: one sensor, its band and instrument codes with ``?`` for the
  component (all components of a sensor share it). It is the Kafka key of waveform packets and
  scores, the detector's station key, the alerting's stream and the validation's stream.
- *NSLC* ``NET.STA.LOC.CHA``: one channel (log lines, rejections).
- *Station*: a station's position (the inventory's entries: ``services.common.inventory.
  StationInventory`` reads them from a station file), and the great-circle distance between coordinates.

Pure functions, no I/O; the scorable-stream rule lives beside them in ``services.common.streams``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

#: ``NET.STA``
StationId: TypeAlias = str
#: ``NET.STA.LOC.BI?``
StreamKey: TypeAlias = str

#: Radius of the sphere distances are measured on (km).
EARTH_RADIUS_KM = 6371.0
#: Stands for the component in a stream key.
ANY_COMPONENT = "?"


def station_id(network: str, station: str) -> StationId:
    """``NET.STA`` of a station."""
    return f"{network}.{station}"


def stream_key(network: str, station: str, location: str, channel: str) -> StreamKey:
    """``NET.STA.LOC.BI?`` of a sensor; ``channel`` is a channel code (``HHZ``) or its band and
    instrument (``HH``): all components of one sensor share the key."""
    return f"{network}.{station}.{location}.{channel[:2]}{ANY_COMPONENT}"


def nslc(network: str, station: str, location: str, channel: str) -> str:
    """``NET.STA.LOC.CHA`` of a channel."""
    return f"{network}.{station}.{location}.{channel}"


def station_of(key: str) -> StationId:
    """The station id of any dotted id that starts with ``NET.STA`` (stream key, NSLC, station id)."""
    net, _, rest = key.partition(".")
    return f"{net}.{rest.partition('.')[0]}"


@dataclass(frozen=True, slots=True)
class StreamId:
    """The parts of a stream key (``band_instrument``: the channel's first two letters)."""

    network: str
    station: str
    location: str
    band_instrument: str

    @classmethod
    def parse(cls, key: str) -> StreamId:
        """Parse ``NET.STA.LOC.BI?`` (or an NSLC: the component is dropped); ValueError names the key."""
        parts = key.split(".")
        if len(parts) != 4 or not parts[0] or not parts[1] or len(parts[3]) < 2:
            raise ValueError(f"{key!r} is not a stream key NET.STA.LOC.BI?")
        return cls(parts[0], parts[1], parts[2], parts[3][:2])

    @property
    def key(self) -> StreamKey:
        return stream_key(self.network, self.station, self.location, self.band_instrument)

    @property
    def station_id(self) -> StationId:
        return station_id(self.network, self.station)


@dataclass(frozen=True, slots=True)
class Station:
    """One station's position (degrees, metres above sea level)."""

    network: str
    station: str
    location: str
    latitude: float
    longitude: float
    elevation_m: float = 0.0

    @property
    def id(self) -> StationId:
        return station_id(self.network, self.station)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a sphere of radius 6371 km (error < 0.5 % vs. the ellipsoid)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
