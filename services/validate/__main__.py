"""``eew validate``: replay an archive through the live path and score the alerts against a catalogue.

Example::

    eew validate --archive /data/sds --stations stations.xml --catalog events.xml --out report/

Steps: read the inventory and the catalogue, index the archive (headers only), replay it through
an embedded broker -> ``eew detect`` -> ``eew alert`` (the same processes as in operation; the
replay runs at ``--speed``, 0 = as fast as possible, and both services are event-time driven, so
the result does not depend on it), collect every station score and alert from the broker, score
them (``services.validate.core``) and write ``OUT/report.md``, ``report.html``, ``summary.json``,
``events.csv``, ``alerts.csv``, ``stations.csv``, ``picks.csv``, ``detections.xml`` and
``plots/*.png``. Logs of the services go to ``OUT/run/``.

Exit codes: 0 report written; 1 report written but the run failed: a service exited or crashed,
no packet could be scored, the replay failed or the run was interrupted (the report's first lines
say which); 2 unusable arguments (missing or unreadable catalogue/inventory, no --out).
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path

from pydantic import Field

from services.common.exceptions import ConfigError, InventoryError
from services.common.lifecycle import StopFlag, setup_logging
from services.common.settings import ServiceSettings, load_settings
from services.pipeline.exceptions import PipelineError
from services.pipeline.inprocess import run_in_process
from services.pipeline.run import RunConfig, RunOutput, RunTuning, run_pipeline
from services.pipeline.settings import alerting_settings, detection_threshold, detector_max_gap_s
from services.validate import core
from services.validate.alerts import alert_from_pb
from services.validate.core import ScoringTuning
from services.validate.exceptions import CatalogError
from services.validate.inputs import load_catalog, load_inventory, scan_archive
from services.validate.traveltime import TauPTravelTimes

log = logging.getLogger("services.validate")


class ValidateSettings(ServiceSettings):
    """Settings of ``eew validate`` (flags ``--kebab-case``, env ``EEW_UPPER_CASE``)."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Not used: validate runs its own embedded broker (a fresh one per run)."
    )
    http_host: str = Field("127.0.0.1", description="Not used: the services of the run listen on 127.0.0.1.")
    http_port: int = Field(0, description="Not used: the services of the run get free ports.")
    client_id: str = Field("eew-validate", description="Kafka client id prefix of the replay and collector.")
    archive: str = Field(
        "", description="miniSEED files, directories (searched recursively, e.g. an SDS tree) or globs, "
        "comma-separated."
    )
    stations: Path | None = Field(
        None, description="Station inventory: StationXML, or CSV network,station,location,latitude,longitude,"
        "elevation_m."
    )
    catalog: Path | None = Field(
        None, description="Catalogue: QuakeML, or CSV time,latitude,longitude,depth(km),magnitude[,event_id]."
    )
    out: Path | None = Field(None, description="Report folder (created).")
    start: str = Field("", description="Only data from this time on, ISO-8601 UTC (empty: all).")
    end: str = Field("", description="Only data before this time, ISO-8601 UTC (empty: all).")
    travel_model: str = Field(
        "iasp91", description="ObsPy TauP Earth model of the reference P times where the catalogue gives no P "
        "pick (iasp91, ak135, prem, ... or a .npz model file)."
    )
    default_depth_km: float = Field(
        10.0, description="Depth of catalogue events that give none (for their TauP travel times; named in the "
        "report)."
    )
    plot_band_hz: str = Field(
        "1,20", description="Band-pass of the plotted waveforms, 'low,high' Hz (empty: unfiltered)."
    )
    run_dir: Path | None = Field(None, description="Logs of broker and services (default OUT/run).")
    detector_args: str = Field("", description="Extra flags for `eew detect`, e.g. '--detection-threshold 0.9'.")
    alerting_args: str = Field(
        "", description="Extra flags for `eew alert`, e.g. '--min-stations 4' (also used by the scoring)."
    )
    alerting_max_lateness_s: float = Field(
        600.0, description="The alerting's reorder window for this run (large: a fast replay is associated "
        "in event-time order whatever the partitions' progress)."
    )
    scoring: ScoringTuning = Field(
        ScoringTuning(), description="Matching tolerances and event windows (services.validate.core)."
    )
    run: RunTuning = Field(
        RunTuning(), description="The replay through the pipeline and its waits (services.pipeline.run)."
    )
    plots: bool = Field(True, description="Draw the PNG plots (matplotlib).")
    plot_max_stations: int = Field(12, description="Most stations per event waveform plot (nearest first).")
    log_level: str = Field("WARNING", description="Logging level of the validate process.")


