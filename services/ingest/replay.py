"""Archive replay: miniSEED files or an SDS tree published as if the data were arriving live.

Every trace of every file is cut into packets of ``packet_seconds`` (on an absolute time grid
by default, so the components of a sensor are cut together) and the packets of all files are
merged by start time, so consumers see what a live feed would show. Original sample times are
kept to the nanosecond. ``speed`` paces the output by data time: 1 = real time, N = N times
faster, 0 = as fast as possible.

Files are opened lazily in order of their first sample (headers are read first), so memory
holds only the files overlapping the replay's current time. Unreadable files are counted and
skipped with a log line naming the file and the error; they never stop the replay.

Library use (demo, validation tool)::

    stats = replay_files(["archive/"], producer, speed=0)   # a KafkaProducer or a Publisher
"""

from __future__ import annotations

import glob
import heapq
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from obspy import UTCDateTime, read
from prometheus_client import CollectorRegistry

from services.common.mseed import MSEED_LOCK
from services.common.timeutil import now_ns, ns_to_iso
from services.ingest.core import NS, IngestCore, Record, ValidationConfig, record_from_trace, split_record
from services.ingest.emit import Emitter
from services.ingest.exceptions import ReplayInputError
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher

log = logging.getLogger(__name__)


class Stopper(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class ReplayStats:
    """What a replay did; ``summary()`` is the line ``eew replay`` prints."""

    files: int = 0
    corrupt_files: int = 0
    traces: int = 0
    packets: int = 0
    rejected: int = 0
    samples: int = 0
    data_seconds: float = 0.0
    first_start_ns: int | None = None
    last_end_ns: int | None = None
    wall_s: float = 0.0
    acked: int = 0
    failed: int = 0
    stopped: bool = False
    corrupt: list[str] = field(default_factory=list)
    gaps: int = 0  # packets that came after a gap in their stream (the ingest's rule), and their total
    gap_seconds: float = 0.0

    @property
    def span_s(self) -> float:
        if self.first_start_ns is None or self.last_end_ns is None:
            return 0.0
        return (self.last_end_ns - self.first_start_ns) / NS

    def summary(self) -> str:
        span = ""
        if self.first_start_ns is not None and self.last_end_ns is not None:
            span = f" covering {ns_to_iso(self.first_start_ns)} .. {ns_to_iso(self.last_end_ns)} ({self.span_s:.1f} s)"
        return (
            f"replay: {self.packets} packets ({self.samples} samples, {self.data_seconds:.1f} s of data) "
            f"from {self.traces} traces in {self.files} files{span}; {self.rejected} rejected, "
            f"{self.corrupt_files} unreadable files; {self.acked} acknowledged, {self.failed} failed; "
            f"wall time {self.wall_s:.2f} s{' (stopped early)' if self.stopped else ''}"
        )


# Side files found when walking a directory (station lists, notes, metadata) are not waveforms.
NOT_WAVEFORMS = frozenset(
    {".json", ".csv", ".txt", ".md", ".xml", ".yaml", ".yml", ".toml", ".ini", ".log", ".png", ".pdf", ".py"}
)


def expand_paths(patterns: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named, found under directories, or matched by globs.

    Directory walks skip hidden names and side files (``NOT_WAVEFORMS`` extensions); a file
    named explicitly is always tried (and counted as unreadable if it is not a waveform).
    """
    out: set[Path] = set()
    for pat in patterns:
        text = str(pat).strip()
        if not text:
            continue
        p = Path(text)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                out.update(
                    Path(root) / f
                    for f in files
                    if not f.startswith(".") and Path(f).suffix.lower() not in NOT_WAVEFORMS
                )
        elif p.is_file():
            out.add(p)
        else:
            out.update(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
    return sorted(out)


def _read(path: Path, headonly: bool) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        # ObsPy warns about damaged records (e.g. a torn last record) and returns the rest: say so.
        warnings.simplefilter("always")
        with MSEED_LOCK:
            st = read(str(path), headonly=headonly)
    if not headonly:
        for w in caught[:3]:
            log.warning("%s: read with a warning, damaged parts skipped: %s", path, w.message)
    return st


def clip_record(rec: Record, start_ns: int | None, end_ns: int | None) -> Record | None:
    """The samples of ``rec`` with start_ns <= time < end_ns (None when nothing is left)."""
    n = int(np.asarray(rec.data).size)
    sr = float(rec.sampling_rate)
    if n == 0 or not np.isfinite(sr) or sr <= 0:
        return rec
    a, z = 0, n
    if start_ns is not None and start_ns > rec.start_time_ns:
        a = int(np.ceil((start_ns - rec.start_time_ns) * sr / NS - 1e-6))
    if end_ns is not None:
        z = min(n, int(np.ceil((end_ns - rec.start_time_ns) * sr / NS - 1e-6)))
    if a >= z:
        return None
    if a == 0 and z == n:
        return rec
    return Record(
        rec.network,
        rec.station,
        rec.location,
        rec.channel,
        rec.start_time_ns + int(round(a * NS / sr)),
        rec.sampling_rate,
        rec.data[a:z],
        rec.sequence,
        rec.source,
    )


@dataclass(order=True)
class _Pending:
    first_ns: int
    index: int
    path: Path = field(compare=False)


class _Merger:
    """Packets from many files in start-time order, opening files only when their time comes."""

    def __init__(
        self,
        files: Sequence[Path],
        packet_seconds: float,
        align: bool,
        window: tuple[int | None, int | None],
        stats: ReplayStats,
        metrics: IngestMetrics,
    ) -> None:
        self.packet_seconds = packet_seconds
        self.align = align
        self.window = window
        self.stats = stats
        self.metrics = metrics
        self._files: list[_Pending] = []
        self._packets: list[tuple[int, str, int, Iterator[Record], Record]] = []
        self._counter = 0
        for i, path in enumerate(files):
            try:
                st = _read(path, headonly=True)
            except Exception as exc:  # noqa: BLE001 -- any reader failure means "unreadable file"
                self._corrupt(path, exc)
                continue
            if len(st) == 0:
                log.warning("%s: no traces, skipped", path)
                continue
            heapq.heappush(self._files, _Pending(min(tr.stats.starttime.ns for tr in st), i, path))
        stats.files = len(self._files)

    def _corrupt(self, path: Path, exc: BaseException) -> None:
        self.stats.corrupt_files += 1
        self.stats.corrupt.append(str(path))
        self.metrics.corrupt_files.inc()
        log.error("%s: unreadable, skipped (%s: %s)", path, type(exc).__name__, exc)

    def _open(self, pending: _Pending) -> None:
        try:
            st = _read(pending.path, headonly=False)
        except Exception as exc:  # noqa: BLE001 -- headers were fine but the data are not
            self._corrupt(pending.path, exc)
            self.stats.files -= 1
            return
        source = f"replay:{pending.path}"
        for tr in st:
            self.stats.traces += 1
            rec = record_from_trace(tr, source=source)
            clipped = clip_record(rec, *self.window)
            if clipped is None:
                continue
            self.metrics.bytes_in.labels("replay").inc(np.asarray(clipped.data).nbytes)
            self._push(iter(split_record(clipped, self.packet_seconds, self.align)))

    def _push(self, it: Iterator[Record]) -> None:
        rec = next(it, None)
        if rec is not None:
            self._counter += 1
            heapq.heappush(self._packets, (int(rec.start_time_ns), rec.nslc, self._counter, it, rec))

    def __iter__(self) -> Iterator[Record]:
        while self._files or self._packets:
            while self._files and (not self._packets or self._files[0].first_ns <= self._packets[0][0]):
                self._open(heapq.heappop(self._files))
            if not self._packets:
                continue
            _, _, _, it, rec = heapq.heappop(self._packets)
            self._push(it)
            yield rec


def replay_files(
    paths: Iterable[str | os.PathLike[str]],
    sink: Any,
    speed: float = 0.0,
    stop: Stopper | None = None,
    *,
    packet_seconds: float = 1.0,
    align: bool = True,
    validation: ValidationConfig | None = None,
    metrics: IngestMetrics | None = None,
    window: tuple[int | None, int | None] = (None, None),
    flush_timeout_s: float = 30.0,
) -> ReplayStats:
    """Publish every packet of ``paths`` in time order; flush; return the statistics.

    ``sink`` is a ``Publisher`` or a Kafka producer (wrapped in one). ``validation`` defaults to
    the live checks without the "too old" limit (archives are old by definition).
    """
    metrics = metrics or IngestMetrics(CollectorRegistry())
    publisher = sink if isinstance(sink, Publisher) else Publisher(sink, metrics)
    core = IngestCore(validation or ValidationConfig(max_past_s=0.0))
    emitter = Emitter(publisher, metrics)
    files = expand_paths(paths)
    stats = ReplayStats()
    t0 = time.monotonic()
    acked0, failed0 = publisher.acked, publisher.failed
    if not files:
        raise ReplayInputError(f"no input files match {list(map(str, paths))!r}")
    merger = _Merger(files, packet_seconds, align, window, stats, metrics)
    seq: dict[str, int] = {}
    data0: int | None = None
    for rec in merger:
        if stop is not None and stop.is_set():
            stats.stopped = True
            break
        if speed > 0:
            if data0 is None:
                data0 = rec.start_time_ns
            due = t0 + (rec.start_time_ns - data0) / NS / speed
            delay = due - time.monotonic()
            if delay > 0:
                if stop is not None:
                    if stop.wait(delay):
                        stats.stopped = True
                        break
                else:
                    time.sleep(delay)
        n = seq.get(rec.nslc, 0)
        seq[rec.nslc] = n + 1
        rec = Record(
            rec.network,
            rec.station,
            rec.location,
            rec.channel,
            rec.start_time_ns,
            rec.sampling_rate,
            rec.data,
            n,
            rec.source,
        )
        metrics.packets_in.labels("replay").inc()
        now = now_ns()
        outcome = core.process(rec, now_ns=now, ingest_time_ns=now)
        if outcome.packet is None:
            stats.rejected += 1
        else:
            p = outcome.packet
            if outcome.gap_s > 0:
                stats.gaps += 1
                stats.gap_seconds += outcome.gap_s
            stats.packets += 1
            stats.samples += len(p.data)
            stats.data_seconds += len(p.data) / p.sampling_rate
            stats.first_start_ns = (
                p.start_time_ns
                if stats.first_start_ns is None
                else min(stats.first_start_ns, p.start_time_ns)
            )
            stats.last_end_ns = (
                p.end_time_ns if stats.last_end_ns is None else max(stats.last_end_ns, p.end_time_ns)
            )
        emitter.emit(outcome, rec, now)
    if not publisher.flush(flush_timeout_s):
        log.error(
            "replay: %d messages still unacknowledged after %.0f s", publisher.in_flight, flush_timeout_s
        )
    stats.acked = publisher.acked - acked0
    stats.failed = publisher.failed - failed0 + publisher.in_flight
    stats.wall_s = time.monotonic() - t0
    return stats


def sds_files(root: str | os.PathLike[str], start_ns: int, end_ns: int, nslc: str = "*.*.*.*") -> list[Path]:
    """Day files of an SDS archive that may hold data of ``nslc`` in [start, end)."""
    from obspy.clients.filesystem.sds import Client

    parts = nslc.split(".")
    if len(parts) != 4:
        raise ReplayInputError(f"--nslc must be NET.STA.LOC.CHA (wildcards allowed), not {nslc!r}")
    client = Client(str(root))
    # ObsPy's own SDS path logic (day files around the window, SDS naming); it only globs.
    names = client._get_filenames(*parts, UTCDateTime(ns=start_ns), UTCDateTime(ns=end_ns))
    return sorted(Path(n) for n in names)


def replay_sds(
    root: str | os.PathLike[str],
    start_ns: int,
    end_ns: int,
    sink: Any,
    nslc: str = "*.*.*.*",
    speed: float = 0.0,
    stop: Stopper | None = None,
    **kwargs: Any,
) -> ReplayStats:
    """Replay the [start, end) window of an SDS archive (see ``replay_files``)."""
    files = sds_files(root, start_ns, end_ns, nslc)
    if not files:
        raise ReplayInputError(f"no SDS day files under {root} for {nslc} in the window")
    return replay_files(files, sink, speed, stop, window=(start_ns, end_ns), **kwargs)
