"""A small, protocol-faithful SeedLink v3 server for tests (no SeedLink server package exists here).

What it speaks (SeedLink 3.1, as ObsPy's ``SeedLinkConnection``/``EasySeedLinkClient`` and
slinktool use it): commands end with ``\\r`` (``\\r\\n`` and ``\\n`` tolerated), case-insensitive.

* ``HELLO``: two lines, ``SeedLink v3.1 (<software>) :: SLPROTO:3.1 CAP ...`` and the organisation.
* ``CAT``: one ``NET STA description`` line per station, then ``END``.
* ``INFO ID|CAPABILITIES|STATIONS|STREAMS|CONNECTIONS``: XML in ASCII miniSEED log records,
  one 512-byte record per ``SLINFO`` packet, ``SLINFO *`` while more follow and ``SLINFO  ``
  on the last (exactly how ObsPy reassembles it). Unknown levels get an ``<error>`` document.
  Also answered while streaming (ObsPy's keep-alive sends ``INFO ID``).
* Multi-station negotiation: ``STATION sta [net]`` (``OK``/``ERROR``), ``SELECT [LL]CCC[.T]``
  (``?`` wildcards, ``!`` negation, ``--`` for an empty location; no argument clears),
  ``DATA [seq [time]]``, ``FETCH [seq [time]]`` (dial-up: ``END`` once caught up),
  ``TIME start [end]``, then ``END`` starts the transfer. ``BYE`` closes.
* Data packets: ``SL`` + 6 upper-case hex digits (24-bit sequence number) + the 512-byte record.

Sequence numbers are per station, as in SeisComP's seedlink. ``DATA seq`` resumes *at* ``seq``
(clients send last received + 1; ObsPy writes it as ``0x..``, libslink as ``%06X``: both parse).
``DATA seq time`` resumes there only when the record before ``seq`` starts in that second (what
ringserver checks); otherwise, and when ``seq`` is no longer in the ring, the transfer starts at
the first record starting at or after ``time`` if given, else at the oldest record still held
(``unknown_seq="oldest"``, the default) or with new records only (``"next"``, ringserver);
``honor_resume_time=False`` ignores the time of ``DATA`` (a server that knows only numbers).
``DATA`` without ``seq`` sends only new records.

Faults of a real server, for the fault tests: ``SeedLinkFeed.reset()`` empties the rings and
numbers new records from 1 again (ringserver restarted after ``kill -9`` with no ring saved);
``refuse_selectors`` names stations whose every ``SELECT`` is answered ``ERROR`` (the client
then reports "no data stream selector(s) accepted" for them; the set may change while serving:
a station refused at first is accepted by later negotiations once removed); with
``unknown_station="refuse_selectors"`` a station the feed has never received data for is
answered like that too, as ringserver does (``STATION`` ``OK``, every ``SELECT`` ``ERROR``), and
is accepted once data for it arrive (the default ``"error"`` answers its ``STATION`` with
``ERROR``); a station whose feed stops writing stays subscribed and silent; and
``break_subscription(station)`` makes the connections open now stop sending that station's
records while they stay up and new connections get them (a subscription that silently broke).

The feed is shared by server instances: a test appends records over time ("live" data), stops
the server and starts it again on the same port, and clients resume. ``freeze()`` makes open
connections go silent while staying open (a stalled server).
"""

from __future__ import annotations

import io
import logging
import re
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from obspy import Stream, Trace, UTCDateTime, read

log = logging.getLogger(__name__)

RECLEN = 512
SEQ_MASK = 0xFFFFFF
SOFTWARE = "SeedLink v3.1 (2024.100 eew-test-server)"
ORGANIZATION = "EEW project test server"
CAPABILITIES = (
    "dialup",
    "multistation",
    "window-extraction",
    "info:id",
    "info:capabilities",
    "info:stations",
    "info:streams",
    "info:connections",
)


