"""The model on a real MEMS-accelerometer early-warning network, at its native rate, scored as live.

``eew model openeew --data-dir ../shared [--split dev|test|all]`` replays each earthquake file of
``data/openeew_mx`` (31.25 Hz acceleration in gal, 3 components per device, Z/1/2) through the
detector's own core (``services.detector.core.CoreDetector``: streaming resampling to 100 Hz,
acceleration scored as such, 1 s chunks, state carried, triggers with the contract's threshold and
re-arm rule) with the shipped ONNX model, in 1 s packets as a device sends them, and measures:

- **P detection within 2 s** at the devices within ``--max-km`` (150) whose P is visible: a device
  detects when it is triggered (event probability >= the contract threshold, after warm-up) in a
  1 s window ending in (P - ``--early-s``, P + 2 s]. P = ObsPy TauP (iasp91) first P for the
  catalogue epicentre at 20 km depth (the catalogue gives no depth); ``--early-s`` (2 s) absorbs
  the prediction and device-clock errors. *Visible*: the 1-10 Hz band-passed peak in the first 2 s
  after P on any component exceeds 3x that component's RMS over the 30 s before P.
- **False triggers per station-hour** in the noise: new triggers (rising edges) outside
  [origin - 30 s, origin + 240 s] of every catalogue event, per hour of scored data there. The
  longer windows hold other, uncatalogued earthquakes, so this is an upper bound.

The split is by earthquake and fixed (``models/splits/openeew_mx.txt``: ``dev`` files may be
looked at while developing; ``test`` files only for the final check). Other earthquakes of this
network are kept by the data's owners for independent checks.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

SPLIT_FILE = Path(__file__).parent / "splits" / "openeew_mx.txt"
EVENT_BEFORE_S = 30.0
EVENT_AFTER_S = 240.0
DEPTH_KM = 20.0
NS = 1_000_000_000


@dataclass
class Quake:
    file: str
    name: str
    time_ns: int
    lat: float
    lon: float
    mag: float


@dataclass
class DeviceResult:
    station: str
    dist_km: float
    p_ns: int
    visible: bool
    detected: bool
    first_trigger_ns: int | None
    pick_ns: int | None


@dataclass
class QuakeResult:
    quake: Quake
    devices: list[DeviceResult] = field(default_factory=list)
    noise_hours: float = 0.0
    false_triggers: int = 0
    false_by_station: dict[str, int] = field(default_factory=dict)
    false_times: list[tuple[str, int]] = field(default_factory=list)


def _utc_ns(text: str) -> int:
    dt = datetime.fromisoformat(text.strip().replace("Z", "")).replace(tzinfo=UTC)
    return int(round(dt.timestamp() * 1e6)) * 1000


def load_split(path: Path = SPLIT_FILE) -> dict[str, str]:
    """file name -> 'dev' | 'test'."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            part, name = line.split()
            out[name] = part
    return out


def load_quakes(root: Path) -> tuple[list[Quake], list[Quake]]:
    """(main earthquake of each file, every catalogue event)."""
    mains = []
    with open(root / "event_windows.csv") as f:
        for r in csv.DictReader(f):
            mains.append(
                Quake(
                    r["mseed_file"],
                    r["catalog_name"],
                    _utc_ns(r["main_event_time_utc"]),
                    float(r["latitude"]),
                    float(r["longitude"]),
                    float(r["magnitude"]),
                )
            )
    cat = []
    with open(root / "catalog.csv") as f:
        for r in csv.DictReader(f):
            cat.append(
                Quake(
                    "",
                    r["name"],
                    _utc_ns(r["time_utc"]),
                    float(r["latitude"]),
                    float(r["longitude"]),
                    float(r["magnitude"]),
                )
            )
    return mains, cat


def load_stations(root: Path) -> dict[str, tuple[float, float]]:
    with open(root / "stations.csv") as f:
        return {r["station"]: (float(r["latitude"]), float(r["longitude"])) for r in csv.DictReader(f)}


class PTimes:
    """First-P travel time (s) by epicentral distance, iasp91, one depth: a table built once."""

    def __init__(self, depth_km: float = DEPTH_KM, max_km: float = 1000.0) -> None:
        from obspy.taup import TauPyModel

        model = TauPyModel("iasp91")
        self.km = np.linspace(0.0, max_km, 201)
        tt = []
        for d in self.km:
            arr = model.get_travel_times(depth_km, d / 111.195, phase_list=["p", "P"])
            tt.append(min(a.time for a in arr))
        self.tt = np.array(tt)

    def __call__(self, km: float) -> float:
        return float(np.interp(km, self.km, self.tt))


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    from obspy.geodetics import gps2dist_azimuth

    return gps2dist_azimuth(lat1, lon1, lat2, lon2)[0] / 1000.0


