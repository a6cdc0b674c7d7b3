"""Live SeedLink input: ObsPy's SeedLink client, resume by sequence number, reconnect, stall watchdog.

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
* undecodable records, which ObsPy only logs and drops, are counted and dead-lettered.

Threads: the main thread runs ``collect()`` and publishes (producer back-pressure reaches the
socket); a watchdog thread saves the state file periodically, detects stalled stations and
aborts the connection on stall or stop (shutting the socket down unblocks ``recv``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from obspy.clients.seedlink.client.seedlinkconnection import SeedLinkConnection
from obspy.clients.seedlink.client.slstate import SLState
from obspy.clients.seedlink.seedlinkexception import SeedLinkException
from obspy.clients.seedlink.slpacket import SLPacket

from services.common.lifecycle import StopFlag
from services.common.mseed import MSEED_LOCK
from services.common.timeutil import now_ns
from services.ingest.core import Backoff, IngestCore, Record, StallWatch, StreamSpec, record_from_trace
from services.ingest.emit import Emitter
from services.ingest.exceptions import SeedLinkConnectionLost, StateFileError
from services.ingest.metrics import IngestMetrics
from services.ingest.state import SequenceTracker, StateStore

log = logging.getLogger(__name__)

BadPacketHook = Callable[[SLPacket, Exception], None]


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
    ) -> None:
        super().__init__(timeout=None)
        self.set_sl_address(address)
        self.netto = network_timeout_s
        self.netdly = 1
        self.keepalive = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.on_bad_packet = on_bad_packet
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
        if self.abort_reason is not None:
            raise ConnectionAbortedError(self.abort_reason)
        data = super().receive_data(maxbytes, code)
        if self.abort_reason is not None:
            raise ConnectionAbortedError(self.abort_reason)
        if maxbytes > 0 and data == b"":
            # A blocking recv returns b"" only at EOF: the server closed the connection.
            self.end_reason = "connection closed by the server"
            raise ConnectionResetError(self.end_reason)
        return data

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
        self.backoff = backoff or Backoff()
        self.stall = StallWatch(stall_timeout_s)
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._connected = False
        self._last_data_wall: float | None = None
        self._watchdog_stop = threading.Event()
        self._running = False
        self.connections = 0

    # -- state ------------------------------------------------------------------------------

    def save_state(self) -> bool:
        """Write the acknowledged positions (skipped when unchanged); never raises."""
        try:
            saved = self.store.save(self.tracker.acknowledged_positions(), self.tracker.version)
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
    def alive(self) -> bool:
        return self._running

    def seconds_since_data(self) -> float | None:
        with self._lock:
            last = self._last_data_wall
        return None if last is None else time.monotonic() - last

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
                delay = self.backoff.next_delay()
                log.info("reconnecting to %s in %.1f s", self.server, delay)
                self.stop.wait(delay)
        finally:
            self._watchdog_stop.set()
            watchdog.join(5)
            self._running = False

    def _rewind_after_failures(self) -> None:
        """Deliveries failed: wait for the producer to settle, then resume from acknowledged data."""
        publisher = self.emitter.publisher
        while not publisher.flush(10.0) and not self.stop.is_set():
            log.warning("waiting for %d deliveries to settle before resuming", publisher.in_flight)
        failures = self.tracker.failures
        refetch = self.tracker.rewind()
        # Records after the acknowledged positions come again: continuity must accept them again.
        self.core.reset()
        publisher.renew()
        log.warning(
            "%d deliveries failed: next connection resumes after the last acknowledged packets (%d to fetch again)",
            failures,
            refetch,
        )

    def _new_connection(self) -> _Connection:
        conn = _Connection(
            self.server, self.connect_timeout_s, self.network_timeout_s, self.keepalive_s, self._on_bad_packet
        )
        for spec in self.specs:
            pos = self.tracker.resume_position(spec.key)
            seq = -1 if pos is None else pos.seq
            conn.add_stream(spec.network, spec.station, " ".join(spec.selectors), seq, None)
        return conn

    def _session(self) -> None:
        """One connection: connect, negotiate, stream until it ends (error, stall, stop)."""
        conn = self._new_connection()
        with self._lock:
            self._conn = conn
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
            resume = {s.key: self.tracker.resume_position(s.key) for s in self.specs}
            log.info(
                "connected to %s; resuming %s",
                self.server,
                ", ".join(
                    f"{k} after seq {p.seq:06X}" if p else f"{k} with new data" for k, p in resume.items()
                ),
            )
            while not self.stop.is_set():
                pkt = conn.collect()
                if pkt is SLPacket.SLTERMINATE or pkt == SLPacket.SLTERMINATE:
                    log.warning(
                        "SeedLink link to %s ended: %s", self.server, conn.abort_reason or conn.end_reason
                    )
                    break
                if pkt is SLPacket.SLERROR or pkt == SLPacket.SLERROR:
                    log.error("SeedLink server %s reported an error", self.server)
                    break
                if bytes(pkt.slhead[:6]).upper() == SLPacket.INFOSIGNATURE:
                    continue  # INFO responses (keep-alive replies are already swallowed by ObsPy)
                self._on_packet(pkt)
                if self.tracker.failures:
                    log.error(
                        "delivery to the broker failed: dropping the link to resume from acknowledged data"
                    )
                    break
        except (SeedLinkException, SeedLinkConnectionLost, OSError) as exc:
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

    # -- packets ----------------------------------------------------------------------------

    def _on_packet(self, pkt: SLPacket) -> None:
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
        self.metrics.packets_in.labels("seedlink").inc()
        self.metrics.bytes_in.labels("seedlink").inc(len(raw) + SLPacket.SLHEADSIZE)
        key = f"{rec.network}_{rec.station}"
        self._data_seen(key)
        ticket = self.tracker.received(key, seq, rec.start_time_ns)
        outcome = self.core.process(rec, now_ns=now, ingest_time_ns=now)
        self.backoff.reset()
        self.emitter.emit(
            outcome, rec, now, raw_mseed=raw, on_done=lambda ok: self.tracker.acknowledged(ticket, ok)
        )

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

    # -- watchdog ---------------------------------------------------------------------------

    def _watchdog(self) -> None:
        last_save = time.monotonic()
        while not self._watchdog_stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                conn = self._conn
                stalled = self.stall.stalled(now) if self._connected else []
            if self.stop.is_set():
                if conn is not None:
                    conn.abort("stopping")
            elif conn is not None and self.tracker.failures and conn.abort_reason is None:
                conn.abort("delivery failures")
            elif conn is not None and stalled and conn.abort_reason is None:
                self.metrics.stalls.inc(len(stalled))
                log.warning(
                    "stall: no data for %.0f s from %s: reconnecting",
                    self.stall.timeout_s,
                    ", ".join(sorted(stalled)),
                )
                conn.abort(f"stall of {', '.join(sorted(stalled))}")
            if now - last_save >= self.state_save_interval_s:
                self.save_state()
                last_save = now