@dataclass(frozen=True, slots=True)
class FeedRecord:
    counter: int
    location: str
    channel: str
    type: str
    start_ns: int | None
    end_ns: int | None
    data: bytes

    @property
    def seq(self) -> int:
        return self.counter & SEQ_MASK


@dataclass
class _Ring:
    network: str
    station: str
    description: str
    capacity: int
    records: deque[FeedRecord] = field(default_factory=deque)
    next_counter: int = 0


def _sl_time(ns: int | None) -> str:
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y/%m/%d %H:%M:%S.%f")[:-2]


def _parse_sl_time(text: str) -> int:
    """SeedLink ``YYYY,MM,DD,hh,mm,ss`` to ns."""
    parts = [int(p) for p in text.split(",")]
    while len(parts) < 6:
        parts.append(0)
    return UTCDateTime(*parts[:6]).ns


class SeedLinkFeed:
    """Per-station rings of 512-byte miniSEED records; thread-safe; appendable while serving."""

    def __init__(self, capacity: int = 100_000, start_counter: int = 0) -> None:
        self.capacity = capacity
        self.start_counter = start_counter
        self._rings: dict[tuple[str, str], _Ring] = {}
        self._cond = threading.Condition()

    def add_station(self, network: str, station: str, description: str = "") -> None:
        with self._cond:
            key = (network, station)
            if key not in self._rings:
                self._rings[key] = _Ring(
                    network,
                    station,
                    description or f"{network} {station}",
                    self.capacity,
                    next_counter=self.start_counter,
                )

    def stations(self) -> list[tuple[str, str, str]]:
        with self._cond:
            return [(r.network, r.station, r.description) for r in self._rings.values()]

    def has_station(self, network: str, station: str) -> bool:
        with self._cond:
            return (network, station) in self._rings

    def append_raw(
        self,
        network: str,
        station: str,
        record: bytes,
        location: str | None = None,
        channel: str | None = None,
    ) -> int:
        """Append one 512-byte record as-is (also garbage, for poison tests); returns its seq."""
        if len(record) != RECLEN:
            raise ValueError(f"SeedLink carries {RECLEN}-byte records, got {len(record)}")
        start_ns = end_ns = None
        try:
            tr = read(io.BytesIO(record), format="MSEED", headonly=True)[0]
            start_ns, end_ns = tr.stats.starttime.ns, (tr.stats.endtime + tr.stats.delta).ns
            location = tr.stats.location if location is None else location
            channel = tr.stats.channel if channel is None else channel
        except Exception:  # noqa: BLE001 -- garbage records are allowed on purpose
            pass
        if location is None:
            location = record[13:15].decode("ascii", "replace").strip()
        if channel is None:
            channel = record[15:18].decode("ascii", "replace").strip()
        with self._cond:
            self.add_station(network, station)
            ring = self._rings[(network, station)]
            rec = FeedRecord(ring.next_counter, location, channel, "D", start_ns, end_ns, bytes(record))
            ring.records.append(rec)
            ring.next_counter += 1
            while len(ring.records) > ring.capacity:
                ring.records.popleft()
            self._cond.notify_all()
            return rec.seq

    def append_trace(self, trace: Trace, encoding: str = "STEIM2") -> list[int]:
        """Write a trace as 512-byte records and append them; returns their sequence numbers."""
        buf = io.BytesIO()
        Stream([trace]).write(buf, format="MSEED", reclen=RECLEN, encoding=encoding)
        raw = buf.getvalue()
        st = trace.stats
        return [
            self.append_raw(st.network, st.station, raw[i : i + RECLEN], st.location, st.channel)
            for i in range(0, len(raw), RECLEN)
        ]

    def reset(self, start_counter: int = 1) -> None:
        """Forget every record and number new ones from ``start_counter`` (a server restart with a fresh ring)."""
        with self._cond:
            for ring in self._rings.values():
                ring.records.clear()
                ring.next_counter = start_counter
            self._cond.notify_all()

    def snapshot(self, network: str, station: str) -> list[FeedRecord]:
        with self._cond:
            ring = self._rings.get((network, station))
            return list(ring.records) if ring else []

    def next_counter(self, network: str, station: str) -> int:
        with self._cond:
            return self._rings[(network, station)].next_counter

    def records_from(self, network: str, station: str, counter: int) -> list[FeedRecord]:
        with self._cond:
            ring = self._rings.get((network, station))
            if ring is None or not ring.records:
                return []
            first = ring.records[0].counter
            return list(ring.records)[max(0, counter - first) :]

    def resolve_start(
        self,
        network: str,
        station: str,
        seq: int | None,
        time_ns: int | None,
        unknown_seq: str = "oldest",
        seq_time_ns: int | None = None,
    ) -> int:
        """Counter to start a transfer at, for ``DATA [seq [time]]`` (see the module docstring).

        ``seq_time_ns`` is the time given with ``seq`` (checked against the record before it).
        """
        with self._cond:
            ring = self._rings[(network, station)]
            if seq is None and time_ns is None:
                return ring.next_counter
            if seq is not None:
                seq &= SEQ_MASK
                prev = (seq - 1) & SEQ_MASK
                for rec in reversed(ring.records):
                    if seq_time_ns is not None:
                        if rec.seq == prev and rec.start_ns is not None:
                            if rec.start_ns // 1_000_000_000 == seq_time_ns // 1_000_000_000:
                                return rec.counter + 1
                            break
                    elif rec.seq == seq:
                        return rec.counter
                if seq_time_ns is None and seq == ring.next_counter & SEQ_MASK:
                    return ring.next_counter
            if time_ns is not None:
                for rec in ring.records:
                    if rec.start_ns is not None and rec.start_ns >= time_ns:
                        return rec.counter
                return ring.next_counter
            if unknown_seq == "next":
                return ring.next_counter
            return ring.records[0].counter if ring.records else ring.next_counter

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)