def band_snr(
    x: np.ndarray,
    fs: float,
    p_idx: int,
    lo: float,
    hi: float,
    after_s: float,
    noise_s: float,
    gap_s: float = 0.0,
    pad_s: float = 5.0,
) -> float | None:
    """Peak of ``x`` band-passed to [lo, hi] Hz (4-pole Butterworth, zero phase) in the ``after_s``
    after sample ``p_idx``, over the RMS of the ``noise_s`` that end ``gap_s`` before it; ``pad_s`` of
    data either side keeps the filter's edges out. None when the record is too short for that."""
    from scipy.signal import butter, sosfiltfilt

    pad, n_noise, n_sig = int(pad_s * fs), int(noise_s * fs), int(after_s * fs)
    lo_i, hi_i = p_idx - n_noise - pad, p_idx + n_sig + pad
    if lo_i < 0 or hi_i > len(x):
        return None
    sos = butter(4, [lo, hi], btype="bandpass", fs=fs, output="sos")
    seg = np.asarray(x[lo_i:hi_i], np.float64)
    y = sosfiltfilt(sos, seg - seg.mean())
    noise = y[pad : pad + n_noise - int(gap_s * fs)]
    sig = y[pad + n_noise : pad + n_noise + n_sig]
    return float(np.abs(sig).max() / (np.sqrt(np.mean(noise**2)) + 1e-12))


def visible(x: np.ndarray, fs: float, p_idx: int, noise_s: float = 30.0, pad_s: float = 5.0) -> bool:
    """The 1-10 Hz band-passed peak in the 2 s after P beats 3x the RMS of the ``noise_s`` before it
    (issue 12's definition; ``band_snr``)."""
    r = band_snr(x, fs, p_idx, 1.0, min(10.0, 0.45 * fs), 2.0, noise_s, pad_s=pad_s)
    return r is not None and r > 3.0


DEVICE_PACKET_SAMPLES = 32  # an OpenEEW device sends its samples 32 at a time (1.024 s at 31.25 Hz)


def score_file(
    path: Path, core_factory, packet_s: float = 1.0, packet_samples: int | None = None
) -> tuple[list, dict, object]:
    """Replay one miniSEED file through a fresh detector core in time order; return its scores.

    Each trace is cut into packets of ``packet_samples`` (else ``packet_s`` seconds) from its first
    sample, fed in the order their last samples were recorded, each stamped as ingested at that
    moment, so a score's ``ingest_time_ns`` is when the data it needed had all arrived (its window
    end is earlier whenever the packet that completed it reaches past it). The scores themselves do not
    depend on the packets: the core scores fixed chunks."""
    from obspy import read

    from services.common.codec import Packet

    st = read(str(path))
    st.merge(method=-1)  # keep gaps as separate traces
    packets = []
    for tr in st:
        fs = float(tr.stats.sampling_rate)
        n = packet_samples or max(1, int(round(packet_s * fs)))
        t0 = int(round(tr.stats.starttime.timestamp * 1e6)) * 1000
        data = tr.data.astype(np.float32)
        for i in range(0, len(data), n):
            chunk = data[i : i + n]
            t = t0 + int(round(i * NS / fs))
            end = t0 + int(round((i + len(chunk)) * NS / fs))
            packets.append(
                Packet(tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel, t, fs, chunk,
                       ingest_time_ns=end)
            )
    packets.sort(key=lambda p: (p.ingest_time_ns, p.channel))
    core = core_factory()
    scores = []
    rejected: dict[str, int] = {}
    for p in packets:
        reason = core.feed(p)
        if reason is not None and reason not in ("duplicate",):
            rejected[reason] = rejected.get(reason, 0) + 1
        scores.extend(core.score_ready())
    scores.extend(core.score_ready())
    return scores, rejected, st


