"""Pure helpers around the association: message codec/JSON, offset tracking, delivery backoff."""

from __future__ import annotations

import json
import math

import pytest

from services.alerting.association import NS, AlertKind, AssociationConfig, Associator
from services.alerting.association.synthetic import T0, p_times, ring_stations, round_robin, station_scores
from services.alerting.dispatch.delivery import DeliveryConfig, backoff_s
from services.alerting.formats.messages import (
    alert_line,
    alert_to_dict,
    alert_to_pb,
    decode_score,
    pb_to_record,
)
from services.alerting.offsets import OffsetTracker
from services.common.domain import haversine_km
from services.common.exceptions import ConfigError, DecodeError
from services.common.inventory import StationInventory
from services.common.pb.eew.v1 import messages_pb2 as pb


def test_haversine() -> None:
    assert haversine_km(0, 0, 0, 1) == pytest.approx(111.19, rel=1e-3)
    assert haversine_km(34, -118, 34, -118) == 0.0


def _score_msg(**kw: object) -> pb.StationScore:
    base = dict(
        schema_version=1,
        network="XA",
        station="S1",
        location="00",
        channel_prefix="HH",
        window_start_time_ns=T0,
        window_end_time_ns=T0 + NS,
        probability=0.9,
        triggered=True,
        has_p_onset=True,
        p_onset_time_ns=T0 + 500_000_000,
        p_onset_probability=0.7,
        peak_amplitude=12.0,
        ingest_time_ns=T0 + 2 * NS,
        scored_time_ns=T0 + 2 * NS,
    )
    base.update(kw)
    return pb.StationScore(**base)


def test_decode_score_valid_and_invalid() -> None:
    rec = decode_score(_score_msg().SerializeToString())
    assert rec.stream == "XA.S1.00.HH?" and rec.p_onset_ns == T0 + 500_000_000 and rec.triggered
    assert decode_score(_score_msg(has_p_onset=False).SerializeToString()).p_onset_ns is None
    cases = {
        "malformed_protobuf": b"\xff\xff\xff",
        "schema_version": _score_msg(schema_version=2).SerializeToString(),
        "missing_id": _score_msg(station="").SerializeToString(),
        "bad_probability": _score_msg(probability=float("nan")).SerializeToString(),
        "bad_window": _score_msg(window_end_time_ns=0).SerializeToString(),
        "bad_amplitude": _score_msg(peak_amplitude=float("inf")).SerializeToString(),
    }
    for reason, raw in cases.items():
        with pytest.raises(DecodeError) as ei:
            decode_score(raw)
        assert ei.value.reason == reason
    with pytest.raises(DecodeError):
        decode_score(None)


def _one_alert():
    stations = ring_stations(4, 20.0)
    pt = p_times(stations, T0 + 10 * NS)
    streams = [station_scores(st, pt[st.station]) for st in stations]
    assoc = Associator(AssociationConfig(), StationInventory(stations[:3]))  # 4th without coordinates
    return assoc.add_many(round_robin(streams)) + assoc.flush()


def test_alert_protobuf_roundtrip_and_json_schema() -> None:
    """Alert records survive protobuf; the webhook JSON has the documented fields."""
    alerts = _one_alert()
    rec = alerts[-1]
    msg = alert_to_pb(rec, created_time_ns=T0 + 20 * NS)
    back = pb_to_record(pb.Alert.FromString(msg.SerializeToString()))
    assert back.event_id == rec.event_id and back.version == rec.version and back.kind == rec.kind
    assert [c.p_time_ns for c in back.stations] == [c.p_time_ns for c in rec.stations]
    assert any(c.latitude is None for c in back.stations)
    assert back.probability == pytest.approx(rec.probability, rel=1e-6)
    doc = json.loads(json.dumps(alert_to_dict(msg)))
    assert set(doc) == {
        "schema",
        "event_id",
        "version",
        "type",
        "origin_time",
        "first_p_time",
        "probability",
        "stations",
        "location",
        "magnitude",
        "created_time",
        "reason",
    }
    assert doc["type"] == rec.kind.value and doc["location"] is None and doc["magnitude"] is None
    assert doc["created_time"] == "2023-11-14T22:13:40.000Z" and doc["origin_time"].endswith("Z")
    assert {s["station"] for s in doc["stations"]} == {c.station for c in rec.stations}
    assert any(s["latitude"] is None for s in doc["stations"])
    assert all(not (isinstance(v, float) and math.isnan(v)) for s in doc["stations"] for v in s.values())
    line = alert_line(msg)
    assert rec.event_id in line and f"v{rec.version}" in line and rec.kind.value in line
    assert alerts[0].kind is AlertKind.NEW


def test_offset_tracker_commits_only_what_state_no_longer_needs() -> None:
    t = OffsetTracker()
    for off in range(10):
        t.add("p0", off, T0 + off * NS)
    t.add("p1", 0, None)
    got = t.commit_offsets(T0 + 4 * NS)
    assert got == {"p0": 4, "p1": 1}
    t.mark_committed(got)
    assert t.commit_offsets(T0 + 4 * NS) == {}  # nothing moved
    assert t.commit_offsets(None) == {"p0": 10}
    t.forget("p0")
    assert t.tracked() == 0
    small = OffsetTracker(max_tracked=3)
    for off in range(5):
        small.add("p", off, T0)
    assert small.forgotten == 2 and small.commit_offsets(T0) == {"p": 2}


def test_backoff_is_full_jitter_and_capped() -> None:
    """Retry waits are uniform in [0, min(max, initial * 2**attempt)] (static subscribers: see
    test_alerting_subscribers.py)."""
    import random

    cfg = DeliveryConfig(backoff_initial_s=0.1, backoff_max_s=1.0)
    rng = random.Random(1)
    waits = [backoff_s(a, cfg, rng) for a in range(8) for _ in range(50)]
    assert all(0.0 <= w <= 1.0 for w in waits)
    assert max(backoff_s(0, cfg, rng) for _ in range(100)) <= 0.1
    assert max(backoff_s(6, cfg, rng) for _ in range(200)) > 0.8  # capped at 1.0, not at 6.4
    with pytest.raises(ConfigError):
        DeliveryConfig(attempts=0)
    with pytest.raises(ConfigError):
        DeliveryConfig(workers=0)
