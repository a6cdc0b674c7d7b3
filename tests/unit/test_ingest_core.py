"""Ingest core: validation reasons, repairs, continuity, packetising, stream specs, backoff, stalls."""

from __future__ import annotations

import random

import numpy as np
import pytest

from services.common.codec import decode_packet, encode_packet
from services.ingest.core import (
    NS,
    Backoff,
    IngestCore,
    Record,
    StallWatch,
    ValidationConfig,
    parse_streams,
    split_record,
)
from services.ingest.exceptions import StreamSpecError

NOW = 1_700_000_000 * NS


def rec(
    data: object = None,
    start: int = NOW - 60 * NS,
    sr: float = 100.0,
    cha: str = "HHZ",
    net: str = "XX",
    sta: str = "ABC",
    loc: str = "",
) -> Record:
    if data is None:
        data = np.arange(100, dtype=np.int32)
    return Record(net, sta, loc, cha, start, sr, np.asarray(data))


def test_valid_record_becomes_identical_packet() -> None:
    """Accepted data, times, ids and key are what was read; ingest time is the one given."""
    core = IngestCore()
    r = rec(np.arange(-50, 50, dtype=np.int32))
    out = core.process(r, now_ns=NOW, ingest_time_ns=NOW + 7)
    assert out.accepted and out.reason is None and out.repairs == ()
    p = out.packet
    assert p is not None
    assert p.start_time_ns == r.start_time_ns and p.sampling_rate == 100.0
    np.testing.assert_array_equal(p.data, r.data)
    assert p.key == "XX.ABC..HH?" and p.ingest_time_ns == NOW + 7
    back = decode_packet(encode_packet(p))
    np.testing.assert_array_equal(back.data, r.data)


@pytest.mark.parametrize(
    ("record", "config", "reason"),
    [
        (rec(net=""), ValidationConfig(), "bad_id"),
        (rec(sta="TOOLONG"), ValidationConfig(), "bad_id"),
        (rec(sta="A B"), ValidationConfig(), "bad_id"),
        (rec(cha="LOG"), ValidationConfig(), "unknown_channel"),
        (rec(cha="VM1"), ValidationConfig(), "unknown_channel"),
        (rec(np.frombuffer(b"ascii log text", dtype="|S1")), ValidationConfig(), "unknown_encoding"),
        (rec(np.ones(10, dtype=np.complex64)), ValidationConfig(), "unknown_encoding"),
        (rec(sr=float("nan")), ValidationConfig(), "bad_sampling_rate"),
        (rec(sr=0.0), ValidationConfig(), "bad_sampling_rate"),
        (rec(sr=-100.0), ValidationConfig(), "bad_sampling_rate"),
        (rec(sr=1e6), ValidationConfig(), "bad_sampling_rate"),
        (rec(np.array([], dtype=np.int32)), ValidationConfig(), "empty"),
        (rec(np.zeros(100_001, dtype=np.int32)), ValidationConfig(), "oversized"),
        (rec(start=NOW + 3600 * NS), ValidationConfig(), "time_in_future"),
        (rec(start=NOW - 30 * 86400 * NS), ValidationConfig(max_past_s=86400), "time_in_past"),
        (rec(np.array([1, 2**40], dtype=np.int64)), ValidationConfig(), "sample_overflow"),
        (rec(np.full(10, np.nan, dtype=np.float32)), ValidationConfig(), "nonfinite"),
        (rec(np.array([1.0, np.inf, 2.0])), ValidationConfig(nonfinite_policy="reject"), "nonfinite"),
    ],
)
def test_each_bad_input_is_rejected_with_its_reason(
    record: Record, config: ValidationConfig, reason: str
) -> None:
    """Every rejection names its reason (the metric label and the dead-letter header)."""
    out = IngestCore(config).process(record, now_ns=NOW)
    assert out.packet is None
    assert out.reason == reason, out.detail


def test_oversized_limit_is_configurable() -> None:
    """``max_samples`` draws the oversized line."""
    out = IngestCore(ValidationConfig(max_samples=50)).process(rec(np.zeros(51, np.int32)), now_ns=NOW)
    assert out.reason == "oversized"
    assert (
        IngestCore(ValidationConfig(max_samples=51)).process(rec(np.zeros(51, np.int32)), now_ns=NOW).accepted
    )


