"""Replay into the real broker: miniSEED files (with a corrupt one) and an SDS window, exact round trip."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime

from services.broker.embedded import EmbeddedBroker
from services.common.codec import decode_packet, stream_key
from services.common.kafka import make_producer
from services.common.topics import WAVEFORMS
from services.ingest.replay import replay_files
from tests.integration.test_ingest_seedlink import consume

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
T0 = UTCDateTime(2023, 12, 31, 23, 59, 50)  # crosses midnight: two SDS day files per channel


def _archive(
    root: Path, net: str, stations: list[str], seconds: float, sds: bool = False
) -> dict[str, Trace]:
    rng = np.random.default_rng(11)
    out = {}
    for i, sta in enumerate(stations):
        for cha in ("HHZ", "HHN", "HHE"):
            data = np.cumsum(rng.integers(-400, 400, int(seconds * 100))).astype(np.int32)
            hdr = {"network": net, "station": sta, "channel": cha, "sampling_rate": 100.0}
            tr = Trace(data, header={**hdr, "starttime": T0 + 0.73 * i})
            out[tr.id] = tr
            if sds:
                for day in (
                    tr.slice(endtime=UTCDateTime(2024, 1, 1) - 0.005),
                    tr.slice(UTCDateTime(2024, 1, 1)),
                ):
                    t = day.stats.starttime
                    d = root / str(t.year) / net / sta / f"{cha}.D"
                    d.mkdir(parents=True, exist_ok=True)
                    day.write(str(d / f"{net}.{sta}..{cha}.D.{t.year}.{t.julday:03d}"), format="MSEED")
            else:
                Stream([tr]).write(
                    str(root / f"{tr.id}.mseed"), format="MSEED", encoding="STEIM2", reclen=512
                )
    return out


def _consume_net(bootstrap: str, net: str, stations: list[str], expected: int) -> list:
    keys = {stream_key(net, s, "", "HHZ").encode() for s in stations}
    msgs = consume(bootstrap, WAVEFORMS.name, lambda m: m.key in keys, expected)
    return [decode_packet(m.value) for m in msgs]


def test_replay_files_round_trip_through_broker(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Two stations x 3 channels plus a corrupt and a truncated file: every sample arrives once, times exact."""
    net, stations = "ZR", [f"R{uuid.uuid4().hex[:3].upper()}", f"Q{uuid.uuid4().hex[:3].upper()}"]
    traces = _archive(tmp_path, net, stations, seconds=8.0)
    (tmp_path / "corrupt.mseed").write_bytes(b"this is not miniSEED" * 50)
    # A truncated copy of another station's file: the complete records are read, the torn one is not.
    torn = f"T{uuid.uuid4().hex[:3].upper()}"
    (tmp_path / "torn").mkdir()
    whole = _archive(tmp_path / "torn", net, [torn], seconds=8.0)
    for f in (tmp_path / "torn").iterdir():
        raw = f.read_bytes()
        f.write_bytes(raw[: len(raw) - 300])
    producer = make_producer(broker.bootstrap, "t-replay")
    try:
        stats = replay_files([tmp_path], producer, speed=0)
    finally:
        producer.close(5)
    print("\n" + stats.summary())
    assert stats.corrupt_files == 1 and stats.failed == 0 and stats.acked == stats.packets
    packets = _consume_net(broker.bootstrap, net, [*stations, torn], stats.packets)
    assert len(packets) == stats.packets
    for tid, tr in whole.items():
        got = np.concatenate(
            [p.data for p in sorted((p for p in packets if p.nslc == tid), key=lambda p: p.start_time_ns)]
        )
        assert 0 < len(got) < len(tr.data)
        np.testing.assert_array_equal(got, tr.data[: len(got)])
    for tid, tr in traces.items():
        mine = sorted((p for p in packets if p.nslc == tid), key=lambda p: p.start_time_ns)
        np.testing.assert_array_equal(np.concatenate([p.data for p in mine]), tr.data)
        assert mine[0].start_time_ns == tr.stats.starttime.ns
        assert all(b.start_time_ns == a.end_time_ns for a, b in zip(mine, mine[1:], strict=False))
        assert len({p.sequence for p in mine}) == len(mine)
    # Emitted in data-time order across files: ingest times follow start times.
    by_ingest = sorted(packets, key=lambda p: (p.ingest_time_ns, p.start_time_ns))
    starts = [p.start_time_ns for p in by_ingest]
    assert starts == sorted(starts)


def test_eew_replay_cli_sds_window(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """`eew replay --sds ROOT --start --end` publishes exactly the window (across a day boundary) and exits 0."""
    net, stations = "ZS", [f"S{uuid.uuid4().hex[:3].upper()}"]
    traces = _archive(tmp_path, net, stations, seconds=20.0, sds=True)
    start, end = T0 + 5, T0 + 15
    cmd = [
        sys.executable, "-m", "services.cli", "replay", "--bootstrap-servers", broker.bootstrap,
        "--sds", str(tmp_path), "--start", str(start), "--end", str(end), "--nslc", f"{net}.*.*.HH?", "--speed", "0",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = res.stdout.strip().splitlines()[-1]
    print("\n" + summary)
    assert summary.startswith("replay: ") and "30.0 s of data" in summary
    packets = _consume_net(broker.bootstrap, net, stations, 30)
    for tid, tr in traces.items():
        mine = sorted((p for p in packets if p.nslc == tid), key=lambda p: p.start_time_ns)
        want = tr.slice(start, end - 0.005)
        assert mine[0].start_time_ns == start.ns and mine[-1].end_time_ns == end.ns
        np.testing.assert_array_equal(np.concatenate([p.data for p in mine]), want.data)


def test_eew_replay_cli_rejects_missing_input(tmp_path: Path) -> None:
    """No input: a clear error and exit code 2, before touching any broker."""
    cmd = [sys.executable, "-m", "services.cli", "replay", "--files", str(tmp_path / "nothing*.mseed")]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "no input files" in res.stderr
