"""The dashboard's pure parts: station states, events and versions, site countdowns, health parsing, auth."""

from __future__ import annotations

import pytest

from services.alerting.dispatch.api import parse_tokens
from services.alerting.formats.messages import decode_score
from services.common.domain import Station
from services.common.exceptions import ConfigError, DecodeError
from services.dashboard import synthetic as syn
from services.dashboard.core import CoreConfig, DashboardCore, parse_sites, sites_from_subscribers
from services.dashboard.health import backlog, parse_lag_groups, parse_metrics, parse_targets, summarize
from services.dashboard.web import Sessions, check_bearer

NS = 1_000_000_000
T = 1_800_000_000 * NS
STATIONS = [Station("XX", "A", "", 37.8, -122.1), Station("XX", "B", "", 37.9, -122.3)]
QUAKE = [syn.QuakeStation("XX", "A", 37.8, -122.1, 2.0), syn.QuakeStation("XX", "B", 37.9, -122.3, 3.0),
         syn.QuakeStation("XX", "C", 37.7, -122.2, 3.5), syn.QuakeStation("XX", "D", 37.6, -122.4, 4.0)]


def _score(sta: str, end_ns: int, prob: float = 0.02):
    return decode_score(syn.score("XX", sta, end_ns, prob, scored_ns=end_ns + NS // 10).SerializeToString())


def test_station_states_follow_silence_lag_and_rejects() -> None:
    core = DashboardCore(CoreConfig(gap_after_s=5, dead_after_s=60, lag_after_s=10, rejected_hold_s=30), STATIONS)
    assert core.state_of("XX.A", T) == "dead"  # never heard from
    core.on_score(_score("A", T), T)
    assert core.state_of("XX.A", T + NS) == "live"
    assert core.state_of("XX.A", T + 6 * NS) == "gap"
    assert core.state_of("XX.A", T + 61 * NS) == "dead"
    core.on_score(_score("A", T - 20 * NS), T + 62 * NS)  # back, but with old data: lagging
    assert core.state_of("XX.A", T + 62 * NS) == "lagging"
    core2 = DashboardCore(CoreConfig(), STATIONS)
    core2.on_score(_score("B", T - 30 * NS), T)
    assert core2.state_of("XX.B", T) == "lagging"
    core2.on_rejected("XX.B..HH?", "bad_sampling_rate", T + NS)
    assert core2.state_of("XX.B", T + 2 * NS) == "rejected"
    rows = {r[0]: r for r in core2.station_rows(T + 2 * NS)}
    assert rows[1][4] == "bad_sampling_rate"
    assert core2.state_of("XX.B", T + 100 * NS) == "dead"  # the reject expired; silent since


def test_replay_clock_runs_on_data_time() -> None:
    core = DashboardCore(CoreConfig(replay=True), STATIONS)
    data_t = 1_700_000_000 * NS  # an archive from long ago
    core.on_score(_score("A", data_t), T)
    assert core.clock_ns(T + 2 * NS) == data_t + 2 * NS
    assert core.state_of("XX.A", T + NS) == "live"  # not lagging: measured on the data's clock
    core.on_score(_score("B", data_t - 30 * NS), T + NS)
    assert core.state_of("XX.B", T + NS) == "lagging"


def test_alert_versions_are_kept_once_each_in_order() -> None:
    core = DashboardCore(CoreConfig(), STATIONS, parse_sites("Oakland:37.804:-122.271"))
    versions = syn.alert_versions("ev1", T, 37.8, -122.2, 10.0, 5.1, QUAKE)
    for a in reversed(versions):
        core.on_alert(a, T + 5 * NS)
    core.on_alert(versions[0], T + 6 * NS)  # a duplicate delivery
    [ev] = core.events()
    assert [v["version"] for v in ev["versions"]] == [1, 2, 3]
    assert ev["version"] == 3 and ev["magnitude"]["value"] == pytest.approx(5.1)
    assert ev["stations"] == ["XX.A", "XX.B", "XX.C", "XX.D"]
    # stations the inventory lacked come from the alert, with their coordinates
    layout = {row[0]: row for row in core.station_layout()}
    assert layout["XX.D"][1] == pytest.approx(37.6)
    [site] = ev["sites"]
    assert site["name"] == "Oakland" and site["s_arrival_ns"] > site["p_arrival_ns"] > T
    assert site["mmi"] is not None
    [chosen] = core.predict_for(38.5, -122.2)
    assert chosen["epicentral_km"] == pytest.approx(77.8, abs=1.0)


def test_events_are_trimmed_by_count_and_age() -> None:
    core = DashboardCore(CoreConfig(max_events=2, event_retention_s=100))
    for k in range(3):
        core.on_alert(syn.alert_versions(f"ev{k}", T, 37.8, -122.2, 10, 4.0, QUAKE)[0], T + k * NS)
    assert [e["event_id"] for e in core.events()] == ["ev2", "ev1"]
    core.on_alert(syn.alert_versions("late", T, 37.8, -122.2, 10, 4.0, QUAKE)[0], T + 500 * NS)
    assert [e["event_id"] for e in core.events()] == ["late"]


@pytest.mark.parametrize("bad", ["x:1", "x:91:0", "x:a:b", ":1:2"])
def test_bad_sites_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_sites(bad)


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ConfigError):
        CoreConfig(gap_after_s=10, dead_after_s=5)


METRICS = """# TYPE eew_detector_packets_in_total counter
eew_detector_packets_in_total 120.0
# TYPE eew_detector_rejected_packets_total counter
eew_detector_rejected_packets_total{reason="late"} 3.0
eew_detector_rejected_packets_total{reason="bad_sampling_rate"} 1.0
# TYPE eew_detector_execution_provider gauge
eew_detector_execution_provider{model_id="eew_cnnlstm",model_version="1.2.0",provider="CPUExecutionProvider"} 1.0
# TYPE eew_detector_data_latency_seconds histogram
eew_detector_data_latency_seconds_bucket{le="+Inf"} 10.0
eew_detector_data_latency_seconds_count 10.0
eew_detector_data_latency_seconds_sum 5.0
"""


def test_health_reads_packets_rejects_provider_and_interval_latency() -> None:
    first = parse_metrics(METRICS)
    assert first.packets_in == 120 and first.rejected == {"late": 3, "bad_sampling_rate": 1}
    assert first.provider == "CPUExecutionProvider"
    row = summarize("detector", first, None)
    assert row["latency_s"]["detector data latency"] == pytest.approx(0.5)
    later = parse_metrics(METRICS.replace("count 10.0", "count 20.0").replace("sum 5.0", "sum 25.0"))
    assert summarize("detector", later, first)["latency_s"]["detector data latency"] == pytest.approx(2.0)
    assert summarize("x", None, None, error="refused")["up"] is False
    with pytest.raises(DecodeError):
        parse_metrics("this is { not prometheus")
    assert parse_targets("d=http://127.0.0.1:1/metrics") == {"d": "http://127.0.0.1:1/metrics"}
    with pytest.raises(ConfigError):
        parse_targets("d=ftp://x")


def test_tokens_and_sessions() -> None:
    tokens = tuple(parse_tokens("ops:0123456789abcdef:read,admin:fedcba9876543210:admin"))
    assert check_bearer(tokens, "Bearer 0123456789abcdef").name == "ops"
    assert check_bearer(tokens, "Bearer nope") is None
    assert check_bearer(tokens, "Basic 0123456789abcdef") is None
    now = [0.0]
    sessions = Sessions(ttl_s=10, max_sessions=2, clock=lambda: now[0])
    a = sessions.open("ops")
    assert sessions.name(a) == "ops"
    now[0] = 11
    assert sessions.name(a) is None  # expired
    ids = [sessions.open("ops") for _ in range(3)]
    assert sessions.name(ids[-1]) == "ops" and sessions.name(ids[0]) is None  # bounded: oldest forgotten


def test_subscriber_sites_join_the_choices() -> None:
    doc = {"subscribers": [{"name": "Hospital", "latitude": 37.5, "longitude": -122.0},
                           {"name": "broken", "latitude": "x", "longitude": 1}], "next_cursor": None}
    sites = sites_from_subscribers(doc)
    assert [s.name for s in sites] == ["subscriber Hospital"]
    core = DashboardCore(CoreConfig(), sites=parse_sites("Oakland:37.804:-122.271"))
    core.set_subscriber_sites(sites)
    assert [s["name"] for s in core.site_choices()] == ["Oakland", "subscriber Hospital"]
    assert core.sites_generation == 1
    core.set_subscriber_sites(sites)  # unchanged: no new generation (no update sent)
    assert core.sites_generation == 1
    with pytest.raises(DecodeError):
        sites_from_subscribers({"items": []})


def test_backlog_counts_unconsumed_records() -> None:
    assert parse_lag_groups("eew-detector:eew.waveforms.v1") == [("eew-detector", "eew.waveforms.v1")]
    with pytest.raises(ConfigError):
        parse_lag_groups("no-topic")
    # partition 0 consumed to 5 of 8; partition 1 never committed: all of it from its beginning (2..6)
    assert backlog({0: 5}, {0: 0, 1: 2}, {0: 8, 1: 6}) == 3 + 4
    assert backlog({0: 9}, {0: 0}, {0: 8}) == 0  # never negative