def test_past_check_off_by_default_for_archives() -> None:
    """Replays of old data pass when max_past_s is 0 (the replay default)."""
    old = rec(start=NOW - 20 * 365 * 86400 * NS)
    assert IngestCore(ValidationConfig(max_past_s=0)).process(old, now_ns=NOW).accepted


def test_nonfinite_repair_holds_last_finite_value_across_packets() -> None:
    """NaN/inf become the previous finite value; leading ones take the previous packet's last value."""
    core = IngestCore()
    first = rec(np.array([1.0, 2.0, 3.0], dtype=np.float32), start=NOW - 10 * NS)
    assert core.process(first, now_ns=NOW).accepted
    second = rec(
        np.array([np.nan, 5.0, np.inf, -np.inf, 7.0], dtype=np.float32), start=NOW - 10 * NS + 30_000_000
    )
    out = core.process(second, now_ns=NOW)
    assert out.repairs == ("nonfinite",)
    assert out.packet is not None
    np.testing.assert_array_equal(out.packet.data, np.array([3.0, 5.0, 5.0, 5.0, 7.0], dtype=np.float32))
    fresh = IngestCore().process(rec(np.array([np.nan, np.nan, 4.0, np.nan])), now_ns=NOW)
    assert fresh.packet is not None
    np.testing.assert_array_equal(fresh.packet.data, [4.0, 4.0, 4.0, 4.0])


def test_gap_is_measured_and_packet_still_published() -> None:
    """A later start than expected is a gap of the right length; the data pass unchanged."""
    core = IngestCore()
    t0 = NOW - 100 * NS
    assert core.process(rec(start=t0), now_ns=NOW).gap_s == 0.0
    out = core.process(rec(start=t0 + NS + 2 * NS), now_ns=NOW)
    assert out.accepted
    assert out.gap_s == pytest.approx(2.0)
    # Jitter below half a sample is not a gap.
    assert core.process(rec(start=t0 + 4 * NS + 4_000_000), now_ns=NOW).gap_s == 0.0


def test_overlap_is_trimmed_to_the_first_new_sample() -> None:
    """Already-accepted leading samples are cut; the rest keeps its exact sample times."""
    core = IngestCore()
    t0 = NOW - 100 * NS
    core.process(rec(np.arange(100, dtype=np.int32), start=t0), now_ns=NOW)
    out = core.process(rec(np.arange(70, 170, dtype=np.int32), start=t0 + 700_000_000), now_ns=NOW)
    assert out.repairs == ("overlap",)
    assert out.overlap_s == pytest.approx(0.3)
    p = out.packet
    assert p is not None
    assert p.start_time_ns == t0 + NS
    np.testing.assert_array_equal(p.data, np.arange(100, 170))
    assert core.expected_start_ns("XX.ABC..HHZ") == t0 + NS + 700_000_000


def test_duplicate_and_out_of_order_are_rejected() -> None:
    """A re-sent packet is a duplicate; an older one (late) is out of order; neither moves continuity."""
    core = IngestCore()
    t0 = NOW - 100 * NS
    core.process(rec(start=t0), now_ns=NOW)
    core.process(rec(start=t0 + NS), now_ns=NOW)
    assert core.process(rec(start=t0 + NS), now_ns=NOW).reason == "duplicate"
    assert core.process(rec(start=t0), now_ns=NOW).reason == "out_of_order"
    assert core.expected_start_ns("XX.ABC..HHZ") == t0 + 2 * NS
    assert core.process(rec(start=t0 + 2 * NS), now_ns=NOW).gap_s == 0.0


def test_sample_rate_change_restarts_continuity() -> None:
    """A new rate is counted as a repair and the packet passes."""
    core = IngestCore()
    t0 = NOW - 100 * NS
    core.process(rec(start=t0), now_ns=NOW)
    out = core.process(rec(start=t0 + NS, sr=200.0), now_ns=NOW)
    assert out.accepted and out.repairs == ("sample_rate_change",)


def test_channels_are_tracked_independently() -> None:
    """Continuity is per NSLC: the same time on another component is not a duplicate."""
    core = IngestCore()
    for cha in ("HHZ", "HHN", "HHE"):
        assert core.process(rec(cha=cha), now_ns=NOW).accepted


