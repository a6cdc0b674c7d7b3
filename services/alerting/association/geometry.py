"""The station layout's spacing and the association settings derived from it (``NetworkGeometry``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from services.common.domain import EARTH_RADIUS_KM, Station
from services.common.inventory import StationInventory

LINK_NEIGHBOURS = 3  # spacing of a station: the distance to its 3rd-nearest neighbour
LINK_FACTOR = 2.0  # link radius = LINK_FACTOR x spacing
MIN_SPREAD_S = 20.0
MIN_HALF_WIDTH_KM = 150.0
HALF_WIDTH_FACTOR = 1.25  # location grid half-width = this x the network's 90th-percentile link radius


def neighbour_distances_km(stations: Iterable[Station], k: int = 3) -> dict[str, float]:
    """Each station's distance (km) to its ``k``-th nearest other station (the farthest one it has,
    in networks of ``k`` stations or fewer); stations alone in the inventory are left out.

    The spacing of a network is what its spacing-dependent settings derive from (see
    ``NetworkGeometry``): the k-th neighbour, rather than the nearest, so that
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


@dataclass(frozen=True)
class NetworkGeometry:
    """The station layout's spacing and the settings derived from it (when not set explicitly).

    Rule (documented in the README): a station's *spacing* s_i is its distance to its 3rd-nearest
    neighbour (``neighbour_distances_km``; the nearest would let two sensors at one site or a
    tight cluster make a sparse network look dense). Then

    - link radius r_i = 2 s_i: a trigger at station a joins (or seeds) an event only when some member
      b lies within max(r_a, r_b) -- the wavefront reaches a station from its neighbours, so a
      station's link reaches past its three nearest, and a station at the sparse edge of a network
      links as far as its own neighbours are;
    - largest P-time spread of an event: max(20 s, 2 median(r) / vp_min), the time the P front takes
      across two typical links at the slowest velocity;
    - half-width of the location grid (``LocatorConfig.half_width_km`` None): max(150 km, 1.25 p90(r)):
      the grid is centred on the earliest station, and an earthquake outside the network can lie farther
      from it than the neighbours of the sparsest stations.

    A 10 km network (s ~ 12 km) gets 24 km links, 20 s and 150 km; the openeew_mx network (median
    s 63 km, 24-161 km) 48-322 km links (median 126), 46 s and ~300 km. Without coordinates (no
    inventory) the link rule is off and the defaults (20 s, 150 km) apply.
    """

    spacing_km: Mapping[str, float]

    @classmethod
    def of(cls, inventory: StationInventory) -> NetworkGeometry:
        return cls(neighbour_distances_km(inventory, LINK_NEIGHBOURS))

    def link_km(self, station_id: str) -> float | None:
        s = self.spacing_km.get(station_id)
        return None if s is None else LINK_FACTOR * s

    def _links(self) -> list[float]:
        return sorted(LINK_FACTOR * s for s in self.spacing_km.values())

    def max_spread_s(self, vp_min_km_s: float) -> float:
        links = self._links()
        if not links:
            return MIN_SPREAD_S
        return max(MIN_SPREAD_S, 2.0 * float(np.median(links)) / vp_min_km_s)

    def half_width_km(self) -> float:
        links = self._links()
        if not links:
            return MIN_HALF_WIDTH_KM
        return max(MIN_HALF_WIDTH_KM, HALF_WIDTH_FACTOR * float(np.percentile(links, 90)))

    def describe(self) -> str:
        links = self._links()
        if not links:
            return "no station coordinates: link rule off"
        return (
            f"{len(links)} stations, link radius 2x 3rd-neighbour distance: "
            f"{links[0]:.0f}-{links[-1]:.0f} km (median {float(np.median(links)):.0f})"
        )
