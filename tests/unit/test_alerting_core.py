"""Association core on synthetic station triggers: consistency, lifecycle, dedup, determinism."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from services.alerting.association import (
    NS,
    AlertKind,
    AlertRecord,
    AssociationConfig,
    Associator,
    ScoreRecord,
    azimuthal_gap_deg,
    event_probability,
    make_event_id,
)
from services.alerting.association.synthetic import (
    T0,
    interleave,
    p_times,
    ring_stations,
    round_robin,
    station_scores,
)
from services.common.domain import Station
from services.common.exceptions import ConfigError
from services.common.inventory import StationInventory

ORIGIN = T0 + 10 * NS


def run(assoc: Associator, recs: list[ScoreRecord]) -> list[AlertRecord]:
    out = assoc.add_many(recs)
    return out + assoc.flush()


def event_streams(
    n_stations: int = 6, radius_km: float = 20.0, **kw: object
) -> tuple[list[Station], list[list[ScoreRecord]]]:
    stations = ring_stations(n_stations, radius_km)
    pt = p_times(stations, ORIGIN)
    return stations, [station_scores(st, pt[st.station], **kw) for st in stations]


def test_consistent_event_gives_one_new_then_updates_with_one_id() -> None:
    """Six consistent stations, two P times (rings at 20 and 40 km): NEW with the first three,
    one UPDATE adding the outer three, same id."""
    stations, streams = event_streams(6)
    assoc = Associator(AssociationConfig(), StationInventory(stations))
    alerts = run(assoc, round_robin(streams))
    assert [a.kind for a in alerts] == [AlertKind.NEW, AlertKind.UPDATE]
    assert [a.version for a in alerts] == [1, 2]
    assert len({a.event_id for a in alerts}) == 1
    assert len(alerts[0].stations) == 3
    assert {c.station for c in alerts[-1].stations} == {s.station for s in stations}
    pt = p_times(stations, ORIGIN)
    assert alerts[-1].first_p_time_ns == min(pt.values())
    for c in alerts[-1].stations:
        assert c.p_time_ns == pt[c.station]  # P times come from the picks
        assert c.latitude is not None
    probs = [a.probability for a in alerts]
    assert probs == sorted(probs) and 0.5 < probs[0] < probs[-1] <= 1.0
    assert assoc.stats["events"] == 1 and assoc.stats["triggers"] == 6


def test_min_stations_is_respected() -> None:
    """Two triggered stations are not an event at min_stations=3, but are at min_stations=2."""
    stations, streams = event_streams(2)
    assert (
        run(Associator(AssociationConfig(min_stations=3), StationInventory(stations)), round_robin(streams))
        == []
    )
    alerts = run(
        Associator(AssociationConfig(min_stations=2), StationInventory(stations)), round_robin(streams)
    )
    assert [a.kind for a in alerts] == [AlertKind.NEW]
    assert len(alerts[0].stations) == 2


def test_inconsistent_trigger_is_rejected_and_counted() -> None:
    """A station 5 km from another but triggering 12 s later cannot see the same P wave."""
    stations, streams = event_streams(5)
    near = stations[0]
    odd = Station("XA", "ODD", "00", near.latitude + 0.045, near.longitude, 0.0)  # ~5 km north
    odd_p = p_times([near], ORIGIN)[near.station] + 12 * NS
    streams.append(station_scores(odd, odd_p))
    assoc = Associator(AssociationConfig(), StationInventory([*stations, odd]))
    alerts = run(assoc, round_robin(streams))
    assert len({a.event_id for a in alerts}) == 1
    assert all("ODD" not in {c.station for c in a.stations} for a in alerts)
    assert {c.station for c in alerts[-1].stations} == {s.station for s in stations}
    assert assoc.stats["triggers_rejected_inconsistent"] == 1


def test_spread_limit_applies_without_coordinates() -> None:
    """Stations without coordinates associate by time spread only, and that is counted."""
    stations, streams = event_streams(4)
    late = Station("XA", "LATE", "00", 0.0, 0.0)
    streams.append(station_scores(late, ORIGIN + 40 * NS, n=80))
    assoc = Associator(AssociationConfig(max_spread_s=20.0), StationInventory())  # no coordinates at all
    alerts = run(assoc, round_robin(streams))
    assert len({a.event_id for a in alerts}) == 1
    assert {c.station for c in alerts[-1].stations} == {s.station for s in stations}
    assert all(c.latitude is None for c in alerts[-1].stations)
    assert assoc.stats["triggers_without_coordinates"] == 5
    assert assoc.stats["associations_time_only"] >= 1
    # Half weight for timing-only stations: lower probability than the same event with coordinates.
    with_coords = run(Associator(AssociationConfig(), StationInventory(stations)), round_robin(streams[:4]))
    assert alerts[0].probability < with_coords[0].probability


def test_glitches_give_new_then_cancel() -> None:
    """Three simultaneous 1-s glitches form an event; their retraction cancels it."""
    stations = ring_stations(3, 20.0)
    glitch = T0 + 5 * NS
    streams = [station_scores(st, None, glitch_at_ns=glitch) for st in stations]
    assoc = Associator(AssociationConfig(min_trigger_duration_s=2.0), StationInventory(stations))
    alerts = run(assoc, round_robin(streams))
    assert [a.kind for a in alerts] == [AlertKind.NEW, AlertKind.CANCEL]
    assert alerts[0].event_id == alerts[1].event_id and alerts[1].version == 2
    assert alerts[1].probability == 0.0 and "retracted" in alerts[1].reason
    assert assoc.stats["triggers_retracted"] == 3 and assoc.stats["events_cancelled"] == 1
    assert assoc.stats["triggers_without_pick"] == 3


def test_retraction_above_min_stations_updates_then_cancels() -> None:
    """Four glitches: one retracts first, leaving 3 (UPDATE); the next leaves 2 (CANCEL)."""
    stations = ring_stations(4, 20.0)
    streams = [
        station_scores(st, None, glitch_at_ns=T0 + 5 * NS, glitch_s=1 if i == 0 else 2)
        for i, st in enumerate(stations)
    ]
    alerts = run(Associator(AssociationConfig(), StationInventory(stations)), round_robin(streams))
    assert [(a.kind, a.version, len(a.stations)) for a in alerts] == [
        (AlertKind.NEW, 1, 4),
        (AlertKind.UPDATE, 2, 3),
        (AlertKind.CANCEL, 3, 2),
    ]


def test_changes_within_one_instant_are_coalesced() -> None:
    """Stations triggering in the same window give one alert, not one per station."""
    stations = ring_stations(5, 20.0)
    streams = [station_scores(st, T0 + 10_500_000_000) for st in stations]  # same P everywhere
    alerts = run(Associator(AssociationConfig(), StationInventory(stations)), round_robin(streams))
    assert [(a.kind, a.version, len(a.stations)) for a in alerts] == [(AlertKind.NEW, 1, 5)]


def test_confirmed_trigger_is_not_retracted_and_event_survives() -> None:
    """A trigger that lasts past min_trigger_duration_s then ends normally keeps its event."""
    stations, streams = event_streams(3, trigger_s=3)
    assoc = Associator(AssociationConfig(min_trigger_duration_s=2.0), StationInventory(stations))
    alerts = run(assoc, round_robin(streams))
    assert [a.kind for a in alerts] == [AlertKind.NEW]
    assert assoc.stats["triggers_retracted"] == 0


def test_one_window_dip_does_not_retract_unless_detrigger_is_zero() -> None:
    """A probability dipping below threshold for one window right after the trigger is not a
    glitch with detrigger_s=2; with detrigger_s=0 the trigger is retracted and the event cancelled."""
    stations, streams = event_streams(3)  # S01 (40 km) triggers last and declares the event
    dipped = []
    for st, recs in zip(stations, streams, strict=True):
        k = next(i for i, r in enumerate(recs) if r.triggered) + 1  # the window after the trigger
        if st.station == "S01":
            recs = [*recs[:k], replace(recs[k], triggered=False, probability=0.3), *recs[k + 1 :]]
        dipped.append(recs)
    inv = StationInventory(stations)
    alerts = run(Associator(AssociationConfig(detrigger_s=2.0), inv), round_robin(dipped))
    assert [a.kind for a in alerts] == [AlertKind.NEW]
    assoc = Associator(AssociationConfig(detrigger_s=0.0), inv)
    alerts = run(assoc, round_robin(dipped))
    assert [a.kind for a in alerts][:2] == [AlertKind.NEW, AlertKind.CANCEL]
    assert assoc.stats["triggers_retracted"] == 1


def test_duplicates_are_dropped() -> None:
    """At-least-once input (each score twice, plus a redelivered range) gives the same alerts."""
    stations, streams = event_streams(5)
    ref = run(Associator(AssociationConfig(), StationInventory(stations)), round_robin(streams))
    recs = round_robin(streams)
    doubled = [r for r in recs for _ in range(2)] + recs[100:160]
    assoc = Associator(AssociationConfig(), StationInventory(stations))
    assert run(assoc, doubled) == ref
    assert assoc.stats["duplicates"] == len(recs) + 60


def test_event_id_is_deterministic_and_readable() -> None:
    """The id depends only on the declaring stations and first-P second, not on the run."""
    stations, streams = event_streams(5)
    a = run(Associator(AssociationConfig(), StationInventory(stations)), round_robin(streams))
    b = run(Associator(AssociationConfig(), StationInventory(stations)), round_robin(streams))
    assert a == b
    assert re.fullmatch(r"eew-20231114T2213\d\d-[0-9a-f]{8}", a[0].event_id)
    declaring = [f"{c.network}.{c.station}" for c in a[0].stations]
    assert a[0].event_id == make_event_id(declaring, a[0].first_p_time_ns)
    assert make_event_id(declaring, a[0].first_p_time_ns) != make_event_id(
        declaring[:2], a[0].first_p_time_ns
    )


@pytest.mark.parametrize("seed", range(12))
def test_replay_order_independence(seed: int) -> None:
    """Interleavings that keep per-station order (network delays < max_lateness_s), in random
    batch sizes, give exactly the same alerts as the ordered input; glitches included."""
    stations, streams = event_streams(8)
    glitchers = ring_stations(3, 30.0, net="XB")  # within max_link_km of each other
    streams += [station_scores(st, None, glitch_at_ns=T0 + 40 * NS) for st in glitchers]
    inv = StationInventory([*stations, *glitchers])
    cfg = AssociationConfig(max_lateness_s=3.0)
    ref = run(Associator(cfg, inv), round_robin(streams))
    assert [a.kind for a in ref].count(AlertKind.NEW) == 2  # the event and the glitch "event"
    assert ref[-1].kind is AlertKind.CANCEL

    rng = random.Random(seed)
    recs = interleave(streams, rng, max_delay_s=2.0)
    assoc = Associator(cfg, inv)
    got: list[AlertRecord] = []
    i = 0
    while i < len(recs):
        k = rng.randint(1, 40)
        got += assoc.add_many(recs[i : i + k])
        i += k
    got += assoc.flush()
    assert got == ref


def test_partition_bursts_are_put_in_order_with_wall_times() -> None:
    """A fast replay delivers whole partitions one after another (tens of seconds of event time
    apart); with wall arrival times and an inventory, every station is waited for and the alerts
    equal the ordered ones. Without wall times the same input is late and differs."""
    stations, streams = event_streams(8)
    inv = StationInventory(stations)
    cfg = AssociationConfig()
    ref = run(Associator(cfg, inv), round_robin(streams))
    now = 1_000 * NS
    assoc = Associator(cfg, inv)
    got: list[AlertRecord] = []
    for i, recs in enumerate(reversed(streams)):  # one "partition" per poll, 10 ms apart
        got += assoc.add_many(recs, now_ns=now + i * 10_000_000)
    got += assoc.add_many([], now_ns=now + 5 * NS)  # the burst is over: holds time out
    assert got == ref and assoc.stats["late"] == 0 and assoc.pending == 0
    blind = Associator(cfg, inv)
    unordered = [a for recs in reversed(streams) for a in blind.add_many(recs)] + blind.flush()
    assert blind.stats["late"] > 0 and unordered != ref


def test_max_hold_bounds_the_wait_for_a_slow_station() -> None:
    """A station that lags but keeps reporting is waited for at most max_hold_s of wall time."""
    a, b = ring_stations(2, 20.0)
    ra, rb = station_scores(a, None, n=20), station_scores(b, None, n=20)
    assoc = Associator(AssociationConfig(max_hold_s=1.0), StationInventory([a, b]))
    now = 1_000 * NS
    assoc.add_many(ra[:15] + rb[:5], now_ns=now)
    assert assoc.pending == 15 - 5  # a's windows 6..15 wait for b
    assoc.add_many([], now_ns=now + 900_000_000)
    assert assoc.pending == 10
    assoc.add_many([], now_ns=now + 1_100_000_000)
    assert assoc.pending == 0
    assoc.add_many(rb[5:10], now_ns=now + 1_200_000_000)
    assert assoc.stats["late"] == 5  # b's scores came after the hold released a's


def test_unseen_and_silent_stations_are_waited_for_only_briefly() -> None:
    """An inventory station that never reports, or one that went silent, stops holding the
    others back after station_idle_s of wall time."""
    a, b, c = ring_stations(3, 20.0)
    cfg = AssociationConfig(max_hold_s=100.0, station_idle_s=2.0, max_lateness_s=3.0)
    ra, rb, rc = (station_scores(s, None, n=30) for s in (a, b, c))
    now = 1_000 * NS
    assoc = Associator(cfg, StationInventory([a, b, c]))
    assoc.add_many(ra[:10] + rb[:10], now_ns=now)
    assert assoc.pending == 20  # c has not reported yet
    assoc.add_many([], now_ns=now + 2_500_000_000)
    assert assoc.pending == 0  # c no longer awaited: released
    # c reports up to window 10, then goes silent while a and b go on.
    assoc = Associator(cfg, StationInventory([a, b, c]))
    assoc.add_many(ra[:10] + rb[:10] + rc[:10], now_ns=now)
    assoc.add_many(ra[10:20] + rb[10:20], now_ns=now + NS)
    assert assoc.pending == 20  # c is 10 s behind but reported 1 s ago: still waited for
    assoc.add_many(ra[20:21] + rb[20:21], now_ns=now + 3_500_000_000)
    assert assoc.pending == 0  # silent for 3.5 s and lagging: no longer waited for


def test_late_station_is_processed_and_counted() -> None:
    """A station whose scores all arrive far behind the others is late, yet still joins."""
    stations, streams = event_streams(5)
    on_time = round_robin(streams[:4])
    assoc = Associator(AssociationConfig(max_lateness_s=2.0), StationInventory(stations))
    alerts = assoc.add_many(on_time) + assoc.add_many(streams[4]) + assoc.flush()
    assert assoc.stats["late"] > 0
    assert {c.station for c in alerts[-1].stations} == {s.station for s in stations}
    assert alerts[-1].kind is AlertKind.UPDATE


def test_event_closes_after_ttl() -> None:
    """A consistent trigger after event_ttl_s of event time no longer updates the event."""
    stations, streams = event_streams(3, n=90)
    far = Station("XA", "FAR", "00", 35.0 + 200 / 111.19, -118.0, 0.0)  # 200 km north
    far_p = p_times([far], ORIGIN)[far.station]
    streams.append(station_scores(far, far_p, n=90))
    inv = StationInventory([*stations, far])
    open_cfg = AssociationConfig(max_spread_s=60.0, event_ttl_s=60.0, max_link_km=0.0)  # the far one may join
    alerts = run(Associator(open_cfg, inv), round_robin(streams))
    assert [a.kind for a in alerts] == [AlertKind.NEW, AlertKind.UPDATE]
    assoc = Associator(open_cfg.replace(event_ttl_s=5.0), inv)
    alerts = run(assoc, round_robin(streams))
    assert [a.kind for a in alerts] == [AlertKind.NEW]
    assert assoc.stats["events_closed"] == 1


def test_second_sensor_of_a_station_counts_once() -> None:
    """HH and HN of one station both triggering contribute one station."""
    stations, streams = event_streams(3)
    streams.append([replace(r, channel_prefix="HN") for r in streams[0]])
    assoc = Associator(AssociationConfig(), StationInventory(stations))
    alerts = run(assoc, round_robin(streams))
    assert [a.kind for a in alerts] == [AlertKind.NEW]
    assert len(alerts[0].stations) == 3
    assert assoc.stats["triggers_duplicate_station"] == 1


def test_pick_max_lead_and_fallback() -> None:
    """P time is the latest pick at most pick_max_lead_s before the trigger; with no pick, the triggering window start."""
    st = Station("XA", "P1", "", 35.0, -118.0)
    recs = station_scores(st, T0 + 10_300_000_000, n=20)
    # Move the pick one window earlier than the trigger and drop it from the triggering window.
    recs = [replace(r, p_onset_ns=None) for r in recs]
    recs[9] = replace(recs[9], p_onset_ns=T0 + 9_800_000_000)
    assoc = Associator(AssociationConfig(min_stations=1), StationInventory([st]))
    alerts = run(assoc, recs)
    assert alerts[0].stations[0].p_time_ns == T0 + 9_800_000_000
    assoc = Associator(AssociationConfig(min_stations=1, pick_max_lead_s=0.0), StationInventory([st]))
    alerts = run(assoc, recs)
    assert alerts[0].stations[0].p_time_ns == T0 + 10 * NS  # start of the window ending at T0+11 s
    assert assoc.stats["triggers_without_pick"] == 1


def test_bad_records_are_counted_not_raised() -> None:
    """NaN probabilities and scores far in the future of their scoring time are dropped."""
    st = Station("XA", "B1", "", 35.0, -118.0)
    good = station_scores(st, None, n=3)
    assoc = Associator()
    assoc.add_many(
        [
            replace(good[0], probability=float("nan")),
            replace(good[1], scored_time_ns=good[1].window_end_ns - 3600 * NS),
            good[2],
        ]
    )
    assert assoc.stats["invalid"] == 1 and assoc.stats["future_time"] == 1 and assoc.stats["scores"] == 1


def test_retain_from_follows_state_and_horizon_drops_old() -> None:
    """retain_from_ns covers open triggers/events and is None when nothing is held."""
    stations, streams = event_streams(4, n=40)
    assoc = Associator(AssociationConfig(event_ttl_s=5.0), StationInventory(stations))
    recs = round_robin(streams)
    assert assoc.retain_from_ns() is None
    assoc.add_many(recs[: 4 * 16])  # up to T0+16 s: all four stations triggered
    first_p = min(p_times(stations, ORIGIN).values())
    r = assoc.retain_from_ns()
    assert r is not None and r < first_p
    assoc.add_many(recs[4 * 16 :])
    assoc.flush()
    assert assoc.retain_from_ns() is None  # triggers ended, event closed, nothing pending
    # Restarting past the horizon (all triggers ended by T0+37 s) re-creates nothing.
    fresh = Associator(AssociationConfig(), StationInventory(stations), ignore_before_ns=T0 + 38 * NS)
    assert run(fresh, recs) == []
    assert fresh.stats["before_horizon"] == 4 * 37


def test_event_probability_properties() -> None:
    """More stations and higher station probabilities never lower the event probability."""
    p3 = event_probability([0.9] * 3, 3, 3, 0.3)
    p6 = event_probability([0.9] * 6, 6, 3, 0.3)
    assert 0.0 < p3 < p6 <= 1.0
    assert event_probability([0.6] * 3, 3, 3, 0.3) < p3
    assert event_probability([0.9] * 3, 1.5, 3, 0.3) < p3  # timing-only stations weigh half
    assert event_probability([], 0, 3, 0.3) == 0.0
    # Full correlation: n stations are worth one.
    assert event_probability([0.9] * 5, 5, 3, 1.0) == pytest.approx(0.9 * (1 - 0.5**4))


def test_azimuthal_gap_lowers_event_probability() -> None:
    """Gap <= 180 deg leaves the probability alone; all stations on one side halve it at 360 deg."""
    base = event_probability([0.9] * 5, 5, 3, 0.3)
    assert event_probability([0.9] * 5, 5, 3, 0.3, gap_deg=120.0) == base
    assert event_probability([0.9] * 5, 5, 3, 0.3, gap_deg=270.0) == pytest.approx(base * 0.75)
    assert event_probability([0.9] * 5, 5, 3, 0.3, gap_deg=360.0) == pytest.approx(base * 0.5)


def test_azimuthal_gap() -> None:
    """Four stations N/E/S/W: gap 90; the same four 0.5 deg to the north: one side, gap > 300."""
    around = [(35.1, -118.0), (35.0, -117.9), (34.9, -118.0), (35.0, -118.1)]
    assert azimuthal_gap_deg(35.0, -118.0, around) == pytest.approx(90.0, abs=0.2)
    north = [(lat + 0.5, lon) for lat, lon in around]
    assert azimuthal_gap_deg(35.0, -118.0, north) > 300.0
    assert azimuthal_gap_deg(35.0, -118.0, around[:1]) == 360.0


def test_amplitudes_count_from_the_p_time_not_the_trigger() -> None:
    """Steps between the picked P and the trigger (scored before the trigger opened) count toward the
    P-window peaks; steps after the 3 s window do not."""
    sta, stb = Station("XA", "S00", "00", 35.0, -118.0), Station("XA", "S01", "00", 35.0, -118.05)
    p_ns = T0 + 10 * NS + NS // 2

    def disp(k: int) -> float:
        return {11: 5000.0, 15: 1e6}.get(k, 100.0 * k)  # a big step before the trigger, one after P+3 s

    recs = []
    for k in range(1, 30):
        end, start = T0 + k * NS, T0 + (k - 1) * NS
        on_a, on_b = end >= T0 + 13 * NS, end >= T0 + 16 * NS  # S00 triggers 2.5 s after its P
        recs.append(
            ScoreRecord(
                "XA", "S00", "00", "HH", start, end, 0.99 if on_a else 0.01, on_a,
                p_onset_ns=p_ns if end == T0 + 13 * NS else None,
                peak_amplitude=float(k), peak_displacement=disp(k),
            )
        )  # fmt: skip
        recs.append(
            ScoreRecord(
                "XA", "S01", "00", "HH", start, end, 0.99 if on_b else 0.01, on_b,
                p_onset_ns=T0 + 11 * NS if end == T0 + 16 * NS else None,
            )
        )  # fmt: skip
    alerts = run(Associator(AssociationConfig(min_stations=1), StationInventory([sta, stb])), recs)
    first = alerts[0].stations[0]  # decided at the step ending 13 s: P window [10.5, 13] so far
    assert first.peak_displacement == 5000.0 and first.peak_amplitude == 13.0
    assert first.amplitude_window_s == 2.5
    later = next(c for c in alerts[-1].stations if c.station == "S00")  # S01 joined at 16 s
    assert (
        later.peak_displacement == 5000.0 and later.peak_amplitude == 14.0 and later.amplitude_window_s == 3.0
    )


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        AssociationConfig(min_stations=0)
    with pytest.raises(ConfigError):
        AssociationConfig(correlation=1.5)
    with pytest.raises(ConfigError):
        AssociationConfig(max_spread_s=-1)


def test_noise_only_gives_no_alert() -> None:
    """Sub-threshold noise on many stations never declares an event."""
    rng = random.Random(3)
    stations = ring_stations(10, 30.0)
    streams = [
        [replace(r, probability=rng.uniform(0.0, 0.45)) for r in station_scores(st, None, n=120)]
        for st in stations
    ]
    assoc = Associator(AssociationConfig(), StationInventory(stations))
    assert run(assoc, round_robin(streams)) == []
    assert assoc.stats["triggers"] == 0


def _invariants(alerts: list[AlertRecord], min_stations: int) -> None:
    by_event: dict[str, list[AlertRecord]] = {}
    for a in alerts:
        by_event.setdefault(a.event_id, []).append(a)
    for seq in by_event.values():
        assert [a.version for a in seq] == list(range(1, len(seq) + 1))
        assert seq[0].kind is AlertKind.NEW and len(seq[0].stations) >= min_stations
        assert all(a.kind is not AlertKind.NEW for a in seq[1:])
        assert all(a.kind is not AlertKind.CANCEL for a in seq[:-1])  # CANCEL is final
        for a in seq:
            assert 0.0 <= a.probability <= 1.0
            assert len({(c.network, c.station) for c in a.stations}) == len(a.stations)
            if a.kind is not AlertKind.CANCEL:
                assert len(a.stations) >= min_stations


@settings(max_examples=60, deadline=None)
@given(
    n=hst.integers(1, 7),
    bursts=hst.lists(
        hst.tuples(hst.integers(0, 6), hst.integers(2, 80), hst.integers(1, 25), hst.booleans()), max_size=14
    ),
    seed=hst.integers(0, 10_000),
)
def test_lifecycle_invariants_on_random_trigger_patterns(
    n: int, bursts: list[tuple[int, int, int, bool]], seed: int
) -> None:
    """Any pattern of triggers (glitches, long triggers, with or without picks): versions count up
    from a NEW, CANCEL ends an event, no station twice, and bounded-delay shuffles change nothing."""
    stations = ring_stations(n, 25.0)
    streams = []
    for i, s in enumerate(stations):
        recs = station_scores(s, None, n=100)
        for who, start, length, pick in bursts:
            if who % n != i:
                continue
            for k in range(start, min(start + length, 100)):
                p_on = T0 + (start + 1) * NS - 300_000_000 if pick and k == start else None
                recs[k] = replace(recs[k], triggered=True, probability=0.99, p_onset_ns=p_on)
        streams.append(recs)
    cfg = AssociationConfig(min_stations=2)
    inv = StationInventory(stations)
    ref = run(Associator(cfg, inv), round_robin(streams))
    _invariants(ref, 2)
    rng = random.Random(seed)
    got = run(Associator(cfg, inv), interleave(streams, rng, max_delay_s=1.5))
    assert got == ref


def _line_station(name: str, east_km: float, north_km: float = 0.0) -> Station:
    """A station east_km east and north_km north of the synthetic epicentre (35 N, 118 W)."""
    lat = 35.0 + north_km / 111.19
    return Station("XA", name, "00", lat, -118.0 + east_km / (111.19 * math.cos(math.radians(35.0))), 0.0)


def test_early_stray_member_is_swapped_out_not_split_into_a_second_event() -> None:
    """A station that triggered 3.5 s before the origin (on something local) seeds the event with
    the first two real stations; the later real stations conflict with it alone. They must not
    declare a second event for the same earthquake: the stray member is dropped (UPDATE) once the
    conflicting stations outnumber it, and every real station ends in the one event."""
    real = [_line_station(n, x) for n, x in (("A", 10), ("B", 15), ("C", 60), ("D", 65), ("E", 70))]
    stray = _line_station("S", 0.0, -30.0)
    pt = p_times(real, ORIGIN)
    streams = [station_scores(st, pt[st.station]) for st in real]
    streams.append(station_scores(stray, ORIGIN - 3_500_000_000))
    assoc = Associator(AssociationConfig(), StationInventory([*real, stray]))
    alerts = run(assoc, round_robin(streams))
    assert len({a.event_id for a in alerts}) == 1, [(a.event_id, [c.station for c in a.stations]) for a in alerts]
    assert {c.station for c in alerts[0].stations} == {"S", "A", "B"}  # the stray did seed it
    assert {c.station for c in alerts[-1].stations} == {"A", "B", "C", "D", "E"}
    assert assoc.stats["members_swapped_out"] == 1 and assoc.stats["events"] == 1
    assert any("XA.S dropped" in a.reason for a in alerts)


def test_stray_trigger_cannot_swap_out_a_real_member() -> None:
    """The converse: a stray triggering after a real three-station event, consistent with two of
    its members but not the first (A), brings no more support than the member it would replace,
    so it is rejected and the event keeps its stations."""
    real = [_line_station(n, x) for n, x in (("A", 10), ("B", 15), ("C", 60))]
    stray = _line_station("Z", -30.0)
    pt = p_times(real, ORIGIN)
    streams = [station_scores(st, pt[st.station]) for st in real]
    streams.append(station_scores(stray, ORIGIN + 11_500_000_000))
    assoc = Associator(AssociationConfig(), StationInventory([*real, stray]))
    alerts = run(assoc, round_robin(streams))
    assert len({a.event_id for a in alerts}) == 1
    assert {c.station for c in alerts[-1].stations} == {"A", "B", "C"}
    assert assoc.stats["members_swapped_out"] == 0
    assert assoc.stats["triggers_rejected_inconsistent"] == 1


def _feed_with_a_lagging_station(cfg: AssociationConfig) -> tuple[list[int], list[AlertRecord]]:
    """Six event stations deliver each second's score on time; a seventh, quiet station keeps
    reporting but 3 s behind. Returns the wall step of every alert and the alerts."""
    stations, streams = event_streams(6)
    slow = Station("XA", "SLOW", "00", 35.3, -118.3, 0.0)
    slow_recs = station_scores(slow, None)
    assoc = Associator(cfg, StationInventory([*stations, slow]))
    steps: list[int] = []
    alerts: list[AlertRecord] = []
    now = 1_000 * NS
    for k in range(60):
        batch = [s[k] for s in streams] + ([slow_recs[k - 3]] if k >= 3 else [])
        got = assoc.add_many(batch, now_ns=now + k * NS)
        steps += [k] * len(got)
        alerts += got
    alerts += assoc.flush()
    return steps, alerts


def test_express_triggers_alert_without_waiting_for_the_slowest_station() -> None:
    """In event-time order the NEW alert waits for the lagging station's window of that second
    (up to max_hold_s); with express_triggers it goes out in the wall step in which the third
    station's triggered score arrived, and the event ends with the same stations."""
    cfg = AssociationConfig(max_hold_s=10.0, max_lateness_s=5.0)
    ordered_steps, ordered = _feed_with_a_lagging_station(cfg)
    express_steps, express = _feed_with_a_lagging_station(cfg.replace(express_triggers=True))
    assert ordered[0].kind is AlertKind.NEW and express[0].kind is AlertKind.NEW
    third_trigger_step = (express[0].event_time_ns - T0) // NS - 1  # score k ends at T0 + (k+1) s
    assert express_steps[0] == third_trigger_step
    assert ordered_steps[0] >= third_trigger_step + 3  # held until SLOW reached that second
    assert {c.station for c in express[-1].stations} == {c.station for c in ordered[-1].stations}
    assert len({a.event_id for a in express}) == 1