def _time(text: str, name: str) -> int | None:
    if not text.strip():
        return None
    from obspy import UTCDateTime

    try:
        return int(UTCDateTime(text.strip()).ns)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--{name}: not an ISO-8601 UTC time: {text!r}") from exc


def _band(text: str) -> tuple[float, float] | None:
    if not text.strip():
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--plot-band-hz: 'low,high' in Hz, not {text!r}") from exc
    if not 0 < lo < hi:
        raise ConfigError(f"--plot-band-hz: need 0 < low < high, not {text!r}")
    return lo, hi


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(ValidateSettings, sys.argv[1:] if argv is None else argv)
    setup_logging(settings.log_level)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # kafka-python's event-loop timing notes
    # The replay's per-stream gap/overlap notes (the live ingest's log): an archive's gaps are counted
    # in the run's warnings and the report instead of a console line per stream and gap.
    logging.getLogger("services.ingest.emit").setLevel(logging.ERROR)
    missing = [n for n in ("archive", "stations", "catalog", "out") if not getattr(settings, n)]
    if missing:
        print(f"eew validate: missing {', '.join('--' + m for m in missing)} (see eew validate --help)",
              file=sys.stderr)
        return 2
    out = Path(settings.out)  # type: ignore[arg-type]
    warnings: list[str] = []
    try:
        inventory = load_inventory(settings.stations)  # type: ignore[arg-type]
        catalog, notes = load_catalog(settings.catalog, settings.default_depth_km)  # type: ignore[arg-type]
        alerting_argv = ["--max-lateness-s", str(settings.alerting_max_lateness_s),
                         *shlex.split(settings.alerting_args)]
        alerting = alerting_settings(alerting_argv)
        assoc, locator = alerting.association_config(), alerting.locator_config()
        detector_argv = shlex.split(settings.detector_args)
        max_gap_s = detector_max_gap_s(detector_argv)
        cfg = core.ScoringConfig(**settings.scoring.model_dump(), trigger=assoc.trigger_rule(),
                                 min_stations=assoc.min_stations)
        travel = TauPTravelTimes(settings.travel_model)
        threshold = detection_threshold(detector_argv, assoc.trigger_threshold)
        band = _band(settings.plot_band_hz)
        start_ns, end_ns = _time(settings.start, "start"), _time(settings.end, "end")
        if start_ns is not None and end_ns is not None and start_ns >= end_ns:
            raise ConfigError("--start must be before --end")
        out.mkdir(parents=True, exist_ok=True)
    except (InventoryError, CatalogError, ConfigError, OSError) as exc:
        print(f"eew validate: {exc}", file=sys.stderr)
        return 2
    warnings += notes
    if not catalog:
        warnings.append(f"the catalogue {settings.catalog} has no event: every alert counts as false")
    if len(inventory) == 0:
        warnings.append(f"the inventory {settings.stations} has no station")
    paths = [p.strip() for p in settings.archive.split(",") if p.strip()]
    index = scan_archive(paths, start_ns, end_ns)
    warnings += index.messages()
    coverage = index.coverage()
    data_hours = sum(b - a for a, b in core.merge_intervals(iv for c in coverage for iv in c.intervals)) / 3.6e12
    total_station_s = sum(c.seconds for c in coverage)
    for w in warnings:
        print(f"eew validate: warning: {w}", file=sys.stderr)

    status = 0
    run = RunOutput([], [], {})
    t0 = time.monotonic()
    if index.empty:
        print("eew validate: the archive has no usable data: nothing replayed; writing the report for the "
              "catalogue", file=sys.stderr)
    else:
        blocks = [(start_ns if a is None else a, end_ns if b is None else b)
                  for a, b in core.replay_blocks(coverage, 0.5 * max_gap_s)]
        rc = RunConfig(
            **settings.run.model_dump(),
            run_dir=settings.run_dir or out / "run",
            stations_file=Path(settings.stations),  # type: ignore[arg-type]
            blocks=blocks,
            files_for_block=index.files_in,
            detector_args=detector_argv,
            alerting_args=alerting_argv,
            client_id=settings.client_id,
            alert_of=alert_from_pb,
            progress_label="validate",
        )
        in_process = settings.run.mode == "in-process"
        path = "the detector and association cores in this process" if in_process else \
            f"broker -> detector -> alerting; logs in {rc.run_dir}"
        print(f"eew validate: replaying {len(index.files)} files ({data_hours:.3f} data hours, "
              f"{len(coverage)} streams, {len(blocks)} block(s)) through {path}", file=sys.stderr)
        stop = StopFlag().install_signal_handlers()
        try:
            runner = run_in_process if in_process else run_pipeline
            run = runner(rc, total_station_s, data_hours, stop)
        except PipelineError as exc:
            print(f"eew validate: pipeline failed: {exc}", file=sys.stderr)
            warnings.append(f"pipeline failed, nothing was scored: {exc}")
            run.failure = f"the pipeline failed: {str(exc).splitlines()[0]}"
            status = 1
        if run.interrupted:
            status = 1
            run.failure = run.failure or "interrupted"
        if run.failure:
            status = 1
        warnings += run.warnings
        for reason, n in sorted(run.errors.items()):
            warnings.append(f"{n} undecodable record(s) on the topics ({reason})")

    if not run.scores and not run.failure:
        status = 1
        run.failure = "no packet could be scored: " + _why_nothing_scored(index, run)
    if run.failed_services:
        status = 1
        names = ", ".join(f"{n} (exit code {run.services[n]['code']}"
                          + (", exited before the run stopped it" if run.services[n]["exited_early"] else "")
                          + f"; log {run.services[n]['log']})" for n in run.failed_services)
        run.failure = "; ".join(x for x in (run.failure, f"service(s) exited or crashed: {names}") if x)
    if run.failure:
        print(f"eew validate: RUN FAILED: {run.failure}", file=sys.stderr)
    reference = core.reassociate(run.scores, inventory, assoc, locator)
    times, diffs = core.compare_with_reference(run.alerts, reference)
    facts = core.RunFacts(rejected_streams=index.unscorable(),
                          rejected_packets=run.wall.get("detector_rejected_by_reason", {}))
    result = core.score(catalog, coverage, inventory, run.scores, run.alerts, cfg, times, warnings,
                        travel=travel, facts=facts, association=assoc)

    from services.validate.report import ReportInputs, write_report

    inputs = ReportInputs(
        archive=paths,
        stations=str(settings.stations),
        catalog=str(settings.catalog),
        files=len(index.files),
        skipped_files=len(index.skipped),
        alerting_args=alerting_argv,
        detector_args=detector_argv,
        speed=settings.run.speed,
        mode=settings.run.mode,
        live_alerting=settings.run.live_alerting,
        window=f"{settings.start or 'start'} .. {settings.end or 'end'}" if settings.start or settings.end else "",
    )
    run.wall["wall_total_s"] = time.monotonic() - t0
    write_report(out, result, inputs, run, index, diffs, plots=settings.plots,
                 plot_max_stations=settings.plot_max_stations, band_hz=band,
                 threshold=threshold)
    from services.validate.report import summary_lines

    print("\n".join(summary_lines(result, run)))
    print(f"eew validate: report in {out / 'report.md'} and {out / 'report.html'}", file=sys.stderr)
    if run.failure:
        print(f"eew validate: RUN FAILED (exit 1): {run.failure}", file=sys.stderr)
    return status


