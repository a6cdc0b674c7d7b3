"""PNG plots of the validation report (matplotlib, Agg backend, no timestamps in the files).

- ``plots/event_<id>.png`` per covered catalogue event: the vertical waveform of each recording
  station (nearest first, band-passed, 1-20 Hz by default, normalised), its station score on a
  right axis with the detection threshold, the reference P (catalogue pick: solid blue; TauP:
  dashed blue), the detector's P pick and the first alert time; time in seconds after the origin.
  Stations left out (beyond ``max_stations``) are named; a row without data says why.
- ``plots/map.png``: stations, catalogue epicentres by status, alert epicentres (or, while the
  alerting does not locate, the centroid of each alert's stations), plain lon/lat axes.
- ``plots/latency.png``: histogram of first-alert latency after origin and after the first P.
- In the style of ShakeAlert's performance reports: ``plots/alert_time_vs_magnitude.png`` (first
  alert after origin per detected event, missed events marked), ``plots/location_errors.png``
  (histogram), ``plots/magnitude_residuals.png`` (alert minus catalogue against catalogue
  magnitude), ``plots/false_triggers.png`` (false station triggers per station over time).
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

from services.alerting.association import ScoreRecord
from services.common.domain import station_of
from services.common.mseed import MSEED_LOCK
from services.validate.core import NS, ValidationResult
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


def _vertical(index: ArchiveIndex, stream: str, t0: int, t1: int,
              band_hz: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray] | str:
    """(times ns, samples) of the stream's vertical in [t0, t1), read from the archive and band-passed
    (zero-phase Butterworth, 4 poles; the upper corner capped below Nyquist); else why there is none."""
    from obspy import Stream, UTCDateTime, read

    files = index.files_for(stream, t0, t1)
    if not files:
        return "no vertical data in the archive here"
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
        return "the archive files could not be read here"
    try:
        st.merge(method=0, fill_value=None)
    except Exception:  # noqa: BLE001 -- mixed sampling rates: keep the first trace only
        st = Stream([st[0]])
    tr = st[0]
    if band_hz is not None:
        nyq = tr.stats.sampling_rate / 2.0
        lo, hi = band_hz[0], min(band_hz[1], 0.9 * nyq)
        if lo < hi and not np.ma.is_masked(tr.data) and tr.stats.npts > 10:
            tr.detrend("demean")
            tr.taper(0.02)
            tr.filter("bandpass", freqmin=lo, freqmax=hi, corners=4, zerophase=True)
    data = np.ma.filled(np.ma.masked_invalid(np.asarray(tr.data, dtype=np.float64)), np.nan)
    t = tr.stats.starttime.ns + (np.arange(len(data)) * (NS / tr.stats.sampling_rate)).astype(np.int64)
    return t, data


def event_plot(path: Path, result: ValidationResult, ev_index: int, index: ArchiveIndex,
               scores: dict[str, list[ScoreRecord]], max_stations: int,
               band_hz: tuple[float, float] | None = (1.0, 20.0), threshold: float | None = None) -> bool:
    plt = _plt()
    e = result.events[ev_index]
    ev = e.event
    recording = [a for a in e.arrivals if a.recording]
    rows, left_out = recording[:max_stations], recording[max_stations:]
    if not rows:
        return False
    tps = [a.predicted_p_ns for a in rows if a.predicted_p_ns is not None]
    t0 = ev.origin_ns - 15 * NS
    t1 = (max(tps) if tps else ev.origin_ns + 20 * NS) + 45 * NS
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 1.15 * len(rows) + 1.3), sharex=True, squeeze=False)
    axes = axes[:, 0]
    rel = lambda t: (np.asarray(t, dtype=np.float64) - ev.origin_ns) / NS  # noqa: E731
    for ax, a in zip(axes, rows, strict=True):
        w = _vertical(index, a.stream, t0, t1, band_hz)
        if isinstance(w, str):
            ax.text(0.5, 0.5, w, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.4")
        else:
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
        else:
            ax.text(0.5, 0.15, "no score: " + ("the stream is not scorable" if not a.scored else "none here"),
                    transform=ax.transAxes, ha="center", fontsize=7, color="tab:red")
        if threshold is not None:
            ax2.axhline(threshold, color="tab:red", ls=":", lw=0.8)
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_yticks([0, 1])
        ax2.tick_params(labelsize=7)
        if a.predicted_p_ns is not None:
            ax.axvline(rel(a.predicted_p_ns), color="tab:blue", ls="-" if a.p_source == "catalogue pick" else "--",
                       lw=1)
        if a.pick_ns is not None:
            ax.axvline(rel(a.pick_ns), ymin=0.15, ymax=0.85, color="tab:red", lw=1.6)
        if e.first_alert_ns is not None:
            ax.axvline(rel(e.first_alert_ns), color="tab:green", lw=1.2)
        dist = f"{a.distance_km:.0f} km" if a.distance_km is not None else "no coords"
        label = f"{a.stream[:-1]}\n{dist}" + (" *" if a.in_alert else "")
        ax.text(0.005, 0.95, label, transform=ax.transAxes, fontsize=7, va="top",
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0})
    axes[-1].set_xlim(rel(t0), rel(t1))
    band = f"band-pass {band_hz[0]:g}-{band_hz[1]:g} Hz" if band_hz else "unfiltered"
    label = (f"seconds after origin {ev.event_id} ({_iso(ev.origin_ns)}); vertical, {band}\nblue: reference P "
             "(solid catalogue pick, dashed " + (result.travel_model or "model") + "), red tick: detector pick, "
             "green: first alert, red dotted: detection threshold")
    if left_out:
        label += (f"\n{len(left_out)} more recording station(s) not drawn (--plot-max-stations): "
                  + ", ".join(a.stream[:-1] for a in left_out[:10]) + (" ..." if len(left_out) > 10 else ""))
    axes[-1].set_xlabel(label, fontsize=8)
    lat = f"{e.latency_after_origin_s:.1f} s after origin" if e.latency_after_origin_s is not None else ""
    mag = f"M{ev.magnitude:.1f} " if ev.magnitude is not None else ""
    fig.suptitle(f"{ev.event_id}: {mag}{e.status}" + (f", first alert {lat}" if lat else "")
                 + " (* = station in the alert)", fontsize=10)
    h = fig.get_figheight()
    fig.subplots_adjust(left=0.04, right=0.95, top=1 - 0.45 / h, bottom=(1.0 if left_out else 0.8) / h, hspace=0.08)
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
        sid = station_of(s.stream)
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


def _empty(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.3")


def alert_time_plot(path: Path, result: ValidationResult) -> None:
    """First-alert time after origin against catalogue magnitude (missed events at the top)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    det = [e for e in result.events if e.status == "detected" and e.event.magnitude is not None]
    missed = [e for e in result.events if e.status == "missed" and e.event.magnitude is not None]
    if det or missed:
        if det:
            ax.scatter([e.event.magnitude for e in det], [e.latency_after_origin_s for e in det], c="tab:blue",
                       s=25, label=f"detected (n={len(det)})")
        top = max([e.latency_after_origin_s or 0.0 for e in det] + [10.0]) * 1.1
        if missed:
            ax.scatter([e.event.magnitude for e in missed], [top] * len(missed), marker="x", c="tab:red",
                       label=f"missed (n={len(missed)}), drawn at the top")
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no covered event with a catalogue magnitude")
    ax.set_xlabel("catalogue magnitude")
    ax.set_ylabel("first alert after origin (s, data time)")
    ax.set_title("Alert time vs magnitude")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.12)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def location_error_plot(path: Path, result: ValidationResult) -> None:
    plt = _plt()
    errs = [e.location_error_km for e in result.events if e.location_error_km is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if errs:
        ax.hist(errs, bins=np.linspace(0, max(10.0, max(errs) * 1.05), 21), color="tab:blue")
        ax.set_title(f"Location error of the primary alerts' best version (n={len(errs)})")
    else:
        _empty(ax, "no detected event with a located alert")
        ax.set_title("Location error")
    ax.set_xlabel("epicentral location error (km)")
    ax.set_ylabel("events")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.13)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def magnitude_residual_plot(path: Path, result: ValidationResult) -> None:
    plt = _plt()
    pts = [(e.event.magnitude, e.magnitude_error) for e in result.events
           if e.magnitude_error is not None and e.event.magnitude is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="tab:blue", s=25)
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.set_title(f"Magnitude residuals, alert - catalogue (n={len(pts)})")
    else:
        _empty(ax, "no detected event with both an alert magnitude and a catalogue magnitude")
        ax.set_title("Magnitude residuals")
    ax.set_xlabel("catalogue magnitude")
    ax.set_ylabel("alert - catalogue magnitude")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.13)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def false_trigger_plot(path: Path, result: ValidationResult) -> None:
    """False station triggers per station over time (one row per station, a tick per trigger)."""
    plt = _plt()
    by: dict[str, list[int]] = defaultdict(list)
    for t in result.false_triggers:
        by[t.stream].append(t.onset_ns)
    names = sorted({s.stream for s in result.stations})
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.25 * len(names) + 1.2)))
    start = result.summary.get("archive_start_ns")
    if by and start is not None:
        import datetime as dt

        import matplotlib.dates as mdates

        def when(t: int) -> dt.datetime:
            return dt.datetime.fromtimestamp(t / NS, tz=dt.UTC)

        for i, name in enumerate(names):
            ts = by.get(name, [])
            if ts:
                ax.plot([when(t) for t in ts], [i] * len(ts), "|", color="tab:red", ms=8)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([f"{n[:-1]} ({len(by.get(n, []))})" for n in names], fontsize=7)
        loc = mdates.AutoDateLocator(tz=dt.UTC)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=dt.UTC))
        ax.set_xlabel("UTC (an archive of separate files spans their dates)")
        ax.set_title(f"False station triggers over time ({len(result.false_triggers)})")
    else:
        _empty(ax, "no false station trigger" if start is not None else "no data was scored")
        ax.set_title("False station triggers")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, **SAVE)
    plt.close(fig)