@pytest.mark.parametrize("seed", range(6))
def test_express_triggers_on_shuffled_arrivals_give_one_event_with_every_station(seed: int) -> None:
    """Express processing gives up exact reproducibility, not the event: on shuffled arrivals
    (per-station order kept) there is one event, never cancelled, holding all eight stations."""
    stations, streams = event_streams(8)
    rng = random.Random(seed)
    recs = interleave(streams, rng, max_delay_s=2.0)
    assoc = Associator(AssociationConfig(express_triggers=True), StationInventory(stations))
    got: list[AlertRecord] = []
    i = 0
    while i < len(recs):
        k = rng.randint(1, 40)
        got += assoc.add_many(recs[i : i + k])
        i += k
    got += assoc.flush()
    assert len({a.event_id for a in got}) == 1 and got[0].kind is AlertKind.NEW
    assert all(a.kind is not AlertKind.CANCEL for a in got)
    assert {c.station for c in got[-1].stations} == {s.station for s in stations}
    assert assoc.stats["expressed"] > 0


def test_a_trigger_far_from_every_member_neither_joins_nor_seeds() -> None:
    """Noise triggers somewhere in a large network come every few seconds; the pairwise travel-time
    test lets one 250 km away join (it allows 46 s there). With the link rule it stays out -- by
    default (the network's geometry: FAR has neighbours 20-40 km away, so its link radius is 80 km,
    the ring's 90-160 km) and with an explicit ``max_link_km`` -- and three far-apart triggers at
    consistent times do not make an event; with the rule off they do."""
    stations, streams = event_streams(4)
    far = Station("XA", "FAR", "00", 35.0 + 250 / 111.19, -118.0, 0.0)
    quiet = [replace(s, network="XQ", latitude=s.latitude + 250 / 111.19) for s in ring_stations(4, 20.0)]
    streams.append(station_scores(far, p_times(stations, ORIGIN)[stations[-1].station] + 2 * NS))
    inv = StationInventory([*stations, far, *quiet])
    for cfg in (AssociationConfig(), AssociationConfig(max_link_km=100.0)):
        alerts = run(Associator(cfg, inv), round_robin(streams))
        assert "FAR" not in {s.station for s in alerts[-1].stations}
    off = run(Associator(AssociationConfig(max_link_km=0.0), inv), round_robin(streams))
    assert "FAR" in {s.station for s in off[-1].stations}

    spread = [Station("XC", f"S{k}", "00", 35.0 + k * 1.5, -118.0 + k * 1.5, 0.0) for k in range(3)]
    noise = [station_scores(s, ORIGIN + k * NS) for k, s in enumerate(spread)]
    assert run(Associator(AssociationConfig(max_link_km=100.0), StationInventory(spread)), round_robin(noise)) == []
    assert run(Associator(AssociationConfig(max_link_km=0.0), StationInventory(spread)), round_robin(noise))
