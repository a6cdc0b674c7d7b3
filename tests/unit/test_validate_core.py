"""Scoring core of ``eew validate`` on constructed inputs: coverage, matching, latencies, rates.

Geometry: epicentre at (0, 0), depth 0, stations on the axes at known distances; reference P times
from the same TauP iasp91 table the scoring uses (catalogue picks where a test gives them).
"""

from __future__ import annotations

import math
from functools import partial

import pytest
from pydantic import ValidationError

from services.alerting.association import AlertKind, AlertRecord, AssociationConfig, Contribution, ScoreRecord
from services.common.domain import Station, haversine_km
from services.common.exceptions import ConfigError
from services.common.inventory import StationInventory
from services.common.triggers.hysteresis import TriggerRule
from services.validate.core import (
    NS,
    AlertStation,
    AlertVersion,
    CatalogEvent,
    RunFacts,
    ScoringConfig,
    StreamCoverage,
    compare_with_reference,
    merge_intervals,
    reassociate,
    replay_blocks,
    station_triggers,
)
from services.validate.core import score as _score
from services.validate.traveltime import TauPTravelTimes

T0 = 1_700_000_000 * NS
TT = TauPTravelTimes("iasp91")
score = partial(_score, travel=TT)
STATIONS = {"A": (0.0, 0.1), "B": (0.0, 0.2), "C": (0.1, 0.0), "D": (0.0, -0.3)}
INV = StationInventory(Station("XX", k, "", lat, lon) for k, (lat, lon) in STATIONS.items())
SPANS = [(T0, T0 + 600 * NS), (T0 + 1200 * NS, T0 + 1800 * NS)]


def tp(sta: str, origin_ns: int) -> int:
    """Reference (TauP iasp91) P of a station for an epicentre at (0, 0), depth 0."""
    lat, lon = STATIONS[sta]
    return origin_ns + int(round(TT.p_seconds(haversine_km(0.0, 0.0, lat, lon), 0.0) * NS))


def ev(eid: str, t_s: float, mag: float | None = 3.0) -> CatalogEvent:
    return CatalogEvent(eid, T0 + int(t_s * NS), 0.0, 0.0, 0.0, mag, "ML")


def coverage(stations: str = "ABCD") -> list[StreamCoverage]:
    return [StreamCoverage(f"XX.{s}..HH?", tuple(SPANS)) for s in stations]


