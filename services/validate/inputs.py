"""Inputs of ``eew validate``: the catalogue (QuakeML or CSV), the archive index, the inventory.

Catalogue CSV (header row required; ``#`` lines ignored)::

    time,latitude,longitude,depth,magnitude[,magnitude_type][,event_id]
    2024-03-01T12:00:00.000Z,37.80,-122.20,10.0,4.1

``time`` (or ``time_utc``, ``origin_time``) is ISO-8601 UTC, ``depth`` (or ``depth_km``) km below
sea level, ``magnitude`` (or ``mag``) may be empty. Without a depth column (or with an empty depth)
the event gets ``default_depth_km`` and a warning says so. The id column is ``event_id`` (or
``name``, ``id``); without one events are named ``ev0001``, ``ev0002``, ... in file order.

QuakeML events also give the catalogue's own P picks: picks with a P phase hint, or referenced by a
P arrival of the preferred origin; the earliest per station (NET.STA) is its reference P.

The archive is miniSEED files, directories (searched recursively, as ``eew replay --files`` does,
skipping side files such as .csv/.json/.txt; an SDS tree is a directory of miniSEED day files) or glob patterns, optionally clipped to a time
window (then an SDS tree contributes only its day files in the window). Only headers are read to
index it; files ObsPy cannot read are listed as skipped, with the reason.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from services.common.domain import nslc, station_id, stream_key
from services.common.inventory import StationInventory
from services.common.mseed import MSEED_LOCK
from services.common.streams import scorable
from services.pipeline.publish import CHANNEL_PATTERN, expand_paths, sds_files
from services.validate.core import NS, CatalogEvent, StreamCoverage, merge_intervals
from services.validate.exceptions import CatalogError

log = logging.getLogger(__name__)


def _time_ns(text: str, where: str) -> int:
    from obspy import UTCDateTime

    try:
        return int(UTCDateTime(text.strip()).ns)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: time {text!r} is not ISO-8601 UTC") from exc


def _float(row: dict[str, str], names: tuple[str, ...], where: str, required: bool = True) -> float | None:
    for n in names:
        if n in row and (row[n] or "").strip() != "":
            try:
                v = float(row[n])
            except ValueError as exc:
                raise CatalogError(f"{where}: {n}={row[n]!r} is not a number") from exc
            if not math.isfinite(v):
                raise CatalogError(f"{where}: {n}={row[n]!r} is not finite")
            return v
    if required:
        raise CatalogError(f"{where}: {names[0]} is missing")
    return None


def _check_event(ev: CatalogEvent, where: str) -> None:
    if not -90 <= ev.latitude <= 90 or not -180 <= ev.longitude <= 360:
        raise CatalogError(f"{where}: latitude/longitude {ev.latitude}, {ev.longitude} out of range")


TIME_COLUMNS = ("time", "time_utc", "origin_time")
ID_COLUMNS = ("event_id", "name", "id")
DEPTH_COLUMNS = ("depth", "depth_km")


def read_catalog_csv(path: Path, default_depth_km: float = 10.0) -> tuple[list[CatalogEvent], list[str]]:
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = cols
    time_col = next((c for c in TIME_COLUMNS if c in cols), None)
    missing = ([] if time_col else ["time"]) + [c for c in ("latitude", "longitude") if c not in cols]
    if missing:
        raise CatalogError(f"{path}: missing columns {missing} (need time,latitude,longitude[,depth][,magnitude])")
    id_col = next((c for c in ID_COLUMNS if c in cols), None)
    out, defaulted = [], []
    for i, row in enumerate(reader, start=1):
        where = f"{path}:{i + 1}"
        depth = _float(row, DEPTH_COLUMNS, where, required=False)
        ev = CatalogEvent(
            event_id=((row.get(id_col) or "").strip() if id_col else "") or f"ev{i:04d}",
            origin_ns=_time_ns(row[time_col] or "", where),  # type: ignore[index]
            latitude=float(_float(row, ("latitude",), where) or 0.0),
            longitude=float(_float(row, ("longitude",), where) or 0.0),
            depth_km=default_depth_km if depth is None else depth,
            magnitude=_float(row, ("magnitude", "mag"), where, required=False),
            magnitude_type=(row.get("magnitude_type") or "").strip(),
            depth_given=depth is not None,
        )
        _check_event(ev, where)
        out.append(ev)
        if depth is None:
            defaulted.append(ev.event_id)
    notes = []
    if defaulted:
        notes.append(f"{len(defaulted)} catalogue event(s) without depth get --default-depth-km "
                     f"{default_depth_km:g} km for their TauP travel times: {', '.join(defaulted[:10])}"
                     + (" ..." if len(defaulted) > 10 else ""))
    return out, notes


def _p_picks(event: object, origin: object) -> tuple[tuple[str, int], ...]:
    """The catalogue's P picks of one ObsPy event: (NET.STA, ns), the earliest P per station."""
    picks = {str(p.resource_id): p for p in event.picks}  # type: ignore[attr-defined]
    chosen = [p for p in event.picks if (p.phase_hint or "").upper().startswith("P")]  # type: ignore[attr-defined]
    for a in getattr(origin, "arrivals", []) or []:
        p = picks.get(str(a.pick_id)) if a.pick_id is not None else None
        if p is not None and (a.phase or "").upper().startswith("P"):
            chosen.append(p)
    best: dict[str, int] = {}
    for p in chosen:
        w = p.waveform_id
        if p.time is None or w is None or not w.station_code:
            continue
        sid = station_id(w.network_code or "", w.station_code)
        t = int(p.time.ns)
        best[sid] = min(best.get(sid, t), t)
    return tuple(sorted(best.items()))


