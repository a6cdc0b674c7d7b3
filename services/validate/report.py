"""Report writer of ``eew validate``: Markdown, self-contained HTML, JSON and CSV from one result.

Everything except the section "Run" (and the ``run`` field of summary.json) depends only on the
inputs: numbers are rounded, rows sorted, no wall-clock time appears, and the plots and QuakeML
are written without timestamps, so the same inputs give byte-identical files.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.timeutil import ns_to_iso
from services.pipeline.run import RunOutput
from services.validate.core import NS, ValidationResult
from services.validate.inputs import ArchiveIndex

SCHEMA = "eew.validate.v1"


@dataclass(frozen=True)
class ReportInputs:
    """What was validated (shown as given)."""

    archive: list[str]
    stations: str
    catalog: str
    files: int
    skipped_files: int
    alerting_args: list[str] = field(default_factory=list)
    detector_args: list[str] = field(default_factory=list)
    speed: float = 0.0
    live_alerting: bool = False
    window: str = ""
    mode: str = "services"  # services (broker and service processes) or in-process (the cores, no broker)  # "start .. end" when the archive was clipped


# --------------------------------------------------------------------------- formatting

#: The detector resampler's look-ahead (s) at the usual stream rates for the 100 Hz model
#: (``services.detector.resample.latency_s``; validate does not import the detector, a unit test keeps
#: these equal).
RESAMPLER_LOOKAHEAD_S = {20.0: 0.5, 31.25: 0.32, 40.0: 0.25, 50.0: 0.2, 200.0: 0.1}


def _lookahead_text() -> str:
    return ", ".join(f"{s:.2f} s at {hz:g} Hz" for hz, s in RESAMPLER_LOOKAHEAD_S.items())


def iso(ns: int | None) -> str:
    return "" if ns is None else ns_to_iso(int(ns))


def num(x: float | None, nd: int = 3) -> float | None:
    if x is None or not math.isfinite(float(x)):
        return None
    return round(float(x), nd)


def fmt(x: float | int | None, nd: int = 2, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x}{unit}"
    return f"{x:.{nd}f}{unit}"


def _stat_text(st: dict, unit: str, nd: int = 2) -> str:
    if not st or not st.get("n"):
        return "n/a"
    return f"{fmt(st['median'], nd, unit)} (min {fmt(st['min'], nd)}, max {fmt(st['max'], nd)}, n={st['n']})"


def _round_tree(obj: Any) -> Any:
    if isinstance(obj, float):
        return num(obj, 4)
    if isinstance(obj, dict):
        return {k: _round_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round_tree(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- rows


def event_rows(result: ValidationResult) -> list[dict[str, Any]]:
    rows = []
    for e in result.events:
        ev = e.event
        rows.append({
            "event_id": ev.event_id,
            "origin_time": iso(ev.origin_ns),
            "latitude": num(ev.latitude, 5),
            "longitude": num(ev.longitude, 5),
            "depth_km": num(ev.depth_km, 2),
            "magnitude": num(ev.magnitude, 2),
            "status": e.status,
            "recording_streams": e.recording_streams,
            "triggered_streams": e.triggered_streams,
            "first_p_time": iso(e.first_p_ns),
            "first_p_stream": e.first_p_stream,
            "first_p_source": e.first_p_source,
            "scored_stations": e.scored_stations,
            "nearest_station_km": num(e.nearest_station_km, 1),
            "nth_p_time": iso(e.nth_p_ns),
            "alert_event_id": e.alert_event_id,
            "first_alert_time": iso(e.first_alert_ns),
            "latency_after_origin_s": num(e.latency_after_origin_s),
            "latency_after_first_p_s": num(e.latency_after_first_p_s),
            "latency_after_nth_p_s": num(e.latency_after_nth_p_s),
            "alert_first_p_error_s": num(e.alert_first_p_error_s),
            "origin_error_s": num(e.alert_time_error_s),
            "location_error_km": num(e.location_error_km, 2),
            "magnitude_estimate": num(e.magnitude_estimate, 2),
            "magnitude_error": num(e.magnitude_error, 2),
            "updates": e.updates if e.status == "detected" else None,
            "alert_stations": e.alert_stations if e.status == "detected" else None,
            "alert_probability": num(e.alert_probability, 4),
            "cancelled": e.cancelled if e.status == "detected" else None,
            "duplicate_alerts": " ".join(e.duplicate_alerts),
            "reasons": "; ".join(e.reasons),
            "note": e.note,
        })
    return rows


def alert_rows(result: ValidationResult) -> list[dict[str, Any]]:
    rows = []
    for a in result.alerts:
        b = a.best
        rows.append({
            "event_id": a.event_id,
            "classification": a.classification,
            "matched_event_id": a.matched_event_id,
            "versions": len(a.versions),
            "kinds": " ".join(v.kind for v in a.versions),
            "cancelled": a.cancelled,
            "first_decision_time": iso(a.first_decision_ns),
            "decision_time_source": a.decision_source,
            "first_p_time": iso(b.first_p_time_ns),
            "origin_time": iso(b.origin_time_ns),
            "stations": len(b.stations),
            "station_ids": " ".join(s.station_id for s in b.stations),
            "max_probability": num(a.max_probability, 4),
            "has_location": b.has_location,
            "latitude": num(b.latitude, 5) if b.has_location else None,
            "longitude": num(b.longitude, 5) if b.has_location else None,
            "magnitude": num(b.magnitude, 2) if b.has_magnitude else None,
            "time_error_s": num(a.time_error_s),
            "distance_km": num(a.distance_km, 2),
            "distance_basis": a.distance_basis,
        })
    return rows


def station_rows(result: ValidationResult) -> list[dict[str, Any]]:
    return [
        {
            "stream": s.stream,
            "in_inventory": s.in_inventory,
            "latitude": num(s.latitude, 5),
            "longitude": num(s.longitude, 5),
            "data_hours": num(s.data_hours, 4),
            "scored_hours": num(s.scored_hours, 4),
            "noise_hours": num(s.noise_hours, 4),
            "triggers": s.triggers,
            "event_triggers": s.event_triggers,
            "false_triggers": s.false_triggers,
            "false_triggers_per_hour": num(s.false_rate_per_hour, 3),
            "alert_events": s.alerts,
        }
        for s in result.stations
    ]


def pick_rows(result: ValidationResult) -> list[dict[str, Any]]:
    rows = []
    for e in result.events:
        if e.status == "not covered":
            continue
        for a in e.arrivals:
            rows.append({
                "event_id": e.event.event_id,
                "stream": a.stream,
                "distance_km": num(a.distance_km, 2),
                "recording": a.recording,
                "reference_p_time": iso(a.predicted_p_ns),
                "reference_p_source": a.p_source,
                "scored": a.scored,
                "trigger_time": iso(a.trigger_ns),
                "pick_time": iso(a.pick_ns),
                "pick_error_s": num(a.pick_error_s),
                "probability": num(a.probability, 4),
                "p_detected": a.p_detected,
                "in_alert": a.in_alert,
            })
    return rows


def version_rows(result: ValidationResult) -> list[dict[str, Any]]:
    by = {a.event_id: a for a in result.alerts}
    rows = []
    for vr in result.versions:
        v = next(x for x in by[vr.event_id].versions if x.version == vr.version)
        rows.append({
            "event_id": vr.event_id,
            "version": vr.version,
            "kind": vr.kind,
            "decision_time": iso(vr.decision_ns),
            "decision_time_source": vr.decision_source,
            "matched_event_id": vr.matched_event_id,
            "after_origin_s": num(vr.after_origin_s),
            "after_nth_p_s": num(vr.after_nth_p_s),
            "stations": len(vr.stations),
            "station_ids": " ".join(vr.stations),
            "probability": num(v.probability, 4),
            "latitude": num(v.latitude, 4) if v.has_location else None,
            "longitude": num(v.longitude, 4) if v.has_location else None,
            "depth_km": num(v.depth_km, 1) if v.has_location else None,
            "location_uncertainty_km": num(v.location_uncertainty_km, 1) if v.has_location else None,
            "location_uncertain": v.location_uncertain if v.has_location else None,
            "location_error_km": num(vr.location_error_km, 1),
            "magnitude": num(v.magnitude, 2) if v.has_magnitude else None,
            "magnitude_lower_bound": v.magnitude_lower_bound if v.has_magnitude else None,
            "magnitude_type": v.magnitude_type if v.has_magnitude else "",
            "magnitude_error": num(vr.magnitude_error, 2),
            "reason": v.reason,
        })
    return rows


def false_trigger_rows(result: ValidationResult) -> list[dict[str, Any]]:
    return [{"stream": t.stream, "onset_time": iso(t.onset_ns), "pick_time": iso(t.pick_ns),
             "end_time": iso(t.last_ns), "duration_s": num((t.last_ns - t.onset_ns) / NS, 1),
             "probability": num(t.probability, 4)} for t in result.false_triggers]


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


# --------------------------------------------------------------------------- run (wall clock)


def _not_checked(run: RunOutput) -> str:
    """Why the re-association comparison proves nothing in this run (empty when it does)."""
    if run.failure:
        return "the run failed"
    if not run.scores:
        return "no score was collected"
    alerting = run.services.get("alerting")
    if alerting is None:
        return "the alerting did not run"
    return ""


def run_figures(run: RunOutput, result: ValidationResult, diffs: list[str]) -> dict[str, Any]:
    """Run-dependent figures: wall-clock timings, replay rate, processing delay, consistency."""
    w = dict(run.wall)
    data_h = result.summary["archive_data_hours"]
    proc = w.get("processing_s")
    rate = data_h / (proc / 60.0) if isinstance(proc, int | float) and proc > 0 else None
    delays = [(a.created_time_ns - a.latest_ingest_time_ns) / NS for ar in result.alerts for a in ar.versions
              if a.created_time_ns and a.latest_ingest_time_ns]
    return {
        **w,
        "replay_rate_data_hours_per_wall_minute": rate,
        "alert_processing_delay_s": {
            "n": len(delays),
            "median": statistics.median(delays) if delays else None,
            "max": max(delays) if delays else None,
        },
        "reassociation_identical": not diffs and not _not_checked(run),
        "reassociation_not_checked": _not_checked(run),
        "reassociation_differences": diffs[:50],
        "interrupted": run.interrupted,
        "failure": run.failure,
        "services": run.services,
    }


# --------------------------------------------------------------------------- document model


@dataclass
class _Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (headers, rows)))

    def img(self, rel: str, caption: str) -> None:
        self.blocks.append(("img", (rel, caption)))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, val in self.blocks:
            if kind == "h":
                out += ["#" * val[0] + " " + val[1], ""]
            elif kind == "p":
                out += [val, ""]
            elif kind == "ul":
                out += [f"- {x}" for x in val] + [""]
            elif kind == "table":
                headers, rows = val
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "---|" * len(headers))
                for r in rows:
                    out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
                out.append("")
            elif kind == "img":
                out += [f"![{val[1]}]({val[0]})", "", f"*{val[1]}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def html(self, base: Path, title: str) -> str:
        body: list[str] = []
        for kind, val in self.blocks:
            if kind == "h":
                body.append(f"<h{val[0]}>{html.escape(val[1])}</h{val[0]}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(val)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in val) + "</ul>")
            elif kind == "table":
                headers, rows = val
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
                trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "img":
                data = base64.b64encode((base / val[0]).read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(val[1])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(val[1])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
                 "th,td{border:1px solid #bbb;padding:3px 6px;text-align:left}th{background:#eee}"
                 "img{max-width:100%}figure{margin:1em 0}figcaption{font-style:italic;color:#555}")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")


# --------------------------------------------------------------------------- report


def summary_table(result: ValidationResult) -> list[list[str]]:
    s = result.summary
    return [
        ["catalogue events", str(s["catalog_events"])],
        ["covered by the archive", f"{s['covered_events']} ({s['not_covered_events']} not covered)"],
        ["detected", str(s["detected_events"])],
        ["missed", str(s["missed_events"])],
        ["alert events (versions)", f"{s['alert_events']} ({s['alert_versions']})"],
        ["true / duplicate / false alert events",
         f"{s['true_alerts']} / {s['duplicate_alerts']} / {s['false_alerts']}"],
        ["false alerts later cancelled", str(s["false_alerts_cancelled"])],
        ["precision", fmt(s["precision"], 3)],
        ["recall", fmt(s["recall"], 3)],
        ["F1", fmt(s["f1"], 3)],
        ["first alert after origin", _stat_text(s["latency_after_origin_s"], " s")],
        ["first alert after first P", _stat_text(s["latency_after_first_p_s"], " s")],
        [f"first alert after {s.get('nth_p', 4)}th P", _stat_text(s.get("latency_after_nth_p_s") or {}, " s")],
        ["missed, by reason", ", ".join(f"{k} {v}" for k, v in (s.get("missed_by_reason") or {}).items()) or "-"],
        ["location error", _stat_text(s["location_error_km"], " km", 1)
         if s["location_error_km"]["n"] else "n/a (no alert carries a location)"],
        ["magnitude error", _stat_text(s["magnitude_error"], "", 2)
         if s["magnitude_error"]["n"] else "n/a (no alert carries a magnitude)"],
        ["|P pick - reference P| (P detections)", _stat_text(s["pick_abs_error_s"], " s")],
        ["stations (streams)", f"{s['stations']} ({s['streams']})"],
        ["archive data hours (station-hours)", f"{s['archive_data_hours']:.3f} ({s['station_data_hours']:.3f})"],
        ["station P detections / recording stations at covered events",
         f"{s.get('station_p_detections', 0)} / {s.get('station_p_arrivals', 0)}"],
        ["station triggers (false)", f"{s['station_triggers']} ({s['false_triggers']})"],
        ["noise station-hours", f"{s['station_noise_hours']:.3f}"],
        ["false triggers per noise station-hour", fmt(s["false_triggers_per_station_hour"], 2)],
    ]


def summary_lines(result: ValidationResult, run: RunOutput | None = None) -> list[str]:
    """The summary table as plain text lines (printed by ``eew validate``)."""
    rows = summary_table(result)
    w = max(len(r[0]) for r in rows)
    lines = [f"{k:<{w}}  {v}" for k, v in rows]
    if run is not None:
        fig = run_figures(run, result, [])
        rate = fig.get("replay_rate_data_hours_per_wall_minute")
        lines.append(f"{'replay rate (wall clock)':<{w}}  {fmt(rate, 3)} data h / wall min")
    return lines


def status_lines(result: ValidationResult, run: RunOutput, unscorable: dict[str, str]) -> list[str]:
    """The report's first lines: did the run work, and which data did the system refuse, and why."""
    from services.common.streams import hint

    out = []
    if run.failure:
        out.append(f"RUN FAILED: {run.failure}")
    else:
        ok = ", ".join(f"{n} exit {v['code']}" for n, v in sorted(run.services.items()))
        out.append("Run status: OK" + (f" (services stopped cleanly: {ok})" if ok else ""))
    if unscorable:
        by: dict[str, list[str]] = {}
        for stream, reason in unscorable.items():
            by.setdefault(reason, []).append(stream)
        for reason, streams in sorted(by.items()):
            out.append(f"Streams not scorable, {reason} ({len(streams)}): {', '.join(streams[:8])}"
                       + (" ..." if len(streams) > 8 else "") + f": {hint(reason)}")
    rej = run.wall.get("detector_rejected_by_reason") or {}
    if rej:
        out.append(f"Packets the detector rejected: {sum(rej.values())} of {run.wall.get('detector_packets_in', 'n/a')} "
                   "consumed (" + "; ".join(f"{k} {v}: {hint(k)}" for k, v in rej.items()) + ")")
    elif "detector_rejected_by_reason" in run.wall:
        out.append(f"Packets the detector rejected: none of {run.wall.get('detector_packets_in', 'n/a')} consumed")
    rs = run.wall.get("detector_rejected_streams_by_reason") or {}
    if rs:
        out.append("Streams the detector refused: " + "; ".join(f"{k} {v}: {hint(k)}" for k, v in rs.items()))
    if run.wall.get("packets_rejected"):
        out.append(f"Packets the replay rejected: {run.wall['packets_rejected']} (the ingest's validation rules)")
    return out


