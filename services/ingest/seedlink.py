"""Live SeedLink input: ObsPy's SeedLink client, resume by sequence number (or time), reconnect, stall
watchdog, and side links that retry a refused or stalled station on its own schedule.

The protocol (HELLO, STATION/SELECT/DATA seq per station, END, packet framing, miniSEED
decoding) is ObsPy 1.5.1's ``SeedLinkConnection`` -- the engine under ``EasySeedLinkClient``
and ``SLClient``. It is used directly rather than through ``EasySeedLinkClient`` because the
state file needs the sequence number of every packet, and ``EasySeedLinkClient.on_data`` only
hands over the decoded ``Trace``. ``_Connection`` below adapts it:

* the connect fix (see ``_Connection.connect``);
* ObsPy never notices that the server closed the socket (``recv`` returning ``b""`` is taken as
  "no data yet" and retried every 0.5 s until the network timeout); here EOF is a read error;
* ObsPy reconnects by itself inside ``collect()`` after a fixed delay; here the connection ends
  instead and ``SeedLinkIngester`` reconnects with exponential backoff, counted, resuming each
  station after the last packet it received;
* undecodable records, which ObsPy only logs and drops, are counted and dead-lettered;
* station negotiation is ours (``negotiate_multi_station``/``negotiate_station``): a station the
  server refuses (unknown, or "no data stream selector(s) accepted") is named in the log, the
  ``eew_ingest_refused_stations`` gauge and ``/readyz``; the action command of each station is
  chosen by the ingester (``DATA seq time``, ``TIME start`` or ``DATA``); a connection on which
  every station was refused ends without ObsPy's ERROR line;
* planned ends of a link (stop, stall, reset, a probe that found nothing, a station that moved
  on) are logged at INFO, not as ObsPy socket errors.

Resume and server resets. Each station resumes with ``DATA <last seq + 1> <start time of that
packet>`` (what ringserver and SeisComP check: when the packet at that sequence number does not
start at that time, they fall back to the time). The first packet of each station on a resumed
link is checked: when its sequence number is not after the one resumed from, or its data start
before what was already published for its channel, the server's numbering no longer matches the
state (a server that restarted with a fresh ring renumbers from 1). The ingester then logs one
WARNING, counts ``eew_ingest_server_resets``, drops the link and resumes every station with
``TIME <end of its channels' last published sample>``; records the server sends again that end
before what was already published are skipped (``eew_ingest_resent_skipped``), so nothing is
skipped and nothing is published twice.

Stalls. A station silent for ``stall_timeout_s`` while others deliver is reported once (WARNING,
``eew_ingest_stalled_stations``, ``/readyz`` detail) and stays subscribed: its data flow again on
the same link as soon as the server has some. Only a main link on which no station delivered
for ``stall_timeout_s`` is reconnected.

Own schedules: side links. A dead or refused station never disturbs the others: it is retried
on its own schedule (``StationRetryConfig``, flags ``--station-retry-*``: exponential backoff with
full jitter, 30 s growing to 10 min by default) on a *side link*, a SeedLink connection of its
own beside the main link, and the main link is never torn down for it.

* A **refused** station leaves the main link (which drops it from its selectors at its next
  natural reconnect). Each retry negotiates only that station on a new connection, resuming
  by the main link's rule (``DATA <seq + 1> <time>`` from its position, by time after a reset;
  a station never received before is asked by ``TIME`` from when the ingester first asked for
  it, less ``lookback_s``, so what the server got since is not lost). Refused again: the
  connection closes and the station backs off. Accepted: the station streams on that side link
  from then on (it reconnects with the ``--reconnect-*`` backoff like the main link), leaves
  ``/readyz``'s refused list and the gauge, and ``/readyz`` lists it under ``side_links``.
* A **stalled** station is *probed* on the same schedule: a side connection asks the server for
  it from its last received packet and waits ``probe_s``. Data newer than what was published
  mean that the link carrying the station no longer delivers it (a broken subscription): the
  station moves to the probe's link, which publishes from the first newer record on; the old
  link's records of it are dropped from then on (the main link drops it from its selectors at
  its next natural reconnect; a side link left with no station closes). Nothing newer: the probe
  closes (INFO), the station stays reported and backs off; its data are taken as soon as its
  link delivers them.
* Every outcome is counted in ``eew_ingest_station_retries_total{outcome}`` (accepted, moved,
  nothing_newer, refused, connect_failed, lost) and ``eew_ingest_side_links`` counts the stations
  on side links. The first refusal and the first stall are logged at WARNING, the acceptance
  and the move at INFO, once each; single attempts only at DEBUG.

Every link publishes through the same code path (``_on_packet``: validation, state, metrics, dead
letters) under one lock, and a record is published only by the link that owns its station. A
side link compares each channel's first records with what was already published (whichever link
published it) and skips those ending before it (``eew_ingest_resent_skipped``), so a station that
moves loses nothing and publishes nothing twice. Delivery failures drop every link; the main
loop rewinds the positions once all have stopped, and every link resumes from acknowledged data.

Threads: the main thread runs the main link's ``collect()`` and publishes (producer back-pressure
reaches the socket); each side link has a thread of its own; a watchdog thread saves the state
file periodically (one file for the stations of every link), detects stalled stations, starts
due retries, ends probes, and aborts connections on stall or stop (shutting the socket down
unblocks ``recv``). SIGTERM ends every wait (connect, backoff) within a second; ``run`` joins
the side links before it returns, and the service then saves the state.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from obspy import UTCDateTime
from obspy.clients.seedlink.client.seedlinkconnection import SeedLinkConnection
from obspy.clients.seedlink.client.slstate import SLState
from obspy.clients.seedlink.seedlinkexception import SeedLinkException
from obspy.clients.seedlink.slpacket import SLPacket

from services.common.lifecycle import StopFlag
from services.common.mseed import MSEED_LOCK
from services.common.timeutil import now_ns
from services.ingest.core import (
    NS,
    Backoff,
    IngestCore,
    Record,
    StallWatch,
    StreamSpec,
    record_end_ns,
    record_from_trace,
)
from services.ingest.emit import Emitter
from services.ingest.exceptions import SeedLinkConnectionLost, StateFileError
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import StationRetryConfig
from services.ingest.state import SequenceTracker, StateStore, StreamPosition, seq_not_after

log = logging.getLogger(__name__)

BadPacketHook = Callable[[SLPacket, Exception], None]
#: The action command (``DATA ...``/``TIME ...``) for a station key; called during negotiation.
PlanHook = Callable[[str], bytes]
RefusedHook = Callable[[str, str], None]


def sl_time(ns: int) -> str:
    """SeedLink's ``YYYY,MM,DD,hh,mm,ss`` (whole seconds, rounded down: never after ``ns``)."""
    return UTCDateTime(ns=(ns // NS) * NS).strftime("%Y,%m,%d,%H,%M,%S")


def decode_record(raw: bytes, seq: int = 0, source: str = "") -> Record:
    """Decode one 512-byte miniSEED record exactly as the live path does; raises on garbage."""
    pkt = SLPacket(b"SL%06X" % (seq & 0xFFFFFF) + bytes(raw), 0)
    with MSEED_LOCK:
        trace = pkt.get_trace()
    return record_from_trace(trace, sequence=seq, source=source)


def _header_ids(record: bytes) -> tuple[str, str, str, str]:
    """NET, STA, LOC, CHA from a miniSEED fixed header, readable even when the rest is garbage."""

    def field(a: int, b: int) -> str:
        return record[a:b].decode("ascii", "replace").strip()

    return field(18, 20), field(8, 13), field(13, 15), field(15, 18)


class _Connection(SeedLinkConnection):
    """One SeedLink connection attempt (never reused after it ends)."""

    def __init__(
        self,
        address: str,
        connect_timeout_s: float,
        network_timeout_s: float,
        keepalive_s: float,
        on_bad_packet: BadPacketHook,
        plan: PlanHook | None = None,
        on_refused: RefusedHook | None = None,
        on_negotiated: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(timeout=None)
        self.set_sl_address(address)
        self.netto = network_timeout_s
        self.netdly = 1
        self.keepalive = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.on_bad_packet = on_bad_packet
        self.plan = plan or (lambda _key: b"DATA")
        self.on_refused = on_refused or (lambda _key, _why: None)
        self.on_negotiated = on_negotiated or (lambda: None)
        self.negotiated = False
        self.abort_reason: str | None = None
        self.end_reason = "read error or network timeout"
        self._used = False
        self._sock_lock = threading.Lock()

    def connect(self) -> None:
        """Open the socket and say HELLO.

        FIX for ObsPy 1.5.1: ``SeedLinkConnection.connect()`` checks the new socket with
        ``is_connected(self.timeout)``, whose loop compares elapsed time with the timeout; with
        ``timeout=None`` -- what ``EasySeedLinkClient`` and ``SeedLinkConnection()`` use by
        default -- that comparison raises ``TypeError`` and every connect fails with "cannot
        connect to SeedLink server". We set the connection timeout explicitly around
        ``connect()`` and put ``None`` back afterwards, because ``collect()`` reads the same
        attribute as a deadline for each ``collect()`` call and would otherwise drop a quiet
        but healthy link.

        ``collect()`` calls ``connect()`` again by itself after a lost link; a connection is
        used once here, so a second call ends it (the ingester reconnects with backoff).
        """
        if self._used:
            raise SeedLinkConnectionLost(f"link to {self.sladdr} lost ({self.abort_reason or 'read error'})")
        self._used = True
        self.timeout = self.connect_timeout_s
        try:
            super().connect()
        finally:
            self.timeout = None

    def disconnect(self) -> None:
        with self._sock_lock:
            super().disconnect()
        # Never let collect() reconnect on its own after a read error: end this collect() call.
        self.terminate_flag = True

    def receive_data(self, maxbytes: int, code: Any) -> bytes | None:
        """ObsPy's read, with EOF as an error and, while streaming, no ObsPy ERROR line.

        During negotiation errors propagate (ObsPy's ``send_data`` expects that). While
        streaming, an abort or a read error ends ``collect()`` through ``terminate_flag``
        (the ingester logs why: INFO for planned ends, WARNING for lost links).
        """
        streaming = self.state.state == SLState.SL_DATA
        try:
            if self.abort_reason is not None:
                raise ConnectionAbortedError(self.abort_reason)
            data = super().receive_data(maxbytes, code)
            if self.abort_reason is not None:
                raise ConnectionAbortedError(self.abort_reason)
            if maxbytes > 0 and data == b"":
                # A blocking recv returns b"" only at EOF: the server closed the connection.
                raise ConnectionResetError("connection closed by the server")
        except OSError as exc:
            if not streaming:
                raise
            if self.abort_reason is None:
                self.end_reason = str(exc) or type(exc).__name__
            self.terminate_flag = True
            return None
        return data

    def do_terminate(self) -> Any:
        """ObsPy's, without its WARNING line (every end of a link here is logged by the ingester)."""
        self.disconnect()
        self.state = SLState()
        self.info_request_string = None
        return SLPacket.SLTERMINATE

    def _command(self, text: bytes) -> str:
        return bytes(self.send_data(text + b"\r", self.sladdr, SeedLinkConnection.DFT_READBUF_SIZE)).decode(
            "ascii", "replace"
        )

    def negotiate_multi_station(self) -> None:
        """STATION, SELECT and the action command per station, then END; refusals are named."""
        accepted = 0
        for stream in self.streams:
            key = f"{stream.net}_{stream.station}"
            reply = self._command(f"STATION {stream.station} {stream.net}".encode("ascii"))
            if reply == "ERROR\r\n":
                self.on_refused(key, "station refused (STATION answered ERROR): not served by this server?")
                continue
            if reply != "OK\r\n":
                raise SeedLinkException(
                    f"invalid response to STATION {stream.station} {stream.net}: {reply!r}"
                )
            try:
                self.negotiate_station(stream)
            except SeedLinkException as exc:
                self.on_refused(key, str(exc.args[0] if exc.args else exc))
                continue
            accepted += 1
        if accepted < 1:
            # Not an ObsPy negotiation error (an ERROR line): the link ends, the ingester says why.
            self.abort_reason = "no station accepted"
            self.terminate_flag = True
            return
        self.send_data(b"END\r", self.sladdr, 0)
        self.negotiated = True
        self.on_negotiated()

    def negotiate_station(self, curstream: Any) -> None:
        """SELECT each selector (refused ones named), then the ingester's action command."""
        key = f"{curstream.net}_{curstream.station}"
        selectors = list(curstream.get_selectors())
        refused = []
        for sel in selectors:
            reply = self._command(b"SELECT " + sel.encode("ascii"))
            if reply == "ERROR\r\n":
                refused.append(sel)
            elif reply != "OK\r\n":
                raise SeedLinkException(f"invalid response to SELECT {sel}: {reply!r}")
        if selectors and len(refused) == len(selectors):
            raise SeedLinkException(f"no data stream selector(s) accepted (refused: {' '.join(refused)})")
        if refused:
            log.warning(
                "SeedLink server %s refused selector(s) %s of %s; streaming the others",
                self.sladdr,
                " ".join(refused),
                key,
            )
        action = self.plan(key)
        reply = self._command(action)
        if reply != "OK\r\n":
            raise SeedLinkException(f"{action.decode('ascii', 'replace')} not accepted ({reply.strip()!r})")

    def update_stream(self, slpacket: SLPacket) -> None:
        try:
            super().update_stream(slpacket)
        except SeedLinkException as exc:
            self.on_bad_packet(slpacket, exc)
            raise

    def abort(self, reason: str) -> None:
        """From another thread: end the current/next ``collect()`` promptly."""
        self.abort_reason = reason
        self.terminate_flag = True
        with self._sock_lock:
            sock = self.socket
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


#: Outcomes of a station's own retry (``eew_ingest_station_retries_total{outcome}``): a refused
#: station accepted on a side link, a stalled station moved to one, a probe that found nothing
#: newer, a retry refused again, a connection that failed, and a side link lost otherwise.
RETRY_OUTCOMES = ("accepted", "moved", "nothing_newer", "refused", "connect_failed", "lost")


@dataclass
class _Retry:
    """The own schedule of one refused or stalled station (``kind``)."""

    key: str
    kind: str  # "refused" or "stalled"
    backoff: Backoff
    due: float
    link: _Link | None = None  # the attempt under way
    attempts: int = 0


class _Link:
    """One SeedLink connection loop over some stations: the main link, or a side link of its own.

    ``kind``: ``main`` (every station it owns), ``refused`` (an attempt for a refused station: it
    owns the station once the server accepts it), ``probe`` (an attempt for a stalled station:
    it owns the station once the server sends it data newer than what was published) and ``side``
    (a side link that owns its station). Side links and attempts run in threads of their own.
    """

    def __init__(self, ing: SeedLinkIngester, kind: str, key: str | None = None) -> None:
        self.ing = ing
        self.kind = kind
        self.key = key
        self.label = (
            f"SeedLink link to {ing.server}" if key is None else f"side link for {key} to {ing.server}"
        )
        b = ing.backoff
        self.backoff = Backoff(b.min_s, b.max_s, b.factor)  # reconnects of this link
        self.stall = StallWatch(ing.stall.timeout_s)
        self.conn: _Connection | None = None
        self.connected = False
        self.in_session = False
        self.closing: str | None = None  # a planned end: the loop stops
        self.outcome = "lost"
        self.connections = 0
        self.probe_deadline: float | None = None
        self.thread: threading.Thread | None = None
        # Resume bookkeeping of one connection: stations whose first packet is checked against the
        # state (position and channel ends when planned), channels whose re-sent records are skipped.
        self.armed: dict[str, tuple[StreamPosition, dict[str, int]]] = {}
        self.skip: dict[str, int] = {}
        self.passed: set[str] = set()
        self.resume_desc: list[str] = []
        self.reset_pending = False
        self.refusing: dict[str, str] = {}
        self.asked: list[str] = []

    @property
    def side(self) -> bool:
        return self.kind != "main"

    def wanted(self) -> list[str]:
        """The stations this link asks for on its next connection."""
        ing = self.ing
        with ing._lock:
            if self.kind == "main":
                return [s.key for s in ing.specs if ing._owner.get(s.key) is self]
            if self.kind in ("refused", "probe"):
                return [self.key] if self.key is not None else []
            return [k for k in (self.key,) if k is not None and ing._owner.get(k) is self]

    def streaming(self) -> bool:
        conn = self.conn
        return self.connected and conn is not None and conn.negotiated

    def close(self, reason: str) -> None:
        """A planned end (logged at INFO): the loop does not reconnect."""
        self.closing = reason
        conn = self.conn
        if conn is not None and conn.abort_reason is None:
            conn.abort(reason)

    def floor(self, nslc: str) -> int | None:
        """Records of this channel ending before this were published already (re-sent: skipped).

        The main link has one only after a resume by time; a side link (it takes a station over
        from another link) checks every channel against what was published, until its first newer record.
        """
        if nslc in self.passed:
            return None
        f = self.skip.get(nslc)
        if self.side:
            t = self.ing.tracker.channel_end(nslc)
            if t is not None:
                f = t if f is None else max(f, t)
        return f

    # -- negotiation hooks (this link's thread, inside collect()) --------------------------------

    def plan(self, key: str) -> bytes:
        """The action command of one station: by time after a reset, else after its last packet."""
        ing = self.ing
        pos = ing.tracker.resume_position(key)
        ends = ing.tracker.station_channel_ends(key)
        with ing._lock:
            by_time = key in ing._by_time
            first_asked = ing._first_asked.get(key)
        if by_time and (ends or (pos is not None and pos.time_ns > 0)):
            start = min(ends.values()) if ends else pos.time_ns  # type: ignore[union-attr]
            self.skip.update(ends)
            self.resume_desc.append(f"{key} by time from {UTCDateTime(ns=start)}")
            return f"TIME {sl_time(start)}".encode("ascii")
        with ing._lock:
            ing._by_time.discard(key)
        if pos is None:
            if self.side and first_asked is not None:
                # Refused at first: what the server got since the ingester first asked for it is wanted
                # (from a little earlier: a record that started before may have reached the server after).
                start = first_asked - int(ing.retry.lookback_s * NS)
                self.resume_desc.append(
                    f"{key} by time from {UTCDateTime(ns=start)} (first asked, less lookback)"
                )
                return f"TIME {sl_time(start)}".encode("ascii")
            self.resume_desc.append(f"{key} with new data")
            return b"DATA"
        self.armed[key] = (pos, ends)
        nxt = (pos.seq + 1) & 0xFFFFFF
        if pos.time_ns > 0:
            self.resume_desc.append(f"{key} after seq {pos.seq:06X} ({UTCDateTime(ns=pos.time_ns)})")
            return f"DATA {nxt:06X} {sl_time(pos.time_ns)}".encode("ascii")
        self.resume_desc.append(f"{key} after seq {pos.seq:06X}")
        return f"DATA {nxt:06X}".encode("ascii")

    def on_refused(self, key: str, why: str) -> None:
        self.refusing[key] = why
        self.ing._station_refused(self, key, why)

    def on_negotiated(self) -> None:
        self.ing._after_negotiation(self)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Connect, stream, reconnect with backoff, until stopped, closed, or (attempts) resolved."""
        ing = self.ing
        try:
            while not ing.stop.is_set() and self.closing is None:
                if ing.tracker.failures:
                    if not self.side:
                        ing._rewind_after_failures()
                    else:  # resume from acknowledged data once the main loop has rewound the positions
                        ing.stop.wait(ing.watchdog_interval_s)
                    continue
                keys = self.wanted()
                if not keys:
                    if self.side:
                        break
                    ing.stop.wait(ing.watchdog_interval_s * 5)  # every station is on a side link
                    continue
                self.session(keys)
                if ing.stop.is_set() or self.closing is not None:
                    break
                if self.reset_pending:
                    self.reset_pending = False
                    continue  # resume by time at once: the server is up, only its numbering changed
                if self.kind in ("refused", "probe"):
                    break  # an attempt: its outcome goes back to the station's schedule
                if self.side and not self.wanted():
                    break
                if ing.tracker.failures:
                    continue
                delay = self.backoff.next_delay()
                log.info(
                    "reconnecting to %s in %.1f s%s", ing.server, delay, f" ({self.key})" if self.side else ""
                )
                ing.stop.wait(delay)
        finally:
            if self.side:
                ing._side_done(self)

    def session(self, keys: list[str]) -> None:
        """One connection: connect, negotiate, stream until it ends (error, stall, stop, reset, close)."""
        ing = self.ing
        conn = ing._new_connection(self, keys)
        self.refusing = {}
        self.armed.clear()
        self.passed.clear()
        self.resume_desc = []
        self.asked = list(keys)
        self.conn = conn
        self.in_session = True
        try:
            if self.closing is not None:  # closed (close() sets closing, then reads conn) before connecting
                return
            try:
                conn.connect()
            except (SeedLinkException, OSError) as exc:
                ing.metrics.connect_failures.inc()
                self.outcome = "connect_failed"
                if self.side:
                    log.debug("%s: cannot connect: %s", self.label, exc)
                else:
                    log.warning("cannot connect to SeedLink server %s: %s", ing.server, exc)
                return
            conn.state.state = SLState.SL_UP
            self.connections += 1
            if self.connections > 1:
                ing.metrics.reconnects.inc()
            self.connected = True
            if not self.side:
                ing.metrics.connected.set(1)
            with ing._lock:
                self.stall.connected(time.monotonic())
            while not ing.stop.is_set():
                pkt = conn.collect()
                if pkt is SLPacket.SLTERMINATE or pkt == SLPacket.SLTERMINATE:
                    self._log_end(conn, keys)
                    break
                if pkt is SLPacket.SLERROR or pkt == SLPacket.SLERROR:
                    log.error("SeedLink server %s reported an error (%s)", ing.server, self.label)
                    break
                if bytes(pkt.slhead[:6]).upper() == SLPacket.INFOSIGNATURE:
                    continue  # INFO responses (keep-alive replies are already swallowed by ObsPy)
                ing._on_packet(pkt, self)
                if ing.tracker.failures:
                    log.error(
                        "delivery to the broker failed: dropping the %s to resume from acknowledged data",
                        self.label,
                    )
                    break
        except (SeedLinkException, SeedLinkConnectionLost, OSError) as exc:
            if not self._refused_all(keys):
                if conn.abort_reason is not None:
                    log.info("%s closed: %s", self.label, conn.abort_reason)
                else:
                    log.warning("%s ended: %s", self.label, exc)
        finally:
            self.conn = None
            self.connected = False
            self.in_session = False
            if not self.side:
                ing.metrics.connected.set(0)
            try:
                conn.disconnect()
            except OSError:
                pass

    def _refused_all(self, keys: list[str]) -> bool:
        """The server refused every station of this connection (each named by ``_station_refused``)."""
        if not self.refusing or len(self.refusing) < len(keys):
            return False
        self.outcome = "refused"
        level = logging.DEBUG if self.side else logging.WARNING
        log.log(level, "%s: the server refused every station asked for; closed", self.label)
        return True

    def _log_end(self, conn: _Connection, keys: list[str]) -> None:
        if self._refused_all(keys):
            return
        if conn.abort_reason is not None:
            log.info("%s closed: %s", self.label, conn.abort_reason)
        else:
            log.warning("%s ended: %s", self.label, conn.end_reason)


class SeedLinkIngester:
    """Connects, streams, publishes, reconnects; ``run`` returns once ``stop`` is set.

    The main link carries every station it owns; a refused or stalled station is retried on its
    own schedule (``retry``) on side links of its own (see the module docstring).
    """

    def __init__(
        self,
        server: str,
        specs: list[StreamSpec],
        core: IngestCore,
        emitter: Emitter,
        tracker: SequenceTracker,
        store: StateStore,
        metrics: IngestMetrics,
        stop: StopFlag,
        *,
        connect_timeout_s: float = 10.0,
        network_timeout_s: float = 120.0,
        keepalive_s: float = 0.0,
        stall_timeout_s: float = 30.0,
        state_save_interval_s: float = 1.0,
        settle_timeout_s: float = 10.0,
        watchdog_interval_s: float = 0.1,
        backoff: Backoff | None = None,
        retry: StationRetryConfig | None = None,
        join_timeout_s: float = 5.0,
    ) -> None:
        self.server = server
        self.source = f"seedlink://{server}"
        self.specs = specs
        self.core = core
        self.emitter = emitter
        self.tracker = tracker
        self.store = store
        self.metrics = metrics
        self.stop = stop
        self.connect_timeout_s = connect_timeout_s
        self.network_timeout_s = network_timeout_s
        self.keepalive_s = keepalive_s
        self.state_save_interval_s = state_save_interval_s
        self.settle_timeout_s = settle_timeout_s
        self.watchdog_interval_s = watchdog_interval_s
        self.backoff = backoff or Backoff()
        self.retry = retry or StationRetryConfig()
        self.join_timeout_s = join_timeout_s
        self.stall = StallWatch(stall_timeout_s)
        self._lock = threading.Lock()  # small shared state: owners, schedules, reports
        self._publish_lock = threading.RLock()  # the packet path (core, tracker, emitter) of all links
        self._last_data_wall: float | None = None
        self._last_seen: dict[str, float] = {}
        self._watchdog_stop = threading.Event()
        self._running = False
        self.main = _Link(self, "main")
        self._owner: dict[str, _Link | None] = {s.key: self.main for s in specs}
        self._sides: set[_Link] = set()
        self._schedule: dict[str, _Retry] = {}
        self._first_asked: dict[str, int] = {}
        self._by_time: set[str] = set()
        # Reported to /readyz: refused stations (until accepted) and stalled stations.
        self.refused: dict[str, str] = {}
        self._refused_logged: dict[str, str] = {}
        self.stalled: dict[str, float] = {}

    # -- state ------------------------------------------------------------------------------

    def save_state(self) -> bool:
        """Write the acknowledged positions of every link's stations (skipped when unchanged); never raises."""
        try:
            saved = self.store.save(
                self.tracker.acknowledged_positions(),
                self.tracker.version,
                self.tracker.acknowledged_channel_ends(),
            )
        except StateFileError as exc:
            self.metrics.state_save_failures.inc()
            log.error("%s", exc)
            return False
        if saved:
            self.metrics.state_saves.inc()
        return saved

    @property
    def connections(self) -> int:
        """Connections of the main link so far."""
        return self.main.connections

    @property
    def connected(self) -> bool:
        return self.main.connected or any(s.connected for s in self._side_links())

    @property
    def streaming(self) -> bool:
        """A link is connected and its stations negotiated (END sent)."""
        return self.main.streaming() or any(s.streaming() for s in self._side_links())

    @property
    def alive(self) -> bool:
        return self._running

    def side_stations(self) -> dict[str, str]:
        """Stations streaming on a side link of their own, with the link's state."""
        with self._lock:
            return {
                k: ("streaming" if o.streaming() else "reconnecting")
                for k, o in self._owner.items()
                if o is not None and o.side
            }

    def seconds_since_data(self) -> float | None:
        with self._lock:
            last = self._last_data_wall
        return None if last is None else time.monotonic() - last

    def station_report(self) -> tuple[dict[str, str], dict[str, float]]:
        """(refused stations with the server's reason, stalled stations with their quiet seconds)."""
        now = time.monotonic()
        with self._lock:
            stalled = {k: now - self._last_seen.get(k, now) for k in self.stalled}
            return dict(self.refused), stalled

    def _side_links(self) -> list[_Link]:
        with self._lock:
            return list(self._sides)

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        self._running = True
        watchdog = threading.Thread(target=self._watchdog, name="seedlink-watchdog", daemon=True)
        watchdog.start()
        try:
            self.main.run()
        finally:
            deadline = time.monotonic() + self.join_timeout_s
            for link in self._side_links():
                conn = link.conn
                if conn is not None:
                    conn.abort("stopping")
                if link.thread is not None:
                    link.thread.join(max(0.0, deadline - time.monotonic()))
            self._watchdog_stop.set()
            watchdog.join(max(1.0, 10 * self.watchdog_interval_s))
            self._running = False

    def _rewind_after_failures(self) -> None:
        """Deliveries failed: wait for every link to stop and the producer to settle, then resume
        every station from acknowledged data."""
        while any(s.in_session for s in self._side_links()) and not self.stop.is_set():
            self.stop.wait(self.watchdog_interval_s)
        publisher = self.emitter.publisher
        while not publisher.flush(self.settle_timeout_s) and not self.stop.is_set():
            log.warning("waiting for %d deliveries to settle before resuming", publisher.in_flight)
        with self._publish_lock:
            failures = self.tracker.failures
            refetch = self.tracker.rewind()
            # Records after the acknowledged positions come again: continuity must accept them again.
            self.core.reset()
            for link in [self.main, *self._side_links()]:
                link.skip.clear()
        publisher.renew()
        log.warning(
            "%d deliveries failed: next connection resumes after the last acknowledged packets (%d to fetch again)",
            failures,
            refetch,
        )

    def _new_connection(self, link: _Link, keys: list[str]) -> _Connection:
        conn = _Connection(
            self.server,
            self.connect_timeout_s,
            self.network_timeout_s,
            self.keepalive_s,
            lambda pkt, exc: self._on_bad_packet(pkt, exc, link),
            plan=link.plan,
            on_refused=link.on_refused,
            on_negotiated=link.on_negotiated,
        )
        first = now_ns()
        specs = {s.key: s for s in self.specs}
        for key in keys:
            spec = specs[key]
            with self._lock:
                self._first_asked.setdefault(key, first)
            pos = self.tracker.resume_position(key)
            seq = -1 if pos is None else pos.seq
            conn.add_stream(spec.network, spec.station, " ".join(spec.selectors), seq, None)
        return conn

    # -- refusals, negotiation, schedules ---------------------------------------------------------

    def _station_refused(self, link: _Link, key: str, why: str) -> None:
        """A station refused at a negotiation: named, and retried on its own schedule."""
        with self._lock:
            self.refused[key] = why
            self.metrics.refused_stations.set(len(self.refused))
            if self.stalled.pop(key, None) is not None:  # reported as refused from now on
                self.metrics.stalled_stations.set(len(self.stalled))
            if self._owner.get(key) is link:
                self._owner[key] = None
                self._side_gauge()
            if link.kind != "refused":
                self._schedule_retry(key, "refused")
            first = self._refused_logged.get(key) != why
            self._refused_logged[key] = why
        if first:
            r = self.retry
            log.warning(
                "SeedLink server %s refused station %s: %s (check the station code and its selectors in "
                "--streams; the other stations are not disturbed: it is asked for again on a side link of "
                "its own, every %g s growing to %g s)",
                self.server,
                key,
                why,
                r.initial_s,
                r.max_s,
            )

    def _after_negotiation(self, link: _Link) -> None:
        accepted = [k for k in link.asked if k not in link.refusing]
        recovered = []
        with self._lock:
            for k in accepted:
                self.refused.pop(k, None)
                if k in self._refused_logged:
                    del self._refused_logged[k]
                    recovered.append(k)
            moved_from = []
            if link.kind == "refused" and accepted:
                for k in accepted:
                    moved_from.append((k, self._reassign(k, link)))
                link.outcome = "accepted"
                self.metrics.station_retries.labels("accepted").inc()
            self.metrics.refused_stations.set(len(self.refused))
            if link.kind == "probe":
                link.probe_deadline = time.monotonic() + self.retry.probe_s
        for k, old in moved_from:
            self._close_if_empty(old, k)
        for k in recovered:
            where = " on a side link of its own (the other stations' link untouched)" if link.side else ""
            log.info("SeedLink server %s now accepts station %s%s", self.server, k, where)
        log.log(
            logging.DEBUG if link.kind == "probe" else logging.INFO,
            "%s connected; resuming %s",
            link.label if link.side else f"connected to {self.server}",
            ", ".join(link.resume_desc) or "nothing",
        )

    def _schedule_retry(self, key: str, kind: str) -> None:
        """Put a station on its own schedule (call with ``_lock`` held); a refusal outranks a stall."""
        entry = self._schedule.get(key)
        if entry is not None:
            if kind == "refused":
                entry.kind = kind
            return
        r = self.retry
        backoff = Backoff(r.initial_s, max(r.max_s, r.initial_s), r.factor)
        self._schedule[key] = _Retry(key, kind, backoff, time.monotonic() + backoff.next_delay())

    def _reassign(self, key: str, link: _Link) -> _Link | None:
        """``link`` owns ``key`` from now on (call with ``_lock`` held); returns the previous owner."""
        old = self._owner.get(key)
        self._owner[key] = link
        link.kind = "side"
        link.probe_deadline = None
        self._schedule.pop(key, None)
        if old is not None and old is not link:
            old.stall.forget(key)
        self._side_gauge()
        return old

    def _close_if_empty(self, old: _Link | None, key: str) -> None:
        """A side link left without a station closes (planned: INFO)."""
        if old is not None and old.side and not old.wanted():
            old.close(f"its station {key} moved to another link")

    def _side_gauge(self) -> None:
        self.metrics.side_links.set(sum(1 for o in self._owner.values() if o is not None and o.side))

    def _launch_due(self, now: float) -> None:
        """Start the attempts that are due (watchdog thread)."""
        with self._lock:
            due = [e for e in self._schedule.values() if e.link is None and now >= e.due]
            for e in due:
                e.link = _Link(self, "refused" if e.kind == "refused" else "probe", e.key)
                e.attempts += 1
                self._sides.add(e.link)
        for e in due:
            link = e.link
            assert link is not None
            link.thread = threading.Thread(target=link.run, name=f"seedlink-{e.key}", daemon=True)
            link.thread.start()

    def _side_done(self, link: _Link) -> None:
        """A side link's loop ended: an attempt's outcome goes back to its station's schedule."""
        with self._lock:
            self._sides.discard(link)
            for k, o in list(self._owner.items()):
                if o is link:
                    self._owner[k] = None
                    if not self.stop.is_set():
                        self._schedule_retry(k, "refused")  # never left without a link
            self._side_gauge()
            entry = self._schedule.get(link.key or "")
            retry = entry is not None and entry.link is link
            if retry and entry is not None:
                entry.link = None
                if entry.kind == "stalled" and link.key not in self.stalled:
                    del self._schedule[entry.key]  # delivers again
                else:
                    entry.due = time.monotonic() + entry.backoff.next_delay()
        if retry:
            self.metrics.station_retries.labels(link.outcome).inc()
            if link.outcome == "nothing_newer":
                log.debug("%s: nothing newer on the server; next probe per backoff", link.label)

    # -- packets ----------------------------------------------------------------------------

    def _on_packet(self, pkt: SLPacket, link: _Link) -> None:
        now = now_ns()
        seq = pkt.get_sequence_number()
        raw = bytes(pkt.msrecord)
        try:
            with MSEED_LOCK:
                trace = pkt.get_trace()
            rec = record_from_trace(trace, sequence=seq, source=self.source)
        except Exception as exc:  # noqa: BLE001 -- ObsPy's decoder raises assorted types on garbage
            self._on_bad_packet(pkt, exc, link)
            return
        conn = link.conn
        if link.reset_pending or (conn is not None and conn.abort_reason is not None):
            return  # the link is ending (reset, stall, stop, failures): this record comes again
        key = f"{rec.network}_{rec.station}"
        with self._publish_lock:
            if self.tracker.failures:
                if conn is not None:
                    conn.abort("delivery failures")  # every link resumes from acknowledged data
                return
            with self._lock:
                owner = self._owner.get(key)
            if owner is not link and link.kind != "probe":
                return  # the station moved to another link (this one drops it at its next reconnect)
            self.metrics.packets_in.labels("seedlink").inc()
            self.metrics.bytes_in.labels("seedlink").inc(len(raw) + SLPacket.SLHEADSIZE)
            end = record_end_ns(rec)
            tol = self._tolerance_ns(rec)
            armed = link.armed.pop(key, None)
            if armed is not None:
                pos, ends = armed
                planned_floor = ends.get(rec.nslc)
                backwards = seq_not_after(seq, pos.seq)
                early = planned_floor is not None and rec.start_time_ns < planned_floor - tol
                if backwards or early:
                    self._on_reset(link, key, pos, seq, rec, planned_floor)
                    return
            floor = link.floor(rec.nslc)
            planned = link.skip.get(rec.nslc)
            if floor is not None and end <= floor + tol:
                self.metrics.resent_skipped.inc()
                if owner is link and planned is not None and end <= planned + tol:
                    # Sent again after a resume by time and already published: acknowledged (its new
                    # sequence number is the station's position from now on), not published.
                    self._data_seen(key, link)
                    ticket = self.tracker.received(key, seq, rec.start_time_ns, rec.nslc, end)
                    self.tracker.acknowledged(ticket, True)
                # Otherwise another link published it already (a side link taking a station over).
                return
            if owner is not link and not self._take_over(link, key, owner):
                return  # the probe is closing: its station stays where it is
            link.passed.add(rec.nslc)
            link.skip.pop(rec.nslc, None)
            self._data_seen(key, link)
            with self._lock:
                self._by_time.discard(key)
                was_refused = self.refused.pop(key, None) is not None
                if was_refused:
                    self.metrics.refused_stations.set(len(self.refused))
            if was_refused:
                log.info(
                    "station %s delivers data although its selectors were refused (all its streams come)", key
                )
            ticket = self.tracker.received(key, seq, rec.start_time_ns, rec.nslc, end)
            outcome = self.core.process(rec, now_ns=now, ingest_time_ns=now)
            link.backoff.reset()
            self.emitter.emit(
                outcome, rec, now, raw_mseed=raw, on_done=lambda ok: self.tracker.acknowledged(ticket, ok)
            )

    def _take_over(self, link: _Link, key: str, old: _Link | None) -> bool:
        """A probe got data newer than its station's link published: the station moves to it (publish
        lock held; False when the probe is already closing)."""
        with self._lock:
            if link.closing is not None:
                return False
            self._reassign(key, link)
            link.outcome = "moved"
        self.metrics.station_retries.labels("moved").inc()
        was = old.label if old is not None else "no link"
        log.info(
            "station %s: the server has data that the %s did not deliver (its subscription there is "
            "broken): moved to a side link of its own%s",
            key,
            was,
            "; the main link drops it at its next reconnect" if old is self.main else "",
        )
        self._close_if_empty(old, key)
        return True

    @staticmethod
    def _tolerance_ns(rec: Record) -> int:
        """Half a sample: times closer than this are the same sample."""
        try:
            sr = float(rec.sampling_rate)
        except (TypeError, ValueError):
            return 0
        return int(NS / (2 * sr)) if math.isfinite(sr) and sr > 0 else 0

    def _on_reset(
        self, link: _Link, key: str, armed: StreamPosition, seq: int, rec: Record, floor: int | None
    ) -> None:
        """The server's numbering does not match the state: resume every station by time."""
        link.reset_pending = True
        self.metrics.server_resets.inc()
        with self._lock:
            self._by_time = {s.key for s in self.specs}
        published = f", its channel published up to {UTCDateTime(ns=floor)}" if floor is not None else ""
        log.warning(
            "SeedLink server %s no longer matches the resume state: %s resumed after seq %06X but the "
            "server sent seq %06X (%s starting %s%s), so its sequence numbers were reset (e.g. a restart "
            "with a fresh ring); reconnecting and resuming all %d stations by time from the last sample "
            "published for each channel (records sent again are skipped)",
            self.server,
            key,
            armed.seq,
            seq,
            rec.nslc,
            UTCDateTime(ns=rec.start_time_ns),
            published,
            len(self.specs),
        )
        conn = link.conn
        if conn is not None:
            conn.abort("server reset: resuming by time")

    def _on_bad_packet(self, pkt: SLPacket, exc: Exception, link: _Link | None = None) -> None:
        """An undecodable record (ObsPy would only log it): count and dead-letter the raw bytes."""
        raw = bytes(pkt.msrecord)
        net, sta, loc, cha = _header_ids(raw)
        nslc = f"{net}.{sta}.{loc}.{cha}"
        seq = pkt.get_sequence_number()
        key = f"{net}_{sta}"
        with self._publish_lock:
            with self._lock:
                owner = self._owner.get(key, link)
            if link is not None and owner is not link:
                return  # not this link's station (a probe's, or one that moved on)
            self.metrics.packets_in.labels("seedlink").inc()
            self.metrics.bytes_in.labels("seedlink").inc(len(raw) + SLPacket.SLHEADSIZE)
            on_done = None
            if seq >= 0 and any(s.key == key for s in self.specs):
                if link is not None:
                    self._data_seen(key, link)
                ticket = self.tracker.received(key, seq)
                on_done = lambda ok: self.tracker.acknowledged(ticket, ok)  # noqa: E731
            self.emitter.corrupt(raw, nslc, f"seq {seq}: {exc}", self.source, on_done)

    def _data_seen(self, key: str, link: _Link) -> None:
        now = time.monotonic()
        with self._lock:
            link.stall.data(key, now)
            self._last_data_wall = now
            self._last_seen[key] = now
            quiet = self.stalled.pop(key, None)
            if quiet is not None:
                self.metrics.stalled_stations.set(len(self.stalled))
                entry = self._schedule.get(key)
                if entry is not None and entry.kind == "stalled" and entry.link is None:
                    del self._schedule[key]
        if quiet is not None:
            log.info("station %s delivers data again", key)

    # -- watchdog ---------------------------------------------------------------------------

    def _watchdog(self) -> None:
        last_save = time.monotonic()
        while not self._watchdog_stop.wait(self.watchdog_interval_s):
            now = time.monotonic()
            links = [self.main, *self._side_links()]
            for link in links:
                self._watch(link, now)
            if not self.stop.is_set() and not self.tracker.failures:
                self._launch_due(now)
            if now - last_save >= self.state_save_interval_s:
                self.save_state()
                last_save = now

    def _watch(self, link: _Link, now: float) -> None:
        """Stop, delivery failures, stalls and probe deadlines of one link."""
        conn = link.conn
        with self._lock:
            streaming = link.streaming()
            owned = {k for k, o in self._owner.items() if o is link}
            orphan = link.kind == "side" and streaming and not owned
            stalled = [k for k in link.stall.stalled(now) if k in owned] if streaming else []
            link_stalled = streaming and not link.side and link.stall.link_stalled(now)
            new = [k for k in stalled if k not in self.stalled]
            for k in new:
                self.stalled[k] = now
                self._schedule_retry(k, "stalled")
            if new:
                self.metrics.stalled_stations.set(len(self.stalled))
        if self.stop.is_set():
            if conn is not None:
                conn.abort("stopping")
        elif conn is not None and self.tracker.failures and conn.abort_reason is None:
            conn.abort("delivery failures")
        elif conn is not None and link_stalled and conn.abort_reason is None:
            self.metrics.stalls.inc(len(new))
            self.metrics.link_stalls.inc()
            with self._lock:
                for k in new:  # the reconnect is their retry
                    entry = self._schedule.get(k)
                    if entry is not None and entry.kind == "stalled" and entry.link is None:
                        del self._schedule[k]
            log.warning(
                "stall: no data from any station for %.0f s: reconnecting to %s",
                self.stall.timeout_s,
                self.server,
            )
            conn.abort(f"stall: no data from any station for {self.stall.timeout_s:.0f} s")
        elif new:
            self.metrics.stalls.inc(len(new))
            log.warning(
                "stall: no data for %.0f s from %s while the link delivers the others: reported "
                "(eew_ingest_stalled_stations, /readyz); the link stays up and their data are taken "
                "as soon as the server has them; a side link probes the server for them every %g s "
                "growing to %g s",
                self.stall.timeout_s,
                ", ".join(sorted(new)),
                self.retry.initial_s,
                self.retry.max_s,
            )
        if orphan and link.closing is None:
            link.close("no station of its own any more")
        with self._lock:  # atomic with a take-over (_reassign): a probe either moves its station or closes
            expired = (
                link.kind == "probe"
                and link.probe_deadline is not None
                and now > link.probe_deadline
                and link.closing is None
            )
            if expired:
                link.outcome = "nothing_newer"
                link.closing = f"probe: no data newer than what was published within {self.retry.probe_s:g} s"
        if expired and link.closing is not None:
            link.close(link.closing)
