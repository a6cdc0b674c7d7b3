"""PNG plots of the validation report (matplotlib, Agg backend, no timestamps in the files).

- ``plots/event_<id>.png`` per covered catalogue event: the vertical waveform of each recording
  station (nearest first, normalised), its station score on a right axis, the predicted P, the
  detector's P pick and the first alert time; time in seconds after the origin.
- ``plots/map.png``: stations, catalogue epicentres by status, alert epicentres (or, while the
  alerting does not locate, the centroid of each alert's stations), plain lon/lat axes.
- ``plots/latency.png``: histogram of first-alert latency after origin and after the first P.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.alerting.core import ScoreRecord
from services.common.mseed import MSEED_LOCK
from services.validate.core import NS, ValidationResult, stream_of
from services.validate.inputs import ArchiveIndex

log = logging.getLogger(__name__)
SAVE = {"dpi": 100, "metadata": {"Software": None}}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[-80:]


def _vertical(index: ArchiveIndex, stream: str, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(times ns, samples) of the stream's vertical in [t0, t1), read from the archive."""
    from obspy import Stream, UTCDateTime, read

    files = index.files_for(stream, t0, t1)
    if not files:
        return None
    st = Stream()
    for f in files:
        try:
            with MSEED_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st += read(str(f), starttime=UTCDateTime(ns=t0), endtime=UTCDateTime(ns=t1))
        except Exception as exc:  # noqa: BLE001 -- a bad file costs one plot row, never the report
            log.warning("%s: cannot read for the plot: %s", f, exc)
    prefix = stream[:-1]  # NET.STA.LOC.BI
    st = Stream([tr for tr in st if tr.id.startswith(prefix) and tr.stats.channel.endswith("Z")])
    if not st:
        return None
    try:
        st.merge(method=0, fill_value=None)
    except Exception:  # noqa: BLE001 -- mixed sampling rates: keep the first trace only
        st = Stream([st[0]])
    tr = st[0]
    data = np.ma.filled(np.ma.masked_invalid(np.asarray(tr.data, dtype=np.float64)), np.nan)
    t = tr.stats.starttime.ns + (np.arange(len(data)) * (NS / tr.stats.sampling_rate)).astype(np.int64)
    return t, data


def event_plot(path: Path, result: ValidationResult, ev_index: int, index: ArchiveIndex,
               scores: dict[str, list[ScoreRecord]], max_stations: int) -> bool:
    plt = _plt()
    e = result.events[ev_index]
    ev = e.event
    rows = [a for a in e.arrivals if a.recording][:max_stations]
    if not rows:
        return False
    tps = [a.predicted_p_ns for a in rows if a.predicted_p_ns is not None]
    t0 = ev.origin_ns - 15 * NS
    t1 = (max(tps) if tps else ev.origin_ns + 20 * NS) + 45 * NS
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 1.15 * len(rows) + 1.3), sharex=True, squeeze=False)
    axes = axes[:, 0]
    rel = lambda t: (np.asarray(t, dtype=np.float64) - ev.origin_ns) / NS  # noqa: E731
    for ax, a in zip(axes, rows, strict=True):
        w = _vertical(index, a.stream, t0, t1)
        if w is not None:
            t, x = w
            x = x - np.nanmean(x)
            peak = np.nanmax(np.abs(x)) if np.isfinite(x).any() else 0.0
            ax.plot(rel(t), x / peak if peak > 0 else x, color="0.25", lw=0.5)
        ax.set_ylim(-1.1, 1.1)
        ax.set_yticks([])
        sc = [r for r in scores.get(a.stream, []) if t0 <= r.window_end_ns <= t1]
        ax2 = ax.twinx()
        if sc:
            ax2.step(rel([r.window_end_ns for r in sc]), [r.probability for r in sc], where="post",
                     color="tab:red", lw=0.9)
            trig = [r for r in sc if r.triggered]
            ax2.plot(rel([r.window_end_ns for r in trig]), [r.probability for r in trig], "o", ms=2.5,
                     color="tab:red")
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_yticks([0, 1])
        ax2.tick_params(labelsize=7)
        if a.predicted_p_ns is not None:
            ax.axvline(rel(a.predicted_p_ns), color="tab:blue", ls="--", lw=1)
        if a.pick_ns is not None:
            ax.axvline(rel(a.pick_ns), ymin=0.15, ymax=0.85, color="tab:red", lw=1.6)
        if e.first_alert_ns is not None:
            ax.axvline(rel(e.first_alert_ns), color="tab:green", lw=1.2)
        dist = f"{a.distance_km:.0f} km" if a.distance_km is not None else "no coords"
        label = f"{a.stream[:-1]}\n{dist}" + (" *" if a.in_alert else "")
        ax.text(0.005, 0.95, label, transform=ax.transAxes, fontsize=7, va="top",
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0})
    axes[-1].set_xlim(rel(t0), rel(t1))
    axes[-1].set_xlabel(f"seconds after origin {ev.event_id} ({_iso(ev.origin_ns)})")
    lat = f"{e.latency_after_origin_s:.1f} s after origin" if e.latency_after_origin_s is not None else ""
    mag = f"M{ev.magnitude:.1f} " if ev.magnitude is not None else ""
    fig.suptitle(f"{ev.event_id}: {mag}{e.status}" + (f", first alert {lat}" if lat else "")
                 + " (* = station in the alert)", fontsize=10)
    h = fig.get_figheight()
    fig.subplots_adjust(left=0.04, right=0.95, top=1 - 0.45 / h, bottom=0.55 / h, hspace=0.08)
    fig.savefig(path, **SAVE)
    plt.close(fig)
    return True