def _build_doc(result: ValidationResult, inputs: ReportInputs, run_fig: dict[str, Any],
               plots: dict[str, Any], status: list[str] | None = None) -> _Doc:
    s, cfg = result.summary, result.config
    d = _Doc()
    d.h(1, "EEW validation report")
    if status:
        d.ul(status)
    d.p(f"Archive: {', '.join(inputs.archive)} ({inputs.files} miniSEED files"
        + (f", {inputs.skipped_files} skipped" if inputs.skipped_files else "") + f"). Stations: {inputs.stations}. "
        f"Catalogue: {inputs.catalog}." + (f" Time window: {inputs.window}." if inputs.window else ""))
    if s["archive_start_ns"] is not None:
        d.p(f"Data from {iso(s['archive_start_ns'])} to {iso(s['archive_end_ns'])}: "
            f"{s['archive_data_hours']:.3f} hours with data, {s['stations']} stations, {s['scores']} station scores.")
    flags = f"alerting flags: {' '.join(inputs.alerting_args)}" + (
        f"; detector flags: {' '.join(inputs.detector_args)}" if inputs.detector_args else "")
    if inputs.mode == "in-process":
        d.p("Path (--mode in-process): replay (eew replay's library) -> the detector core with the model and "
            "settings of eew detect -> StationScore messages -> the alerting's association core in event-time "
            "order, in one process without a broker: the scores and alerts of the services, but neither the "
            f"transport nor processing delays are exercised; {flags}.")
    else:
        d.p("Path: replay (eew replay's library) -> embedded broker -> eew detect -> eew alert (the operational "
            f"services), replay speed {inputs.speed:g} (0 = as fast as possible), alerting "
            + ("started with the detector" if inputs.live_alerting else "reading the scores in event-time order "
               "after the detector") + f"; {flags}.")
    d.h(2, "Summary")
    d.table(["metric", "value"], summary_table(result))
    if result.warnings:
        d.h(2, "Input problems and warnings")
        d.ul(list(result.warnings))
    d.h(2, "Catalogue events")
    d.table(
        ["event", "origin (UTC)", "M", "status", "rec/trig stations", "first P (UTC, reference)", "alert",
         "after origin s", "after first P s", "alert P error s", "loc. error km", "mag. error", "updates", "note"],
        [[r["event_id"], r["origin_time"], fmt(r["magnitude"], 1), r["status"],
          f"{r['recording_streams']}/{r['triggered_streams']}", r["first_p_time"] + f" ({r['first_p_source'] or '-'})",
          r["alert_event_id"] or "-", fmt(r["latency_after_origin_s"]), fmt(r["latency_after_first_p_s"]),
          fmt(r["alert_first_p_error_s"]), fmt(r["location_error_km"], 1), fmt(r["magnitude_error"]),
          "" if r["updates"] is None else r["updates"], r["note"]] for r in event_rows(result)],
    )
    d.h(2, "Alerts")
    if result.alerts:
        d.table(
            ["alert event", "class", "catalogue event", "versions", "first decision (UTC, data time)",
             "first P (UTC)", "stations", "max p", "time error s", "distance km (basis)"],
            [[r["event_id"], r["classification"] + (" (cancelled)" if r["cancelled"] else ""),
              r["matched_event_id"] or "-", f"{r['versions']} ({r['kinds']})", r["first_decision_time"],
              r["first_p_time"], r["stations"], fmt(r["max_probability"], 3), fmt(r["time_error_s"]),
              f"{fmt(r['distance_km'], 1)} ({r['distance_basis'] or '-'})"] for r in alert_rows(result)],
        )
    else:
        d.p("No alert was issued.")
    vrows = version_rows(result)
    if vrows:
        d.h(2, "Alert versions (decision time = data time of the score that made the alerting issue it)")
        d.table(
            ["alert", "v", "kind", "decision (UTC)", "after origin s", "after n-th P s", "stations", "p",
             "location (unc. km)", "loc. error km", "M", "M error"],
            [[r["event_id"], r["version"], r["kind"], r["decision_time"] + f" ({r['decision_time_source']})",
              fmt(r["after_origin_s"]), fmt(r["after_nth_p_s"]), f"{r['stations']}: {r['station_ids']}",
              fmt(r["probability"], 3),
              "-" if r["latitude"] is None else f"{r['latitude']:.3f}, {r['longitude']:.3f}, "
              f"{fmt(r['depth_km'], 0)} km ({fmt(r['location_uncertainty_km'], 0)}"
              + (", flagged uncertain)" if r["location_uncertain"] else ")"),
              fmt(r["location_error_km"], 1),
              "-" if r["magnitude"] is None else f"{r['magnitude']:.1f} {r['magnitude_type']}"
              + (" (lower bound)" if r["magnitude_lower_bound"] else ""),
              fmt(r["magnitude_error"])] for r in vrows],
        )
    _multi_event_sections(d, result)
    ft = false_trigger_rows(result)
    d.h(2, f"False station triggers ({len(ft)})")
    if ft:
        shown = ft[:200]
        d.table(["stream", "onset (UTC)", "pick (UTC)", "duration s", "max p"],
                [[r["stream"], r["onset_time"], r["pick_time"] or "-", fmt(r["duration_s"], 1),
                  fmt(r["probability"], 3)] for r in shown])
        if len(ft) > len(shown):
            d.p(f"... and {len(ft) - len(shown)} more: every one is in false_triggers.csv.")
    else:
        d.p("No station trigger outside the event windows.")
    d.h(2, "Stations")
    d.table(
        ["stream", "inventory", "data h", "noise h", "triggers", "event", "false", "false / noise h", "alerts"],
        [[r["stream"], "yes" if r["in_inventory"] else "MISSING", fmt(r["data_hours"], 3), fmt(r["noise_hours"], 3),
          r["triggers"], r["event_triggers"], r["false_triggers"], fmt(r["false_triggers_per_hour"], 2),
          r["alert_events"]] for r in station_rows(result)],
    )
    if plots:
        d.h(2, "Plots")
        if plots.get("map"):
            d.img(plots["map"], "Stations (triangles), catalogue epicentres (stars: detected green, missed red, "
                  "not covered grey) and alert estimates")
        if plots.get("latency"):
            d.img(plots["latency"], "First-alert latency after origin and after the first P (data time)")
        for key, cap in (("alert_time_vs_magnitude", "First alert after origin against catalogue magnitude"),
                         ("location_errors", "Location errors of the detected events' alerts"),
                         ("magnitude_residuals", "Alert minus catalogue magnitude"),
                         ("false_triggers", "False station triggers per station over time")):
            if plots.get(key):
                d.img(plots[key], cap)
        for eid, rel in plots.get("events", {}).items():
            d.img(rel, f"Event {eid}: band-passed vertical waveforms (normalised), station score (red line, right "
                  "axis) and detection threshold (red dotted), reference P (blue: solid catalogue pick, dashed "
                  "travel-time model), detector P pick (red tick), first alert (green)")
    d.h(2, "Method")
    d.ul([
        f"Match: |alert first P - predicted first P| <= {cfg.time_tolerance_s:g} s (origin difference when the "
        f"alert is located) and distance <= {cfg.distance_tolerance_km:g} km (alert epicentre, else the alert's "
        "earliest station with coordinates); best match by time, one primary alert per event, other matches "
        "are duplicates.",
        f"Reference P: the catalogue's own P pick at the station where it gives one, else {result.travel_model} "
        "(ObsPy TauP) first-P travel time from the catalogue hypocentre (events without depth: the default depth, "
        "named under warnings). Sources used: " + (", ".join(f"{k} {v}" for k, v in
                                                               s.get("reference_p_sources", {}).items()) or "none")
        + ". First P: the earliest reference P at a station with data (else the first detector pick).",
        f"Station P detection: a trigger whose P pick is within {cfg.p_tolerance_s:g} s of the reference P; each "
        "trigger belongs to at most one event (the one whose reference P is nearest).",
        "Covered: at least one station has data at its reference P. Events not covered are not counted as missed.",
        "Alert time: the data time of the score that made the alerting issue the alert (from a re-run of the "
        "association core on the collected scores, else the latest trigger onset of its stations); telemetry "
        "and processing delays are excluded (the processing delay measured in this run is under Run), and so is "
        "the resampler's look-ahead for streams not at the model rate: a window of such a stream is scored once "
        "its data reach " + _lookahead_text() + " past the window's end.",
        f"Station triggers: the alerting's trigger rule (services.common.triggers): on at a triggered score"
        f"{'' if cfg.trigger.threshold is None else f' (probability >= {cfg.trigger.threshold:g})'}, on while scores "
        f"stay >= {cfg.trigger.detrigger_threshold:g}, off {cfg.trigger.detrigger_s:g} s after the last; triggers "
        f"shorter than {cfg.trigger.min_trigger_duration_s:g} s are retracted (not counted). A trigger's P pick is "
        f"the latest detector P onset at most {cfg.trigger.pick_max_lead_s:g} s before it and not before the "
        "stream's previous trigger ended (a re-trigger on S or coda has none: its P time is the start of its "
        "triggering window). detections.xml holds a pick for every trigger (phase P; a trigger without a P pick: "
        "that time, no phase). Event window at "
        f"a station: reference P - {cfg.window_before_s:g} s to + {cfg.window_after_s:g} s (no coordinates: origin "
        f"- {cfg.window_before_s:g} s to + {cfg.no_coords_travel_s + cfg.window_after_s:g} s). Triggers outside "
        "every event window are false; noise hours are the scored hours outside them.",
        "Precision = true (incl. duplicate) alert events / alert events; recall = detected / covered events.",
    ])
    d.h(2, "Run (wall-clock and run-dependent figures: these differ between runs)")
    rate = run_fig.get("replay_rate_data_hours_per_wall_minute")
    delay = run_fig.get("alert_processing_delay_s", {})
    items = [
        f"Replay rate: {fmt(rate, 3)} data hours per wall minute ({s['archive_data_hours']:.3f} data hours, "
        f"{fmt(run_fig.get('processing_s'), 1)} s from replay start to the last output).",
        f"Pipeline start-up {fmt(run_fig.get('startup_s'), 1)} s; replay and detector "
        f"{fmt(run_fig.get('replay_and_detector_s'), 1)} s in {run_fig.get('blocks', 'n/a')} block(s); "
        f"everything collected after {fmt(run_fig.get('drained_s'), 1)} s; whole command "
        f"{fmt(run_fig.get('wall_total_s'), 1)} s.",
    ]
    if inputs.mode == "in-process":
        items.append("Alert processing delay: not measured (--mode in-process: alerts are dated by their "
                     "decision's event time).")
    elif inputs.live_alerting:
        items.append(f"Alert processing delay (created - newest data ingest): median {fmt(delay.get('median'), 3)} s, "
                     f"max {fmt(delay.get('max'), 3)} s over {delay.get('n', 0)} alert versions.")
    else:
        items.append("Alert processing delay: not measured (the alerting read the scores as a backlog after the "
                     "detector had finished; use --live-alerting to measure it).")
    items += [
        f"Scores late at the alerting (processed out of event-time order): {run_fig.get('alerting_scores_late', 'n/a')}.",
        "Re-association of the collected scores gives the same alerts: "
        + (f"not checked ({run_fig['reassociation_not_checked']})" if run_fig.get("reassociation_not_checked")
           else "yes" if run_fig.get("reassociation_identical") else
           "NO: " + "; ".join(run_fig.get("reassociation_differences", [])[:5])),
    ]
    d.ul(items)
    return d