def _why_nothing_scored(index: object, run: RunOutput) -> str:
    """The rejected streams and packets that explain an empty run, in one line."""
    from services.common.streams import hint

    if index.empty:  # type: ignore[attr-defined]
        return "the archive has no usable waveform data (see the warnings)"
    parts = []
    unscorable = index.unscorable()  # type: ignore[attr-defined]
    if unscorable:
        by_reason: dict[str, list[str]] = {}
        for stream, reason in sorted(unscorable.items()):
            by_reason.setdefault(reason, []).append(stream)
        parts += [f"{len(v)} stream(s) {k} ({', '.join(v[:3])}{' ...' if len(v) > 3 else ''}): {hint(k)}"
                  for k, v in sorted(by_reason.items())]
    rej = run.wall.get("detector_rejected_by_reason") or {}
    if rej:
        parts.append("the detector rejected packets: " + ", ".join(f"{k} {v} ({hint(k)})" for k, v in rej.items()))
    published = run.wall.get("packets_published")
    if published is not None:
        parts.append(f"{published} packet(s) published, {run.wall.get('detector_packets_in', 'n/a')} consumed by "
                     "the detector, 0 scores")
    return "; ".join(parts) or "no score came back (see the detector log)"


if __name__ == "__main__":
    sys.exit(main())
