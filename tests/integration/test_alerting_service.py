"""The alerting service on the real broker with real HTTP receivers: alerts, retries, restarts.

Other tests may write to the same scores topic, so every test uses its own stations (random
station codes) and consumer group, and only looks at alerts made of its own stations.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from services.alerting.association import NS, ScoreRecord
from services.alerting.association.synthetic import p_times, ring_stations, round_robin, station_scores
from services.alerting.formats.messages import record_to_score
from services.alerting.service import AlertingService
from services.alerting.settings import AlertingSettings
from services.broker.embedded import EmbeddedBroker
from services.common.codec import stream_key
from services.common.domain import Station
from services.common.kafka import make_producer
from services.common.lifecycle import StopFlag
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import now_ns
from services.common.topics import ALERTS, DEADLETTER, SCORES
from tests.integration.test_alerting_delivery import Receiver, closed_port_url

pytestmark = pytest.mark.integration

SECRET = "service-webhook-secret-123"


# Every station any scenario of this session used: each service gets all their coordinates, since a
# fresh consumer group re-reads the earlier tests' scores too (as a real inventory would cover them).
_ALL_STATIONS: list[Station] = []


class Scenario:
    """Unique stations around an epicentre, with scores in the recent past. Each scenario has its own
    epicentre (3 deg apart): two identical earthquakes at one place seconds apart (tests run seconds
    apart) would be one event, the second's P arriving in the first's S window."""

    count = 0

    def __init__(self, tmp_path: Path, n: int = 5) -> None:
        self.tag = uuid.uuid4().hex[:3].upper()
        self.net = "XT"
        self.lon0 = -118.0 + 3.0 * Scenario.count
        Scenario.count += 1
        base = ring_stations(n + 1, 20.0, lon0=self.lon0, net=self.net)
        # Rename to unique codes; the extra (n+1-th) station is moved to 60 km for late joins.
        self.stations = [
            Station(self.net, f"{self.tag}{i}", "00", s.latitude, s.longitude) for i, s in enumerate(base[:n])
        ]
        self.extra = Station(self.net, f"{self.tag}X", "00", 35.0 + 60 / 111.19, self.lon0)
        self.t0 = (now_ns() // NS - 120) * NS
        self.origin = self.t0 + 10 * NS
        self.p = p_times([*self.stations, self.extra], self.origin, lon0=self.lon0)
        self.csv = tmp_path / f"stations-{self.tag}.csv"
        _ALL_STATIONS.extend([*self.stations, self.extra])
        rows = ["network,station,location,latitude,longitude,elevation_m"]
        rows += [f"{s.network},{s.station},{s.location},{s.latitude},{s.longitude},0" for s in _ALL_STATIONS]
        self.csv.write_text("\n".join(rows) + "\n")

    def scores(self, stations: list[Station]) -> list[ScoreRecord]:
        return round_robin([station_scores(s, self.p[s.station], n=60, t0=self.t0) for s in stations])

    def mine(self, alert: pb.Alert) -> bool:
        return any(s.network == self.net and s.station.startswith(self.tag) for s in alert.stations)


def produce(bootstrap: str, recs: list[ScoreRecord], raw: list[bytes] = ()) -> None:
    producer = make_producer(bootstrap, "test-alerting-producer")
    try:
        futures = []
        for r in recs:
            msg = record_to_score(r)
            msg.ingest_time_ns = now_ns()
            msg.scored_time_ns = now_ns()
            key = stream_key(r.network, r.station, r.location, r.channel_prefix).encode()
            futures.append(producer.send(SCORES.name, key=key, value=msg.SerializeToString()))
        for value in raw:
            futures.append(producer.send(SCORES.name, key=b"XT.BAD..HH?", value=value))
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(timeout=5)


def read_topic(bootstrap: str, topic: str, idle_s: float = 1.5) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap],
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out, last = [], time.monotonic()
        while time.monotonic() - last < idle_s:
            for msgs in consumer.poll(timeout_ms=200).values():
                out.extend(msgs)
                last = time.monotonic()
        return out
    finally:
        consumer.close(autocommit=False)


def read_alerts(bootstrap: str, sc: Scenario) -> list[pb.Alert]:
    alerts = [pb.Alert.FromString(m.value) for m in read_topic(bootstrap, ALERTS.name)]
    return [a for a in alerts if sc.mine(a)]


class Running:
    """The service in a thread, stopped the way SIGTERM stops it (the StopFlag)."""

    def __init__(self, settings: AlertingSettings, registry: CollectorRegistry) -> None:
        self.stop_flag = StopFlag()
        self.service = AlertingService(settings, registry, self.stop_flag)
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, name="alerting-under-test", daemon=True)
        self.thread.start()
        assert self.service.ready.wait(60), "service did not join the group and start consuming"

    def _run(self) -> None:
        self.rc = self.service.run()

    def stop(self) -> float:
        t0 = time.monotonic()
        self.stop_flag.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "service did not stop"
        return time.monotonic() - t0


def settings_for(
    broker: EmbeddedBroker, sc: Scenario, group: str, urls: list[str], **kw: object
) -> AlertingSettings:
    return AlertingSettings(
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        stations=sc.csv,
        webhook_urls=",".join(urls),
        outbox_db=f"sqlite:///{sc.csv.parent / f'outbox-{group}.sqlite'}",
        restore_idle_s=0.5,
        delivery_attempts=5,
        delivery_backoff_initial_s=0.05,
        delivery_backoff_max_s=0.2,
        delivery_connect_timeout_s=0.5,
        delivery_read_timeout_s=1.0,
        drain_s=1.0,
        **kw,
    )


def wait_until(cond, timeout_s: float = 60.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_scores_through_broker_give_one_event_at_topic_and_webhooks(
    broker: EmbeddedBroker, registry: CollectorRegistry, tmp_path: Path
) -> None:
    """5 consistent stations -> exactly one NEW (+ UPDATE) on the alerts topic and at the receiver
    (which fails twice first and verifies every HMAC signature); an unreachable subscriber is
    dead-lettered and counted failed; bad input dead-lettered."""
    sc = Scenario(tmp_path)
    rx = Receiver(fail_first=2, secret=SECRET)
    dead = closed_port_url()
    dead_name = f"127.0.0.1:{dead.split(':')[2].split('/')[0]}/hook"
    garbage = b"\xff\xfe not a protobuf " + sc.tag.encode()
    settings = settings_for(broker, sc, f"test-alerting-{sc.tag}", [dead, rx.url], webhook_secret=SECRET)
    run = Running(settings, registry)

    def dead_failed() -> float:
        return metric(
            registry, "eew_alert_deliveries_total", subscriber=dead_name, channel="webhook", outcome="failed"
        )

    try:
        produce(broker.bootstrap, sc.scores(sc.stations), raw=[garbage])
        assert wait_until(lambda: any(len(d["stations"]) == 5 for d in rx.accepted)), rx.accepted
        assert wait_until(lambda: dead_failed() >= len(rx.accepted), 30)
    finally:
        stop_s = run.stop()
        rx.close()
    print(f"service stopped in {stop_s:.2f} s after the stop flag")
    assert run.rc == 0

    alerts = read_alerts(broker.bootstrap, sc)
    types = [pb.AlertType.Name(a.type) for a in alerts]
    assert types.count("ALERT_TYPE_NEW") == 1 and "ALERT_TYPE_CANCEL" not in types
    assert len({a.event_id for a in alerts}) == 1
    assert [a.version for a in alerts] == list(range(1, len(alerts) + 1))
    final = alerts[-1]
    assert {s.station for s in final.stations} == {s.station for s in sc.stations}
    assert final.first_p_time_ns == min(sc.p[s.station] for s in sc.stations)
    for s in final.stations:
        assert s.p_time_ns == sc.p[s.station]
    assert 0.5 < final.probability <= 1.0 and final.latest_ingest_time_ns > 0

    delivered = [(d["event_id"], d["version"]) for d in rx.accepted if d["event_id"] == final.event_id]
    assert sorted(delivered) == [(a.event_id, a.version) for a in alerts]  # each version exactly once
    keys = [h["idempotency-key"] for h, _ in rx.requests]
    assert keys[0] == keys[1] == keys[2] == f"{final.event_id}:1"  # two 500s, then accepted

    assert rx.refused == [] and all(h["webhook-signature"].startswith("v1,") for h, _ in rx.requests)
    assert dead_failed() == len(alerts)
    assert metric(registry, "eew_alerts_out_total", type="NEW") >= 1
    assert metric(registry, "eew_alert_processing_latency_seconds_count") >= len(alerts)
    assert metric(registry, "eew_alerting_decode_errors_total", reason="malformed_protobuf") >= 1
    dl = [m for m in read_topic(broker.bootstrap, DEADLETTER.name) if m.value == garbage]
    assert len(dl) == 1
    headers = {k: v.decode() for k, v in dl[0].headers}
    assert headers["reason"] == "malformed_protobuf" and headers["source_topic"] == SCORES.name
    assert int(headers["source_offset"]) >= 0
    lat = metric(registry, "eew_alert_processing_latency_seconds_sum") / max(
        1.0, metric(registry, "eew_alert_processing_latency_seconds_count")
    )
    print(f"mean processing latency (score ingest -> alert): {lat * 1e3:.1f} ms over {len(alerts)} alerts")


def test_restart_with_same_group_does_not_duplicate_and_continues_versions(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Stop after the alerts, restart with the same group: the re-read scores rebuild the event
    without re-emitting or re-delivering it; a later station then gives the next version."""
    sc = Scenario(tmp_path)
    rx = Receiver()
    group = f"test-alerting-restart-{sc.tag}"
    reg_a = CollectorRegistry()
    run = Running(settings_for(broker, sc, group, [rx.url]), reg_a)
    try:
        produce(broker.bootstrap, sc.scores(sc.stations))
        assert wait_until(lambda: any(len(d["stations"]) == 5 for d in rx.accepted))
    finally:
        run.stop()
    first = read_alerts(broker.bootstrap, sc)
    assert len(first) >= 1
    n_first = len(rx.accepted)

    reg_b = CollectorRegistry()
    run = Running(settings_for(broker, sc, group, [rx.url]), reg_b)
    try:
        # The restarted service re-reads the scores behind the open event and suppresses its versions.
        assert wait_until(lambda: metric(reg_b, "eew_alerting_alerts_suppressed_total") >= len(first), 30)
        assert read_alerts(broker.bootstrap, sc) == first and len(rx.accepted) == n_first
        produce(broker.bootstrap, sc.scores([sc.extra]))
        assert wait_until(lambda: any(len(d["stations"]) == 6 for d in rx.accepted))
    finally:
        run.stop()
        rx.close()
    alerts = read_alerts(broker.bootstrap, sc)
    assert len({a.event_id for a in alerts}) == 1
    assert [a.version for a in alerts] == list(range(1, len(first) + 2))
    assert [pb.AlertType.Name(a.type) for a in alerts].count("ALERT_TYPE_NEW") == 1
    assert {s.station for s in alerts[-1].stations} == {s.station for s in [*sc.stations, sc.extra]}
    delivered = sorted((d["event_id"], d["version"]) for d in rx.accepted)
    assert delivered == [(a.event_id, a.version) for a in alerts]
    assert metric(reg_b, "eew_alerts_out_total", type="UPDATE") >= 1


