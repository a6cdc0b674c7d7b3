"""Training records from the openeew_mx ``dev`` earthquakes: a real MEMS-accelerometer network.

``eew model train --openeew DIR`` mixes these into the training batches (``AugmentConfig.p_real_acc``)
so that the model sees real accelerometer self-noise, 31.25 Hz data and P waves at 20-300 km, not only
velocity recordings turned into acceleration. Only the ``dev`` files of ``models/splits/openeew_mx.txt``
are read; the ``test`` earthquakes stay held out.

- **Event records**: per device with a visible P (``models.openeew.visible``) within ``max_km``, the
  three components from ``before_s`` before P to ``after_s`` after it, resampled 31.25 -> 100 Hz by the
  detector's own streaming resampler (``services.detector.resample.Resampler``: what the detector
  scores), as acceleration (``Record.acc``: no further network variant). P = the TauP (iasp91, 20 km)
  prediction refined by an AIC pick on the 1-10 Hz band-passed vertical within +-``pick_window_s``
  (device clocks and the catalogue depth are uncertain); kept only where the pick is clear (the 2 s
  after it beat 4x the RMS of the 10 s before it). S is not known: -1.
- **Noise records** (``Record.kind == "noise"``): 60 s spans of every device outside
  [origin - 60 s, origin + 300 s] of every catalogue event, without an earthquake-like burst
  (``models.data.noise_bursts``); longer windows still hold small uncatalogued earthquakes, which
  the screening is meant to drop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.augment import on_grid
from models.data import Record, noise_bursts

log = logging.getLogger(__name__)

NS = 1_000_000_000
FS = 100.0


@dataclass(frozen=True)
class OpenEEWConfig:
    max_km: float = 300.0
    before_s: float = 120.0
    after_s: float = 60.0
    min_before_s: float = 45.0  # gap-free data needed before P (the visibility test takes 35 s)
    min_after_s: float = 20.0
    pick_window_s: float = 3.0
    noise_span_s: float = 60.0
    noise_per_device: int = 6  # at most this many noise spans per device and file


def to_model_rate(x: np.ndarray, fs: float) -> np.ndarray:
    """One component at ``fs`` -> 100 Hz through the detector's resampler (aligned to sample 0)."""
    from services.common.streams import resample_ratio
    from services.detector.resample import Resampler

    ratio = resample_ratio(fs, FS)
    if isinstance(ratio, str):
        raise ValueError(f"{fs} Hz: {ratio}")
    up, down = ratio
    n_out = int(len(x) * up // down)
    ext = np.concatenate([x, np.full(int(fs), x[-1])])  # the filter's look-ahead at the end
    k0, y = Resampler(up, down).push(0, ext.astype(np.float64))
    return on_grid(k0, y, n_out)


def aic_pick(z: np.ndarray) -> int:
    """Index of the AIC minimum (Maeda 1985) of a band-passed trace segment."""
    n = len(z)
    k = np.arange(1, n - 1)
    c1 = np.cumsum(z**2)
    v1 = c1[k - 1] / k
    v2 = (c1[-1] - c1[k - 1]) / (n - k)
    aic = k * np.log(np.maximum(v1, 1e-30)) + (n - k - 1) * np.log(np.maximum(v2, 1e-30))
    return int(k[np.argmin(aic)])


def _device_arrays(
    st, sta: str, t0_ns: int, t1_ns: int, need0_ns: int | None = None, need1_ns: int | None = None
) -> tuple[np.ndarray, float, int] | None:
    """Z/1/2 of one device as one gap-free (3, N) array at its native rate over as much of [t0, t1] as
    its gap-free data give, which must cover [need0, need1] (default: all of it); with the start time
    (ns) of the first sample. None where a component is missing or has a gap in the needed span."""
    need0_ns = t0_ns if need0_ns is None else need0_ns
    need1_ns = t1_ns if need1_ns is None else need1_ns
    chosen = []
    for comp in ("Z", "1", "2"):
        trs = [
            tr
            for tr in st.select(station=sta)
            if tr.stats.channel[-1] == comp
            and tr.stats.starttime.timestamp * NS <= need0_ns
            and tr.stats.endtime.timestamp * NS >= need1_ns
        ]
        if len(trs) != 1:
            return None
        chosen.append(trs[0])
    fs = float(chosen[0].stats.sampling_rate)
    a = max(t0_ns, max(int(tr.stats.starttime.timestamp * NS) for tr in chosen))
    b = min(t1_ns, min(int(tr.stats.endtime.timestamp * NS) for tr in chosen))
    rows = []
    for tr in chosen:
        i0 = int(np.ceil((a / NS - tr.stats.starttime.timestamp) * fs - 1e-6))
        i1 = int(np.floor((b / NS - tr.stats.starttime.timestamp) * fs + 1e-6))
        rows.append(tr.data[i0 : i1 + 1].astype(np.float64))
    n = min(len(r) for r in rows)
    if n < 2:
        return None
    start_ns = int(
        chosen[0].stats.starttime.timestamp * NS
        + np.ceil((a / NS - chosen[0].stats.starttime.timestamp) * fs - 1e-6) / fs * NS
    )
    return np.stack([r[:n] for r in rows]), fs, start_ns


def records_for_file(path: Path, quake, catalogue, stations, ptimes, cfg: OpenEEWConfig) -> list[Record]:
    """Event and noise records of one earthquake file (see module doc)."""
    from obspy import read
    from scipy.signal import butter, sosfiltfilt

    from models.openeew import distance_km, visible

    st = read(str(path))
    st.merge(method=-1)
    out: list[Record] = []
    for sta in sorted({tr.stats.station for tr in st}):
        if sta not in stations:
            continue
        lat, lon = stations[sta]
        d = distance_km(quake.lat, quake.lon, lat, lon)
        if d <= cfg.max_km:
            p_ns = quake.time_ns + int(ptimes(d) * NS)
            got = _device_arrays(
                st,
                sta,
                p_ns - int(cfg.before_s * NS),
                p_ns + int(cfg.after_s * NS),
                p_ns - int(cfg.min_before_s * NS),
                p_ns + int(cfg.min_after_s * NS),
            )
            if got is not None:
                x, fs, x0_ns = got
                p_idx = int(round((p_ns - x0_ns) / NS * fs))
                if any(visible(c, fs, p_idx) for c in x):
                    sos = butter(4, [1.0, min(10.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
                    w = int(cfg.pick_window_s * fs)
                    z = sosfiltfilt(sos, x[0] - x[0].mean())
                    pick = p_idx - w + aic_pick(z[p_idx - w : p_idx + w])
                    pre = z[pick - int(10 * fs) : pick]
                    post = z[pick : pick + int(2 * fs)]
                    if len(pre) and np.abs(post).max() > 4.0 * np.sqrt(np.mean(pre**2)):
                        wave = np.stack([to_model_rate(c, fs) for c in x]).astype(np.float32)
                        p100 = int(round(pick * FS / fs))
                        out.append(
                            Record(f"openeew_mx/{path.name}/{sta}", wave, p100, -1, (True,) * 3, acc=True)
                        )
        # noise between earthquakes
        quiet = [(q.time_ns - 60 * NS, q.time_ns + 300 * NS) for q in catalogue]
        trs = st.select(station=sta, channel="*Z")
        spans = 0
        for tr in trs:
            t = tr.stats.starttime.timestamp * NS + 10 * NS
            end = tr.stats.endtime.timestamp * NS
            while t + cfg.noise_span_s * NS <= end and spans < cfg.noise_per_device:
                a, b = int(t), int(t + cfg.noise_span_s * NS)
                t += cfg.noise_span_s * NS
                if any(lo < b and a < hi for lo, hi in quiet):
                    continue
                got = _device_arrays(st, sta, a, b)
                if got is None:
                    continue
                x, fs, _ = got
                wave = np.stack([to_model_rate(c, fs) for c in x]).astype(np.float32)
                rec = Record(
                    f"openeew_mx/{path.name}/{sta}/noise{spans}",
                    wave,
                    wave.shape[1],
                    -1,
                    (True,) * 3,
                    acc=True,
                    kind="noise",
                )
                if len(noise_bursts(rec)):
                    continue
                out.append(rec)
                spans += 1
    return out


def dev_records(root: Path, cfg: OpenEEWConfig | None = None) -> list[Record]:
    """Every training record of the ``dev`` earthquakes of ``root`` (data/openeew_mx)."""
    from models.openeew import PTimes, load_quakes, load_split, load_stations

    cfg = cfg or OpenEEWConfig()
    split = load_split()
    mains, catalogue = load_quakes(root)
    stations = load_stations(root)
    ptimes = PTimes(max_km=max(cfg.max_km, 400.0))
    out: list[Record] = []
    for q in mains:
        if split.get(q.file) != "dev":
            continue
        recs = records_for_file(root / "mseed" / q.file, q, catalogue, stations, ptimes, cfg)
        log.info(
            "openeew %s: %d event records, %d noise records",
            q.file,
            sum(r.kind == "event" for r in recs),
            sum(r.kind == "noise" for r in recs),
        )
        out.extend(recs)
    return out
