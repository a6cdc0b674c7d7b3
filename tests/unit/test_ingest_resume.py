"""Issue 19 pieces without a server: resume bookkeeping, stall rules, syntax errors, broker waits."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from obspy import UTCDateTime
from prometheus_client import CollectorRegistry

from services.common.exceptions import BrokerUnavailable
from services.common.kafka import wait_for_broker
from services.ingest.core import IngestCore, Record, StallWatch, parse_streams, record_end_ns
from services.ingest.emit import StreamWarnings
from services.ingest.exceptions import StreamSpecError
from services.ingest.metrics import IngestMetrics
from services.ingest.seedlink import sl_time
from services.ingest.state import SequenceTracker, StateStore, StreamPosition, seq_not_after

NS = 1_000_000_000


def test_commas_between_selectors_get_the_expected_syntax() -> None:
    """``AU_QLP:BHZ,BHN`` names the stray selector and says selectors are space-separated."""
    with pytest.raises(StreamSpecError, match=r"'BHN' after 'AU_QLP:BHZ' looks like a selector.*spaces"):
        parse_streams("AU_QLP:BHZ,BHN")
    with pytest.raises(StreamSpecError, match=r"several separated by spaces"):
        parse_streams("AU_QLP:BHZ;BHN")
    with pytest.raises(StreamSpecError, match=r"stations separated by commas, selectors by spaces"):
        parse_streams("QLP:BHZ")
    assert parse_streams("AU_QLP:BHZ BHN")[0].selectors == ("BHZ", "BHN")


def test_one_quiet_station_is_not_a_stalled_link() -> None:
    """A station is stalled after the timeout; the link only when no station delivered for it."""
    w = StallWatch(10.0)
    w.connected(0.0)
    w.data("A", 1.0)
    w.data("B", 1.0)
    w.data("B", 15.0)
    assert w.stalled(12.0) == ["A"] and not w.link_stalled(12.0)
    assert w.quiet_s("A", 12.0) == 11.0
    assert sorted(w.stalled(26.0)) == ["A", "B"] and w.link_stalled(26.0)
    w.connected(30.0)  # a fresh connection gets the full timeout
    assert w.stalled(35.0) == [] and not w.link_stalled(35.0)
    assert not StallWatch(0).link_stalled(1e9) and not StallWatch(10.0).link_stalled(1e9)


def test_sequence_order_is_modular() -> None:
    assert seq_not_after(5, 5) and seq_not_after(1, 0x30) and not seq_not_after(0x31, 0x30)
    assert not seq_not_after(0, 0xFFFFFF)  # 0 follows 0xFFFFFF (wrap)
    assert seq_not_after(0xFFFFFF, 3)  # ... and 0xFFFFFF comes before 3


def test_channel_ends_follow_the_watermark_and_the_state_file(tmp_path: Path) -> None:
    """Per-channel published end times: received ones for reconnects, acknowledged ones on disk."""
    t = SequenceTracker()
    a = t.received("XX_A", 1, 0, "XX.A..HHZ", 10 * NS)
    b = t.received("XX_A", 2, 0, "XX.A..HHN", 12 * NS)
    assert t.channel_end("XX.A..HHN") == 12 * NS
    assert t.station_channel_ends("XX_A") == {"XX.A..HHZ": 10 * NS, "XX.A..HHN": 12 * NS}
    t.acknowledged(b)
    assert t.acknowledged_channel_ends() == {}  # b waits for a
    t.acknowledged(a)
    assert t.acknowledged_channel_ends() == {"XX.A..HHZ": 10 * NS, "XX.A..HHN": 12 * NS}
    c = t.received("XX_A", 3, 0, "XX.A..HHZ", 14 * NS)
    t.acknowledged(c, ok=False)
    t.rewind()
    assert t.channel_end("XX.A..HHZ") == 10 * NS  # the failed one will come again

    store = StateStore(tmp_path / "state.json", "127.0.0.1:18000")
    assert store.save(t.acknowledged_positions(), t.version, t.acknowledged_channel_ends())
    again = StateStore(tmp_path / "state.json", "127.0.0.1:18000")
    assert again.load() == {"XX_A": StreamPosition(2, 0)}
    assert again.channels == {"XX.A..HHZ": 10 * NS, "XX.A..HHN": 12 * NS}
    assert SequenceTracker(again.load(), again.channels).channel_end("XX.A..HHN") == 12 * NS


def test_seedlink_time_never_after_the_sample() -> None:
    ns = UTCDateTime(2024, 5, 6, 7, 8, 9, 990_000).ns
    assert sl_time(ns) == "2024,05,06,07,08,09"
    rec = Record("XX", "A", "", "HHZ", ns, 100.0, np.zeros(250, np.int32))
    assert record_end_ns(rec) == ns + 2_500_000_000


def test_unscorable_streams_warned_once_with_the_hint(caplog: pytest.LogCaptureFixture) -> None:
    """The shared rule: a 10 Hz HHZ and an HDZ are published but warned once each, with the hint."""
    metrics = IngestMetrics(CollectorRegistry())
    warn = StreamWarnings(metrics)
    with caplog.at_level(logging.WARNING, logger="services.ingest.emit"):
        assert warn.check("XX.A..HHZ", "HHZ", 100.0) is None
        assert warn.check("XX.A..HHZ", "HHZ", 10.0) == "rate_below_minimum"
        assert warn.check("XX.A..HHZ", "HHZ", 10.0) is None  # once per stream
        assert warn.check("XX.A..HDZ", "HDZ", 100.0) == "unsupported_instrument"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "select a higher-rate channel" in lines[0]
    reg = metrics.registry
    assert reg.get_sample_value("eew_ingest_unscorable_streams_total", {"reason": "rate_below_minimum"}) == 1


def test_default_channel_pattern_takes_what_the_detector_scores() -> None:
    """HG?/HL? accelerometers (scored by the detector) are no longer refused at the door."""
    core = IngestCore()
    for cha in ("HHZ", "HNE", "HLN", "HGZ", "EH1"):
        rec = Record("XX", "A", "", cha, int(time.time() - 10) * NS, 100.0, np.ones(100, np.int32))
        assert core.process(rec, now_ns=time.time_ns()).accepted, cha


def test_broker_wait_ends_on_stop_and_at_its_deadline(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listening: no kafka-python lines, BrokerUnavailable at the deadline; a stop ends it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    with caplog.at_level(logging.DEBUG, logger="kafka"):
        with pytest.raises(BrokerUnavailable, match="connection refused"):
            wait_for_broker(f"127.0.0.1:{port}", 0.8)
    assert not [r for r in caplog.records if r.name.startswith("kafka")]
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    assert wait_for_broker(f"127.0.0.1:{port}", 60.0, stop=stop) is False
    print(f"\nbroker wait (nothing listening) ended {time.monotonic() - t0 - 0.3:.2f} s after stop")


def test_broker_wait_on_a_silent_port_ends_on_stop() -> None:
    """A port that accepts but never answers (a hung broker): the metadata attempt is abandoned on stop."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        t0 = time.monotonic()
        assert wait_for_broker(f"127.0.0.1:{srv.getsockname()[1]}", 60.0, stop=stop) is False
        print(f"\nbroker wait (silent port) ended {time.monotonic() - t0 - 0.5:.2f} s after stop")


