"""SeedLink resume state: acknowledgement watermarks and the atomic state file."""

from __future__ import annotations

import json
from pathlib import Path

from services.ingest.state import SequenceTracker, StateStore, StreamPosition


def test_watermark_advances_only_over_contiguous_acknowledgements() -> None:
    """Out-of-order acks (waveform vs dead-letter partitions) never let the saved position skip a packet."""
    t = SequenceTracker()
    a, b, c = (t.received("NC_MEM", s, s * 10) for s in (1, 2, 3))
    t.acknowledged(c)
    assert t.acknowledged_positions() == {}
    t.acknowledged(a)
    assert t.acknowledged_positions() == {"NC_MEM": StreamPosition(1, 10)}
    t.acknowledged(b)
    assert t.acknowledged_positions() == {"NC_MEM": StreamPosition(3, 30)}
    assert t.pending() == 0


def test_stations_are_independent_and_resume_uses_last_received() -> None:
    """One station's pending packet does not hold back another; reconnects resume after the last received."""
    t = SequenceTracker({"NC_JAS": StreamPosition(7)})
    assert t.resume_position("NC_JAS") == StreamPosition(7)
    x = t.received("NC_MEM", 0xFFFFFF)
    t.received("NC_JAS", 8)
    t.acknowledged(x)
    assert t.acknowledged_positions() == {"NC_JAS": StreamPosition(7), "NC_MEM": StreamPosition(0xFFFFFF)}
    assert t.resume_position("NC_JAS") == StreamPosition(8)
    assert t.pending() == 1


def test_sequence_wrap_is_ordered_by_arrival() -> None:
    """24-bit wrap: 0xFFFFFF then 0 -- the watermark follows arrival order, not numeric order."""
    t = SequenceTracker()
    a, b = t.received("S_A", 0xFFFFFF), t.received("S_A", 0)
    t.acknowledged(a)
    t.acknowledged(b)
    assert t.acknowledged_positions()["S_A"].seq == 0


def test_state_file_round_trip_is_atomic(tmp_path: Path) -> None:
    """Saved positions load back; no temp file is left; unchanged versions are not rewritten."""
    path = tmp_path / "sub" / "state.json"
    store = StateStore(path, "127.0.0.1:18000")
    assert store.load() == {}
    pos = {"NC_MEM": StreamPosition(26, 123), "NC_JAS": StreamPosition(0, 0)}
    assert store.save(pos, version=1)
    assert not store.save(pos, version=1)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]
    assert StateStore(path, "127.0.0.1:18000").load() == pos
    doc = json.loads(path.read_text())
    assert doc["streams"]["NC_MEM"] == {"seq": 26, "time_ns": 123}


def test_state_for_another_server_is_ignored(tmp_path: Path) -> None:
    """Sequence numbers are per server: a file written for another server does not apply."""
    path = tmp_path / "state.json"
    StateStore(path, "a:18000").save({"NC_MEM": StreamPosition(5)})
    assert StateStore(path, "b:18000").load() == {}
    assert path.exists()


def test_corrupt_state_file_is_moved_aside(tmp_path: Path) -> None:
    """A damaged file does not crash-loop the daemon: it is kept aside and ingest starts fresh."""
    path = tmp_path / "state.json"
    path.write_text('{"format": "eew-seedlink-state", "version": 1, "server": "x", "streams": {"A_B": {"se')
    assert StateStore(path, "x").load() == {}
    assert not path.exists()
    assert len(list(tmp_path.glob("state.json.corrupt-*"))) == 1
    path.write_text(
        json.dumps(
            {"format": "eew-seedlink-state", "version": 1, "server": "x", "streams": {"A_B": {"seq": 2**30}}}
        )
    )
    assert StateStore(path, "x").load() == {}


def test_disabled_store_does_nothing(tmp_path: Path) -> None:
    """An empty state-file setting disables resume."""
    store = StateStore(None, "x")
    assert store.load() == {} and store.save({"A_B": StreamPosition(1)}) is False


def test_failed_delivery_holds_the_watermark_and_rewind_resumes_there() -> None:
    """A failure stops the station's watermark; rewind makes the next connection ask again from there."""
    t = SequenceTracker()
    a, b, c = (t.received("S_A", s) for s in (10, 11, 12))
    d = t.received("S_B", 5)
    t.acknowledged(a)
    t.acknowledged(b, ok=False)
    t.acknowledged(c)
    t.acknowledged(d, ok=False)
    assert t.failures == 2
    assert t.acknowledged_positions() == {"S_A": StreamPosition(10)}
    assert t.resume_position("S_A") == StreamPosition(12)
    assert t.rewind() == 3
    assert t.failures == 0 and t.pending() == 0
    assert t.resume_position("S_A") == StreamPosition(10)
    assert t.resume_position("S_B") == StreamPosition(4)  # nothing acknowledged: just before its first packet