def test_integer_types_normalised_to_int32_and_uint_range_checked() -> None:
    """int16/uint16 become int32; uint32 above int32 is an overflow."""
    core = IngestCore()
    out = core.process(rec(np.array([1, -2, 3], dtype=np.int16)), now_ns=NOW)
    assert out.packet is not None and out.packet.data.dtype == np.int32
    assert (
        core.process(rec(np.array([2**31], dtype=np.uint32), sta="U"), now_ns=NOW).reason == "sample_overflow"
    )


# -- packetising -------------------------------------------------------------------------------


def _concat(parts: list[Record]) -> np.ndarray:
    return np.concatenate([np.asarray(p.data) for p in parts])


@pytest.mark.parametrize("offset_ns", [0, 5_000_000, 123_456_789, 990_000_000])
def test_split_aligned_cuts_on_the_second_grid(offset_ns: int) -> None:
    """Pieces start on whole seconds (except the first), keep every sample once, with exact times."""
    t0 = NOW + offset_ns
    r = rec(np.arange(1000, dtype=np.int32), start=t0)
    parts = split_record(r, 1.0)
    np.testing.assert_array_equal(_concat(parts), r.data)
    for p in parts:
        first_index = int(np.asarray(p.data)[0])
        assert p.start_time_ns == t0 + first_index * 10_000_000
    for p in parts[1:]:
        first_time = p.start_time_ns
        # The first sample of every later piece is the first sample at or after a whole second.
        assert (first_time - 10_000_000) // NS < first_time // NS or first_time % NS == 0
    assert all(len(p.data) <= 100 for p in parts)


def test_split_unaligned_and_whole() -> None:
    """Without alignment pieces are equal-length from the start; 0 s keeps the record whole."""
    r = rec(np.arange(250, dtype=np.int32), start=NOW + 3_000_000)
    parts = split_record(r, 1.0, align=False)
    assert [len(p.data) for p in parts] == [100, 100, 50]
    assert parts[1].start_time_ns == r.start_time_ns + NS
    assert split_record(r, 0.0) == [r]


def test_split_keeps_bad_rate_records_whole() -> None:
    """A record the core will reject for its rate is not split (and not crashed on)."""
    r = rec(sr=float("nan"))
    assert split_record(r, 1.0) == [r]


# -- stream specs, backoff, stalls -----------------------------------------------------------------


def test_parse_streams_obspy_syntax() -> None:
    """NET_STA[:SEL SEL] lists, default selectors, merging of repeated stations."""
    specs = parse_streams("NC_MEM:HH?, NC_JAS:HH? EH?,IU_ANMO,NC_MEM:00HN?.D", default_selectors=["BH?"])
    by_key = {s.key: s for s in specs}
    assert list(by_key) == ["NC_MEM", "NC_JAS", "IU_ANMO"]
    assert by_key["NC_MEM"].selectors == ("HH?", "00HN?.D")
    assert by_key["NC_JAS"].selectors == ("HH?", "EH?")
    assert by_key["IU_ANMO"].selectors == ("BH?",)


@pytest.mark.parametrize("bad", ["", "NCMEM", "NC_MEM_X", "NC_:HHZ", "NC_MEM:HHZZZZZZZ", "NC_MEM:H"])
def test_parse_streams_rejects_bad_entries(bad: str) -> None:
    """Malformed entries are configuration errors naming the entry."""
    with pytest.raises(StreamSpecError):
        parse_streams(bad)


def test_backoff_grows_caps_and_resets() -> None:
    """Delays stay within [min, min*2^k] capped at max; reset starts over."""
    b = Backoff(0.5, 4.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    for k, d in enumerate(delays):
        assert 0.5 <= d <= min(4.0, 0.5 * 2**k)
    assert max(delays[4:]) > 1.0
    b.reset()
    assert b.next_delay() == 0.5


def test_stall_watch_only_flags_streams_that_flowed() -> None:
    """Silence counts from the later of last data and connection start; never-flowing streams are ignored."""
    w = StallWatch(10.0)
    w.connected(0.0)
    assert w.stalled(100.0) == []
    w.data("NC_MEM", 5.0)
    w.data("NC_JAS", 12.0)
    assert w.stalled(16.0) == ["NC_MEM"]
    w.connected(20.0)
    assert w.stalled(25.0) == []
    assert sorted(w.stalled(31.0)) == ["NC_JAS", "NC_MEM"]
    assert StallWatch(0).stalled(1e9) == []
