"""The test SeedLink server speaks SeedLink v3 the way ObsPy's client and slinktool expect.

Checked with ObsPy's stock ``EasySeedLinkClient`` (INFO, multi-station negotiation, resume)
and at the socket level (exact replies, sequence numbers, FETCH/END, CAT, restart on a port).
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import numpy as np
import pytest
from obspy import Trace, UTCDateTime
from obspy.clients.seedlink.easyseedlink import EasySeedLinkClient
from obspy.clients.seedlink.seedlinkexception import SeedLinkException
from obspy.clients.seedlink.slpacket import SLPacket

from tests.support.seedlink_server import RECLEN, SeedLinkFeed, SeedLinkServer, wait_until

pytestmark = pytest.mark.integration
T0 = UTCDateTime(2024, 1, 1)


def _trace(sta: str, cha: str, k: int, n: int = 1500) -> Trace:
    data = (np.arange(n) + 10_000 * k).astype(np.int32)
    hdr = {
        "network": "XX",
        "station": sta,
        "channel": cha,
        "sampling_rate": 100.0,
        "starttime": T0 + k * n / 100,
    }
    return Trace(data, header=hdr)


@pytest.fixture
def feed() -> SeedLinkFeed:
    f = SeedLinkFeed()
    for sta in ("AAA", "BBB"):
        f.add_station("XX", sta)
        for cha in ("HHZ", "HHN", "HHE"):
            f.append_trace(_trace(sta, cha, 0))
    return f


@pytest.fixture
def server(feed: SeedLinkFeed) -> Iterator[SeedLinkServer]:
    with SeedLinkServer(feed) as srv:
        yield srv


def _easy_client(address: str) -> EasySeedLinkClient:
    client = EasySeedLinkClient(address, autoconnect=False)
    # ObsPy 1.5.1 cannot connect with timeout=None (see services/ingest/seedlink.py): set it around connect().
    client.conn.timeout = 5.0
    try:
        client.connect()
    finally:
        client.conn.timeout = None
    return client


def test_obspy_default_settings_cannot_connect(server: SeedLinkServer) -> None:
    """Why the ingester sets a connect timeout: the stock client fails on a healthy server."""
    with pytest.raises(SeedLinkException, match="cannot connect"):
        EasySeedLinkClient(server.address)


def test_easyseedlinkclient_info_levels(server: SeedLinkServer, feed: SeedLinkFeed) -> None:
    """INFO ID / CAPABILITIES / STREAMS come back as XML ObsPy reassembles from SLINFO records."""
    client = _easy_client(server.address)
    try:
        ident = ET.fromstring(client.get_info("ID"))
        assert ident.tag == "seedlink" and "SeedLink v3.1" in ident.attrib["software"]
        assert client.has_capability("multistation") and client.has_info_capability("STREAMS")
        streams = ET.fromstring(client.get_info("STREAMS"))
        got = {
            (s.attrib["network"], s.attrib["name"], st.attrib["seedname"])
            for s in streams.iter("station")
            for st in s.iter("stream")
        }
        assert got == {("XX", sta, cha) for sta in ("AAA", "BBB") for cha in ("HHZ", "HHN", "HHE")}
        for s in streams.iter("station"):
            recs = feed.snapshot("XX", s.attrib["name"])
            assert s.attrib["end_seq"] == f"{recs[-1].seq + 1:06X}"
    finally:
        client.close()


def test_multistation_selectors_resume_and_live_data(server: SeedLinkServer, feed: SeedLinkFeed) -> None:
    """Per-station selectors and DATA seq: exactly the selected records from the resume point, then live ones."""
    client = _easy_client(server.address)
    conn = client.conn
    conn.netto = 10  # a missing packet fails the test in seconds, not ObsPy's default 120 s
    aaa = feed.snapshot("XX", "AAA")
    resume_after = next(r for r in aaa if r.channel == "HHN").seq  # first HHN record
    conn.add_stream("XX", "AAA", "HHN HHE", resume_after, None)
    conn.add_stream("XX", "BBB", "HHZ", -1, None)  # only new data
    expected = [("AAA", r.seq, r.data) for r in aaa if r.seq > resume_after and r.channel in ("HHN", "HHE")]
    got = []
    try:
        while len(got) < len(expected):
            pkt = conn.collect()
            assert isinstance(pkt, SLPacket)
            got.append((pkt.get_trace().stats.station, pkt.get_sequence_number(), bytes(pkt.msrecord)))
        # Negotiated: data appended now is "new" for BBB and must flow.
        live = feed.append_trace(_trace("BBB", "HHZ", 1))
        bbb = {r.seq: r.data for r in feed.snapshot("XX", "BBB")}
        expected += [("BBB", s, bbb[s]) for s in live]
        while len(got) < len(expected):
            pkt = conn.collect()
            assert isinstance(pkt, SLPacket)
            got.append((pkt.get_trace().stats.station, pkt.get_sequence_number(), bytes(pkt.msrecord)))
    finally:
        client.close()
    assert sorted(got) == sorted(expected)
    sent = [c for _cid, c in server.commands]
    assert f"DATA {hex(resume_after + 1)}" in sent and "STATION  BBB XX" in sent and "END" in sent


class _Raw:
    """A bare socket speaking the protocol by hand."""

    def __init__(self, address: str) -> None:
        host, port = address.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)

    def cmd(self, line: str, end: bytes = b"\r") -> bytes:
        self.sock.sendall(line.encode() + end)
        return self.read_reply()

    def read_reply(self) -> bytes:
        time.sleep(0.05)
        return self.sock.recv(65536)

    def read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()


def test_raw_protocol_replies(server: SeedLinkServer, feed: SeedLinkFeed) -> None:
    """HELLO, CAT, STATION/SELECT errors, \\r\\n tolerance, libslink-style DATA seq, FETCH ending in END."""
    raw = _Raw(server.address)
    try:
        hello = raw.cmd("HELLO").decode()
        lines = hello.split("\r\n")
        assert lines[0].startswith("SeedLink v3.1") and "SLPROTO:3.1" in lines[0] and lines[1]
        cat = raw.cmd("CAT")
        assert cat.endswith(b"END") and b"XX AAA" in cat
        assert raw.cmd("STATION NOPE XX") == b"ERROR\r\n"
        assert raw.cmd("SELECT HHZ") == b"ERROR\r\n"  # no station selected
        assert raw.cmd("station aaa xx", end=b"\r\n") == b"OK\r\n"
        assert raw.cmd("SELECT HH") == b"ERROR\r\n"
        assert raw.cmd("SELECT ??HHZ.D") == b"OK\r\n"
        first = feed.snapshot("XX", "AAA")[1]
        assert raw.cmd(f"FETCH {first.seq:06X}") == b"OK\r\n"
        raw.sock.sendall(b"END\r")
        zs = [r for r in feed.snapshot("XX", "AAA") if r.channel == "HHZ" and r.seq >= first.seq]
        for r in zs:
            pkt = raw.read_exact(8 + RECLEN)
            assert pkt[:8] == b"SL%06X" % r.seq and pkt[8:] == r.data
        assert raw.read_exact(3) == b"END"
    finally:
        raw.close()


def test_restart_on_same_port_and_resume(feed: SeedLinkFeed) -> None:
    """Stopping drops clients; a restart listens on the same port and DATA seq resumes there."""
    srv = SeedLinkServer(feed).start()
    port = srv.port
    raw = _Raw(srv.address)
    raw.cmd("HELLO")
    raw.cmd("STATION BBB XX")
    raw.cmd("DATA")
    raw.sock.sendall(b"END\r")
    srv.stop()
    assert raw.read_exact(1) == b""  # the link dropped
    raw.close()
    new = feed.append_trace(_trace("BBB", "HHE", 1))
    srv.start()
    try:
        assert srv.port == port
        raw = _Raw(srv.address)
        raw.cmd("HELLO")
        raw.cmd("STATION BBB XX")
        assert raw.cmd(f"DATA {new[1]:06X}") == b"OK\r\n"
        raw.sock.sendall(b"END\r")
        assert raw.read_exact(8)[2:] == b"%06X" % new[1]
        raw.close()
    finally:
        srv.stop()


def test_ringserver_like_unknown_station_and_a_broken_subscription(feed: SeedLinkFeed) -> None:
    """``unknown_station="refuse_selectors"``: STATION OK, every SELECT refused until data arrive;
    ``break_subscription``: the open connection goes silent for that station, a new one gets its data."""
    with SeedLinkServer(feed, unknown_station="refuse_selectors") as srv:
        raw = _Raw(srv.address)
        try:
            raw.cmd("HELLO")
            assert raw.cmd("STATION NEW XX") == b"OK\r\n"
            assert raw.cmd("SELECT HH?") == b"ERROR\r\n"  # "no data stream selector(s) accepted"
        finally:
            raw.close()
        feed.append_trace(_trace("NEW", "HHZ", 0))  # the server starts receiving the station
        first = _Raw(srv.address)
        try:
            first.cmd("HELLO")
            assert first.cmd("STATION NEW XX") == b"OK\r\n"
            assert first.cmd("SELECT HH?") == b"OK\r\n"
            assert first.cmd("DATA") == b"OK\r\n"
            first.sock.sendall(b"END\r")
            assert wait_until(lambda: srv.streaming_connections() == 1, 5)
            assert srv.break_subscription("NEW") == 1
            new = feed.append_trace(_trace("NEW", "HHZ", 1))
            second = _Raw(srv.address)
            try:
                second.cmd("HELLO")
                second.cmd("STATION NEW XX")
                assert second.cmd(f"DATA {new[0]:06X}") == b"OK\r\n"
                second.sock.sendall(b"END\r")
                assert second.read_exact(8)[2:] == b"%06X" % new[0]  # a new connection gets the data
            finally:
                second.close()
            first.sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                first.sock.recv(1)  # the broken subscription stays up and silent
            assert srv.negotiations("NEW") == [1, 2, 3]
        finally:
            first.close()
