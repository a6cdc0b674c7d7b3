"""Live SeedLink input: ObsPy's SeedLink client, resume by sequence number (or time), reconnect, stall watchdog.

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
  chosen by the ingester (``DATA seq time``, ``TIME start`` or ``DATA``);
* planned ends of a link (stop, stall, reset) are not logged as ObsPy socket errors.

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
the same link as soon as the server has some. Only a link on which no station delivered for
``stall_timeout_s`` is reconnected.

Threads: the main thread runs ``collect()`` and publishes (producer back-pressure reaches the
socket); a watchdog thread saves the state file periodically, detects stalled stations and
aborts the connection on stall or stop (shutting the socket down unblocks ``recv``).
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable
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
            raise SeedLinkException("no stations accepted")
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


class SeedLinkIngester:
    """Connects, streams, publishes, reconnects; ``run`` returns once ``stop`` is set."""

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
        self.stall = StallWatch(stall_timeout_s)
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._connected = False
        self._last_data_wall: float | None = None
        self._watchdog_stop = threading.Event()
        self._running = False
        self.connections = 0
        # Resume bookkeeping (main thread): stations whose first packet on this link is checked
        # against the state, stations to resume by time, channels whose re-sent records are skipped.
        self._armed: dict[str, StreamPosition] = {}
        self._by_time: set[str] = set()
        self._skip: dict[str, int] = {}
        self._resume_desc: list[str] = []
        self._reset_pending = False
        # Reported to /readyz: refused stations (per connection) and stalled stations.
        self.refused: dict[str, str] = {}  # as of the last completed negotiation
        self._refusing: dict[str, str] = {}  # during the current negotiation
        self._refused_logged: dict[str, str] = {}
        self.stalled: dict[str, float] = {}

    # -- state ------------------------------------------------------------------------------

    def save_state(self) -> bool:
        """Write the acknowledged positions (skipped when unchanged); never raises."""
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
    def connected(self) -> bool:
        return self._connected

    @property
    def streaming(self) -> bool:
        """Connected and the stations negotiated (END sent)."""
        with self._lock:
            conn = self._conn
        return self._connected and conn is not None and conn.negotiated

    @property
    def alive(self) -> bool:
        return self._running

    def seconds_since_data(self) -> float | None:
        with self._lock:
            last = self._last_data_wall
        return None if last is None else time.monotonic() - last

    def station_report(self) -> tuple[dict[str, str], dict[str, float]]:
        """(refused stations with the server's reason, stalled stations with their quiet seconds)."""
        now = time.monotonic()
        with self._lock:
            stalled = {k: self.stall.quiet_s(k, now) for k in self.stalled}
            return dict(self.refused), stalled

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        self._running = True
        watchdog = threading.Thread(target=self._watchdog, name="seedlink-watchdog", daemon=True)
        watchdog.start()
        try:
            while not self.stop.is_set():
                self._session()
                if self.tracker.failures:
                    self._rewind_after_failures()
                if self.stop.is_set():
                    break
                if self._reset_pending:
                    self._reset_pending = False
                    continue  # resume by time at once: the server is up, only its numbering changed
                delay = self.backoff.next_delay()
                log.info("reconnecting to %s in %.1f s", self.server, delay)
                self.stop.wait(delay)
        finally:
            self._watchdog_stop.set()
            watchdog.join(max(1.0, 10 * self.watchdog_interval_s))
            self._running = False

    def _rewind_after_failures(self) -> None:
        """Deliveries failed: wait for the producer to settle, then resume from acknowledged data."""
        publisher = self.emitter.publisher
        while not publisher.flush(self.settle_timeout_s) and not self.stop.is_set():
            log.warning("waiting for %d deliveries to settle before resuming", publisher.in_flight)
        failures = self.tracker.failures
        refetch = self.tracker.rewind()
        # Records after the acknowledged positions come again: continuity must accept them again.
        self.core.reset()
        self._skip.clear()
        publisher.renew()
        log.warning(
            "%d deliveries failed: next connection resumes after the last acknowledged packets (%d to fetch again)",
            failures,
            refetch,
        )

    def _new_connection(self) -> _Connection:
        conn = _Connection(
            self.server,
            self.connect_timeout_s,
            self.network_timeout_s,
            self.keepalive_s,
            self._on_bad_packet,
            plan=self._plan,
            on_refused=self._on_refused,
            on_negotiated=self._after_negotiation,
        )
        for spec in self.specs:
            pos = self.tracker.resume_position(spec.key)
            seq = -1 if pos is None else pos.seq
            conn.add_stream(spec.network, spec.station, " ".join(spec.selectors), seq, None)
        return conn

    # -- negotiation hooks (main thread, inside collect()) ------------------------------------

    def _plan(self, key: str) -> bytes:
        """The action command of one station: by time after a reset, else after its last packet."""
        pos = self.tracker.resume_position(key)
        ends = self.tracker.station_channel_ends(key)
        if key in self._by_time and (ends or (pos is not None and pos.time_ns > 0)):
            start = min(ends.values()) if ends else pos.time_ns  # type: ignore[union-attr]
            self._skip.update(ends)
            self._resume_desc.append(f"{key} by time from {UTCDateTime(ns=start)}")
            return f"TIME {sl_time(start)}".encode("ascii")
        self._by_time.discard(key)
        if pos is None:
            self._resume_desc.append(f"{key} with new data")
            return b"DATA"
        self._armed[key] = pos
        nxt = (pos.seq + 1) & 0xFFFFFF
        if pos.time_ns > 0:
            self._resume_desc.append(f"{key} after seq {pos.seq:06X} ({UTCDateTime(ns=pos.time_ns)})")
            return f"DATA {nxt:06X} {sl_time(pos.time_ns)}".encode("ascii")
        self._resume_desc.append(f"{key} after seq {pos.seq:06X}")
        return f"DATA {nxt:06X}".encode("ascii")

    def _on_refused(self, key: str, why: str) -> None:
        self._refusing[key] = why
        if self._refused_logged.get(key) != why:
            self._refused_logged[key] = why
            log.warning(
                "SeedLink server %s refused station %s: %s (check the station code and its selectors in "
                "--streams; the station is asked for again at every reconnect)",
                self.server,
                key,
                why,
            )

    # -- one connection -------------------------------------------------------------------------

    def _session(self) -> None:
        """One connection: connect, negotiate, stream until it ends (error, stall, stop, reset)."""
        conn = self._new_connection()
        with self._lock:
            self._conn = conn
        self._refusing = {}
        self._armed.clear()
        self._resume_desc = []
        try:
            try:
                conn.connect()
            except (SeedLinkException, OSError) as exc:
                self.metrics.connect_failures.inc()
                log.warning("cannot connect to SeedLink server %s: %s", self.server, exc)
                return
            conn.state.state = SLState.SL_UP
            self.connections += 1
            if self.connections > 1:
                self.metrics.reconnects.inc()
            self._connected = True
            self.metrics.connected.set(1)
            with self._lock:
                self.stall.connected(time.monotonic())
            while not self.stop.is_set():
                pkt = conn.collect()
                if pkt is SLPacket.SLTERMINATE or pkt == SLPacket.SLTERMINATE:
                    self._log_end(conn)
                    break
                if pkt is SLPacket.SLERROR or pkt == SLPacket.SLERROR:
                    log.error("SeedLink server %s reported an error", self.server)
                    break
                if bytes(pkt.slhead[:6]).upper() == SLPacket.INFOSIGNATURE:
                    continue  # INFO responses (keep-alive replies are already swallowed by ObsPy)
                self._on_packet(pkt, conn)
                if self.tracker.failures:
                    log.error(
                        "delivery to the broker failed: dropping the link to resume from acknowledged data"
                    )
                    break
        except (SeedLinkException, SeedLinkConnectionLost, OSError) as exc:
            if conn.abort_reason is not None:
                log.info("SeedLink link to %s closed: %s", self.server, conn.abort_reason)
            else:
                log.warning("SeedLink link to %s ended: %s", self.server, exc)
        finally:
            with self._lock:
                self._conn = None
            self._connected = False
            self.metrics.connected.set(0)
            try:
                conn.disconnect()
            except OSError:
                pass

    def _after_negotiation(self) -> None:
        refused = dict(self._refusing)
        with self._lock:
            self.refused = refused
        for key in list(self._refused_logged):
            if key not in refused:
                del self._refused_logged[key]
                log.info("SeedLink server %s now accepts station %s", self.server, key)
        self.metrics.refused_stations.set(len(refused))
        log.info("connected to %s; resuming %s", self.server, ", ".join(self._resume_desc) or "nothing")

    def _log_end(self, conn: _Connection) -> None:
        if conn.abort_reason is not None:
            log.info("SeedLink link to %s closed: %s", self.server, conn.abort_reason)
        else:
            log.warning("SeedLink link to %s ended: %s", self.server, conn.end_reason)

    # -- packets ----------------------------------------------------------------------------

    def _on_packet(self, pkt: SLPacket, conn: _Connection | None = None) -> None:
        now = now_ns()
        seq = pkt.get_sequence_number()
        raw = bytes(pkt.msrecord)
        try:
            with MSEED_LOCK:
                trace = pkt.get_trace()
            rec = record_from_trace(trace, sequence=seq, source=self.source)
        except Exception as exc:  # noqa: BLE001 -- ObsPy's decoder raises assorted types on garbage
            self._on_bad_packet(pkt, exc)
            return
        if self._reset_pending:
            return  # the link is being re-established by time: this record comes again
        self.metrics.packets_in.labels("seedlink").inc()
        self.metrics.bytes_in.labels("seedlink").inc(len(raw) + SLPacket.SLHEADSIZE)
        key = f"{rec.network}_{rec.station}"
        end = record_end_ns(rec)
        tol = self._tolerance_ns(rec)
        armed = self._armed.pop(key, None)
        if armed is not None and conn is not None:
            floor = self.tracker.channel_end(rec.nslc)
            backwards = seq_not_after(seq, armed.seq)
            early = floor is not None and rec.start_time_ns < floor - tol
            if backwards or early:
                self._on_reset(conn, key, armed, seq, rec, floor)
                return
        self._data_seen(key)
        self._by_time.discard(key)
        if key in self.refused:
            with self._lock:
                self.refused.pop(key, None)
                self.metrics.refused_stations.set(len(self.refused))
            log.info("station %s delivers data although its selectors were refused (all its streams come)", key)
        skip = self._skip.get(rec.nslc)
        if skip is not None:
            if end <= skip + tol:
                # Sent again after a resume by time and already published: acknowledge, do not publish.
                ticket = self.tracker.received(key, seq, rec.start_time_ns, rec.nslc, end)
                self.tracker.acknowledged(ticket, True)
                self.metrics.resent_skipped.inc()
                return
            del self._skip[rec.nslc]
        ticket = self.tracker.received(key, seq, rec.start_time_ns, rec.nslc, end)
        outcome = self.core.process(rec, now_ns=now, ingest_time_ns=now)
        self.backoff.reset()
        self.emitter.emit(
            outcome, rec, now, raw_mseed=raw, on_done=lambda ok: self.tracker.acknowledged(ticket, ok)
        )

    @staticmethod
    def _tolerance_ns(rec: Record) -> int:
        """Half a sample: times closer than this are the same sample."""
        try:
            sr = float(rec.sampling_rate)
        except (TypeError, ValueError):
            return 0
        return int(NS / (2 * sr)) if math.isfinite(sr) and sr > 0 else 0

    def _on_reset(
        self, conn: _Connection, key: str, armed: StreamPosition, seq: int, rec: Record, floor: int | None
    ) -> None:
        """The server's numbering does not match the state: resume every station by time."""
        self._reset_pending = True
        self.metrics.server_resets.inc()
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
        conn.abort("server reset: resuming by time")

    def _on_bad_packet(self, pkt: SLPacket, exc: Exception) -> None:
        """An undecodable record (ObsPy would only log it): count and dead-letter the raw bytes."""
        raw = bytes(pkt.msrecord)
        net, sta, loc, cha = _header_ids(raw)
        nslc = f"{net}.{sta}.{loc}.{cha}"
        self.metrics.packets_in.labels("seedlink").inc()
        self.metrics.bytes_in.labels("seedlink").inc(len(raw) + SLPacket.SLHEADSIZE)
        seq = pkt.get_sequence_number()
        key = f"{net}_{sta}"
        on_done = None
        if seq >= 0 and any(s.key == key for s in self.specs):
            self._data_seen(key)
            ticket = self.tracker.received(key, seq)
            on_done = lambda ok: self.tracker.acknowledged(ticket, ok)  # noqa: E731
        self.emitter.corrupt(raw, nslc, f"seq {seq}: {exc}", self.source, on_done)

    def _data_seen(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.stall.data(key, now)
            self._last_data_wall = now
            quiet = self.stalled.pop(key, None)
            if quiet is not None:
                self.metrics.stalled_stations.set(len(self.stalled))
        if quiet is not None:
            log.info("station %s delivers data again", key)

    # -- watchdog ---------------------------------------------------------------------------

    def _watchdog(self) -> None:
        last_save = time.monotonic()
        while not self._watchdog_stop.wait(self.watchdog_interval_s):
            now = time.monotonic()
            with self._lock:
                conn = self._conn
                streaming = self._connected and conn is not None and conn.negotiated
                stalled = self.stall.stalled(now) if streaming else []
                link_stalled = streaming and self.stall.link_stalled(now)
                new = [k for k in stalled if k not in self.stalled]
                for k in new:
                    self.stalled[k] = now
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
                    "as soon as the server has them",
                    self.stall.timeout_s,
                    ", ".join(sorted(new)),
                )
            if now - last_save >= self.state_save_interval_s:
                self.save_state()
                last_save = now
