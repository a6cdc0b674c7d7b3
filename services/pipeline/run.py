"""Run an archive through the live path and collect what it produced (``eew validate``, benchmarks).

``run_pipeline`` starts an embedded broker and ``eew detect`` (and ``eew alert``) as processes,
exactly as in operation (``LocalPipeline``'s broker and ``ServiceProcess``), and publishes the
archive with the replay library of ``eew replay`` (``publish.ArchivePublisher``), while it reads
the scores and alerts topics from the beginning with its own consumer (``collect.TopicCollector``,
no group); alerts are kept as ``RunConfig.alert_of`` makes them.

Event-time semantics, whatever the replay speed and the machine load:

- The archive is replayed in blocks cut inside long data gaps (``RunConfig.blocks``, e.g.
  ``services.validate.core.replay_blocks``); after
  each block the runner waits until the detector has scored everything it can. A station's data
  before a gap longer than the detector's ``max_gap_s`` are thus scored before the data after it
  arrive (the detector resets a station on such a jump and drops what it has not scored yet).
- The alerting starts once the detector is done: it reads all scores as a backlog, buffers them
  and associates them in event-time order (its restart path), so no score is ever "late".
  ``live_alerting`` starts it with the detector instead (as in operation; it then measures the
  processing delay, but a fast replay may deliver scores out of event-time order, counted).

"Done" is read from the services' own /metrics (Tansu's high watermark is wrong, so the broker
cannot tell): every published packet consumed, no chunk waiting to be scored, every score read
here and by the alerting, nothing buffered or unsent at the alerting, every alert read here, and
nothing new for ``settle_s``. When the metrics cannot be read, "nothing new for ``quiet_s``"
decides (and the report says so). Each wait is bounded by ``drain_timeout_s``.

A progress line on stderr shows the data hours scored out of the archive's data hours and the
rate (data hours per wall minute).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import ConfigDict, Field

from services.alerting.association import ScoreRecord
from services.broker.embedded import free_port
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.settings import CoreModel
from services.pipeline.collect import TopicCollector
from services.pipeline.exceptions import PipelineError
from services.pipeline.local import LocalPipeline
from services.pipeline.metrics import (
    ALERTING_DONE,
    DETECTOR_DONE,
    DETECTOR_REJECTED,
    DETECTOR_REJECTED_STREAMS,
    by_label,
    scrape,
    scrape_samples,
)
from services.pipeline.processes import ServiceProcess
from services.pipeline.publish import ArchivePublisher, ReplayStats, Stopper

log = logging.getLogger(__name__)
NS = 1_000_000_000


def _as_is(msg: pb.Alert) -> pb.Alert:
    return msg


def replay_warnings(gaps: int, gap_s: float, rejected: int, failed: int = 0) -> list[str]:
    """The run's warnings about what the replay met: gaps inside streams, rejected and unacknowledged packets."""
    out = []
    if gaps:
        out.append(f"the archive has {gaps} gap(s) inside streams ({gap_s:.1f} s in all): the detector holds a "
                   "stream's last value across gaps up to its --max-gap-s and restarts the station after longer ones")
    if rejected:
        out.append(f"the replay rejected {rejected} packet(s) (see the ingest's validation rules)")
    if failed:
        out.append(f"{failed} waveform packet(s) were not acknowledged by the broker")
    return out