_SEL_RE = re.compile(r"^(!?)(?:([A-Z0-9?]{2}|--))?([A-Z0-9?]{3})(?:\.([A-Z?]))?$")


@dataclass(frozen=True)
class Selector:
    negate: bool
    location: str | None
    channel: str
    type: str | None

    @staticmethod
    def parse(text: str) -> Selector | None:
        m = _SEL_RE.match(text.upper())
        if not m:
            return None
        neg, loc, cha, typ = m.groups()
        return Selector(bool(neg), "" if loc == "--" else loc, cha, typ)

    def matches(self, rec: FeedRecord) -> bool:
        def wild(pat: str, val: str) -> bool:
            return len(pat) == len(val) and all(p == "?" or p == v for p, v in zip(pat, val, strict=True))

        if self.location is not None:
            if self.location == "":
                if rec.location.strip():
                    return False
            elif not wild(self.location, rec.location.ljust(2)):
                return False
        if not wild(self.channel, rec.channel.ljust(3)):
            return False
        return self.type is None or wild(self.type, rec.type)


@dataclass
class _Subscription:
    network: str
    station: str
    selectors: list[Selector] = field(default_factory=list)
    pointer: int | None = None
    end_ns: int | None = None
    refused: bool = False  # every SELECT of this station was refused
    unknown: bool = False  # a station the feed does not hold (unknown_station="refuse_selectors")

    def wants(self, rec: FeedRecord) -> bool:
        pos = [s for s in self.selectors if not s.negate]
        neg = [s for s in self.selectors if s.negate]
        if pos and not any(s.matches(rec) for s in pos):
            return False
        if any(s.matches(rec) for s in neg):
            return False
        if self.end_ns is not None and rec.start_ns is not None and rec.start_ns >= self.end_ns:
            return False
        return True


