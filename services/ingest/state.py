"""SeedLink resume state: per-station sequence numbers, tracked in memory and persisted atomically.

Two positions per station matter:

* **received**: the newest packet handed to the publisher. A reconnect within the same process
  resumes after it (the producer still delivers what it holds, so asking again would duplicate).
* **acknowledged**: the newest packet such that it *and every packet received before it* for the
  station has been acknowledged by Kafka (waveform or dead-letter topic). Only this watermark is
  written to the state file, so a crash (even ``kill -9``) never skips data: on restart the
  server resends from the watermark on. At most the packets acknowledged after the last save
  are sent twice; the save interval bounds that window.

Beside the per-station positions, the end time of the newest record of each channel (NSLC)
within the watermark is kept and saved: it is what "already published" means when a server
reset makes sequence numbers useless and the ingester resumes by time (``seedlink``).

A failed delivery stops its station's watermark; ``rewind`` (called by the ingester once the
producer has drained) forgets everything in flight, so the next connection asks the server
again from the acknowledged watermark: no loss, at the price of possible duplicates.

SeedLink sequence numbers are 24-bit and wrap; nothing here compares them numerically, the
order is the order of arrival.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from services.ingest.exceptions import StateFileError

log = logging.getLogger(__name__)

STATE_FORMAT = "eew-seedlink-state"
STATE_VERSION = 1
SEQ_MODULUS = 1 << 24


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a station's stream stands: SeedLink sequence number and the packet's start time."""

    seq: int
    time_ns: int = 0


def seq_not_after(seq: int, ref: int) -> bool:
    """True when 24-bit ``seq`` is ``ref`` or before it (modular order, half the range back)."""
    return (ref - seq) % SEQ_MODULUS < SEQ_MODULUS // 2


class Ticket:
    """One received packet awaiting its Kafka acknowledgement."""

    __slots__ = ("key", "seq", "time_ns", "nslc", "end_ns", "done", "ok")

    def __init__(self, key: str, seq: int, time_ns: int, nslc: str = "", end_ns: int = 0) -> None:
        self.key = key
        self.seq = seq
        self.time_ns = time_ns
        self.nslc = nslc
        self.end_ns = end_ns
        self.done = False
        self.ok = False


def _key_of(nslc: str) -> str:
    net, sta = (nslc.split(".") + ["", ""])[:2]
    return f"{net}_{sta}"


class SequenceTracker:
    """Thread-safe: ``received`` from the reader thread, ``acknowledged`` from the producer's."""

    def __init__(
        self, initial: dict[str, StreamPosition] | None = None, channels: dict[str, int] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._acked: dict[str, StreamPosition] = dict(initial or {})
        self._received: dict[str, StreamPosition] = dict(initial or {})
        self._acked_end: dict[str, int] = dict(channels or {})
        self._received_end: dict[str, int] = dict(channels or {})
        self._pending: dict[str, deque[Ticket]] = {}
        self._version = 0
        self._failures = 0

    def received(self, key: str, seq: int, time_ns: int = 0, nslc: str = "", end_ns: int = 0) -> Ticket:
        """A packet handed on (``nslc``/``end_ns``: its channel and data end, when decodable)."""
        ticket = Ticket(key, seq, time_ns, nslc, end_ns)
        with self._lock:
            self._received[key] = StreamPosition(seq, time_ns)
            if nslc and end_ns > self._received_end.get(nslc, end_ns - 1):
                self._received_end[nslc] = end_ns
            self._pending.setdefault(key, deque()).append(ticket)
        return ticket

    def acknowledged(self, ticket: Ticket, ok: bool = True) -> None:
        """Mark a packet delivered (``ok``) or failed; advance the station's watermark if possible."""
        with self._lock:
            ticket.done = True
            ticket.ok = ok
            if not ok:
                self._failures += 1
            queue = self._pending.get(ticket.key)
            advanced = None
            while queue and queue[0].done and queue[0].ok:
                advanced = queue.popleft()
                if advanced.nslc and advanced.end_ns > self._acked_end.get(
                    advanced.nslc, advanced.end_ns - 1
                ):
                    self._acked_end[advanced.nslc] = advanced.end_ns
            if advanced is not None:
                self._acked[ticket.key] = StreamPosition(advanced.seq, advanced.time_ns)
                self._version += 1

    @property
    def failures(self) -> int:
        """Failed deliveries since the last ``rewind``."""
        with self._lock:
            return self._failures

    def rewind(self) -> int:
        """Forget packets in flight; resume every station after its acknowledged watermark.

        Call only when nothing is in flight any more (producer flushed). Returns how many
        received packets were not acknowledged (they will be asked for again).
        """
        with self._lock:
            lost = sum(len(q) for q in self._pending.values())
            received = dict(self._acked)
            for key, queue in self._pending.items():
                if key not in received and queue:
                    # Nothing acknowledged yet for this station: resume just before its first packet.
                    received[key] = StreamPosition((queue[0].seq - 1) % SEQ_MODULUS)
            self._pending.clear()
            self._received = received
            self._received_end = dict(self._acked_end)
            self._failures = 0
            return lost

    def resume_position(self, key: str) -> StreamPosition | None:
        """Position to resume after on a reconnect within this process (last received)."""
        with self._lock:
            return self._received.get(key)

    def channel_end(self, nslc: str) -> int | None:
        """End time of the newest record of a channel handed on (None: nothing yet)."""
        with self._lock:
            return self._received_end.get(nslc)

    def station_channel_ends(self, key: str) -> dict[str, int]:
        """``channel_end`` of every channel of one station (``NET_STA``)."""
        with self._lock:
            return {n: t for n, t in self._received_end.items() if _key_of(n) == key}

    def acknowledged_channel_ends(self) -> dict[str, int]:
        """Per-channel data end within the acknowledged watermarks (what the state file holds)."""
        with self._lock:
            return dict(self._acked_end)

    def acknowledged_positions(self) -> dict[str, StreamPosition]:
        """The crash-safe positions (what the state file holds)."""
        with self._lock:
            return dict(self._acked)

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._pending.values())

    @property
    def version(self) -> int:
        """Changes whenever a watermark advances (to skip rewriting an unchanged file)."""
        with self._lock:
            return self._version