def device_ps(
    quake: Quake, st: object, stations: dict, ptimes: PTimes, max_km: float
) -> list[tuple[str, float, int, bool]]:
    """(station, epicentral km, predicted P ns, P visible) for every device of the record ``st`` within
    ``max_km`` of the epicentre, by station code: the devices the detection criterion is asked of."""
    out = []
    for sta in sorted({tr.stats.station for tr in st}):  # type: ignore[attr-defined]
        if sta not in stations:
            continue
        lat, lon = stations[sta]
        d = distance_km(quake.lat, quake.lon, lat, lon)
        if d > max_km:
            continue
        p_ns = quake.time_ns + int(ptimes(d) * NS)
        trs = [
            tr
            for tr in st.select(station=sta)  # type: ignore[attr-defined]
            if tr.stats.starttime.timestamp * 1e9 < p_ns - 35 * NS
            and tr.stats.endtime.timestamp * 1e9 > p_ns + 7 * NS
        ]
        vis = False
        if trs:
            fs = float(trs[0].stats.sampling_rate)
            arrs = [tr.data.astype(np.float64) for tr in trs]
            idxs = [int(round((p_ns / NS - tr.stats.starttime.timestamp) * fs)) for tr in trs]
            vis = any(visible(a, fs, i) for a, i in zip(arrs, idxs, strict=True))
        out.append((sta, d, p_ns, vis))
    return out


def evaluate_file(
    quake: Quake,
    path: Path,
    catalogue: list[Quake],
    stations: dict,
    ptimes: PTimes,
    core_factory,
    max_km: float,
    early_s: float,
) -> QuakeResult:
    scores, _, st = score_file(path, core_factory)
    res = QuakeResult(quake)
    by_sta: dict[str, list] = {}
    for s in scores:
        by_sta.setdefault(s.station, []).append(s)
    windows = [(q.time_ns - int(EVENT_BEFORE_S * NS), q.time_ns + int(EVENT_AFTER_S * NS)) for q in catalogue]
    for sta, ss in by_sta.items():
        for s in ss:
            if not s.warmed_up:
                continue
            inside = any(a <= s.window_end_ns <= b for a, b in windows)
            if not inside:
                res.noise_hours += (s.window_end_ns - s.window_start_ns) / NS / 3600.0
                if s.new_trigger:
                    res.false_triggers += 1
                    res.false_by_station[sta] = res.false_by_station.get(sta, 0) + 1
                    res.false_times.append((sta, s.window_end_ns))
    for sta, d, p_ns, vis in device_ps(quake, st, stations, ptimes, max_km):
        ss = by_sta.get(sta)
        if not ss:
            continue
        lo, hi = p_ns - int(early_s * NS), p_ns + 2 * NS
        hits = [s for s in ss if s.warmed_up and s.triggered and lo < s.window_end_ns <= hi]
        trig = [s for s in ss if s.new_trigger and lo < s.window_end_ns <= p_ns + 30 * NS]
        res.devices.append(
            DeviceResult(
                sta,
                d,
                p_ns,
                vis,
                bool(hits),
                trig[0].window_end_ns if trig else None,
                trig[0].p_onset_ns if trig and trig[0].p_onset_ns else None,
            )
        )
    return res


def core_factory_for(model_dir: Path, threads: int = 1, **overrides):
    """Fresh detector cores configured exactly as ``eew detect`` with its default settings
    (``DetectorSettings.core_config``), scoring with the model in ``model_dir``."""
    from models.runtime import StreamingModel
    from services.common.settings import load_settings
    from services.detector.core import CoreDetector
    from services.detector.settings import DetectorSettings

    model = StreamingModel(model_dir, providers=["CPUExecutionProvider"], intra_op_threads=threads)
    cfg = load_settings(DetectorSettings, []).core_config(model.contract).replace(**overrides)

    def make() -> CoreDetector:
        return CoreDetector(cfg, model.step)

    return make


