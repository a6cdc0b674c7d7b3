"""Archives to replay through the pipeline: the demo's, and the pieces the tests' archives use.

Build a small multi-station miniSEED archive with one earthquake at known stations and times.

``build_openeew`` cuts one real earthquake of ``../shared/data/openeew_mx`` (a MEMS accelerometer
network, 31.25 Hz, acceleration in gal) to the devices near it and a window around it, unchanged
(native rate, FLOAT32 samples): the copy shipped in ``services/demo/data/openeew_mx`` is made
with it (``python -m services.pipeline.archives openeew``) and is what ``eew demo`` replays.

``build`` makes the older archives:
- ``real``: real 3-component recordings from ``../shared/data/nc_phasenet`` (P onset at 30.00 s in
  each file), each placed at one demo station and shifted so that its P onset arrives at the
  travel time from a chosen hypocentre (straight rays, constant Vp). Amplitudes are the
  recordings' own. The recordings are different real events; only their timing is made
  consistent.
- ``synthetic``: records from ``models.synthetic`` with the same geometry, for machines without
  ``../shared`` (the copy shipped in ``services/demo/data`` is built with this).

A ``noise`` variant writes only real pre-P noise (no event) for the no-false-alert test.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from obspy import Stream, Trace, UTCDateTime

FS = 100.0
NETWORK = "XX"
ORIGIN = UTCDateTime("2024-03-01T12:00:00.000Z")
HYPO = (37.80, -122.20, 10.0)  # lat, lon, depth km
VP_KM_S = 6.0
VS_KM_S = 3.5
# Station offsets (east km, north km) from the epicentre.
STATION_OFFSETS_KM = [(8.0, 5.0), (-12.0, 9.0), (4.0, -16.0), (-20.0, -14.0), (26.0, 12.0), (-6.0, 30.0)]
# Real recordings used by the real demo: three-component, clear P, chosen by file name.
REAL_FILES = [
    "NC_GDXB_2012010123094724.npz",
    "NN_TVH1_2011071500270912.npz",
    "NC_CLCB_2017112601505303.npz",
    "NC_NTAB_2004081306125131.npz",
    "NC_BSR_2016060814045294.npz",
    "NC_BJOB_2014081204003000.npz",
]
KM_PER_DEG = 111.195
# The real earthquake of the demo: openeew_mx 2020-01-29 23:17:48 M5.1 (a `dev` file of
# models/splits/openeew_mx.txt), 2 min of its devices within 150 km (9 devices).
OPENEEW_FILE = "2020_1_29.mseed"
OPENEEW_BEFORE_S = 60.0
OPENEEW_AFTER_S = 60.0
OPENEEW_MAX_KM = 150.0
#: The archives shipped with ``eew demo`` (its data folder; ``main`` regenerates them).
DEMO_DATA = Path(__file__).resolve().parents[1] / "demo" / "data"
SHIPPED_OPENEEW = DEMO_DATA / "openeew_mx" / "2020_01_29"
SHIPPED_SYNTHETIC = DEMO_DATA / "synthetic"


@dataclass(frozen=True)
class DemoStation:
    network: str
    station: str
    location: str
    latitude: float
    longitude: float
    elevation_m: float
    p_time: str  # ISO UTC, the P arrival built into the archive ("" for noise archives)
    source: str  # where the waveform came from


def station_positions() -> list[tuple[str, float, float, float]]:
    """(code, lat, lon, hypocentral distance km) for each demo station."""
    lat0, lon0, depth = HYPO
    out = []
    for i, (e, n) in enumerate(STATION_OFFSETS_KM):
        lat = lat0 + n / KM_PER_DEG
        lon = lon0 + e / (KM_PER_DEG * math.cos(math.radians(lat0)))
        dist = math.sqrt(e * e + n * n + depth * depth)
        out.append((f"S{i + 1:02d}", lat, lon, dist))
    return out


def _write_station(
    out_dir: Path, code: str, zne: np.ndarray, start: UTCDateTime, band: str = "HH"
) -> list[Path]:
    paths = []
    for comp, row in zip("ZNE", zne, strict=True):
        tr = Trace(np.round(row).astype(np.int32))
        tr.stats.network, tr.stats.station, tr.stats.location = NETWORK, code, ""
        tr.stats.channel, tr.stats.sampling_rate, tr.stats.starttime = f"{band}{comp}", FS, start
        path = out_dir / f"{NETWORK}.{code}..{band}{comp}.mseed"
        Stream([tr]).write(str(path), format="MSEED", encoding="STEIM2", reclen=512)
        paths.append(path)
    return paths


def _load_real(shared: Path, fname: str) -> np.ndarray:
    """(3, 9001) Z, N, E counts of one nc_phasenet file (P at sample 3000)."""
    with np.load(shared / "data" / "nc_phasenet" / "waveform_train" / fname) as f:
        data = f["data"]
        chans = str(f["channels"]).split("_")
    order = [next(i for i, c in enumerate(chans) if c.endswith(k)) for k in "ZNE"]
    return data[:, order].T.astype(np.float64)


def build(out_dir: Path, source: str = "synthetic", shared: Path | None = None, seed: int = 7) -> dict:
    """Write the archive (miniSEED, stations.csv, event.json) to ``out_dir``; return event.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stations: list[DemoStation] = []
    for i, (code, lat, lon, dist) in enumerate(station_positions()):
        # P arrival rounded to the 100 Hz sample grid, so record starts fall on it too.
        tp = UTCDateTime(round(float(ORIGIN + dist / VP_KM_S) * FS) / FS)
        ts = ORIGIN + dist / VS_KM_S
        if source in ("real", "noise"):
            if shared is None:
                raise ValueError("real and noise archives need the shared data folder")
            zne = _load_real(shared, REAL_FILES[i])
            if source == "noise":
                zne = zne[:, :2900]  # the real pre-P noise only
                start = ORIGIN - 10.0
                p_iso, src = "", f"nc_phasenet/{REAL_FILES[i]} (pre-P noise only)"
            else:
                start = tp - 30.0  # P sits at 30.00 s in every file
                p_iso, src = str(tp), f"nc_phasenet/{REAL_FILES[i]}"
        elif source == "synthetic":
            from models.synthetic import event_record

            pre = 40.0
            n = int((pre + 50.0) * FS)
            zne = event_record(rng, n, FS, p_s=pre, s_minus_p_s=float(ts - tp), snr=float(rng.uniform(15, 40)),
                               noise_level=float(rng.uniform(50, 200)), dc_offset=float(rng.uniform(-500, 500)))
            start = tp - pre
            p_iso, src = str(tp), "models.synthetic"
        else:
            raise ValueError(f"unknown source {source!r}")
        _write_station(out_dir, code, zne, start)
        stations.append(DemoStation(NETWORK, code, "", round(lat, 5), round(lon, 5), 0.0, p_iso, src))
    with (out_dir / "stations.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["network", "station", "location", "latitude", "longitude", "elevation_m"])
        for s in stations:
            w.writerow([s.network, s.station, s.location, s.latitude, s.longitude, s.elevation_m])
    event = {
        "source": source,
        "origin_time": str(ORIGIN) if source != "noise" else None,
        "latitude": HYPO[0],
        "longitude": HYPO[1],
        "depth_km": HYPO[2],
        "vp_km_s": VP_KM_S,
        "stations": [asdict(s) for s in stations],
    }
    (out_dir / "event.json").write_text(json.dumps(event, indent=2))
    return event


def build_openeew(
    out_dir: Path,
    shared: Path,
    file: str = OPENEEW_FILE,
    before_s: float = OPENEEW_BEFORE_S,
    after_s: float = OPENEEW_AFTER_S,
    max_km: float = OPENEEW_MAX_KM,
) -> dict:
    """Cut ``file`` of ``shared``/data/openeew_mx to [origin - before_s, origin + after_s] and the devices
    with data within ``max_km`` of the catalogue epicentre; write one FLOAT32 miniSEED file per device
    (native rate, samples unchanged), stations.csv (with the gains) and event.json (the catalogue
    event, each device's distance and its iasp91 first-P time for a 20 km depth, which the catalogue
    does not give); return event.json. Only files of the ``dev`` split are cut: ``test`` is held out.
    """
    from obspy import read

    from models.openeew import DEPTH_KM, load_quakes, load_split
    from services.alerting.association.locate import iasp91_first_p
    from services.common.domain import haversine_km

    root = Path(shared) / "data" / "openeew_mx"
    part = load_split().get(file)
    if part != "dev":
        raise ValueError(f"{file} is in the {part!r} part of models/splits/openeew_mx.txt; only dev files are cut")
    quake = next(q for q in load_quakes(root)[0] if q.file == file)
    origin = UTCDateTime(quake.time_ns / 1e9)
    st = read(str(root / "mseed" / file), starttime=origin - before_s, endtime=origin + after_s)
    with (root / "stations.csv").open() as f:
        rows = {r["station"]: r for r in csv.DictReader(f)}
    dist = {s: haversine_km(quake.lat, quake.lon, float(rows[s]["latitude"]), float(rows[s]["longitude"]))
            for s in {tr.stats.station for tr in st} if s in rows}
    keep = sorted((s for s in dist if dist[s] <= max_km), key=dist.__getitem__)
    if not keep:
        raise ValueError(f"{file}: no device with data within {max_km:g} km of the epicentre")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p_s = iasp91_first_p(DEPTH_KM, [dist[s] for s in keep])
    stations = []
    for code, tp in zip(keep, p_s, strict=True):
        sub = st.select(station=code)
        net, loc = sub[0].stats.network, sub[0].stats.location
        for tr in sub:
            tr.data = tr.data.astype(np.float32)
        sub.write(str(out_dir / f"{net}.{code}.{loc}.mseed"), format="MSEED", encoding="FLOAT32", reclen=512)
        r = rows[code]
        stations.append({"network": net, "station": code, "location": loc, "latitude": float(r["latitude"]),
                         "longitude": float(r["longitude"]), "distance_km": round(dist[code], 1),
                         "p_time": str(UTCDateTime(round(float(origin + float(tp)), 2))), "p_source": f"iasp91, {DEPTH_KM:g} km depth"})
    with (out_dir / "stations.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(next(iter(rows.values()))))
        w.writeheader()
        w.writerows(rows[s] for s in keep)
    event = {
        "source": "openeew_mx",
        "file": file,
        "catalog_name": quake.name,
        "origin_time": str(origin),
        "latitude": quake.lat,
        "longitude": quake.lon,
        "depth_km": None,  # the catalogue gives none
        "magnitude": quake.mag,
        "window": [str(origin - before_s), str(origin + after_s)],
        "max_km": max_km,
        "stations": stations,
    }
    (out_dir / "event.json").write_text(json.dumps(event, indent=2))
    return event


def main(argv: list[str] | None = None) -> None:
    """Regenerate a shipped archive: ``python -m services.pipeline.archives [synthetic|openeew [SHARED]]``."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    which = args[0] if args else "synthetic"
    target = SHIPPED_OPENEEW if which == "openeew" else SHIPPED_SYNTHETIC
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*"):
        old.unlink()
    if which == "openeew":
        build_openeew(target, Path(args[1] if len(args) > 1 else "../shared"))
    else:
        build(target, "synthetic")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