def test_cli_serves_health_and_metrics_and_exits_cleanly_on_sigterm(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """`eew alert` as a process: /readyz turns 200 once consuming, /metrics has the alerting
    metrics, and SIGTERM makes it flush, commit and exit 0."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from services.broker.embedded import free_port

    port = free_port()
    env = {**os.environ, "EEW_GROUP_ID": f"test-alerting-cli-{uuid.uuid4().hex[:6]}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "alert",
            "--bootstrap-servers",
            broker.bootstrap,
            "--http-port",
            str(port),
            "--restore-idle-s",
            "0.5",
            "--webhook-urls",
            closed_port_url(),
            "--outbox-db",
            f"sqlite:///{tmp_path / 'outbox.sqlite'}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, 60), "never ready"
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
        assert health.status_code == 200 and health.json()["alive"] is True
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
        assert (
            "eew_alerting_scores_in_total" in text and "eew_alert_processing_latency_seconds_bucket" in text
        )
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        print(f"eew alert exited {rc} {time.monotonic() - t0:.2f} s after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert rc == 0, out[-3000:]
    assert "received SIGTERM" in out and "alerting: stopped" in out


def test_api_subscriber_gets_personalised_signed_alert_through_the_service(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """The service's own API (--api-port) registers a subscriber with a site and a webhook; the
    scores of an event on the broker then reach it signed, with its S arrival and warning time."""
    import httpx
    from pydantic import SecretStr

    sc = Scenario(tmp_path)
    rx = Receiver(secret=SECRET)
    token = "svc-api-token-0123456789"
    settings = settings_for(
        broker,
        sc,
        f"test-alerting-api-{sc.tag}",
        [],
        api_port=0,
        api_tokens=SecretStr(f"ops:{token}"),
        allow_private_webhooks=True,
    )
    run = Running(settings, CollectorRegistry())
    try:
        assert run.service.api is not None
        spec = {
            "name": "site near the event",
            "latitude": 35.3,
            "longitude": -118.1,
            "min_probability": 0.5,
            "channels": {"webhook": {"url": rx.url, "secret": SECRET}},
        }
        r = httpx.post(
            f"{run.service.api.url}/v1/subscribers",
            json=spec,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        produce(broker.bootstrap, sc.scores(sc.stations))
        assert wait_until(
            lambda: any(d["stations"] and d["stations"][0]["station"].startswith(sc.tag) for d in rx.accepted)
        )
    finally:
        run.stop()
        rx.close()
    mine = [d for d in rx.accepted if any(s["station"].startswith(sc.tag) for s in d["stations"])]
    assert mine and rx.refused == []
    assert all(d["site"] is None or d["site"]["subscriber_id"] == sid for d in mine)
    located = [d for d in mine if d["location"] is not None]
    for d in located:  # a located version tells the site when the S wave comes
        assert d["site"]["s_arrival_time"].endswith("Z") and isinstance(d["site"]["warning_time_s"], float)
    print(
        f"{len(mine)} versions to the API subscriber, {len(located)} located; site fields: "
        + "; ".join(f"v{d['version']} {d['site']}" for d in mine)
    )


def test_alert_on_topic_but_not_in_outbox_is_delivered_at_start(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Crash between the broker's acknowledgement and the outbox write: the next start finds the
    alert on the alerts topic, missing from the outbox, and delivers it (once, not again later)."""
    from services.alerting.dispatch.outbox import Outbox

    sc = Scenario(tmp_path)
    rx = Receiver()
    group = f"test-alerting-reconcile-{sc.tag}"
    settings = settings_for(broker, sc, group, [rx.url])
    Outbox.open(settings.outbox_db).close()  # the outbox existed before the crash
    alert = pb.Alert(
        schema_version=1,
        event_id=f"eew-reconcile-{sc.tag}",
        version=1,
        type=pb.ALERT_TYPE_NEW,
        origin_time_ns=sc.origin,
        first_p_time_ns=sc.origin,
        probability=0.9,
        created_time_ns=now_ns(),
        stations=[
            pb.StationContribution(
                network=s.network, station=s.station, p_time_ns=sc.p[s.station], probability=0.9
            )
            for s in sc.stations[:3]
        ],
    )
    producer = make_producer(broker.bootstrap, "test-alerting-crash")
    try:
        producer.send(ALERTS.name, key=alert.event_id.encode(), value=alert.SerializeToString()).get(
            timeout=30
        )
    finally:
        producer.close(timeout=5)
    for attempt in range(2):  # the second start must not deliver it again
        run = Running(settings, CollectorRegistry())
        try:
            if attempt == 0:
                assert wait_until(lambda: any(d["event_id"] == alert.event_id for d in rx.accepted), 30)
            else:  # what the start's reconcile submitted is fanned out and delivered once delivery is idle
                assert run.service.delivery.wait_idle(30), "delivery still busy 30 s after the restart"
        finally:
            run.stop()
    rx.close()
    assert [d["event_id"] for d in rx.accepted].count(alert.event_id) == 1


def test_rebuilt_event_keeps_the_id_emitted_before_a_restart() -> None:
    """Core-level check of the restart rebuild (no broker): the run before the restart may have
    seeded the event with other stations (express triggers see arrival order), so the event-time
    rebuild would compute another id; an event restored from the alerts topic that shares stations
    and first P lends its id, so one earthquake stays one event. A restored event at other times
    does not."""
    from services.alerting.association import AssociationConfig, Associator, make_event_id
    from services.common.inventory import StationInventory

    stations = ring_stations(6, 20.0)
    origin = 1_700_000_000 * NS
    pt = p_times(stations, origin)
    recs = round_robin([station_scores(st, pt[st.station]) for st in stations])

    def rebuild(restored: dict[str, tuple[frozenset[str], int]] | None) -> list[str]:
        assoc = Associator(AssociationConfig(), StationInventory(stations), restored_events=restored)
        alerts = assoc.add_many(recs) + assoc.flush()
        seeds.append(sorted(f"{c.network}.{c.station}" for c in alerts[0].stations))
        return [a.event_id for a in alerts]

    seeds: list[list[str]] = []
    own = rebuild(None)
    assert len(set(own)) == 1
    first_p = min(pt.values())
    rest = sorted({f"{st.network}.{st.station}" for st in stations} - set(seeds[0]))
    other_seed = frozenset([*seeds[0][:2], rest[0]])  # seeded by other stations before the restart
    old_id = make_event_id(other_seed, first_p)
    assert old_id != own[0]
    assert set(rebuild({old_id: (other_seed, first_p)})) == {old_id}
    later = first_p + 600 * NS  # an earlier run's event ten minutes later: a different earthquake
    assert set(rebuild({old_id: (other_seed, later)})) == {own[0]}


def test_restore_gives_up_on_a_missing_alerts_topic_after_its_setting(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """--restore-metadata-timeout-s bounds the wait for the alerts topic's metadata: nothing restored, said so."""
    from services.alerting.service import read_emitted_alerts

    s = AlertingSettings(bootstrap_servers=broker.bootstrap, restore_metadata_timeout_s=0.5)
    topic = f"no-such-alerts-{uuid.uuid4().hex[:8]}"
    with caplog.at_level("WARNING", logger="services.alerting"):
        seen = read_emitted_alerts(
            s.bootstrap_servers, topic, 0.2, max_wait_s=s.restore_max_s, metadata_timeout_s=s.restore_metadata_timeout_s
        )
    assert seen == set()
    assert f"alerts topic {topic} not found after 0.5 s" in caplog.text
