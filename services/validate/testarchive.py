"""A semi-synthetic archive with a known catalogue, for testing and demonstrating ``eew validate``.

Built from the demo archive's pieces (``services.demo.archive``: real nc_phasenet recordings,
the six demo stations, constant-Vp travel times, one miniSEED file per component):

- ``ev1`` at ``ORIGIN``: the demo's event (hypocentre ``archive.HYPO``), recorded at all six stations
  by the demo's six real recordings, P placed at the travel time from the hypocentre.
- ``ev2`` at ``ORIGIN + 300 s``, a different hypocentre, recorded at all six stations by six other
  real recordings.
- ``ev3`` at ``ORIGIN + 600 s``, recorded at two stations only: the alerting needs three, so it
  must be missed.
- a noise-only stretch at ``ORIGIN + 900 s``: the real pre-P noise of six more recordings
  (29 s each, never tiled), with no catalogue event: no alert may come from it.
- two catalogue events outside the archive (a day before, two hours after): "not covered".

``catalog.xml`` carries the built-in P times as the catalogue's P picks (the reference P of the
validation); ``catalog.csv`` has none (reference P from TauP).

The segments are separated by gaps longer than the detector's ``max_gap_s``, so each recording
starts a fresh station state, as after a telemetry outage. ``inventory_drop`` stations are left out
of ``stations.csv`` (stations missing from the inventory). ``truth.json`` records what was built in.

``python -m services.validate.testarchive OUT [--shared ../shared]`` writes it.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

from obspy import UTCDateTime

from services.common.domain import haversine_km
from services.pipeline import archives as archive

ORIGIN = archive.ORIGIN
FS = archive.FS

EV2_FILES = [
    "BG_AL1_2012061003014499.npz",
    "BG_CLV_2010120607083474.npz",
    "NC_GDXB_2008071720041377.npz",
    "BG_STY_2013010900313751.npz",
    "PG_AR_2004102501154586.npz",
    "NC_PHOB_2004110716051945.npz",
]
EV3_FILES = ["BG_RGP_2012040606273810.npz", "NC_MCO_2016111504021890.npz"]
NOISE_FILES = [
    "BK_BKS_2017071510492061.npz",
    "BK_HAST_2008122812025643.npz",
    "BK_PKD_2014061613251098.npz",
    "BK_SAO_2016111609193067.npz",
    "NC_KMPB_2007112407413145.npz",
    "NP_1845_2008013001525083.npz",
]

# (event id, origin offset s, lat, lon, depth km, magnitude, recordings by station index or None)
EVENTS: list[tuple[str, float, float, float, float, float, dict[int, str] | None]] = [
    ("ev1", 0.0, archive.HYPO[0], archive.HYPO[1], archive.HYPO[2], 3.9, dict(enumerate(archive.REAL_FILES))),
    ("ev2", 300.0, 37.92, -122.08, 8.0, 3.4, dict(enumerate(EV2_FILES))),
    ("ev3", 600.0, 37.75, -122.30, 12.0, 2.1, {0: EV3_FILES[0], 1: EV3_FILES[1]}),
    ("before", -86400.0, 37.85, -122.15, 9.0, 2.8, None),
    ("after", 7200.0, 37.70, -122.25, 11.0, 3.0, None),
]
NOISE_OFFSET_S = 900.0
EXPECTED = {"ev1": "detected", "ev2": "detected", "ev3": "missed", "before": "not covered",
            "after": "not covered"}


def _hypo_km(lat: float, lon: float, ev_lat: float, ev_lon: float, depth: float) -> float:
    return math.hypot(haversine_km(ev_lat, ev_lon, lat, lon), depth)


def build(out_dir: Path, shared: Path, inventory_drop: tuple[str, ...] = ("S06",)) -> dict:
    """Write ``archive/``, ``stations.csv``, ``stations_full.csv``, ``catalog.csv``, ``catalog.xml``
    and ``truth.json`` to ``out_dir``; return the truth."""
    out_dir = Path(out_dir)
    arch = out_dir / "archive"
    arch.mkdir(parents=True, exist_ok=True)
    positions = archive.station_positions()  # (code, lat, lon, dist) around archive.HYPO
    truth: dict = {"origin_reference": str(ORIGIN), "vp_km_s": archive.VP_KM_S, "events": [],
                   "noise": None, "inventory_drop": list(inventory_drop), "expected": EXPECTED}
    for eid, off, lat, lon, depth, mag, recs in EVENTS:
        origin = ORIGIN + off
        ev = {"event_id": eid, "origin_time": str(origin), "latitude": lat, "longitude": lon,
              "depth_km": depth, "magnitude": mag, "stations": {}}
        for idx, fname in sorted((recs or {}).items()):
            code, slat, slon, _ = positions[idx]
            dist = _hypo_km(slat, slon, lat, lon, depth)
            tp = UTCDateTime(round(float(origin + dist / archive.VP_KM_S) * FS) / FS)
            zne = archive._load_real(shared, fname)
            seg = arch / eid
            seg.mkdir(exist_ok=True)
            archive._write_station(seg, code, zne, tp - 30.0)  # P sits at 30.00 s in every file
            ev["stations"][code] = {"p_time": str(tp), "file": fname}
        truth["events"].append(ev)
    noise_start = ORIGIN + NOISE_OFFSET_S
    seg = arch / "noise"
    seg.mkdir(exist_ok=True)
    for idx, fname in enumerate(NOISE_FILES):
        code = positions[idx][0]
        zne = archive._load_real(shared, fname)[:, :2900]  # real pre-P noise only
        archive._write_station(seg, code, zne, noise_start)
    truth["noise"] = {"start": str(noise_start), "end": str(noise_start + 29.0), "files": NOISE_FILES}

    def write_stations(path: Path, drop: tuple[str, ...]) -> None:
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["network", "station", "location", "latitude", "longitude", "elevation_m"])
            for code, slat, slon, _ in positions:
                if code not in drop:
                    w.writerow([archive.NETWORK, code, "", round(slat, 5), round(slon, 5), 0.0])

    write_stations(out_dir / "stations.csv", inventory_drop)
    write_stations(out_dir / "stations_full.csv", ())
    with (out_dir / "catalog.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["event_id", "time", "latitude", "longitude", "depth", "magnitude", "magnitude_type"])
        for eid, off, lat, lon, depth, mag, _ in EVENTS:
            w.writerow([eid, str(ORIGIN + off), lat, lon, depth, mag, "ML"])
    picks = {ev["event_id"]: {code: UTCDateTime(v["p_time"]) for code, v in ev["stations"].items()}
             for ev in truth["events"]}
    write_quakeml(out_dir / "catalog.xml", picks)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth


def write_quakeml(path: Path, picks: dict[str, dict[str, UTCDateTime]] | None = None) -> None:
    """The same catalogue as QuakeML (ObsPy), with explicit resource ids and, when given, the
    built-in P times as the catalogue's P picks (``picks[event id][station code]``)."""
    from obspy.core.event import Catalog, Event, Magnitude, Origin, Pick, ResourceIdentifier, WaveformStreamID

    cat = Catalog(resource_id=ResourceIdentifier("smi:eew.test/catalog"))
    for eid, off, lat, lon, depth, mag, _ in EVENTS:
        o = Origin(resource_id=ResourceIdentifier(f"smi:eew.test/origin/{eid}"), time=ORIGIN + off,
                   latitude=lat, longitude=lon, depth=depth * 1000.0)
        m = Magnitude(resource_id=ResourceIdentifier(f"smi:eew.test/magnitude/{eid}"), mag=mag,
                      magnitude_type="ML", origin_id=o.resource_id)
        e = Event(resource_id=ResourceIdentifier(f"smi:eew.test/event/{eid}"), origins=[o], magnitudes=[m])
        e.preferred_origin_id, e.preferred_magnitude_id = o.resource_id, m.resource_id
        for code, t in sorted((picks or {}).get(eid, {}).items()):
            e.picks.append(Pick(resource_id=ResourceIdentifier(f"smi:eew.test/pick/{eid}/{code}"), time=t,
                                phase_hint="P", waveform_id=WaveformStreamID(archive.NETWORK, code)))
        cat.append(e)
    cat.write(str(path), format="QUAKEML")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m services.validate.testarchive OUT_DIR [--shared ../shared]")
        return 0 if args else 2
    shared = Path("../shared")
    if "--shared" in args:
        shared = Path(args[args.index("--shared") + 1])
    build(Path(args[0]), shared)
    print(f"wrote {args[0]}: archive/, stations.csv, catalog.csv, catalog.xml, truth.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