def read_catalog_quakeml(path: Path, default_depth_km: float = 10.0) -> tuple[list[CatalogEvent], list[str]]:
    from obspy import read_events

    try:
        cat = read_events(str(path))
    except Exception as exc:  # noqa: BLE001 -- ObsPy raises many types for bad files
        raise CatalogError(f"cannot read catalogue {path}: {type(exc).__name__}: {exc}") from exc
    out, skipped, defaulted = [], [], []
    for i, event in enumerate(cat, start=1):
        eid = str(event.resource_id.id if event.resource_id else "") or f"ev{i:04d}"
        origin = event.preferred_origin() or (event.origins[0] if event.origins else None)
        if origin is None or origin.time is None or origin.latitude is None or origin.longitude is None:
            skipped.append(f"catalogue event {eid}: no origin with time and epicentre, skipped")
            continue
        mag = event.preferred_magnitude() or (event.magnitudes[0] if event.magnitudes else None)
        ev = CatalogEvent(
            event_id=eid,
            origin_ns=int(origin.time.ns),
            latitude=float(origin.latitude),
            longitude=float(origin.longitude),
            depth_km=float(origin.depth) / 1000.0 if origin.depth is not None else default_depth_km,
            magnitude=float(mag.mag) if mag is not None and mag.mag is not None else None,
            magnitude_type=str(mag.magnitude_type or "") if mag is not None else "",
            p_picks=_p_picks(event, origin),
            depth_given=origin.depth is not None,
        )
        _check_event(ev, f"{path} event {eid}")
        out.append(ev)
        if origin.depth is None:
            defaulted.append(eid)
    if defaulted:
        skipped.append(f"{len(defaulted)} catalogue event(s) without depth get --default-depth-km "
                       f"{default_depth_km:g} km: {', '.join(defaulted[:10])}" + (" ..." if len(defaulted) > 10 else ""))
    return out, skipped


