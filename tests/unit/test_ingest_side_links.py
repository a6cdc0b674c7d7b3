"""Issue 19: the packet path shared by the main link and side links, without a server.

A probe (side link) of a stalled station gets records the main link already published (an overlap
in a race with the main link): they are skipped (``eew_ingest_resent_skipped``), the station stays
where it is; its first newer record moves the station to the probe, and the main link's records of
it are dropped from then on. Every record is published once.
"""

from __future__ import annotations

import io

import numpy as np
from obspy import Stream, Trace, UTCDateTime
from obspy.clients.seedlink.slpacket import SLPacket
from prometheus_client import CollectorRegistry

from services.common.lifecycle import StopFlag
from services.ingest.core import IngestCore, StreamSpec
from services.ingest.emit import Emitter
from services.ingest.metrics import IngestMetrics
from services.ingest.seedlink import SeedLinkIngester, _Link
from services.ingest.state import SequenceTracker, StateStore

T0 = UTCDateTime(int(UTCDateTime().timestamp) - 60)


class _Publisher:
    """Records what would be published; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def publish(self, packet: object, on_done: object = None) -> bool:
        self.sent.append((packet.nslc, packet.start_time_ns))  # type: ignore[attr-defined]
        if on_done is not None:
            on_done(True)  # type: ignore[operator]
        return True

    def dead_letter(self, *args: object, on_done: object = None, **kw: object) -> bool:
        raise AssertionError(f"nothing may be dead-lettered here: {args}")


def _packet(seq: int, k: int) -> SLPacket:
    """Record ``k`` (one second of 100 Hz HHZ) of ZI.A with sequence number ``seq``."""
    tr = Trace(
        (np.arange(100) + 100 * k).astype(np.int32),
        header={
            "network": "ZI",
            "station": "A",
            "channel": "HHZ",
            "sampling_rate": 100.0,
            "starttime": T0 + k,
        },
    )
    buf = io.BytesIO()
    Stream([tr]).write(buf, format="MSEED", reclen=512, encoding="STEIM2")
    return SLPacket(b"SL%06X" % seq + buf.getvalue()[:512], 0)


def test_probe_overlap_is_skipped_and_the_station_moves_on_newer_data() -> None:
    metrics = IngestMetrics(CollectorRegistry())
    publisher = _Publisher()
    ing = SeedLinkIngester(
        "127.0.0.1:1",
        [StreamSpec("ZI", "A", ("HHZ",)), StreamSpec("ZI", "B", ("HHZ",))],
        IngestCore(),
        Emitter(publisher, metrics),  # type: ignore[arg-type]
        SequenceTracker(),
        StateStore(None, "127.0.0.1:1"),
        metrics,
        StopFlag(),
    )
    for k in range(5):
        ing._on_packet(_packet(k + 1, k), ing.main)
    probe = _Link(ing, "probe", "ZI_A")
    ing._sides.add(probe)
    ing._on_packet(_packet(4, 3), probe)  # already published by the main link: skipped
    ing._on_packet(_packet(5, 4), probe)
    assert ing._owner["ZI_A"] is ing.main and probe.kind == "probe"
    assert metrics.resent_skipped._value.get() == 2
    ing._on_packet(_packet(6, 5), probe)  # newer than what was published: the station moves
    assert ing._owner["ZI_A"] is probe and probe.kind == "side"
    assert metrics.station_retries.labels("moved")._value.get() == 1
    assert metrics.side_links._value.get() == 1
    ing._on_packet(_packet(6, 5), ing.main)  # the main link's records of it are dropped now
    ing._on_packet(_packet(7, 6), ing.main)
    ing._on_packet(_packet(7, 6), probe)
    starts = [t for _n, t in publisher.sent]
    assert starts == [(T0 + k).ns for k in range(7)]  # each record once, in order
    assert ing.tracker.resume_position("ZI_A").seq == 7  # type: ignore[union-attr]
    assert ing.side_stations() == {"ZI_A": "reconnecting"}  # (no connection in this test)