class StateStore:
    """A JSON state file written atomically (temp file, fsync, rename, fsync of the directory)."""

    def __init__(self, path: str | os.PathLike[str] | None, server: str) -> None:
        self.path = Path(path) if path else None
        self.server = server
        self._saved_version = -1
        #: Per-channel data end times read by the last ``load`` (files before them have none).
        self.channels: dict[str, int] = {}

    def load(self) -> dict[str, StreamPosition]:
        """Positions saved for this server; {} when there is no file (or it was for another server).

        An unreadable file is moved aside (``.corrupt-<time>``) and logged, so the daemon starts
        instead of crash-looping; the log line says that resume was lost.
        """
        if self.path is None or not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text())
            if doc.get("format") != STATE_FORMAT or int(doc.get("version", 0)) != STATE_VERSION:
                raise ValueError(f"not a {STATE_FORMAT} v{STATE_VERSION} file")
            if doc.get("server") != self.server:
                log.warning(
                    "state file %s is for server %r, not %r: its sequence numbers do not apply, starting fresh",
                    self.path,
                    doc.get("server"),
                    self.server,
                )
                return {}
            out = {}
            for key, pos in dict(doc["streams"]).items():
                seq = int(pos["seq"])
                if not 0 <= seq < SEQ_MODULUS:
                    raise ValueError(f"{key}: sequence {seq} outside 24 bits")
                out[str(key)] = StreamPosition(seq, int(pos.get("time_ns", 0)))
            self.channels = {str(k): int(v) for k, v in dict(doc.get("channels", {})).items()}
            log.info("resuming from state file %s: %d stream(s)", self.path, len(out))
            return out
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            try:
                os.replace(self.path, aside)
            except OSError as move_exc:
                raise StateFileError(
                    f"state file {self.path} is unreadable ({exc}) and cannot be moved"
                ) from move_exc
            log.error(
                "state file %s unreadable (%s): moved to %s, starting without resume", self.path, exc, aside
            )
            return {}

    def save(
        self,
        positions: dict[str, StreamPosition],
        version: int | None = None,
        channels: dict[str, int] | None = None,
    ) -> bool:
        """Write the positions (and channel end times); skipped (False) when ``version`` was already saved."""
        if self.path is None:
            return False
        if version is not None and version == self._saved_version:
            return False
        doc = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "server": self.server,
            "saved_ns": time.time_ns(),
            "streams": {k: {"seq": p.seq, "time_ns": p.time_ns} for k, p in sorted(positions.items())},
            "channels": dict(sorted((channels or {}).items())),
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StateFileError(f"cannot write state file {self.path}: {exc}") from exc
        if version is not None:
            self._saved_version = version
        return True
