"""An archive through the services' cores in this process: replay -> detector core -> association.

``run_in_process`` takes the same ``RunConfig`` as ``run.run_pipeline`` and returns the same
``RunOutput``, without a broker or service processes: each archive block is read by the replay
library of ``eew replay`` (same file rules, packetising and ingest validation), its packets go
straight into the detector's core (``CoreDetector`` with the model and settings ``eew detect``
builds from the same flags), every score goes through the same ``StationScore`` message and
decoding the alerting reads, and the scores are associated in event-time order by the alerting's
``Associator`` built from the same flags and station file -- what the pipeline's alerting does with
a backlog. So the scores and alerts are those of the services; what this mode does not exercise
is the transport (Kafka, partitions, offsets, restarts) and wall-clock behaviour: alerts carry no
creation time (no processing delay is measured; their decision's event time is kept). ``eew validate
--mode services`` runs the deployed chain for that.

Why it exists: the detector's Kafka client, not the science, bounds the speed of a validation
through the broker (bench/RESULTS.md: kafka-python took ~60 % of the detector's CPU); a
seismologist replaying weeks of a network needs the science at the model's speed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from models.runtime import StreamingModel
from services.alerting.association import Associator
from services.alerting.formats.messages import alert_to_pb, score_to_record
from services.alerting.service import load_stations, make_associator
from services.alerting.settings import AlertingSettings
from services.common.codec import Packet
from services.common.settings import load_settings
from services.detector.core import C_RESETS, CoreDetector
from services.detector.service import score_message
from services.detector.settings import DetectorSettings
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from services.ingest.replay import ReplayStats, Stopper, replay_files
from services.pipeline.exceptions import PipelineError
from services.pipeline.run import Progress, RunConfig, RunOutput, replay_warnings

log = logging.getLogger(__name__)

NS = 1_000_000_000


class CoreSink(Publisher):
    """The replay's sink: each packet straight into the detector core (no broker).

    Scores are taken from the core every ``score_every`` packets and at ``flush``; a packet the
    core refuses is counted by reason (``rejected``), as the detector service's metric does."""

    def __init__(self, core: CoreDetector, score_every: int = 256) -> None:
        super().__init__(producer=None, metrics=IngestMetrics(CollectorRegistry()))
        self.core = core
        self.score_every = score_every
        self.scores: list[Any] = []  # ScoreRecord, as the alerting decodes them
        self.rejected: Counter[str] = Counter()
        self.packets_in = 0
        self.dead_letters: Counter[str] = Counter()
        self._since = 0

    def publish(self, packet: Packet, on_done: Any = None) -> bool:
        self.packets_in += 1
        self.acked += 1
        reason = self.core.feed(packet)
        if reason is not None:
            self.rejected[reason] += 1
        self._since += 1
        if self._since >= self.score_every:
            self.drain()
        return True

    def dead_letter(self, payload: bytes, reason: str, nslc: str, detail: str = "", source: str = "",
                    content_type: bytes = b"", on_done: Any = None) -> bool:
        self.dead_letters[reason] += 1
        log.warning("replay: %s rejected (%s) %s", nslc, reason, detail)
        return True

    def drain(self) -> None:
        """Score what is ready; keep the scores as the alerting would decode them."""
        self._since = 0
        for s in self.core.score_ready():
            scored = s.window_end_ns  # event time: no processing delay in this mode
            self.scores.append(score_to_record(score_message(s, scored)))

    def flush(self, timeout_s: float = 10.0) -> bool:
        self.drain()
        return True

    @property
    def in_flight(self) -> int:
        return 0


def build_associator(alerting_args: list[str], stations_file: Path) -> Associator:
    """The alerting's association core for these flags, as ``eew alert`` builds it."""
    settings = load_settings(AlertingSettings, [*alerting_args, "--stations", str(stations_file)])
    return make_associator(settings, *load_stations(settings))