def summarise(results: list[QuakeResult]) -> dict:
    dev = [d for r in results for d in r.devices]
    vis = [d for d in dev if d.visible]
    det_vis = sum(d.detected for d in vis)
    hours = sum(r.noise_hours for r in results)
    false = sum(r.false_triggers for r in results)
    picks = [(d.pick_ns - d.p_ns) / NS for d in dev if d.detected and d.pick_ns]
    return {
        "earthquakes": [r.quake.name for r in results],
        "devices_within": len(dev),
        "visible": len(vis),
        "visible_share": len(vis) / len(dev) if dev else math.nan,
        "detected_visible": det_vis,
        "detection_rate_visible": det_vis / len(vis) if vis else math.nan,
        "detected_all": sum(d.detected for d in dev),
        "noise_station_hours": hours,
        "false_triggers": false,
        "false_per_station_hour": false / hours if hours else math.nan,
        "pick_minus_predicted_p_s_median": float(np.median(picks)) if picks else math.nan,
        "per_quake": [
            {
                "name": r.quake.name,
                "file": r.quake.file,
                "mag": r.quake.mag,
                "within": len(r.devices),
                "visible": sum(d.visible for d in r.devices),
                "detected_visible": sum(d.detected and d.visible for d in r.devices),
                "detected_all": sum(d.detected for d in r.devices),
                "noise_hours": round(r.noise_hours, 3),
                "false_triggers": r.false_triggers,
                "false_times": [
                    (s, datetime.fromtimestamp(t / NS, UTC).isoformat()) for s, t in r.false_times
                ],
                "devices": [
                    {
                        "station": d.station,
                        "km": round(d.dist_km, 1),
                        "visible": d.visible,
                        "detected": d.detected,
                        "trigger_minus_p_s": None
                        if d.first_trigger_ns is None
                        else round((d.first_trigger_ns - d.p_ns) / NS, 2),
                        "pick_minus_p_s": None if d.pick_ns is None else round((d.pick_ns - d.p_ns) / NS, 2),
                    }
                    for d in r.devices
                ],
            }
            for r in results
        ],
    }


def markdown(summary: dict, split: str) -> str:
    lines = [
        f"openeew_mx, split `{split}`: {len(summary['earthquakes'])} earthquakes ({', '.join(summary['earthquakes'])})",
        "",
        "| earthquake | M | devices <= 150 km | P visible | detected (visible) | detected (all) | noise h | false triggers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for q in summary["per_quake"]:
        lines.append(
            f"| {q['name']} ({q['file']}) | {q['mag']} | {q['within']} | {q['visible']} | "
            f"{q['detected_visible']} | {q['detected_all']} | {q['noise_hours']:.2f} | {q['false_triggers']} |"
        )
    lines += [
        "",
        f"P detected within 2 s at {summary['detected_visible']} of {summary['visible']} devices with visible P "
        f"({100 * summary['detection_rate_visible']:.1f} %); {summary['visible']} of {summary['devices_within']} "
        f"devices within 150 km have a visible P ({100 * summary['visible_share']:.1f} %).",
        f"False triggers: {summary['false_triggers']} in {summary['noise_station_hours']:.2f} station-hours of noise "
        f"({summary['false_per_station_hour']:.2f} per station-hour).",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="eew model openeew", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared"))
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--split", choices=["dev", "test", "all"], default="dev")
    ap.add_argument("--files", default="", help="Comma-separated file names (overrides --split).")
    ap.add_argument("--max-km", type=float, default=150.0)
    ap.add_argument("--early-s", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="Write summary.json and summary.md here.")
    ap.add_argument(
        "--detection-threshold",
        type=float,
        default=None,
        help="event_prob trigger level instead of the contract's (as `eew detect --detection-threshold`): "
        "a threshold calibrated on this network's own noise",
    )
    a = ap.parse_args(argv)
    from models.contract import DEFAULT_MODEL_DIR

    root = a.data_dir / "data" / "openeew_mx"
    mains, cat = load_quakes(root)
    split = load_split()
    if a.files:
        wanted = set(a.files.split(","))
        mains = [q for q in mains if q.file in wanted]
    elif a.split != "all":
        mains = [q for q in mains if split.get(q.file) == a.split]
    stations = load_stations(root)
    ptimes = PTimes()
    overrides = {} if a.detection_threshold is None else {"detection_threshold": a.detection_threshold}
    factory = core_factory_for(a.model_dir or DEFAULT_MODEL_DIR, a.threads, **overrides)
    results = []
    for q in sorted(mains, key=lambda q: q.time_ns):
        r = evaluate_file(q, root / "mseed" / q.file, cat, stations, ptimes, factory, a.max_km, a.early_s)
        results.append(r)
        n_vis = sum(d.visible for d in r.devices)
        print(
            f"{q.file}: M{q.mag} {len(r.devices)} within, {n_vis} visible, "
            f"{sum(d.detected and d.visible for d in r.devices)} detected (visible), "
            f"{r.false_triggers} false in {r.noise_hours:.2f} h",
            flush=True,
        )
    summary = summarise(results)
    text = markdown(summary, a.files or a.split)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "summary.json").write_text(json.dumps(summary, indent=1))
        (a.out / "summary.md").write_text(text + "\n")
    return 0
