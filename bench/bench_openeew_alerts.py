"""Alert performance on openeew_mx, reported the way ShakeAlert reports it, beside OpenEEW's own method.

What runs
---------
* **This pipeline, default settings.** Each earthquake file is scored by the detector core
  (``models.openeew.score_file``: every packet in time order through ``CoreDetector``, as live), and
  the scores go through the pure association core (``services.alerting.association.Associator``) configured
  exactly as ``eew alert`` configures it with no flags (``AlertingSettings()``), with the network's
  ``stations.csv`` (coordinates and gains). This is the same code path as the Kafka service minus
  the transport, event-time ordered, so it gives the alerts ``eew validate`` would, much faster.
* **Baseline: the OpenEEW project's published method** (openeew-seismology, ``params.py``,
  ``src/detection.py``, ``src/event.py``), implemented from its description on the raw 31.25 Hz
  records: STA/LTA on each component (|x - mean| over the 352-sample buffer, STA 32 samples, LTA 320
  samples, threshold 3; detection time = earliest component; no new detection at a device for
  60 s); association of a detection to an event when the RMS misfit of travel-time differences at
  the best grid location is below 1 s; location = maximum of (Voronoi cell of the first device among
  the active devices) + sum of Gaussian (sigma 3 s) travel-time-difference likelihoods on a grid
  (iasp91, depth 20 km; the project's 0.01 deg grid coarsened to 0.05 deg); magnitude: Pd from the
  vertical acceleration integrated twice (cumulative sums), band-passed 0.2-3 Hz (4-pole causal
  Butterworth), Hilbert envelope, peak over the first n = 1..9 s after detection, station
  M = a (log10 Pd + c log10(R + 1)) + b with the project's per-window coefficients, combined as
  the product of Gaussians (weighted mean). An alert is issued when 4 devices (``ndef_min``) are
  associated, as in the issue's description.

Alert times are *data times*, the same for both methods: when the last sample the alert needed was
recorded -- the end of the device's 32-sample packet (1.024 s) that completed the detector windows
behind the alert for the pipeline (scores are released and associated in the order their packets
arrive, as live), the end of the packet holding the 4th detection for the baseline -- minus the
catalogue origin time. Real alerts add transport and processing latency to both (``bench/RESULTS.md``
(b) measures ours).

Per earthquake: first alert time after origin, location error and magnitude error of the first
alert and of the final version, stations used, location flagged uncertain, magnitude flagged as a
lower bound, and how many events the pipeline made for it (more than one: split). Matching: the
pipeline's events whose first P lies within [origin, origin + 90 s] and whose stations' P times fit
the catalogue origin (median residual within 5 s of iasp91 at 20 km depth).

    .venv/bin/python bench/bench_openeew_alerts.py --split all --out /tmp/openeew-alerts
    .venv/bin/python bench/bench_openeew_alerts.py --split dev --pd-table /tmp/pd.csv   # calibration data

``--scores-cache DIR`` keeps each file's detector scores (pickle) to rerun the association quickly.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pickle
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.openeew import DEVICE_PACKET_SAMPLES, PTimes, Quake, load_quakes, load_split, score_file  # noqa: E402
from services.alerting.association import NS, AlertKind, AlertRecord, Associator, ScoreRecord  # noqa: E402
from services.alerting.association.intensity import haversine_km_np  # noqa: E402
from services.alerting.association.locate import iasp91_first_p  # noqa: E402
from services.common.domain import haversine_km  # noqa: E402
from services.common.inventory import StationInventory, gains_by_station, load_gains  # noqa: E402

DEPTH_KM = 20.0


# ----------------------------------------------------------------------------- our pipeline


def to_record(s: object) -> ScoreRecord:
    """A detector ``Score`` as the alerting core receives it: its StationScore message, decoded."""
    from services.alerting.formats.messages import score_to_record
    from services.detector.service import score_message

    return score_to_record(score_message(s, s.window_end_ns))  # type: ignore[arg-type, attr-defined]


def scores_for(
    path: Path,
    cache: Path | None,
    model_dir: Path | None,
    detection_threshold: float | None = None,
    chunk_samples: int | None = None,
) -> list[ScoreRecord]:
    """The detector core's scores of one file (from ``cache`` when there); ``detection_threshold``
    replaces the contract's trigger level (as ``eew detect --detection-threshold``), ``chunk_samples``
    the scoring stride (as ``eew detect --stride-samples``)."""
    cached = cache / f"{path.name}.pkl" if cache else None
    if cached is not None and cached.exists():
        with open(cached, "rb") as f:
            raw = pickle.load(f)
    else:
        from models.contract import DEFAULT_MODEL_DIR
        from models.openeew import core_factory_for

        over: dict[str, float | int] = {} if detection_threshold is None else {"detection_threshold": detection_threshold}
        if chunk_samples is not None:
            over["chunk_samples"] = chunk_samples
        raw, _, _ = score_file(
            path, core_factory_for(model_dir or DEFAULT_MODEL_DIR, 1, **over), packet_samples=DEVICE_PACKET_SAMPLES
        )
        if cached is not None:
            cache.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            with open(cached, "wb") as f:
                pickle.dump(raw, f)
    if raw and not any(s.ingest_time_ns for s in raw):
        raise SystemExit(f"{cached}: scores cached by an older version of this bench (no arrival times); delete it")
    return [to_record(s) for s in raw]


def run_pipeline(records: list[ScoreRecord], inventory: StationInventory, gains: dict[str, float]) -> tuple[
    list[AlertRecord], dict[int, int], Associator
]:
    """Alerts of the association core with ``eew alert``'s default settings, and when each was made
    (``id(alert)`` -> the arrival of the packet that released its scores)."""
    from services.alerting.settings import AlertingSettings

    st = AlertingSettings()
    assoc = Associator(
        st.association_config(),
        inventory,
        locator=st.locator_config(),
        gains=gains,
        magnitude=st.magnitude_config(),
    )
    recs = sorted(records, key=lambda r: (r.ingest_time_ns, r.window_end_ns, r.stream))
    out: list[AlertRecord] = []
    made: dict[int, int] = {}
    i = 0
    while i < len(recs):  # one batch per packet arrival: the scores that packet released
        j = i
        while j < len(recs) and recs[j].ingest_time_ns == recs[i].ingest_time_ns:
            j += 1
        new = assoc.add_many(recs[i:j])
        made.update((id(a), recs[i].ingest_time_ns) for a in new)
        out += new
        i = j
    new = assoc.flush()
    made.update((id(a), max(a.event_time_ns, recs[-1].ingest_time_ns if recs else 0)) for a in new)
    return out + new, made, assoc


def p_residual_s(alert: AlertRecord, q: Quake) -> float:
    """Median of (P time - iasp91 prediction from the catalogue origin) over the alert's stations."""
    res = [
        (c.p_time_ns - q.time_ns) / NS - float(iasp91_first_p(DEPTH_KM, [haversine_km(q.lat, q.lon, c.latitude, c.longitude)])[0])
        for c in alert.stations
        if c.latitude is not None and c.longitude is not None
    ]
    return statistics.median(res) if res else math.inf


