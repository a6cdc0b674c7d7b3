"""Replay reading and ordering, into an in-memory producer: packets, times, order, corrupt files, pacing."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime

from services.common.codec import decode_packet
from services.common.topics import WAVEFORMS
from services.ingest.core import NS, Record
from services.ingest.exceptions import ReplayInputError
from services.ingest.replay import clip_record, expand_paths, replay_files
from tests.unit.test_ingest_properties import MemoryProducer

T0 = UTCDateTime(2024, 3, 1, 12, 0, 0)


def write_archive(root: Path, stations: dict[str, float], seconds: float = 6.0) -> dict[str, np.ndarray]:
    """One file per channel; each station starts ``offset`` s after T0. Returns the samples per NSLC."""
    out = {}
    rng = np.random.default_rng(3)
    for sta, offset in stations.items():
        for cha in ("HHZ", "HHN", "HHE"):
            data = rng.integers(-5000, 5000, int(seconds * 100)).astype(np.int32)
            hdr = {"network": "XR", "station": sta, "channel": cha, "sampling_rate": 100.0}
            tr = Trace(data, header={**hdr, "starttime": T0 + offset})
            (root / sta).mkdir(parents=True, exist_ok=True)
            Stream([tr]).write(str(root / sta / f"XR.{sta}..{cha}.mseed"), format="MSEED", encoding="STEIM2")
            out[tr.id] = data
    return out


def test_expand_paths_dirs_globs_files(tmp_path: Path) -> None:
    """Directories are walked (hidden names skipped), globs and single files are accepted, duplicates merged."""
    write_archive(tmp_path / "a", {"S1": 0.0})
    (tmp_path / "a" / ".hidden").write_text("x")
    (tmp_path / "a" / "stations.csv").write_text("net,sta\n")
    files = expand_paths(
        [tmp_path / "a", str(tmp_path / "a" / "S1" / "*.mseed"), tmp_path / "a" / "S1" / "XR.S1..HHZ.mseed"]
    )
    assert [f.name for f in files] == ["XR.S1..HHE.mseed", "XR.S1..HHN.mseed", "XR.S1..HHZ.mseed"]
    assert expand_paths([tmp_path / "nothing*"]) == []
    assert expand_paths([tmp_path / "a" / "stations.csv"]) == [tmp_path / "a" / "stations.csv"]


def test_replay_orders_by_time_across_files_and_keeps_samples_exact(tmp_path: Path) -> None:
    """1-s packets from all files merged by start time; per channel the samples and times are the originals."""
    data = write_archive(tmp_path, {"S1": 0.0, "S2": 2.5, "S3": 0.35})
    (tmp_path / "garbage.mseed").write_bytes(b"\x00garbage" * 100)
    producer = MemoryProducer()
    stats = replay_files([tmp_path], producer, speed=0)
    assert stats.corrupt_files == 1 and stats.files == 9 and stats.rejected == 0
    packets = [decode_packet(v) for topic, _k, v, _h in producer.sent if topic == WAVEFORMS.name]
    assert stats.packets == len(packets) == stats.acked
    starts = [p.start_time_ns for p in packets]
    assert starts == sorted(starts)
    for nslc, original in data.items():
        mine = [p for p in packets if p.nslc == nslc]
        np.testing.assert_array_equal(np.concatenate([p.data for p in mine]), original)
        offset = {"S1": 0.0, "S2": 2.5, "S3": 0.35}[nslc.split(".")[1]]
        assert mine[0].start_time_ns == (T0 + offset).ns
        for a, b in zip(mine, mine[1:], strict=False):
            assert b.start_time_ns == a.end_time_ns  # contiguous, exact sample times
            assert b.start_time_ns % NS == 0  # cut on whole seconds
        assert [p.sequence for p in mine] == list(range(len(mine)))
    assert stats.data_seconds == pytest.approx(9 * 6.0)
    assert "replay:" in stats.summary() and "1 unreadable" in stats.summary()


def test_replay_pacing_and_stop(tmp_path: Path) -> None:
    """--speed N cannot finish faster than data time / N; a stop flag ends the replay early."""
    write_archive(tmp_path, {"S1": 0.0}, seconds=4.0)
    stats = replay_files([tmp_path], MemoryProducer(), speed=20.0)
    print(f"\nspeed 20 over {stats.span_s:.1f} s of data: wall {stats.wall_s:.3f} s")
    assert stats.wall_s >= (stats.span_s - 1.0) / 20.0
    stop = threading.Event()
    stop.set()
    stopped = replay_files([tmp_path], MemoryProducer(), speed=1.0, stop=stop)
    assert stopped.stopped and stopped.packets == 0


def test_replay_without_inputs_is_an_error(tmp_path: Path) -> None:
    """Nothing to read is reported, not silently 'successful'."""
    with pytest.raises(ReplayInputError):
        replay_files([tmp_path / "none"], MemoryProducer())


def test_clip_record_keeps_exact_samples() -> None:
    """Window [start, end): the samples inside, their times unchanged."""
    r = Record("XR", "S1", "", "HHZ", 10 * NS + 5_000_000, 100.0, np.arange(1000, dtype=np.int32))
    c = clip_record(r, 11 * NS, 12 * NS)
    assert c is not None
    assert c.start_time_ns == 11 * NS + 5_000_000 and len(c.data) == 100 and int(c.data[0]) == 100
    assert clip_record(r, 30 * NS, None) is None
    assert clip_record(r, None, None) is r


def test_replay_warns_once_per_stream_the_detector_would_refuse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The one shared rule (services.common.streams): a 10 Hz channel is replayed but warned once."""
    import logging

    from prometheus_client import CollectorRegistry

    from services.ingest.metrics import IngestMetrics

    data = np.arange(200, dtype=np.int32)
    hdr = {"network": "XR", "station": "LOW", "channel": "HHZ", "sampling_rate": 10.0, "starttime": T0}
    Stream([Trace(data, header=hdr)]).write(str(tmp_path / "low.mseed"), format="MSEED")
    metrics = IngestMetrics(CollectorRegistry())
    with caplog.at_level(logging.WARNING, logger="services.ingest.emit"):
        stats = replay_files([tmp_path], MemoryProducer(), speed=0, metrics=metrics)
    assert stats.packets == 20 and stats.rejected == 0  # published: other consumers may want it
    warned = [r.getMessage() for r in caplog.records if "will not score" in r.getMessage()]
    assert len(warned) == 1 and "XR.LOW..HHZ at 10 Hz" in warned[0] and "rate_below_minimum" in warned[0]
    labels = {"reason": "rate_below_minimum"}
    assert metrics.registry.get_sample_value("eew_ingest_unscorable_streams_total", labels) == 1