def _multi_event_sections(d: _Doc, result: ValidationResult) -> None:
    s = result.summary
    n = s.get("nth_p", 4)
    for key, title in (("magnitude", "By magnitude"), ("distance", "By distance (epicentre to the nearest "
                                                                      "recording station)")):
        rows = result.bins.get(key) or []
        if not rows:
            continue
        d.h(2, title)
        d.table([key, "events", "covered", "detected", "detection rate", "alert after origin s (median)",
                 f"alert after {n}th P s (median)", "loc. error km (median)", "mag. error (median)"],
                [[r[key], r["events"], r["covered"], r["detected"], fmt(r["detection_rate"], 2),
                  fmt(r["alert_after_origin_s"], 1), fmt(r["alert_after_nth_p_s"], 1),
                  fmt(r["location_error_km"], 1), fmt(r["magnitude_error"], 2)] for r in rows])
    missed = s.get("missed_by_reason") or {}
    if missed:
        d.h(2, "Why events were missed")
        d.table(["reason", "events"], [[k, v] for k, v in missed.items()])
    rel = result.reliability
    d.h(2, "Event probability: reliability")
    if rel.get("alerts"):
        d.p(f"The event probability of each alert event's first version against whether the alert matched a "
            f"catalogue earthquake, over {rel['alerts']} alert event(s); Brier score {fmt(rel['brier'], 3)} "
            "(0 is perfect; always saying 0.5 gives 0.25)."
            + (" Too few alerts for the table to mean much." if rel["alerts"] < 20 else ""))
        d.table(["probability", "alerts", "mean probability", "share that matched"],
                [[b["probability"], b["alerts"], fmt(b["mean_probability"], 3), fmt(b["matched_share"], 2)]
                 for b in rel["bins"]])
    else:
        d.p("No alert: nothing to check the event probability against.")


