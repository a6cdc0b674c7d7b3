"""MQTT channel against the real Mosquitto broker on this machine (skipped, with the reason, when
it is down): a subscriber client receives each alert with QoS 1 on the subscriber's topic, with
its site forecast; a retained alert reaches a client that connects later; a broker that cannot be
reached leaves the delivery pending (retried), not lost."""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from prometheus_client import CollectorRegistry

from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig, WebhookSender
from services.alerting.dispatch.mqtt import MqttSender
from services.alerting.dispatch.outbox import DELIVERED, PENDING, Outbox
from services.alerting.dispatch.subscribers import Subscriber, SubscriberSpec
from services.alerting.metrics import AlertingMetrics
from services.common.timeutil import now_ns
from tests.integration.test_alerting_delivery import fresh, wait_until

pytestmark = pytest.mark.integration

HOST = os.environ.get("EEW_TEST_MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("EEW_TEST_MQTT_PORT", "1883"))
PREFIX = "eew-test/"


@pytest.fixture(scope="module")
def mosquitto() -> tuple[str, int]:
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            pass
    except OSError as exc:
        pytest.skip(f"no MQTT broker at {HOST}:{PORT}: {exc}")
    return HOST, PORT


class Listener:
    """A plain paho subscriber (QoS 1) collecting (topic, payload, retain) on a topic filter."""

    def __init__(self, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._subscribed = threading.Event()
        c = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}"
        )
        c.on_connect = lambda cl, *_: cl.subscribe(topic_filter, qos=1)
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        c.connect(HOST, PORT, keepalive=30)
        c.loop_start()
        self.client = c
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _sub(topic: str, retain: bool = False) -> Subscriber:
    spec = SubscriberSpec.model_validate(
        {
            "name": "sirens",
            "latitude": 35.2,
            "longitude": -118.0,
            "channels": {"mqtt": {"topic": topic, "retain": retain}},
        }
    )
    return Subscriber(f"sub-{uuid.uuid4().hex[:16]}", "ops", spec, now_ns(), now_ns())


@pytest.fixture
def stack(
    tmp_path: Path, mosquitto: tuple[str, int]
) -> Iterator[tuple[Outbox, AlertDelivery, CollectorRegistry]]:
    reg = CollectorRegistry()
    metrics = AlertingMetrics(reg)
    outbox = Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
    cfg = DeliveryConfig(attempts=5, backoff_initial_s=0.05, backoff_max_s=0.2, poll_s=0.2)
    mqtt = MqttSender(*mosquitto, client_id=f"eew-test-{uuid.uuid4().hex[:8]}", metrics=metrics).start()
    assert mqtt.wait_connected(10)
    d = AlertDelivery(
        outbox, cfg, metrics, senders={"webhook": WebhookSender(cfg), "mqtt": mqtt}, mqtt_prefix=PREFIX
    )
    d.start()
    yield outbox, d, reg
    d.close(drain_s=1.0)
    outbox.close()


def test_alerts_reach_a_real_mqtt_subscriber(stack: tuple[Outbox, AlertDelivery, CollectorRegistry]) -> None:
    outbox, d, reg = stack
    run = uuid.uuid4().hex[:8]
    sub = _sub(f"{run}/alerts")
    outbox.add_subscriber(sub)
    listener = Listener(f"{PREFIX}ops/{sub.id}/#")  # the owner's subtree, then the subscriber's
    try:
        for v in (1, 2):
            d.submit(fresh(v))
        assert wait_until(lambda: len(listener.messages) >= 2, 15)
    finally:
        listener.close()
    topics = {t for t, _, _ in listener.messages}
    assert topics == {f"{PREFIX}ops/{sub.id}/{run}/alerts"}
    docs = [json.loads(p) for _, p, _ in listener.messages]
    assert [doc["version"] for doc in docs] == [1, 2]
    assert docs[0]["site"]["subscriber_id"] == sub.id and docs[0]["site"]["s_arrival_time"].endswith("Z")
    assert {r.status for r in outbox.deliveries(sub.id)} == {DELIVERED}
    assert (
        reg.get_sample_value(
            "eew_alert_deliveries_total", {"subscriber": sub.id, "channel": "mqtt", "outcome": "ok"}
        )
        == 2
    )
    assert reg.get_sample_value("eew_alert_mqtt_connected") == 1


def test_retained_alert_reaches_a_late_client(stack: tuple[Outbox, AlertDelivery, CollectorRegistry]) -> None:
    """Topic per event with retain: a client subscribing after the alert still gets the latest."""
    outbox, d, _ = stack
    run = uuid.uuid4().hex[:8]
    sub = _sub(f"{run}/{{event_id}}", retain=True)
    outbox.add_subscriber(sub)
    alert = fresh(1)
    d.submit(alert)
    assert wait_until(lambda: [r.status for r in outbox.deliveries(sub.id)] == [DELIVERED], 15)
    late = Listener(f"{PREFIX}ops/{sub.id}/#")
    try:
        assert wait_until(lambda: late.messages, 10)
        topic, payload, retained = late.messages[0]
        assert topic == f"{PREFIX}ops/{sub.id}/{run}/{alert.event_id}" and retained and json.loads(payload)["version"] == 1
    finally:
        late.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear the retained message
        late.close()


def test_unreachable_broker_keeps_the_delivery_pending(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = CollectorRegistry()
    metrics = AlertingMetrics(reg)
    outbox = Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
    cfg = DeliveryConfig(attempts=50, backoff_initial_s=0.05, backoff_max_s=0.1, poll_s=0.2)
    mqtt = MqttSender("127.0.0.1", port, client_id="eew-test-down", metrics=metrics).start()
    d = AlertDelivery(outbox, cfg, metrics, senders={"mqtt": mqtt}, mqtt_prefix=PREFIX).start()
    sub = _sub("down/alerts")
    outbox.add_subscriber(sub)
    try:
        d.submit(fresh(1))
        assert wait_until(
            lambda: (
                (outbox.deliveries(sub.id) or [None])[0] is not None
                and outbox.deliveries(sub.id)[0].attempts >= 2
            )
        )
    finally:
        d.close(drain_s=0.2)
    row = outbox.deliveries(sub.id)[0]
    assert row.status == PENDING and row.last_error == "mqtt_disconnected" and not mqtt.connected()
    outbox.close()