def _iso(ns: int) -> str:
    from services.common.timeutil import ns_to_iso

    return ns_to_iso(ns)


def map_plot(path: Path, result: ValidationResult) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 7))
    lats, lons = [], []
    seen = set()
    for s in result.stations:
        sid = ".".join(s.stream.split(".")[:2])
        if s.latitude is None or s.longitude is None or sid in seen:
            continue
        seen.add(sid)
        ax.plot(s.longitude, s.latitude, "^", color="tab:blue", ms=8, mec="k")
        ax.annotate(sid, (s.longitude, s.latitude), fontsize=7, xytext=(3, 3), textcoords="offset points")
        lats.append(s.latitude)
        lons.append(s.longitude)
    colors = {"detected": "tab:green", "missed": "tab:red", "not covered": "0.6"}
    for e in result.events:
        ev = e.event
        ax.plot(ev.longitude, ev.latitude, "*", color=colors[e.status], ms=15, mec="k")
        ax.annotate(ev.event_id, (ev.longitude, ev.latitude), fontsize=7, xytext=(4, -10),
                    textcoords="offset points")
        lats.append(ev.latitude)
        lons.append(ev.longitude)
    cat = {e.event.event_id: e.event for e in result.events}
    for a in result.alerts:
        b = a.best
        if b.has_location and math.isfinite(b.latitude) and math.isfinite(b.longitude):
            x, y, marker = b.longitude, b.latitude, "X"
        else:
            pts = [(s.longitude, s.latitude) for s in b.stations if s.latitude is not None and s.longitude is not None]
            if not pts:
                continue
            x, y, marker = float(np.mean([p[0] for p in pts])), float(np.mean([p[1] for p in pts])), "o"
        col = "tab:purple" if a.classification != "false" else "tab:orange"
        ax.plot(x, y, marker, color=col, ms=9, mfc="none" if marker == "o" else col, mew=2)
        if a.matched_event_id in cat:
            c = cat[a.matched_event_id]
            ax.plot([x, c.longitude], [y, c.latitude], ":", color=col, lw=1)
        lats.append(y)
        lons.append(x)
    if lats:
        pad_lat = max(0.05, 0.1 * (max(lats) - min(lats)))
        pad_lon = max(0.05, 0.1 * (max(lons) - min(lons)))
        ax.set_ylim(min(lats) - pad_lat, max(lats) + pad_lat)
        ax.set_xlim(min(lons) - pad_lon, max(lons) + pad_lon)
        ax.set_aspect(1.0 / max(0.1, math.cos(math.radians(float(np.mean(lats))))))
    from matplotlib.lines import Line2D

    statuses = {e.status for e in result.events}
    located = {a.best.has_location for a in result.alerts}
    handles = [Line2D([], [], marker="^", ls="", color="tab:blue", mec="k", label="station")]
    handles += [Line2D([], [], marker="*", ls="", color=colors[k], mec="k", ms=12, label=f"catalogue: {k}")
                for k in ("detected", "missed", "not covered") if k in statuses]
    if True in located:
        handles.append(Line2D([], [], marker="X", ls="", color="tab:purple", label="alert epicentre"))
    if False in located:
        handles.append(Line2D([], [], marker="o", ls="", color="tab:purple", mfc="none", mew=2,
                              label="alert without location: centroid of its stations"))
    if any(a.classification == "false" for a in result.alerts):
        handles.append(Line2D([], [], marker="o", ls="", color="tab:orange", mew=2, label="false alert"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    ax.grid(alpha=0.3)
    ax.set_title("Stations, catalogue and alert epicentres")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.94, bottom=0.08)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def latency_plot(path: Path, result: ValidationResult) -> None:
    plt = _plt()
    lo = [e.latency_after_origin_s for e in result.events if e.latency_after_origin_s is not None]
    lp = [e.latency_after_first_p_s for e in result.events if e.latency_after_first_p_s is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if lo or lp:
        vals = lo + lp
        lo_edge = math.floor(min(0.0, min(vals)))
        hi_edge = math.ceil(max(vals)) + 1
        bins = np.arange(lo_edge, hi_edge + 0.5, 0.5)
        if lo:
            ax.hist(lo, bins=bins, alpha=0.6, color="tab:blue", label=f"after origin (n={len(lo)})")
        if lp:
            ax.hist(lp, bins=bins, alpha=0.6, color="tab:green", label=f"after first P (n={len(lp)})")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no detected event", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("first alert latency (s, data time)")
    ax.set_ylabel("events")
    ax.set_title("First-alert latency")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.13)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def make_plots(out: Path, result: ValidationResult, index: ArchiveIndex, scores: Sequence[ScoreRecord],
               max_stations: int = 12) -> dict[str, Any]:
    """Draw every plot under ``out/plots``; return their paths relative to ``out``."""
    pdir = out / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    by: dict[str, list[ScoreRecord]] = defaultdict(list)
    for r in scores:
        by[stream_of(r)].append(r)
    for v in by.values():
        v.sort(key=lambda r: r.window_end_ns)
    paths: dict[str, Any] = {"events": {}}
    map_plot(pdir / "map.png", result)
    paths["map"] = "plots/map.png"
    latency_plot(pdir / "latency.png", result)
    paths["latency"] = "plots/latency.png"
    for i, e in enumerate(result.events):
        if e.status == "not covered":
            continue
        name = f"event_{_safe(e.event.event_id)}.png"
        if event_plot(pdir / name, result, i, index, by, max_stations):
            paths["events"][e.event.event_id] = f"plots/{name}"
    return paths