def write_report(out: Path, result: ValidationResult, inputs: ReportInputs, run: RunOutput,
                 index: ArchiveIndex, diffs: list[str], plots: bool = True, plot_max_stations: int = 12,
                 band_hz: tuple[float, float] | None = (1.0, 20.0), threshold: float | None = None) -> None:
    """Write every report file to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ev_rows, al_rows, st_rows, pk_rows = (event_rows(result), alert_rows(result), station_rows(result),
                                          pick_rows(result))
    _write_csv(out / "events.csv", ev_rows, list(ev_rows[0]) if ev_rows else ["event_id"])
    _write_csv(out / "alerts.csv", al_rows, list(al_rows[0]) if al_rows else ["event_id"])
    _write_csv(out / "stations.csv", st_rows, list(st_rows[0]) if st_rows else ["stream"])
    _write_csv(out / "picks.csv", pk_rows, list(pk_rows[0]) if pk_rows else ["event_id"])
    vr_rows, ft_rows = version_rows(result), false_trigger_rows(result)
    _write_csv(out / "versions.csv", vr_rows, list(vr_rows[0]) if vr_rows else ["event_id"])
    _write_csv(out / "false_triggers.csv", ft_rows, list(ft_rows[0]) if ft_rows else ["stream"])
    from services.validate.quakeml import write_detections

    write_detections(out / "detections.xml", result, run.scores)
    plot_paths: dict[str, Any] = {}
    if plots:
        from services.validate.plots import make_plots

        plot_paths = make_plots(out, result, index, run.scores, max_stations=plot_max_stations, band_hz=band_hz,
                                threshold=threshold)
    run_fig = run_figures(run, result, diffs)
    status = status_lines(result, run, index.unscorable())
    summary = {
        "schema": SCHEMA,
        "inputs": {
            "archive": inputs.archive, "stations": inputs.stations, "catalog": inputs.catalog,
            "files": inputs.files, "skipped_files": inputs.skipped_files, "speed": inputs.speed,
            "alerting_args": inputs.alerting_args, "detector_args": inputs.detector_args,
            "live_alerting": inputs.live_alerting, "window": inputs.window, "mode": inputs.mode,
        },
        "config": result.config.model_dump(),  # the trigger rule nested under "trigger"
        "summary": {**result.summary, "archive_start": iso(result.summary["archive_start_ns"]),
                    "archive_end": iso(result.summary["archive_end_ns"])},
        "status": status,
        "warnings": list(result.warnings),
        "bins": result.bins,
        "reliability": result.reliability,
        "events": ev_rows,
        "alerts": al_rows,
        "stations": st_rows,
        "plots": plot_paths,
        "run": run_fig,  # wall-clock and run-dependent: differs between runs
    }
    (out / "summary.json").write_text(json.dumps(_round_tree(summary), indent=2, allow_nan=False) + "\n")
    doc = _build_doc(result, inputs, run_fig, plot_paths, status)
    (out / "report.md").write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(out, "EEW validation report"))