def run_in_process(cfg: RunConfig, total_station_s: float, data_hours: float,
                   stop: Stopper | None = None, progress_stream: TextIO | None = None) -> RunOutput:
    """Replay the archive through the detector core and the association core (see the module doc)."""
    t0 = time.monotonic()
    wall: dict[str, Any] = {"mode": "in-process"}
    warnings: list[str] = []
    try:
        dset = load_settings(DetectorSettings, cfg.detector_args)
        # One ONNX Runtime thread unless set: the batches here are one chunk per station (a few to a
        # few hundred rows), where ORT's spinning worker threads cost more than they give, and on a
        # busy machine far more (20 stations x 1 h: 33 s CPU with one thread, 68 s with its default).
        threads = dset.intra_op_threads or 1
        model = StreamingModel(dset.model_dir, dset.provider_list(), intra_op_threads=threads)
        core = CoreDetector(dset.core_config(model.contract), model.step)
        assoc = build_associator(cfg.alerting_args, cfg.stations_file)
    except Exception as exc:  # noqa: BLE001 -- settings, model and inventory raise several types
        raise PipelineError(f"could not build the detector or association core: {exc}") from exc
    sink = CoreSink(core)
    progress = Progress(total_station_s, data_hours, progress_stream, label=cfg.progress_label)
    wall["startup_s"] = time.monotonic() - t0
    t_replay = time.monotonic()
    progress.t0 = t_replay
    published = rejected = gaps = 0
    gap_s = 0.0
    interrupted = False
    for i, (a, b) in enumerate(cfg.blocks):
        if stop is not None and stop.is_set():
            interrupted = True
            break
        files = cfg.files_for_block(a, b)
        if not files:
            continue
        stats: ReplayStats = replay_files(files, sink, 0.0, stop, window=(a, b), packet_seconds=cfg.packet_seconds)
        sink.drain()
        published += stats.packets
        rejected += stats.rejected
        gaps += stats.gaps
        gap_s += stats.gap_seconds
        if stats.corrupt_files:
            warnings.append(f"replay: {stats.corrupt_files} unreadable file(s): {', '.join(stats.corrupt)}")
        if stats.stopped:
            interrupted = True
            break
        progress.update(len(sink.scores), 0)
        if time.monotonic() - t_replay > cfg.replay_timeout_s:
            warnings.append(f"replay stopped after block {i + 1}/{len(cfg.blocks)}: "
                            f"{cfg.replay_timeout_s:.0f} s replay timeout")
            break
    t_assoc = time.monotonic()
    wall["replay_and_detector_s"] = t_assoc - t_replay
    scores = sorted(sink.scores, key=lambda r: (r.window_end_ns, r.stream))
    records = assoc.add_many(scores) + assoc.flush()
    # created_time 0: no processing time exists in this mode (the report then says "not measured")
    alerts = [cfg.alert_of(alert_to_pb(r, 0)) for r in records]
    if interrupted:
        warnings.append("interrupted: the report covers what was collected until then")
    warnings += replay_warnings(gaps, gap_s, rejected)
    wall.update(
        blocks=len(cfg.blocks), packets_published=published, packets_rejected=rejected, packets_failed=0,
        association_s=time.monotonic() - t_assoc, processing_s=time.monotonic() - t_replay,
        drained_s=time.monotonic() - t_replay, detector_packets_in=sink.packets_in,
        detector_rejected_packets=sum(sink.rejected.values()),
        detector_rejected_by_reason=dict(sink.rejected),
        detector_rejected_streams_by_reason={},
        detector_station_resets=int(core.counts[C_RESETS]),
        score_messages=len(scores), alert_messages=len(alerts), total_s=time.monotonic() - t0,
    )
    progress.finish(len(scores), len(alerts))
    out = RunOutput(sorted(scores, key=lambda r: (r.stream, r.window_end_ns)), alerts, {}, wall, warnings,
                    interrupted, live_alerting=False)
    return out