def info_packets(xml: str) -> list[bytes]:
    """An INFO response: the XML in ASCII miniSEED log records, each behind an SLINFO header."""
    tr = Trace(
        np.frombuffer(xml.encode(), dtype="|S1"),
        header={"network": "SL", "station": "INFO", "channel": "LOG"},
    )
    buf = io.BytesIO()
    tr.write(buf, format="MSEED", encoding="ASCII", reclen=RECLEN)
    raw = buf.getvalue()
    recs = [raw[i : i + RECLEN] for i in range(0, len(raw), RECLEN)]
    return [(b"SLINFO *" if i < len(recs) - 1 else b"SLINFO  ") + r for i, r in enumerate(recs)]


class SeedLinkServer:
    """Threads on 127.0.0.1; ``start``/``stop`` can be repeated on the same port."""

    def __init__(
        self,
        feed: SeedLinkFeed,
        host: str = "127.0.0.1",
        port: int = 0,
        software: str = SOFTWARE,
        *,
        unknown_seq: str = "oldest",
        honor_resume_time: bool = True,
        refuse_selectors: frozenset[str] = frozenset(),
        unknown_station: str = "error",
    ) -> None:
        if unknown_station not in ("error", "refuse_selectors"):
            raise ValueError(
                f"unknown_station must be 'error' or 'refuse_selectors', not {unknown_station!r}"
            )
        self.feed = feed
        self.unknown_station = unknown_station
        self._broken: set[tuple[int, str]] = set()  # (connection id, station) whose records are held back
        self.unknown_seq = unknown_seq
        self.honor_resume_time = honor_resume_time
        self.refuse_selectors = set(refuse_selectors)
        self._streaming: set[int] = set()
        self.host = host
        self.port = port
        self.software = software
        self.started = datetime.now(UTC)
        self.commands: list[tuple[int, str]] = []
        self.connections_accepted = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._frozen: set[int] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> SeedLinkServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(16)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._running.set()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"sl-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every client connection (clients see the link drop)."""
        self._running.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients = list(self._clients.values())
            threads = list(self._threads)
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        for t in threads:
            t.join(5)
        with self._lock:
            self._threads.clear()
            self._frozen.clear()

    def freeze(self) -> None:
        """Open connections stop sending (socket stays open); new connections are not frozen."""
        with self._lock:
            self._frozen.update(self._clients)

    def break_subscription(self, station: str) -> int:
        """The connections open now stop sending ``station``'s records (they stay up; new ones get
        them); returns how many connections were open."""
        with self._lock:
            self._broken.update((cid, station.upper()) for cid in self._clients)
            return len(self._clients)

    def is_broken(self, cid: int, station: str) -> bool:
        with self._lock:
            return (cid, station) in self._broken

    def negotiations(self, station: str) -> list[int]:
        """Connection ids that sent ``STATION station`` (one per negotiation of that station)."""
        return [
            cid
            for cid, line in list(self.commands)
            if line.upper().split()[:2] == ["STATION", station.upper()]
        ]

    def active_connections(self) -> int:
        with self._lock:
            return len(self._clients)

    def streaming_connections(self) -> int:
        """Connections past ``END``: from now on every new record reaches them."""
        with self._lock:
            return len(self._streaming)

    def __enter__(self) -> SeedLinkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connections -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while self._running.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
                cid = self.connections_accepted
                self._clients[cid] = conn
                t = threading.Thread(target=self._serve, args=(cid, conn), name=f"sl-conn-{cid}", daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, cid: int, conn: socket.socket) -> None:
        try:
            _Connection(self, cid, conn).run()
        except OSError:
            pass
        finally:
            with self._lock:
                self._clients.pop(cid, None)
                self._frozen.discard(cid)
                self._streaming.discard(cid)
            try:
                conn.close()
            except OSError:
                pass

    def is_frozen(self, cid: int) -> bool:
        with self._lock:
            return cid in self._frozen

    # -- INFO documents ----------------------------------------------------------------------

    def info_xml(self, level: str) -> str:
        head = (
            f'<?xml version="1.0"?><seedlink software="{self.software}" organization="{ORGANIZATION}" '
            f'started="{self.started.strftime("%Y/%m/%d %H:%M:%S.0000")}">'
        )
        level = level.upper()
        body = ""
        if level == "ID":
            pass
        elif level == "CAPABILITIES":
            body = "".join(f'<capability name="{c}"/>' for c in CAPABILITIES)
        elif level in ("STATIONS", "STREAMS"):
            for net, sta, desc in self.feed.stations():
                recs = self.feed.snapshot(net, sta)
                begin = f"{recs[0].seq:06X}" if recs else "000000"
                end = f"{(recs[-1].seq + 1) & SEQ_MASK:06X}" if recs else "000000"
                attrs = (
                    f'name="{sta}" network="{net}" description="{desc}" begin_seq="{begin}" '
                    f'end_seq="{end}" stream_check="enabled"'
                )
                if level == "STATIONS":
                    body += f"<station {attrs}/>"
                    continue
                streams: dict[tuple[str, str], list[FeedRecord]] = {}
                for r in recs:
                    streams.setdefault((r.location, r.channel), []).append(r)
                inner = ""
                for (loc, cha), rs in sorted(streams.items()):
                    starts = [r.start_ns for r in rs if r.start_ns is not None]
                    ends = [r.end_ns for r in rs if r.end_ns is not None]
                    inner += (
                        f'<stream location="{loc}" seedname="{cha}" type="D" '
                        f'begin_time="{_sl_time(min(starts) if starts else None)}" '
                        f'end_time="{_sl_time(max(ends) if ends else None)}" begin_recno="0" end_recno="0" '
                        f'gap_check="disabled" gap_treshold="0"/>'
                    )
                body += f"<station {attrs}>{inner}</station>"
        elif level == "CONNECTIONS":
            body = f'<station name="" network=""><connection host="127.0.0.1" port="{self.port}"/></station>'
        else:
            body = f'<error type="ARGUMENTS" message="INFO level {level} not supported"/>'
        return f"{head}{body}</seedlink>"