# ----------------------------------------------------------------------------- OpenEEW baseline

OPENEEW_MAG = {  # params.py: (a, b, c, std) for Pd over the first n s, M = a (log10 Pd + c log10(R+1)) + b
    1: (1.67, 5.68, 1, 0.85),
    2: (1.56, 5.47, 1, 0.74),
    3: (1.44, 5.35, 1, 0.66),
    4: (1.41, 5.32, 1, 0.59),
    5: (1.41, 5.29, 1, 0.57),
    6: (1.35, 5.22, 1, 0.51),
    7: (1.45, 5.24, 1, 0.57),
    8: (1.39, 5.21, 1, 0.52),
    9: (1.32, 5.19, 1, 0.47),
}
STA, LTA, BUF, THRESH, NO_DET_S = 32, 320, 352, 3.0, 60.0
SIGMA_S, ASSOC_WIN_S, TSL_MAX_S, NDEF_MIN = 3.0, 1.0, 20.0, 4


@dataclass
class _Det:
    device: str
    t: float  # s (epoch)
    lat: float
    lon: float
    z: np.ndarray  # vertical acceleration (gal) from the detection on
    z_t0: float
    fs: float
    packet_end: float  # s (epoch): when the device's packet holding the detecting sample was complete


@dataclass
class _BEvent:
    dets: list[_Det]
    prob: np.ndarray
    alerts: list[dict] = field(default_factory=list)


