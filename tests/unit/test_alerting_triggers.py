"""Station triggers inside the Associator (issue 13): a re-trigger on a new P while the probability
stays high, and the P pick that belongs to a trigger (older picks refused, counted, exported)."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry

from services.alerting.association import NS, AlertKind, AssociationConfig, Associator, ScoreRecord
from services.alerting.association.synthetic import T0, p_times, ring_stations, round_robin, station_scores
from services.alerting.metrics import AlertingMetrics
from services.common.domain import Station
from services.common.inventory import StationInventory


def _coda_scores(st: Station, p1: int, p2: int, n: int = 90) -> list[ScoreRecord]:
    """One station: P1, then a coda whose probability never drops, then a new P2 (the detector
    sends ``new_trigger`` with P2's onset)."""
    out = []
    for k in range(1, n + 1):
        end = T0 + k * NS
        on = end > p1
        onset = p1 if on else None
        new = on and end - NS <= p1
        if end > p2:
            onset, new = p2, end - NS <= p2
        out.append(
            ScoreRecord(
                st.network, st.station, st.location, "HH", end - NS, end,
                probability=0.99 if on else 0.02, triggered=on, p_onset_ns=onset, new_trigger=new,
            )
        )
    return out


def test_a_new_p_in_the_coda_triggers_again_and_makes_a_second_event() -> None:
    stations = ring_stations(4, 20.0)
    o1, o2 = T0 + 10 * NS, T0 + 50 * NS
    pt1, pt2 = p_times(stations, o1), p_times(stations, o2)
    streams = [_coda_scores(st, pt1[st.station], pt2[st.station]) for st in stations]
    assoc = Associator(AssociationConfig(), StationInventory(stations))
    alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
    new = [a for a in alerts if a.kind is AlertKind.NEW]
    assert len(new) == 2, [(a.kind, a.reason) for a in alerts]
    assert {c.p_time_ns for c in new[0].stations} <= set(pt1.values())
    assert {c.p_time_ns for c in new[1].stations} <= set(pt2.values())
    assert new[0].event_id != new[1].event_id
    assert assoc.stats["triggers"] == 8 and assoc.stats["triggers_retracted"] == 0
    # each station's first P, still carried by the coda's scores, is refused for its second trigger
    assert assoc.stats["picks_refused"] == 4


def test_same_scores_without_new_trigger_stay_one_trigger_per_station() -> None:
    """The rule before issue 13: a probability that stays high keeps the first trigger on."""
    stations = ring_stations(4, 20.0)
    pt1, pt2 = p_times(stations, T0 + 10 * NS), p_times(stations, T0 + 50 * NS)
    streams = [
        [replace(r, new_trigger=False) for r in _coda_scores(st, pt1[st.station], pt2[st.station])]
        for st in stations
    ]
    assoc = Associator(AssociationConfig(), StationInventory(stations))
    alerts = assoc.add_many(round_robin(streams)) + assoc.flush()
    assert [a.kind for a in alerts if a.kind is AlertKind.NEW] == [AlertKind.NEW]
    assert assoc.stats["triggers"] == 4


def test_a_stale_pick_is_refused_counted_and_exported() -> None:
    st = Station("XA", "P1", "", 35.0, -118.0)
    recs = station_scores(st, T0 + 10_300_000_000, n=20)
    stale = T0 + 10_300_000_000 - 265 * NS  # a pick minutes before its trigger (issue 13)
    recs = [replace(r, p_onset_ns=stale) if r.p_onset_ns is not None else r for r in recs]
    assoc = Associator(AssociationConfig(min_stations=1, pick_max_lead_s=10.0), StationInventory([st]))
    alerts = assoc.add_many(recs) + assoc.flush()
    assert alerts[0].stations[0].p_time_ns == T0 + 10 * NS  # coarse: the triggering window's start
    assert assoc.stats["picks_refused"] == 1 and assoc.stats["triggers_without_pick"] == 1
    registry = CollectorRegistry()
    metrics = AlertingMetrics(registry)
    metrics.sync_core(assoc.stats)
    assert registry.get_sample_value("eew_alerting_picks_refused_total") == 1.0