def scores(triggers: dict[str, list[int]], stations: str = "ABCD") -> list[ScoreRecord]:
    """1 s scores over the coverage; ``triggers[sta]`` = P times: 3 triggered windows from each."""
    out = []
    for sta in stations:
        hot: dict[int, int] = {}
        for p in triggers.get(sta, []):
            first = (p // NS + 1) * NS  # the window ending just after P
            for k in range(3):
                hot[first + k * NS] = p
        for a, b in SPANS:
            for end in range(a + NS, b + 1, NS):
                p = hot.get(end)
                out.append(ScoreRecord("XX", sta, "", "HH", end - NS, end, 0.995 if p else 0.01, p is not None,
                                       p_onset_ns=p))
    return out


def alert(eid: str, version: int, kind: str, stas: list[tuple[str, int]], **kw: object) -> AlertVersion:
    st = tuple(AlertStation("XX", s, "", p, 0.99, *STATIONS[s]) for s, p in stas)
    first = min(p for _, p in stas)
    return AlertVersion(eid, version, kind, first, first, 0.9, st, **kw)  # type: ignore[arg-type]


@pytest.fixture
def scenario() -> dict:
    """ev1 detected (primary a1, duplicate a2), ev2 missed, ev3 in a gap, ev4 after the archive, f1 false."""
    e1, e2, e3, e4 = ev("ev1", 100), ev("ev2", 400), ev("ev3", 900), ev("ev4", 5000)
    p1 = {s: tp(s, e1.origin_ns) for s in STATIONS}
    trig = {s: [p1[s]] for s in STATIONS}
    trig["A"].append(tp("A", e2.origin_ns))  # ev2: one station only
    false_p = T0 + 1500 * NS + NS // 2
    trig["D"].append(false_p)  # a false trigger in noise
    a1 = [
        alert("a1", 1, "NEW", [("A", p1["A"]), ("C", p1["C"]), ("B", p1["B"])]),
        alert("a1", 2, "UPDATE", [("A", p1["A"]), ("C", p1["C"]), ("B", p1["B"]), ("D", p1["D"])]),
    ]
    a2 = [alert("a2", 1, "NEW", [("A", p1["A"] + 5 * NS), ("B", p1["B"] + 5 * NS), ("D", p1["D"] + 5 * NS)])]
    f1 = [
        alert("f1", 1, "NEW", [("D", false_p), ("A", false_p + NS), ("B", false_p + NS)]),
        alert("f1", 2, "CANCEL", [("D", false_p)]),
    ]
    decision = {("a1", 1): e1.origin_ns + 4 * NS, ("a2", 1): e1.origin_ns + 9 * NS, ("f1", 1): false_p + 2 * NS}
    res = score([e4, e3, e2, e1], coverage(), INV, scores(trig), a2 + f1 + a1,
                ScoringConfig(), decision)
    return {"res": res, "p1": p1, "events": (e1, e2, e3, e4), "false_p": false_p}


def test_statuses_and_counts(scenario: dict) -> None:
    """Detected / missed / not covered as built; alerts classified true, duplicate, false."""
    res = scenario["res"]
    assert [(e.event.event_id, e.status) for e in res.events] == [
        ("ev1", "detected"), ("ev2", "missed"), ("ev3", "not covered"), ("ev4", "not covered")]
    cls = {a.event_id: a.classification for a in res.alerts}
    assert cls == {"a1": "true", "a2": "duplicate", "f1": "false"}
    s = res.summary
    assert (s["covered_events"], s["detected_events"], s["missed_events"], s["not_covered_events"]) == (2, 1, 1, 2)
    assert (s["true_alerts"], s["duplicate_alerts"], s["false_alerts"], s["false_alerts_cancelled"]) == (1, 1, 1, 1)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(1 / 2)


def test_latencies_first_p_and_updates(scenario: dict) -> None:
    """Latency = decision time - origin / - earliest predicted P; updates = versions - 1."""
    res, p1 = scenario["res"], scenario["p1"]
    e = res.events[0]
    first_p = min(p1.values())
    assert e.first_p_ns == first_p and e.first_p_source == "TauP iasp91"
    assert e.first_p_stream in ("XX.A..HH?", "XX.C..HH?")  # equidistant
    assert e.alert_event_id == "a1" and e.duplicate_alerts == ("a2",)
    assert e.latency_after_origin_s == pytest.approx(4.0)
    assert e.latency_after_first_p_s == pytest.approx(4.0 - (first_p - e.event.origin_ns) / NS)
    assert e.updates == 1 and not e.cancelled and e.alert_stations == 4
    assert e.location_error_km is None and e.magnitude_error is None
    assert e.alert_first_p_error_s == pytest.approx(0.0)
    assert res.summary["latency_after_origin_s"]["median"] == pytest.approx(4.0)


def test_missed_event_note_and_picks(scenario: dict) -> None:
    """A covered event nobody alerted on is missed, with how many stations triggered."""
    e2 = scenario["res"].events[1]
    assert e2.recording_streams == 4 and e2.triggered_streams == 1
    assert e2.reasons == ("too few triggered",)
    assert "too few triggered: 1 of 4 scored stations triggered" in e2.note
    e1 = scenario["res"].events[0]
    picks = {a.stream: a.pick_error_s for a in e1.arrivals}
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in picks.values()) and len(picks) == 4


def test_station_false_trigger_rate(scenario: dict) -> None:
    """One trigger outside every event window at D: 1 false trigger per D's noise hours."""
    st = {s.stream: s for s in scenario["res"].stations}
    d = st["XX.D..HH?"]
    assert (d.triggers, d.event_triggers, d.false_triggers) == (2, 1, 1)  # ev1 and the false one
    # 1200 one-second scores; two event windows of 70 s each (P - 10 s .. P + 60 s)
    assert d.noise_hours * 3600 == pytest.approx(1200 - 140, abs=2)
    assert d.false_rate_per_hour == pytest.approx(1 / d.noise_hours)
    assert st["XX.A..HH?"].false_triggers == 0 and st["XX.A..HH?"].event_triggers == 2
    s = scenario["res"].summary
    assert s["false_triggers"] == 1
    assert s["false_triggers_per_station_hour"] == pytest.approx(1 / s["station_noise_hours"])