class _Connection:
    """One client: command phase, then the transfer phase after ``END`` (or uni-station ``DATA``)."""

    def __init__(self, server: SeedLinkServer, cid: int, sock: socket.socket) -> None:
        self.server = server
        self.cid = cid
        self.sock = sock
        self.buf = b""
        self.subs: list[_Subscription] = []
        self.current: _Subscription | None = None
        self.dialup = False
        self.streaming = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_commands(self, timeout: float) -> list[str] | None:
        """Commands received within ``timeout`` (``None`` when the client closed)."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if ready:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buf += chunk
        lines = []
        while True:
            m = re.search(rb"\r\n|\r|\n", self.buf)
            if m is None:
                break
            line, self.buf = self.buf[: m.start()], self.buf[m.end() :]
            if line.strip():
                lines.append(line.decode("ascii", "replace").strip())
        return lines

    def run(self) -> None:
        while self.server._running.is_set():
            lines = self.read_commands(0.05 if self.streaming else 0.2)
            if lines is None:
                return
            for line in lines:
                self.server.commands.append((self.cid, line))
                if not self.handle(line):
                    return
            if self.streaming and not self.server.is_frozen(self.cid):
                if not self.pump():
                    return

    def handle(self, line: str) -> bool:
        parts = line.split()
        cmd, args = parts[0].upper(), parts[1:]
        srv = self.server
        if cmd == "HELLO":
            caps = "SLPROTO:3.1 CAP EXTREPLY NSWILDCARD BATCH WS:13"
            self.send(f"{srv.software} :: {caps}\r\n{ORGANIZATION}\r\n".encode())
        elif cmd == "BYE":
            return False
        elif cmd == "CAT":
            lines = "".join(f"{n:<2} {s:<5} {d}\r\n" for n, s, d in srv.feed.stations())
            self.send(lines.encode() + b"END")
        elif cmd == "INFO":
            level = args[0] if args else "ID"
            for pkt in info_packets(srv.info_xml(level)):
                self.send(pkt)
        elif self.streaming:
            self.send(b"ERROR\r\n")
        elif cmd == "STATION":
            if not args:
                self.send(b"ERROR\r\n")
                return True
            sta = args[0].upper()
            net = args[1].upper() if len(args) > 1 else ""
            if net and srv.feed.has_station(net, sta):
                self.current = _Subscription(net, sta)
                self.subs.append(self.current)
                self.send(b"OK\r\n")
            elif net and srv.unknown_station == "refuse_selectors":
                # ringserver: any station is OK; its selectors match nothing it holds, so all are refused.
                self.current = _Subscription(net, sta, unknown=True)
                self.subs.append(self.current)
                self.send(b"OK\r\n")
            else:
                self.current = None
                self.send(b"ERROR\r\n")
        elif cmd == "SELECT":
            if self.current is None:
                self.send(b"ERROR\r\n")
            elif not args:
                self.current.selectors.clear()
                self.send(b"OK\r\n")
            else:
                sels = [Selector.parse(a) for a in args]
                if (
                    self.current.station in srv.refuse_selectors
                    or self.current.unknown
                    or any(s is None for s in sels)
                ):
                    self.current.refused = self.current.refused or not self.current.selectors
                    self.send(b"ERROR\r\n")
                else:
                    self.current.selectors.extend(s for s in sels if s is not None)
                    self.current.refused = False
                    self.send(b"OK\r\n")
        elif cmd in ("DATA", "FETCH", "TIME"):
            if self.current is None:
                self.send(b"ERROR\r\n")
                return True
            try:
                seq = time_ns = end_ns = seq_time = None
                if cmd == "TIME":
                    time_ns = _parse_sl_time(args[0])
                    end_ns = _parse_sl_time(args[1]) if len(args) > 1 else None
                else:
                    seq = int(args[0], 16) if args else None
                    if len(args) > 1 and srv.honor_resume_time:
                        time_ns = seq_time = _parse_sl_time(args[1])
            except (ValueError, IndexError):
                self.send(b"ERROR\r\n")
                return True
            sub = self.current
            if sub.unknown:
                self.send(b"ERROR\r\n")
                return True
            sub.pointer = srv.feed.resolve_start(
                sub.network, sub.station, seq, time_ns, srv.unknown_seq, seq_time
            )
            sub.end_ns = end_ns
            self.dialup = self.dialup or cmd == "FETCH" or end_ns is not None
            self.send(b"OK\r\n")
        elif cmd == "END":
            if not self.subs:
                self.send(b"ERROR\r\n")
                return True
            self.subs = [sub for sub in self.subs if not sub.refused]  # nothing selected: nothing sent
            for sub in self.subs:
                if sub.pointer is None:
                    sub.pointer = srv.feed.resolve_start(sub.network, sub.station, None, None)
            self.streaming = True
            with srv._lock:
                srv._streaming.add(self.cid)
        else:
            self.send(b"ERROR\r\n")
        return True

    def pump(self) -> bool:
        """Send every new matching record; in dial-up mode send ``END`` once caught up."""
        sent = 0
        for sub in self.subs:
            assert sub.pointer is not None
            if self.server.is_broken(self.cid, sub.station):
                continue  # a broken subscription: silent, the pointer stays
            for rec in self.server.feed.records_from(sub.network, sub.station, sub.pointer):
                sub.pointer = rec.counter + 1
                if sub.wants(rec):
                    self.send(b"SL%06X" % rec.seq + rec.data)
                    sent += 1
        if sent == 0:
            if self.dialup:
                self.send(b"END")
                return False
            self.server.feed.wait(0.05)
        return True


def wait_until(predicate: object, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s`` passes (test helper)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval_s)
    return bool(predicate())  # type: ignore[operator]