def make_plots(out: Path, result: ValidationResult, index: ArchiveIndex, scores: Sequence[ScoreRecord],
               max_stations: int = 12, band_hz: tuple[float, float] | None = (1.0, 20.0),
               threshold: float | None = None) -> dict[str, Any]:
    """Draw every plot under ``out/plots``; return their paths relative to ``out``."""
    pdir = out / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    by: dict[str, list[ScoreRecord]] = defaultdict(list)
    for r in scores:
        by[r.stream].append(r)
    for v in by.values():
        v.sort(key=lambda r: r.window_end_ns)
    paths: dict[str, Any] = {"events": {}}
    map_plot(pdir / "map.png", result)
    paths["map"] = "plots/map.png"
    latency_plot(pdir / "latency.png", result)
    paths["latency"] = "plots/latency.png"
    for name, fn in (("alert_time_vs_magnitude", alert_time_plot), ("location_errors", location_error_plot),
                     ("magnitude_residuals", magnitude_residual_plot), ("false_triggers", false_trigger_plot)):
        fn(pdir / f"{name}.png", result)
        paths[name] = f"plots/{name}.png"
    for i, e in enumerate(result.events):
        if e.status == "not covered":
            continue
        name = f"event_{_safe(e.event.event_id)}.png"
        if event_plot(pdir / name, result, i, index, by, max_stations, band_hz, threshold):
            paths["events"][e.event.event_id] = f"plots/{name}"
    return paths