def test_located_alert_errors_and_tolerances() -> None:
    """A located alert is matched by origin time and epicentre; errors in time, km and magnitude."""
    e1 = ev("ev1", 100, mag=4.0)
    p = tp("A", e1.origin_ns)
    good = alert("loc", 1, "NEW", [("A", p), ("B", p + NS), ("C", p)], has_location=True, latitude=0.09,
                 longitude=0.0, depth_km=5.0, has_magnitude=True, magnitude=3.6)
    good = _replace(good, origin_time_ns=e1.origin_ns + NS // 2)
    far = _replace(alert("far", 1, "NEW", [("A", p)]), has_location=True, latitude=3.0, longitude=0.0,
                   origin_time_ns=e1.origin_ns)
    res = score([e1], coverage(), INV, [], [good, far], ScoringConfig())
    e = res.events[0]
    assert e.status == "detected" and e.alert_event_id == "loc"
    assert e.location_error_km == pytest.approx(haversine_km(0.09, 0.0, 0.0, 0.0))
    assert e.alert_time_error_s == pytest.approx(0.5)
    assert e.magnitude_estimate == pytest.approx(3.6) and e.magnitude_error == pytest.approx(-0.4)
    far_res = next(a for a in res.alerts if a.event_id == "far")
    assert far_res.classification == "false"  # 333 km away: outside 100 km
    res2 = score([e1], coverage(), INV, [], [far], ScoringConfig(distance_tolerance_km=400))
    assert res2.alerts[0].classification == "true"
    late = _replace(alert("late", 1, "NEW", [("A", p + 31 * NS)]))
    assert score([e1], coverage(), INV, [], [late], ScoringConfig()).alerts[0].classification == "false"


def _replace(v: AlertVersion, **kw: object) -> AlertVersion:
    import dataclasses

    return dataclasses.replace(v, **kw)  # type: ignore[arg-type]


def test_station_missing_from_inventory_uses_first_pick() -> None:
    """Without coordinates: warning, no predicted P, first P from the earliest pick, time-only match."""
    e1 = ev("ev1", 100)
    inv = StationInventory([])
    pa = e1.origin_ns + 2 * NS
    sc = scores({"A": [pa], "B": [pa + NS]}, "AB")
    a = AlertVersion("x", 1, "NEW", pa, pa, 0.8, (AlertStation("XX", "A", "", pa, 0.9), AlertStation("XX", "B", "", pa + NS, 0.9)))
    res = score([e1], coverage("AB"), inv, sc, [a], ScoringConfig())
    assert any("not in the inventory" in w and "XX.A" in w for w in res.warnings)
    e = res.events[0]
    assert e.status == "detected" and e.first_p_source == "first pick" and e.first_p_ns == pa
    assert res.alerts[0].distance_basis == "none"
    assert res.summary["stations_not_in_inventory"] == ["XX.A", "XX.B"]
    # decision time reconstructed from the trigger onsets: the later station's first triggered window
    assert res.alerts[0].decision_source == "reconstructed"
    assert res.alerts[0].first_decision_ns == (pa + NS) // NS * NS + NS


def test_empty_inputs_give_empty_but_valid_result() -> None:
    """No archive, no alerts: every event not covered, rates undefined (None), no crash."""
    res = score([ev("ev1", 100)], [], INV, [], [], ScoringConfig())
    assert res.events[0].status == "not covered"
    s = res.summary
    assert s["precision"] is None and s["recall"] is None and s["false_triggers_per_station_hour"] is None
    assert s["archive_start_ns"] is None and s["latency_after_origin_s"]["n"] == 0


def test_result_does_not_depend_on_input_order(scenario: dict) -> None:
    """Shuffled scores and alerts, duplicated scores: the same result."""
    import random

    e1 = scenario["events"][0]
    p1 = scenario["p1"]
    sc = scores({s: [p1[s]] for s in STATIONS})
    al = [alert("a1", 1, "NEW", [("A", p1["A"]), ("B", p1["B"]), ("C", p1["C"])])]
    ref = score([e1], coverage(), INV, sc, al, ScoringConfig())
    rng = random.Random(3)
    sc2 = sc + sc[:50]
    rng.shuffle(sc2)
    got = score([e1], list(reversed(coverage())), INV, sc2, al, ScoringConfig())
    assert got == ref


def test_station_triggers_follow_the_shared_rule() -> None:
    """The alerting's rule (services.common.triggers.hysteresis): a dip shorter than detrigger_s does
    not end a trigger, a trigger shorter than min_trigger_duration_s is retracted (not counted), and
    scores at or above the detrigger level keep a trigger on. (validate's old rule counted the
    one-window glitch at 4 s and split 2-4 s at the dip; the shared rule does not.)"""
    def s(end_s: int, p: float) -> ScoreRecord:
        return ScoreRecord("XX", "A", "", "HH", (end_s - 1) * NS, end_s * NS, p, p >= 0.9,
                           p_onset_ns=(end_s - 1) * NS if p >= 0.9 else None)

    probs = [0.1, 0.99, 0.1, 0.99, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1,  # 2-5 s: on (dip at 3 s, 0.6 >= 0.5 at 5 s)
             0.99, 0.1, 0.1, 0.1, 0.1]  # 11 s: one window only, retracted
    rule = TriggerRule(detrigger_s=2.0, min_trigger_duration_s=2.0)
    trs = station_triggers([s(i + 1, p) for i, p in enumerate(probs)], rule)
    assert [(t.onset_ns // NS, t.last_ns // NS) for t in trs] == [(2, 5)]
    assert trs[0].pick_ns == 1 * NS and trs[0].p_ns == 1 * NS
    assert station_triggers([s(i + 1, p) for i, p in enumerate(probs)], TriggerRule(threshold=0.995)) == []


def test_station_retrigger_keeps_no_stale_p_pick() -> None:
    """A re-trigger (S, coda) whose scores still carry the earlier trigger's P onset has no P pick of
    its own (the pick rule refuses a pick before the previous trigger ended, and counts it): its P
    time is the rule's coarse P, the start of its triggering window, not the earlier P."""
    def s(end_s: int, trig: bool, onset_s: int | None) -> ScoreRecord:
        return ScoreRecord("XX", "A", "", "HH", (end_s - 1) * NS, end_s * NS, 0.99 if trig else 0.1, trig,
                           p_onset_ns=None if onset_s is None else onset_s * NS)

    on = {1, 2, 3, 8, 9, 10, 16, 17, 18}
    onset = {k: 0 for k in range(1, 12)} | {k: 15 for k in (16, 17, 18)}
    recs = [s(k, k in on, onset.get(k) if k in on else None) for k in range(1, 22)]
    trs = station_triggers(recs, TriggerRule(detrigger_s=2.0, min_trigger_duration_s=2.0))
    assert [(t.onset_ns // NS, t.pick_ns) for t in trs] == [(1, 0), (8, None), (16, 15 * NS)]
    assert trs[1].p_ns == 7 * NS and trs[1].picks_refused == 1


def test_replay_blocks_cut_every_long_gap_once() -> None:
    """Boundaries inside every gap longer than gap_s, as few as possible, on whole seconds."""
    c1 = StreamCoverage("XX.A..HH?", ((0, 100 * NS), (300 * NS + 123, 400 * NS), (405 * NS, 500 * NS)))
    c2 = StreamCoverage("XX.B..HH?", ((0, 120 * NS), (310 * NS, 500 * NS)))
    c3 = StreamCoverage("XX.C..HH?", ((0, 1000 * NS),))
    blocks = replay_blocks([c1, c2, c3], gap_s=10.0)
    assert blocks == [(None, 300 * NS), (300 * NS, None)]  # one cut serves both gaps; 5 s gap ignored
    assert replay_blocks([c3], 10.0) == [(None, None)]
    c4 = StreamCoverage("XX.D..HH?", ((0, 10 * NS), (700 * NS, 800 * NS)))
    assert replay_blocks([c1, c4], 10.0) == [(None, 300 * NS), (300 * NS, None)]  # 300 lies in D's gap too
    c5 = StreamCoverage("XX.E..HH?", ((0, 450 * NS), (700 * NS + 5, 800 * NS)))
    assert replay_blocks([c1, c5], 10.0) == [(None, 300 * NS), (300 * NS, 700 * NS), (700 * NS, None)]


def test_merge_intervals_and_coverage() -> None:
    iv = merge_intervals([(5, 10), (0, 5), (12, 20), (30, 30)], slack_ns=2)
    assert iv == ((0, 20),)
    c = StreamCoverage("XX.A..HH?", ((0, 10), (20, 30)))
    assert c.covers(0) and c.covers(25) and not c.covers(10) and not c.covers(15)
    assert c.overlaps(5, 21) and not c.overlaps(10, 20)


def test_compare_with_reference_reports_differences() -> None:
    """Identical versions give their decision times; a missing or different version is listed."""
    c = Contribution("XX", "A", "", 5 * NS, 0.9, 0.0, 0.1)
    rec = AlertRecord("e", 1, AlertKind.NEW, 5 * NS, 5 * NS, 0.9, (c,), 0, event_time_ns=7 * NS)
    rec2 = AlertRecord("e", 2, AlertKind.CANCEL, 5 * NS, 5 * NS, 0.0, (c,), 0, event_time_ns=9 * NS)
    a = AlertVersion("e", 1, "NEW", 5 * NS, 5 * NS, 0.9, (AlertStation("XX", "A", "", 5 * NS, 0.9),))
    times, diffs = compare_with_reference([a], [rec])
    assert times == {("e", 1): 7 * NS} and diffs == []
    times, diffs = compare_with_reference([a], [rec, rec2])
    assert len(diffs) == 1 and "e v2" in diffs[0]
    b = _replace(a, kind="UPDATE")
    assert compare_with_reference([b], [rec])[0] == {}


def test_reassociate_runs_the_alerting_core_in_event_time_order(scenario: dict) -> None:
    """The reference association of shuffled scores gives the same alerts as of sorted scores."""
    import random

    p1 = scenario["p1"]
    sc = scores({s: [p1[s]] for s in STATIONS})
    cfg = AssociationConfig(min_stations=3, min_trigger_duration_s=0.0)
    ref = reassociate(sc, INV, cfg)
    assert ref and ref[0].kind is AlertKind.NEW and len(ref[0].stations) >= 3
    rng = random.Random(5)
    sh = list(sc)
    rng.shuffle(sh)
    assert reassociate(sh, INV, cfg) == ref


def test_config_validation() -> None:
    """The knobs are validated where they are declared (ScoringTuning), the rule by TriggerRule."""
    with pytest.raises(ValidationError, match="nth_p"):
        ScoringConfig(nth_p=0)
    with pytest.raises(ValidationError, match="time_tolerance_s"):
        ScoringConfig(time_tolerance_s=math.nan)
    with pytest.raises(ConfigError):
        ScoringConfig(trigger=TriggerRule(threshold=1.5))


def test_catalogue_picks_are_the_reference_p_and_named() -> None:
    """A catalogue P pick replaces the model time at its station; the others keep TauP; both named.
    A detector pick 4 s after the analyst's pick (40 s off the model) is a P detection, not false."""
    base = ev("ev1", 100)
    pick_a = base.origin_ns + 40 * NS  # far from the model's P (~2 s at 11 km)
    e1 = CatalogEvent("ev1", base.origin_ns, 0.0, 0.0, 0.0, 3.0, "ML", p_picks=(("XX.A", pick_a),))
    sc = scores({"A": [pick_a + 1 * NS]})
    res = score([e1], coverage(), INV, sc, [], ScoringConfig())
    arr = {a.stream: a for a in res.events[0].arrivals}
    assert arr["XX.A..HH?"].predicted_p_ns == pick_a and arr["XX.A..HH?"].p_source == "catalogue pick"
    assert arr["XX.B..HH?"].predicted_p_ns == tp("B", e1.origin_ns) and arr["XX.B..HH?"].p_source == "TauP iasp91"
    assert arr["XX.A..HH?"].p_detected and arr["XX.A..HH?"].pick_error_s == pytest.approx(1.0)
    assert res.summary["false_triggers"] == 0 and res.false_triggers == ()
    assert res.summary["reference_p_sources"] == {"TauP iasp91": 3, "catalogue pick": 1}


def test_one_trigger_counts_for_one_event_and_false_triggers_are_listed() -> None:
    """Two events 20 s apart: each trigger goes to the event whose reference P is nearest its pick;
    a trigger far from both is listed as false with its stream and time."""
    e1, e2 = ev("ev1", 100), ev("ev2", 120)
    p1, p2 = tp("A", e1.origin_ns), tp("A", e2.origin_ns)
    noise = T0 + 400 * NS + NS // 3
    res = score([e1, e2], coverage(), INV, scores({"A": [p1, p2, noise]}), [], ScoringConfig())
    t1 = {a.stream: a.pick_ns for a in res.events[0].arrivals if a.pick_ns is not None}
    t2 = {a.stream: a.pick_ns for a in res.events[1].arrivals if a.pick_ns is not None}
    assert t1 == {"XX.A..HH?": p1} and t2 == {"XX.A..HH?": p2}
    assert [(t.stream, t.pick_ns) for t in res.false_triggers] == [("XX.A..HH?", noise)]
    st = {s.stream: s for s in res.stations}["XX.A..HH?"]
    assert (st.triggers, st.event_triggers, st.false_triggers) == (3, 2, 1)


@pytest.mark.slow  # TauP tables for its depths: ~10 s
def test_every_miss_has_a_reason_from_the_run() -> None:
    """No scorable data (with the rejection reasons), too few recorded, not associated (link rule),
    outside the network."""
    e1 = ev("ev1", 100)
    facts = RunFacts(rejected_streams={f"XX.{s}..HH?": "rate_below_minimum" for s in "ABCD"},
                     rejected_packets={"rate_below_minimum": 40})
    res = score([e1], coverage(), INV, [], [], ScoringConfig(), facts=facts)
    e = res.events[0]
    assert e.status == "missed" and e.reasons == ("no scorable data",)
    assert "rate_below_minimum" in e.note and "rejected packets: rate_below_minimum 40" in e.note
    assert res.summary["missed_by_reason"] == {"no scorable data": 1}

    res = score([e1], coverage("AB"), INV, scores({}, "AB"), [], ScoringConfig())
    assert res.events[0].reasons == ("too few stations recorded it",)

    p1 = {s: tp(s, e1.origin_ns) for s in STATIONS}
    sc = scores({s: [p1[s]] for s in STATIONS})
    assoc = AssociationConfig(max_link_km=5.0)  # stations are 11-33 km apart: no two linked
    res = score([e1], coverage(), INV, sc, [], ScoringConfig(), association=assoc)
    e = res.events[0]
    assert e.reasons == ("not associated",) and "--max-link-km 5" in e.note and "has 1 (need 3)" in e.note

    far = CatalogEvent("far", T0 + 100 * NS, 3.0, 0.0, 10.0, 4.0)  # 333 km away: first P ~45 s after origin
    res = score([far], coverage(), INV, [], [], ScoringConfig(), facts=facts)
    assert res.events[0].reasons == ("no scorable data", "outside the network")
    assert res.events[0].note.startswith("outside the network: first P")


def test_versions_bins_and_reliability(scenario: dict) -> None:
    """Every alert version with its decision time after origin and after the n-th P; bins; Brier."""
    res, p1 = scenario["res"], scenario["p1"]
    e1 = scenario["events"][0]
    v = {(x.event_id, x.version): x for x in res.versions}
    assert set(v) == {("a1", 1), ("a1", 2), ("a2", 1), ("f1", 1), ("f1", 2)}
    assert v[("a1", 1)].after_origin_s == pytest.approx(4.0)
    third = sorted(p1.values())[2]
    assert v[("a1", 1)].after_nth_p_s == pytest.approx((e1.origin_ns + 4 * NS - third) / NS)
    assert v[("f1", 1)].after_origin_s is None and v[("a1", 1)].stations == ("XX.A", "XX.B", "XX.C")
    mag = {r["magnitude"]: r for r in res.bins["magnitude"]}
    assert mag["3-4"]["events"] == 4 and mag["3-4"]["covered"] == 2 and mag["3-4"]["detected"] == 1
    assert mag["3-4"]["detection_rate"] == pytest.approx(0.5)
    rel = res.reliability
    assert rel["alerts"] == 3  # a1 and a2 matched, f1 false, all at probability 0.9
    assert rel["brier"] == pytest.approx((2 * 0.1**2 + 0.9**2) / 3)
    b = next(x for x in rel["bins"] if x["alerts"])
    assert b["alerts"] == 3 and b["matched_share"] == pytest.approx(2 / 3)


def test_an_alert_of_another_earthquake_is_not_the_reason() -> None:
    """Four stations triggered and an alert with the same stations exists, but an hour later: the
    miss is "not associated", not "alert not matched"."""
    e1 = ev("ev1", 100)
    p1 = {s: tp(s, e1.origin_ns) for s in STATIONS}
    later = [alert("x", 1, "NEW", [(s, p1[s] + 1300 * NS) for s in "ABC"])]
    res = score([e1], coverage(), INV, scores({s: [p1[s]] for s in STATIONS}), later, ScoringConfig(),
                association=AssociationConfig())
    assert res.events[0].reasons == ("not associated",), res.events[0].note