def load_catalog(path: Path | str, default_depth_km: float = 10.0) -> tuple[list[CatalogEvent], list[str]]:
    """Catalogue events (sorted by origin time) and warnings; CSV when named .csv/.txt, else QuakeML."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalogue file {path} does not exist")
    if path.suffix.lower() in (".csv", ".txt"):
        try:
            events, notes = read_catalog_csv(path, default_depth_km)
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"cannot read catalogue {path}: {exc}") from exc
    else:
        events, notes = read_catalog_quakeml(path, default_depth_km)
    ids = [e.event_id for e in events]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise CatalogError(f"{path}: duplicate event ids {dup}")
    return sorted(events, key=lambda e: (e.origin_ns, e.event_id)), notes


def load_inventory(path: Path | str) -> StationInventory:
    """The station inventory (CSV or StationXML); raises InventoryError with the reason."""
    return StationInventory.load(path)


@dataclass(frozen=True, slots=True)
class TraceInfo:
    """Header of one trace of one archive file."""

    path: Path
    network: str
    station: str
    location: str
    channel: str
    start_ns: int
    end_ns: int  # just after the last sample
    sampling_rate: float

    @property
    def stream(self) -> str:
        return stream_key(self.network, self.station, self.location, self.channel)


@dataclass
class ArchiveIndex:
    """What the archive holds, from the file headers."""

    paths: list[str]
    files: list[Path] = field(default_factory=list)
    traces: list[TraceInfo] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    rejected_channels: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.traces

    def coverage(self) -> list[StreamCoverage]:
        """Merged data intervals per sensor stream (gaps below 1.5 samples are joined)."""
        per: dict[str, list[tuple[int, int]]] = defaultdict(list)
        slack: dict[str, int] = {}
        for t in self.traces:
            per[t.stream].append((t.start_ns, t.end_ns))
            slack[t.stream] = max(slack.get(t.stream, 0), int(1.5 * NS / t.sampling_rate))
        return [StreamCoverage(s, merge_intervals(iv, slack[s])) for s, iv in sorted(per.items())]

    def files_for(self, stream: str, start_ns: int, end_ns: int, vertical_only: bool = True) -> list[Path]:
        """Files with data of ``stream`` overlapping [start, end) (vertical channels only by default)."""
        out = {
            t.path
            for t in self.traces
            if t.stream == stream
            and t.start_ns < end_ns
            and start_ns < t.end_ns
            and (not vertical_only or t.channel.endswith("Z"))
        }
        return sorted(out)

    def unscorable(self) -> dict[str, str]:
        """Streams the system does not score, with the reason (``services.common.streams.scorable``)."""
        out: dict[str, str] = {}
        for t in self.traces:
            reason = scorable(t.channel, t.sampling_rate)
            if reason is not None:
                out.setdefault(t.stream, reason)
        return dict(sorted(out.items()))

    def files_in(self, start_ns: int | None, end_ns: int | None) -> list[Path]:
        """Files with data in [start, end) (None: open end)."""
        lo = -(1 << 62) if start_ns is None else start_ns
        hi = 1 << 62 if end_ns is None else end_ns
        return sorted({t.path for t in self.traces if t.start_ns < hi and lo < t.end_ns})

    def messages(self) -> list[str]:
        out = []
        if not self.files and not self.skipped:
            out.append(f"archive {', '.join(self.paths)}: no files found")
        if self.skipped:
            names = ", ".join(Path(p).name for p, _ in self.skipped[:5])
            more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            out.append(f"{len(self.skipped)} archive file(s) are not readable miniSEED and were skipped: {names}{more}")
        if self.rejected_channels:
            out.append(
                f"channels the ingest rejects (pattern {CHANNEL_PATTERN}) are left out: "
                + ", ".join(sorted(set(self.rejected_channels))[:10])
            )
        if self.files and not self.traces:
            out.append("the archive has no usable waveform data: nothing was replayed")
        return out


def _candidates(paths: list[str], start_ns: int | None, end_ns: int | None) -> list[Path]:
    """Files to index: an SDS tree with a full time window gives only its day files in the window."""
    out: set[Path] = set()
    for p in paths:
        if start_ns is not None and end_ns is not None and Path(p).is_dir():
            try:
                days = [f for f in sds_files(p, start_ns, end_ns) if f.is_file()]
            except Exception as exc:  # noqa: BLE001 -- not an SDS tree: index every file
                log.info("%s: not read as an SDS tree (%s)", p, exc)
                days = []
            if days:
                out.update(days)
                continue
        out.update(expand_paths([p]))
    return sorted(out)


def scan_archive(paths: list[str], start_ns: int | None = None, end_ns: int | None = None) -> ArchiveIndex:
    """Index the archive from miniSEED headers (no sample is read), clipped to [start, end) if given."""
    from obspy import read

    index = ArchiveIndex(paths=list(paths))
    pattern = re.compile(CHANNEL_PATTERN)
    lo = -(1 << 62) if start_ns is None else start_ns
    hi = 1 << 62 if end_ns is None else end_ns
    for path in _candidates(paths, start_ns, end_ns):
        try:
            with MSEED_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st = read(str(path), headonly=True)
        except Exception as exc:  # noqa: BLE001 -- any reader failure means "not miniSEED here"
            index.skipped.append((str(path), f"{type(exc).__name__}: {exc}"[:200]))
            log.info("%s: not readable as miniSEED, skipped (%s)", path, exc)
            continue
        index.files.append(path)
        for tr in st:
            s = tr.stats
            if not pattern.match(str(s.channel)):
                index.rejected_channels.append(nslc(s.network, s.station, s.location, s.channel))
                continue
            sr = float(s.sampling_rate)
            if not (math.isfinite(sr) and sr > 0) or int(s.npts) <= 0:
                continue
            start = int(s.starttime.ns)
            end = start + int(round(int(s.npts) * NS / sr))
            a, b = max(start, lo), min(end, hi)
            if a >= b:
                continue
            index.traces.append(
                TraceInfo(path, str(s.network), str(s.station), str(s.location), str(s.channel), a, b, sr)
            )
    index.traces.sort(key=lambda t: (t.stream, t.start_ns, t.channel, str(t.path)))
    return index


__all__ = [
    "ArchiveIndex",
    "CatalogError",
    "TraceInfo",
    "load_catalog",
    "load_inventory",
    "scan_archive",
]