def stalta_detections(st: object, coords: dict[str, tuple[float, float]]) -> list[_Det]:
    """Per device: STA/LTA > 3 on any component (openeew-seismology ``detect_stalta``)."""
    by_dev: dict[str, list[tuple[float, float]]] = {}
    zdata: dict[str, list[tuple[float, float, np.ndarray]]] = {}
    for tr in st:  # type: ignore[attr-defined]
        dev = tr.stats.station
        if dev not in coords:
            continue
        x = tr.data.astype(np.float64)
        fs = float(tr.stats.sampling_rate)
        t0 = tr.stats.starttime.timestamp
        if tr.stats.channel.endswith("Z"):
            zdata.setdefault(dev, []).append((t0, fs, x))
        if len(x) < BUF:
            continue
        # |x - mean of the 352-sample buffer|, STA = mean of the last 32, LTA = mean of the last 320
        kern = np.ones(BUF) / BUF
        mean = np.convolve(x, kern, mode="full")[: len(x)]
        y = np.abs(x - mean)
        c = np.concatenate([[0.0], np.cumsum(y)])
        idx = np.arange(BUF, len(x) + 1)
        sta = (c[idx] - c[idx - STA]) / STA
        lta = (c[idx] - c[idx - LTA]) / LTA
        hit = np.nonzero(sta > THRESH * np.maximum(lta, 1e-12))[0]
        for k in hit:  # sample idx[k] - 1 decides; its packet (32 samples from the trace's first) ends later
            j = int(idx[k]) - 1
            end = t0 + (j // DEVICE_PACKET_SAMPLES + 1) * DEVICE_PACKET_SAMPLES / fs
            by_dev.setdefault(dev, []).append((t0 + j / fs, end))
    dets: list[_Det] = []
    for dev, hits in by_dev.items():
        last = -math.inf
        for t, packet_end in sorted(hits):
            if t - last < NO_DET_S:
                continue
            last = t
            seg = [z for z in zdata.get(dev, []) if z[0] <= t < z[0] + len(z[2]) / z[1]]
            if not seg:
                continue
            t0, fs, x = seg[0]
            i = int((t - t0) * fs)
            dets.append(_Det(dev, t, *coords[dev], x[i:], t0 + i / fs, fs, packet_end))
    return sorted(dets, key=lambda d: d.t)


class _Grid:
    def __init__(self, coords: dict[str, tuple[float, float]]) -> None:
        self.lat, self.lon = np.meshgrid(np.arange(13.0, 23.0, 0.05), np.arange(-106.0, -90.0, 0.05), indexing="ij")
        self.coords = coords
        self._tt: dict[str, np.ndarray] = {}
        km = np.arange(0.0, 2500.0, 1.0)
        self._table = iasp91_first_p(DEPTH_KM, km)

    def dist(self, lat: float, lon: float) -> np.ndarray:
        return haversine_km_np(lat, lon, self.lat, self.lon)

    def tt(self, dev: str) -> np.ndarray:
        if dev not in self._tt:
            self._tt[dev] = np.interp(self.dist(*self.coords[dev]), np.arange(len(self._table)), self._table)
        return self._tt[dev]

    def tt_at(self, km: float) -> float:
        return float(np.interp(km, np.arange(len(self._table)), self._table))


def _pd_max(det: _Det, upto_t: float) -> list[float]:
    """Peak Hilbert envelope of the doubly integrated, 0.2-3 Hz band-passed vertical over 1..9 s
    after the detection, for the windows complete at ``upto_t`` (``get_pd``)."""
    from scipy import signal

    n = int(min(10.0, upto_t - det.z_t0) * det.fs)
    if n < det.fs:
        return []
    x = det.z[:n]
    d = np.cumsum(np.cumsum(x / det.fs) / det.fs)
    sos = signal.butter(4, (0.2, 3.0), "bandpass", fs=det.fs, output="sos")
    env = np.abs(signal.hilbert(signal.sosfilt(sos, d)))
    return [float(env[: int(k * det.fs)].max()) for k in range(1, 10) if int(k * det.fs) <= n]


def _b_location(grid: _Grid, ev: _BEvent) -> tuple[float, float, float]:
    k = np.unravel_index(int(np.argmax(ev.prob)), ev.prob.shape)
    lat, lon = float(grid.lat[k]), float(grid.lon[k])
    first = ev.dets[0]
    return lat, lon, first.t - float(grid.tt(first.device)[k])


def _b_magnitude(grid: _Grid, ev: _BEvent, lat: float, lon: float, now: float) -> float | None:
    mu, w = [], []
    for d in ev.dets:
        pds = _pd_max(d, now)
        if not pds or pds[-1] <= 0:
            continue
        a, b, c, std = OPENEEW_MAG[len(pds)]
        r = haversine_km(lat, lon, d.lat, d.lon)
        mu.append(a * (math.log10(pds[-1]) + c * math.log10(r + 1)) + b)
        w.append(1.0 / std**2)
    if not mu:
        return None
    return float(np.dot(mu, w) / np.sum(w))


def run_baseline(
    path: Path, coords: dict[str, tuple[float, float]], grid: _Grid
) -> tuple[list[_BEvent], list[_Det], object]:
    """The OpenEEW method on one file: events with their alert versions (from 4 devices); also its
    device detections and the record."""
    from obspy import read

    st = read(str(path))
    st.merge(method=-1)
    active = sorted({tr.stats.station for tr in st if tr.stats.station in coords})
    dets = stalta_detections(st, coords)
    events: list[_BEvent] = []
    open_ev: list[_BEvent] = []
    for det in dets:
        open_ev = [e for e in open_ev if det.t - e.dets[-1].t <= TSL_MAX_S]
        joined = None
        for ev in open_ev:
            if det.device in {d.device for d in ev.dets}:
                continue
            new = sum(
                np.exp(-((grid.tt(o.device) - grid.tt(det.device) - o.t + det.t) ** 2) / (2 * SIGMA_S**2))
                for o in ev.dets
            )
            k = np.unravel_index(int(np.argmax(ev.prob + new)), ev.prob.shape)
            blat, blon = float(grid.lat[k]), float(grid.lon[k])
            mis = [
                (grid.tt_at(haversine_km(blat, blon, o.lat, o.lon)) - grid.tt_at(haversine_km(blat, blon, det.lat, det.lon)))
                - (o.t - det.t)
                for o in ev.dets
            ]
            if math.sqrt(sum(m * m for m in mis) / len(mis)) < ASSOC_WIN_S:
                ev.prob = ev.prob + new
                ev.dets.append(det)
                joined = ev
                break
        if joined is None:  # a new event: prior = the first device's Voronoi cell among active devices
            others = [grid.dist(*coords[a]) for a in active if a != det.device]
            mine = grid.dist(det.lat, det.lon)
            prob = (mine <= np.min(others, axis=0)).astype(np.float64) if others else np.ones_like(mine)
            joined = _BEvent([det], prob)
            events.append(joined)
            open_ev.append(joined)
        if len(joined.dets) >= NDEF_MIN:
            now = max(d.packet_end for d in joined.dets)
            lat, lon, t0 = _b_location(grid, joined)
            joined.alerts.append(
                {"t": now, "lat": lat, "lon": lon, "origin": t0, "n": len(joined.dets),
                 "mag": _b_magnitude(grid, joined, lat, lon, now)}
            )
    for ev in events:  # final version: magnitudes with every window complete
        if ev.alerts:
            lat, lon, t0 = _b_location(grid, ev)
            end = ev.dets[-1].t + 10.0
            ev.alerts.append({"t": end, "lat": lat, "lon": lon, "origin": t0, "n": len(ev.dets),
                              "mag": _b_magnitude(grid, ev, lat, lon, end), "final": True})
    return [e for e in events if e.alerts], dets, st


def baseline_devices(
    q: Quake, st: object, dets: list[_Det], coords: dict[str, tuple[float, float]], ptimes: object,
    max_km: float = 150.0, early_s: float = 2.0,
) -> tuple[int, int]:
    """The baseline's detector by ``eew model openeew``'s criterion (issue 12): of the devices within
    ``max_km`` whose P is visible (``models.openeew.device_ps``), how many have an STA/LTA detection in
    (P - ``early_s``, P + 2 s]. Returns (detected, visible)."""
    from models.openeew import device_ps

    vis = [(sta, p_ns / NS) for sta, _, p_ns, v in device_ps(q, st, coords, ptimes, max_km) if v]  # type: ignore[arg-type]
    hit = sum(any(-early_s < d.t - p <= 2.0 for d in dets if d.device == sta) for sta, p in vis)
    return hit, len(vis)


# ----------------------------------------------------------------------------- matching and report


def _err_km(lat: float | None, lon: float | None, q: Quake) -> float | None:
    return None if lat is None or lon is None else haversine_km(lat, lon, q.lat, q.lon)


def evaluate(q: Quake, alerts: list[AlertRecord], made: dict[int, int], b_events: list[_BEvent]) -> dict:
    """One earthquake's row: this pipeline (alert times from ``made``, see ``run_pipeline``) and the baseline."""
    window = (q.time_ns, q.time_ns + 90 * NS)
    by_event: dict[str, list[AlertRecord]] = {}
    for a in alerts:
        by_event.setdefault(a.event_id, []).append(a)
    mine = [
        vs
        for vs in by_event.values()
        if window[0] <= vs[0].first_p_time_ns <= window[1] and abs(p_residual_s(vs[-1], q)) <= 5.0
    ]
    row: dict = {"file": q.file, "name": q.name, "M": q.mag, "events": len(mine)}
    if mine:
        vs = min(mine, key=lambda v: v[0].event_time_ns)
        first = vs[0]
        final = [a for a in vs if a.kind is not AlertKind.CANCEL][-1]
        located = [a for a in vs if a.location is not None]
        with_mag = [a for a in vs if a.magnitude is not None]
        row.update(
            alert_s=(made[id(first)] - q.time_ns) / NS,
            window_end_s=(first.event_time_ns - q.time_ns) / NS,
            n_first=len(first.stations),
            n_final=len(final.stations),
            loc_first_km=_err_km(first.location.latitude, first.location.longitude, q) if first.location else None,
            loc_final_km=_err_km(final.location.latitude, final.location.longitude, q) if final.location else None,
            unc_first_km=first.location.uncertainty_km if first.location else None,
            uncertain_first=first.location_uncertain,
            located_s=(made[id(located[0])] - q.time_ns) / NS if located else None,
            mag_first=with_mag[0].magnitude.value if with_mag else None,  # type: ignore[union-attr]
            mag_first_s=(made[id(with_mag[0])] - q.time_ns) / NS if with_mag else None,
            mag_final=final.magnitude.value if final.magnitude else None,
            lower_bound_first=with_mag[0].magnitude.saturated if with_mag else None,  # type: ignore[union-attr]
            cancelled=vs[-1].kind is AlertKind.CANCEL,
        )
    b = [e for e in b_events if q.time_ns / NS - 5 <= e.dets[0].t <= q.time_ns / NS + 90]
    row["b_events"] = len(b)
    if b:
        ev = min(b, key=lambda e: e.alerts[0]["t"])
        f, z = ev.alerts[0], ev.alerts[-1]
        row.update(
            b_alert_s=f["t"] - q.time_ns / NS,
            b_n_first=f["n"],
            b_n_final=z["n"],
            b_loc_first_km=_err_km(f["lat"], f["lon"], q),
            b_loc_final_km=_err_km(z["lat"], z["lon"], q),
            b_mag_first=f["mag"],
            b_mag_final=z["mag"],
        )
    return row


def _f(x: float | None, nd: int = 1, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def _d(a: float | None, b: float) -> float | None:
    return None if a is None else a - b


def markdown(rows: list[dict], split: dict[str, str]) -> str:
    out = [
        "| earthquake (split) | M | first alert s | stations first/final | loc err first/final km | 95 % unc first km | "
        "M first (err) | M final (err) | events | OpenEEW alert s | OpenEEW devices | OpenEEW loc err first/final km | "
        "OpenEEW M first/final (err) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        unc = _f(r.get("unc_first_km"), 0) + (" (flagged)" if r.get("uncertain_first") else "")
        mf = r.get("mag_first")
        out.append(
            f"| {r['name']} {r['file']} ({split.get(r['file'], '?')}) | {r['M']} | {_f(r.get('alert_s'))} | "
            f"{r.get('n_first', '-')}/{r.get('n_final', '-')} | "
            f"{_f(r.get('loc_first_km'), 0)}/{_f(r.get('loc_final_km'), 0)} | {unc} | "
            f"{_f(mf, 2)} ({_f(_d(mf, r['M']), 2, True)}){' lb' if r.get('lower_bound_first') else ''} "
            f"at {_f(r.get('mag_first_s'))} s | "
            f"{_f(r.get('mag_final'), 2)} ({_f(_d(r.get('mag_final'), r['M']), 2, True)}) | {r['events']} | "
            f"{_f(r.get('b_alert_s'))} | {r.get('b_n_first', '-')}/{r.get('b_n_final', '-')} | "
            f"{_f(r.get('b_loc_first_km'), 0)}/{_f(r.get('b_loc_final_km'), 0)} | "
            f"{_f(r.get('b_mag_first'), 2)}/{_f(r.get('b_mag_final'), 2)} "
            f"({_f(_d(r.get('b_mag_first'), r['M']), 2, True)}/{_f(_d(r.get('b_mag_final'), r['M']), 2, True)}) |"
        )
    return "\n".join(out)


def summary(rows: list[dict]) -> dict:
    def med(key: str, fn=lambda r, v: v) -> float | None:  # noqa: ANN001
        vals = [fn(r, r[key]) for r in rows if r.get(key) is not None]
        return float(np.median(vals)) if vals else None

    def mag_err(r: dict, v: float) -> float:
        return abs(v - r["M"])

    return {
        "earthquakes": len(rows),
        "alerted": sum(r["events"] > 0 for r in rows),
        "split_events": sum(r["events"] > 1 for r in rows),
        "first_alert_located": sum(r.get("loc_first_km") is not None for r in rows),
        "median_alert_s": med("alert_s"),
        "median_loc_first_km": med("loc_first_km"),
        "median_loc_final_km": med("loc_final_km"),
        "median_abs_mag_err_first": med("mag_first", mag_err),
        "median_abs_mag_err_final": med("mag_final", mag_err),
        "b_alerted": sum(r["b_events"] > 0 for r in rows),
        "b_median_alert_s": med("b_alert_s"),
        "b_median_loc_first_km": med("b_loc_first_km"),
        "b_median_loc_final_km": med("b_loc_final_km"),
        "b_median_abs_mag_err_first": med("b_mag_first", mag_err),
        "b_median_abs_mag_err_final": med("b_mag_final", mag_err),
        "b_devices_p_within_2s": sum(r.get("b_devices_p_within_2s", 0) for r in rows),
        "devices_p_visible": sum(r.get("devices_p_visible", 0) for r in rows),
        "both_alerted": sum(1 for r in rows if r.get("alert_s") is not None and r.get("b_alert_s") is not None),
        "alert_not_later_than_baseline": sum(  # of those both alerted
            1 for r in rows if r.get("alert_s") is not None and r.get("b_alert_s") is not None and r["alert_s"] <= r["b_alert_s"]
        ),
    }


def pd_table(q: Quake, alerts: list[AlertRecord], gains: dict[str, float]) -> list[dict]:
    """Per station of the final version of the matched event: Pd (m) over the first 3 s of P and the
    hypocentral distance from the catalogue (calibration input)."""
    rows = []
    window = (q.time_ns, q.time_ns + 90 * NS)
    finals: dict[str, AlertRecord] = {}
    for a in alerts:
        if window[0] <= a.first_p_time_ns <= window[1] and a.kind is not AlertKind.CANCEL:
            finals[a.event_id] = a
    for a in finals.values():
        for c in a.stations:
            g = gains.get(f"{c.network}.{c.station}")
            if c.latitude is None or c.longitude is None or not g or c.peak_displacement <= 0:
                continue
            epi = haversine_km(q.lat, q.lon, c.latitude, c.longitude)
            rows.append(
                {"file": q.file, "M": q.mag, "station": c.station, "epi_km": round(epi, 1),
                 "hyp_km": round(math.hypot(epi, DEPTH_KM), 1), "pd_m": c.peak_displacement / g,
                 "window_s": c.amplitude_window_s,
                 "p_resid_s": round((c.p_time_ns - q.time_ns) / NS - float(iasp91_first_p(DEPTH_KM, [epi])[0]), 2)}
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--split", choices=["dev", "test", "all"], default="all")
    ap.add_argument("--files", default="", help="Comma-separated file names (overrides --split).")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--scores-cache", type=Path, default=None, help="Keep/reuse detector scores here.")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument(
        "--detection-threshold",
        type=float,
        default=None,
        help="the detector's trigger level instead of the contract's (a level calibrated on the network's noise)",
    )
    ap.add_argument(
        "--stride-samples",
        type=int,
        default=None,
        help="the detector's scoring stride in model samples instead of the default (100 = 1 s)",
    )
    ap.add_argument("--pd-table", type=Path, default=None, help="Write per-station Pd observations (CSV).")
    ap.add_argument("--out", type=Path, default=None, help="Write rows.json and table.md here.")
    a = ap.parse_args(argv)
    root = a.data_dir / "data" / "openeew_mx"
    mains, _ = load_quakes(root)
    split = load_split()
    if a.files:
        mains = [q for q in mains if q.file in set(a.files.split(","))]
    elif a.split != "all":
        mains = [q for q in mains if split.get(q.file) == a.split]
    inventory = StationInventory.load(root / "stations.csv")
    gains = gains_by_station(load_gains(root / "stations.csv"))
    coords = {s.station: (s.latitude, s.longitude) for s in inventory}
    grid = None if a.no_baseline else _Grid(coords)
    ptimes = PTimes()
    rows, pds = [], []
    for q in sorted(mains, key=lambda q: q.time_ns):
        t = time.perf_counter()
        path = root / "mseed" / q.file
        alerts, made, assoc = run_pipeline(scores_for(path, a.scores_cache, a.model_dir, a.detection_threshold, a.stride_samples), inventory, gains)
        b_events: list[_BEvent] = []
        if grid is not None:
            b_events, dets, st = run_baseline(path, coords, grid)
        row = evaluate(q, alerts, made, b_events)
        if grid is not None:
            row["b_devices_p_within_2s"], row["devices_p_visible"] = baseline_devices(q, st, dets, coords, ptimes)
        row["all_events"] = len({x.event_id for x in alerts})
        rows.append(row)
        pds += pd_table(q, alerts, gains)
        print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}),
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    text = markdown(rows, split)
    summ = {"all": summary(rows)}
    for part in ("dev", "test"):
        sub = [r for r in rows if split.get(r["file"]) == part]
        if sub and len(sub) < len(rows):
            summ[part] = summary(sub)
    print(text)
    print(json.dumps(summ, indent=1))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "rows.json").write_text(json.dumps({"rows": rows, "summary": summ}, indent=1))
        (a.out / "table.md").write_text(text + "\n")
    if a.pd_table and pds:
        with open(a.pd_table, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(pds[0]))
            w.writeheader()
            w.writerows(pds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