def test_station_retry_schedule_is_one_group_of_flags() -> None:
    """``--station-retry-*``: one nested group; the schedule grows from initial to max with jitter."""
    from pydantic import ValidationError

    from services.common.settings import load_settings
    from services.ingest.core import Backoff
    from services.ingest.settings import IngestSettings, StationRetryConfig

    s = load_settings(IngestSettings, ["--station-retry-initial-s", "2", "--station-retry-max-s", "16"])
    assert s.station_retry == StationRetryConfig(initial_s=2.0, max_s=16.0)
    assert IngestSettings().station_retry.initial_s == 30.0 and IngestSettings().station_retry.max_s == 600.0
    with pytest.raises(ValidationError, match="below initial_s"):
        StationRetryConfig(initial_s=60.0, max_s=10.0)
    r = s.station_retry
    b = Backoff(r.initial_s, r.max_s, r.factor)
    delays = [b.next_delay() for _ in range(8)]
    assert delays[0] == 2.0 and all(2.0 <= d <= 16.0 for d in delays)


def test_a_station_that_moved_is_forgotten_by_its_old_links_stall_watch() -> None:
    w = StallWatch(10.0)
    w.connected(0.0)
    w.data("A", 1.0)
    w.data("B", 1.0)
    w.forget("A")
    assert w.stalled(20.0) == ["B"] and w.quiet_s("A", 20.0) == 0.0


@pytest.mark.parametrize("kind", ["admin", "consumer"])
def test_a_client_that_cannot_bootstrap_leaves_no_io_thread(kind: str) -> None:
    """kafka-python starts a client's IO thread before its bootstrap; ours stop it when the bootstrap
    fails (a hung broker here), instead of leaving it reconnecting for the life of the process."""
    from kafka.errors import KafkaError

    from services.common.kafka import AdminClient, Consumer

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        before = {t.ident for t in threading.enumerate()}
        cls = AdminClient if kind == "admin" else Consumer
        with pytest.raises(KafkaError):
            cls(bootstrap_servers=[f"127.0.0.1:{srv.getsockname()[1]}"], request_timeout_ms=600,
                bootstrap_timeout_ms=500)
        left = [t.name for t in threading.enumerate() if t.name.startswith("kafka-io-") and t.ident not in before]
        assert not left