class Progress:
    """Plain-text progress on stderr: data hours scored, percent, rate in data hours per wall minute."""

    def __init__(self, total_station_s: float, data_hours: float, stream: TextIO | None = None,
                 interval_s: float = 1.0, label: str = "validate") -> None:
        self.label = label
        self.total = max(total_station_s, 1e-9)
        self.data_hours = data_hours
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval_s if self.tty else max(interval_s, 5.0)
        self.t0 = time.monotonic()
        self._last = 0.0
        self._shown = False

    def line(self, scored_station_s: float, alerts: int) -> str:
        frac = min(1.0, scored_station_s / self.total)
        done = frac * self.data_hours
        minutes = max((time.monotonic() - self.t0) / 60.0, 1e-9)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        return (f"[{self.label}] [{bar}] {done:.3f}/{self.data_hours:.3f} data h ({100 * frac:.0f}%) "
                f"at {done / minutes:.2f} data h/wall min, {alerts} alert versions")

    def update(self, scored_station_s: float, alerts: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        text = self.line(scored_station_s, alerts)
        if self.tty:
            self.stream.write("\r" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._shown = True

    def finish(self, scored_station_s: float, alerts: int) -> None:
        self.update(scored_station_s, alerts, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class RunOutput:
    """What one pipeline run produced, plus its run-dependent (wall-clock) figures."""

    scores: list[ScoreRecord]
    alerts: list[Any]  # as RunConfig.alert_of makes them (default: the Alert messages)
    errors: dict[str, int]
    wall: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    live_alerting: bool = False
    #: Per service: exit code, and whether it exited on its own before the run stopped it.
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: str = ""  # why the run failed (a service died, the replay failed), empty when it did not

    @property
    def failed_services(self) -> list[str]:
        """Services that exited on their own, or stopped with an error code (each fails the run); one
        the run's own SIGTERM ended without its shutdown, or killed after 10 s, is a warning."""
        return sorted(n for n, v in self.services.items()
                      if v.get("exited_early") or v.get("code") not in (0, None, -signal.SIGKILL, -signal.SIGTERM))


class RunTuning(CoreModel):
    """The run's knobs, declared once: the ``run`` group of ``eew validate``'s settings (flags
    ``--speed``, ``--drain-timeout-s`` ..., environment ``EEW_SPEED`` ...)."""

    mode: Literal["services", "in-process"] = Field(
        "services", description="services: replay -> embedded broker -> eew detect -> eew alert as processes (the "
        "deployed chain). in-process: the same cores in this process without a broker (same scores and alerts; "
        "no transport, no processing delay measured; several times faster, for long archives)."
    )
    speed: float = Field(0.0, ge=0.0, description="Replay speed: 0 = as fast as possible, 1 = real time.")
    packet_seconds: float = Field(
        10.0, gt=0.0, description="Replay packet length in seconds (as `eew replay`); the scores do not depend "
        "on it (same scores and alerts with 1 s and 10 s), and longer packets cut the per-record Kafka cost."
    )
    live_alerting: bool = Field(
        False, description="Start the alerting together with the detector (as in operation; measures the "
        "processing delay, but a fast replay may deliver scores out of event-time order). Default: start it "
        "once the detector is done, so it associates the scores in event-time order."
    )
    replay_timeout_s: float = Field(3600.0, gt=0.0, description="Give up the replay after this many wall seconds.")
    replay_flush_timeout_s: float = Field(
        60.0, gt=0.0, description="Wait this long for the broker to acknowledge a replayed block's packets."
    )
    drain_timeout_s: float = Field(
        300.0, gt=0.0, description="Give up waiting for the detector and alerting after this long without any "
        "new output (the run then fails)."
    )
    settle_s: float = Field(
        0.6, ge=0.0, description="A service is done when its metrics say so and nothing new came for this long."
    )
    quiet_s: float = Field(
        15.0, gt=0.0, description="When a service's metrics cannot be read: done after this long without new output."
    )
    check_interval_s: float = Field(1.0, gt=0.0, description="How often the done checks read the metrics.")
    dashboard_port: int | None = Field(
        None, ge=0, description="Start `eew dashboard` beside the run on this port (0: a free one) to watch the "
        "replay; its address is printed. Unset: no dashboard."
    )
    dashboard_tokens: str = Field(
        "", description="Tokens of that dashboard, name:token[:role] (read is enough; tokens >= 16 characters); "
        "prefer the environment variable over the flag."
    )


class RunConfig(RunTuning):
    """The tuning and the run's facts (see ``run_pipeline``), built with ``RunTuning.model_dump()``."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    run_dir: Path
    stations_file: Path
    blocks: list[tuple[int | None, int | None]]
    files_for_block: Callable[[int | None, int | None], list[Path]]
    detector_args: list[str] = []
    alerting_args: list[str] = []
    client_id: str = "eew-pipeline"
    #: How an Alert message is kept (eew validate: its scoring core's AlertVersion).
    alert_of: Callable[[pb.Alert], Any] = _as_is
    progress_label: str = "pipeline"


class _Run:
    """One validation run: state shared by its steps."""

    def __init__(self, cfg: RunConfig, total_station_s: float, data_hours: float, stop: Stopper | None,
                 progress_stream: TextIO | None) -> None:
        self.cfg = cfg
        self.stop = stop
        self.pipe = LocalPipeline(cfg.run_dir, cfg.stations_file, detector_args=cfg.detector_args,
                                  alerting_args=cfg.alerting_args, dashboard_port=cfg.dashboard_port,
                                  dashboard_token=cfg.dashboard_tokens)
        self.progress = Progress(total_station_s, data_hours, progress_stream, label=cfg.progress_label)
        self.collector: TopicCollector[Any] | None = None
        self.detector: ServiceProcess | None = None
        self.alerting: ServiceProcess | None = None
        self.warnings: list[str] = []
        self.not_done: list[str] = []
        self.wall: dict[str, Any] = {}
        self.published = 0

    @property
    def bootstrap(self) -> str:
        return self.pipe.bootstrap

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def tick(self) -> None:
        """Read what arrived, show progress, fail fast when a service died."""
        assert self.collector is not None
        self.collector.poll(200)
        self.progress.update(self.collector.scored_seconds, len(self.collector.alerts))
        try:
            self.pipe.check_alive()
        except RuntimeError as exc:
            raise PipelineError(str(exc)) from exc

    def start_detector(self) -> None:
        argv = ["detect", "--bootstrap-servers", self.bootstrap, *self.cfg.detector_args]
        self.detector = ServiceProcess("detector", argv, self.cfg.run_dir / "detector.log", free_port())
        self.pipe.detector = self.detector
        self.pipe.services.append(self.detector.start())

    def start_alerting(self, extra: list[str]) -> None:
        outbox = f"sqlite:///{(self.cfg.run_dir / 'alerting-outbox.sqlite').resolve()}"  # not in the cwd
        argv = ["alert", "--bootstrap-servers", self.bootstrap, "--stations", str(self.cfg.stations_file),
                "--outbox-db", outbox, *self.cfg.alerting_args, *extra]
        self.alerting = ServiceProcess("alerting", argv, self.cfg.run_dir / "alerting.log", free_port())
        self.pipe.alerting = self.alerting
        self.pipe.services.append(self.alerting.start())

    def replay_block(self, publisher: ArchivePublisher, block: tuple[int | None, int | None]) -> ReplayStats | None:
        """Publish one block (in a thread, reading the topics meanwhile); None when it has no file."""
        files = self.cfg.files_for_block(*block)
        if not files:
            return None
        result: list[ReplayStats | BaseException] = []

        def work() -> None:
            try:
                result.append(publisher.publish(files, self.cfg.speed, self.stop, window=block,
                                                packet_seconds=self.cfg.packet_seconds,
                                                flush_timeout_s=self.cfg.replay_flush_timeout_s))
            except Exception as exc:  # noqa: BLE001 -- reported by the caller
                result.append(exc)

        th = threading.Thread(target=work, name="pipeline-replay", daemon=True)
        th.start()
        while th.is_alive():
            self.tick()
        th.join()
        out = result[0] if result else PipelineError("replay thread ended without a result")
        if isinstance(out, BaseException):
            raise PipelineError(f"replay failed: {type(out).__name__}: {out}") from out
        return out

    def wait(self, what: str, check: Callable[[], tuple[bool | None, str]]) -> bool:
        """Tick until ``check`` holds for ``settle_s`` with nothing new read; gives up after
        ``drain_timeout_s`` without any new output (a slow machine that still makes progress waits)."""
        assert self.collector is not None
        t0 = time.monotonic()
        since: float | None = None
        last = 0.0
        why = ""
        while not self.stopped():
            self.tick()
            now = time.monotonic()
            if now - last < self.cfg.check_interval_s:
                continue
            last = now
            ok, why = check()
            if ok is None:  # the services' metrics cannot be read: fall back to quiet
                if now - self.collector.last_new >= self.cfg.quiet_s:
                    self.warnings.append(f"{what}: done decided by {self.cfg.quiet_s:.0f} s without new output "
                                         f"({why})")
                    return True
                continue
            if ok:
                since = since or now
                if now - since >= self.cfg.settle_s and now - self.collector.last_new >= self.cfg.settle_s:
                    return True
            else:
                since = None
            if now - max(t0, self.collector.last_new) > self.cfg.drain_timeout_s:
                self.not_done.append(f"{what}: not done, nothing new for {self.cfg.drain_timeout_s:.0f} s ({why})")
                self.warnings.append(f"{self.not_done[-1]}; the report covers what was collected")
                return False
        return False

    def detector_done(self) -> tuple[bool | None, str]:
        assert self.detector is not None and self.collector is not None
        det = scrape(self.detector.http_port, names=DETECTOR_DONE)
        if det is None:
            return None, "detector metrics unavailable"
        why = []
        got = det.get("eew_detector_packets_in_total", 0.0)
        if got < self.published:
            why.append(f"detector consumed {got:.0f}/{self.published} packets")
        if det.get("eew_detector_backlog_stations", 0.0) > 0 or det.get("eew_detector_unacked_messages", 0.0) > 0:
            why.append("detector still scoring")
        acked = det.get("eew_detector_scores_acked_total", 0.0)
        if self.collector.score_messages < acked:
            why.append(f"collected {self.collector.score_messages}/{acked:.0f} scores")
        return (not why), "; ".join(why)

    def alerting_done(self) -> tuple[bool | None, str]:
        assert self.alerting is not None and self.detector is not None and self.collector is not None
        det = scrape(self.detector.http_port, names=DETECTOR_DONE)
        alt = scrape(self.alerting.http_port, names=ALERTING_DONE)
        if det is None or alt is None:
            return None, "metrics unavailable"
        why = []
        acked = det.get("eew_detector_scores_acked_total", 0.0)
        if alt.get("eew_alerting_scores_in_total", 0.0) < acked:
            why.append(f"alerting read {alt.get('eew_alerting_scores_in_total', 0.0):.0f}/{acked:.0f} scores")
        if alt.get("eew_alerting_pending_scores", 0.0) > 0:
            why.append(f"alerting holds {alt.get('eew_alerting_pending_scores', 0.0):.0f} scores")
        if alt.get("eew_alerting_unsent_alerts", 0.0) > 0:
            why.append("alerts unsent")
        if self.collector.alert_messages < alt.get("eew_alerts_out_total", 0.0):
            why.append("alerts not yet read")
        return (not why), "; ".join(why)


def run_pipeline(cfg: RunConfig, total_station_s: float, data_hours: float,
                 stop: Stopper | None = None, progress_stream: TextIO | None = None) -> RunOutput:
    """Replay the archive through broker -> detector -> alerting; return everything collected.

    The archive is replayed block by block (``cfg.blocks``, see ``core.replay_blocks``), waiting
    for the detector to score each block before the next. The alerting starts once the detector
    has scored everything (unless ``live_alerting``): it then reads the scores as a backlog,
    buffers them all and associates them in event-time order, exactly as it would have live.
    """
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    run = _Run(cfg, total_station_s, data_hours, stop, progress_stream)
    interrupted = False
    publisher: ArchivePublisher | None = None
    result: RunOutput | None = None
    try:
        try:
            run.pipe.broker.start()
        except Exception as exc:  # noqa: BLE001 -- broker start-up raises several types
            raise PipelineError(f"could not start the broker: {exc}") from exc
        run.start_detector()
        if cfg.live_alerting:
            run.start_alerting([])
        run.collector = TopicCollector(run.bootstrap, cfg.alert_of, client_id=f"{cfg.client_id}-collector")
        publisher = ArchivePublisher(run.bootstrap, f"{cfg.client_id}-replay")
        run.wall["startup_s"] = time.monotonic() - t0
        t_replay = time.monotonic()
        run.progress.t0 = t_replay
        rejected = failed = gaps = 0
        gap_s = 0.0
        for i, block in enumerate(cfg.blocks):
            if run.stopped():
                break
            stats = run.replay_block(publisher, block)
            if stats is None:
                continue
            run.published += stats.packets
            rejected += stats.rejected
            gaps += stats.gaps
            gap_s += stats.gap_seconds
            failed += stats.failed
            if stats.corrupt_files:
                run.warnings.append(f"replay: {stats.corrupt_files} unreadable file(s): {', '.join(stats.corrupt)}")
            if time.monotonic() - t_replay > cfg.replay_timeout_s:
                run.warnings.append(f"replay stopped after block {i + 1}/{len(cfg.blocks)}: "
                                    f"{cfg.replay_timeout_s:.0f} s replay timeout")
                break
            run.wait(f"detector, block {i + 1}", run.detector_done)
        run.wall.update(blocks=len(cfg.blocks), packets_published=run.published, packets_rejected=rejected,
                        packets_failed=failed, replay_and_detector_s=time.monotonic() - t_replay)
        run.warnings += replay_warnings(gaps, gap_s, rejected, failed)
        if not run.stopped():
            if not cfg.live_alerting:
                n = max(200_000, 2 * run.collector.score_messages + 1000)
                run.start_alerting(["--catch-up-max-buffer", str(n), "--restore-idle-s", "2"])
            run.wait("alerting", run.alerting_done)
        interrupted = run.stopped()
        if interrupted:
            run.warnings.append("interrupted: the report covers what was collected until then")
        col = run.collector
        run.progress.finish(col.scored_seconds, len(col.alerts))
        run.wall["processing_s"] = col.last_new - t_replay
        run.wall["drained_s"] = time.monotonic() - t_replay
        if run.alerting is not None and (alt := scrape(run.alerting.http_port)) is not None:
            run.wall["alerting_scores_late"] = int(alt.get("eew_alerting_scores_late_total", 0.0))
            run.wall["alerting_scores_dropped"] = int(alt.get("eew_alerting_scores_dropped_total", 0.0))
        if (samples := scrape_samples(run.detector.http_port if run.detector else 0)) is not None:
            det = {}
            for name, _labels, value in samples:
                det[name] = det.get(name, 0.0) + value
            run.wall["detector_packets_in"] = int(det.get("eew_detector_packets_in_total", 0.0))
            run.wall["detector_rejected_packets"] = int(det.get(DETECTOR_REJECTED, 0.0))
            run.wall["detector_rejected_by_reason"] = by_label(samples, DETECTOR_REJECTED, "reason")
            run.wall["detector_rejected_streams_by_reason"] = by_label(samples, DETECTOR_REJECTED_STREAMS, "reason")
            run.wall["detector_station_resets"] = int(det.get("eew_detector_station_resets_total", 0.0))
        run.wall["score_messages"] = col.score_messages
        run.wall["alert_messages"] = col.alert_messages
        scores = sorted(col.scores.values(), key=lambda r: (r.stream, r.window_end_ns))
        alerts = [col.alerts[k] for k in sorted(col.alerts)]
        result = RunOutput(scores, alerts, dict(col.errors), run.wall, run.warnings, interrupted, cfg.live_alerting)
        if run.not_done:
            result.failure = "the run did not finish: " + "; ".join(run.not_done)
        return result
    finally:
        if publisher is not None:
            publisher.close()
        if run.collector is not None:
            run.collector.close()
        early = {s.name: s.proc.returncode for s in run.pipe.services if not s.running()}
        codes = run.pipe.stop()
        bad = {k: v for k, v in codes.items() if v not in (0, None)}
        if bad or early:
            log.warning("pipeline services exited with %s (logs in %s)", codes, cfg.run_dir)
        if result is not None:
            result.services = {name: {"code": code, "exited_early": name in early,
                                      "log": str(cfg.run_dir / f"{name}.log")} for name, code in codes.items()}
            for name, code in codes.items():
                if name not in early and code == -signal.SIGKILL:
                    result.warnings.append(f"{name} did not stop within 10 s of SIGTERM and was killed (its output "
                                           "had been collected; see its log)")
                elif name not in early and code == -signal.SIGTERM:
                    result.warnings.append(f"{name} ended on the run's SIGTERM without its shutdown (it was still "
                                           "starting or ignored the signal; see its log)")
        run.wall["total_s"] = time.monotonic() - t0
