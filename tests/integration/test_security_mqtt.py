"""MQTT topics are per owner and the documented Mosquitto ACL (deploy/mosquitto/acl) holds: on a
private Mosquitto (own process, own config, password and ACL files, a free loopback port), each
owner reads its own subscribers' alerts only, even when it names another owner's topic, and a
subscriber cannot publish into anyone's topics (the probe's retained-message injection)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from prometheus_client import CollectorRegistry

from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig
from services.alerting.dispatch.mqtt import MqttSender
from services.alerting.dispatch.outbox import DELIVERED, Outbox
from services.alerting.dispatch.subscribers import Subscriber, SubscriberSpec
from services.alerting.metrics import AlertingMetrics
from services.common.timeutil import now_ns
from tests.integration.test_alerting_delivery import fresh, wait_until

pytestmark = pytest.mark.integration

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl"
USERS = {"eew-alerting": "publisher-password-1", "alice": "alice-password-12", "bob": "bob-password-123"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto / mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=30)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {ACL}\npersistence false\nlog_dest stderr\n"
        f"user {getpass.getuser()}\n"  # started as root it would switch to 'mosquitto': no access to tmp_path
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
                time.sleep(0.05)
        else:
            pytest.fail("private mosquitto did not start")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class Client:
    """A subscriber's MQTT client (user = its token name) collecting (topic, payload, retain)."""

    def __init__(self, port: int, user: str, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.granted: list[int] = []
        self._subscribed = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}")
        c.username_pw_set(user, USERS[user])
        c.on_connect = lambda cl, *_: cl.subscribe(topic_filter, qos=1)
        c.on_subscribe = self._on_subscribe
        c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert self._subscribed.wait(10), f"{user}: subscription not acknowledged"

    def _on_subscribe(self, client: object, userdata: object, mid: int, codes: list, props: object) -> None:
        self.granted = [int(getattr(c, "value", c)) for c in codes]
        self._subscribed.set()

    def topics(self) -> set[str]:
        return {t for t, _, _ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _sub(owner: str, topic: str) -> Subscriber:
    spec = SubscriberSpec.model_validate(
        {"name": owner, "latitude": 35.2, "longitude": -118.0, "channels": {"mqtt": {"topic": topic, "retain": True}}}
    )
    return Subscriber(f"sub-{uuid.uuid4().hex[:16]}", owner, spec, now_ns(), now_ns())


def test_each_owner_reads_only_its_own_topics(broker: int, tmp_path: Path) -> None:
    outbox = Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
    alice = _sub("alice", "alerts")
    # bob names alice's topic as his own: it lands in bob's subtree, not in alice's
    bob = _sub("bob", f"alice/{alice.id}/alerts")
    for s in (alice, bob):
        outbox.add_subscriber(s)
    metrics = AlertingMetrics(CollectorRegistry())
    mqtt = MqttSender(
        "127.0.0.1", broker, client_id="eew-alerting-test", username="eew-alerting",
        password=USERS["eew-alerting"], metrics=metrics,
    ).start()  # fmt: skip
    assert mqtt.wait_connected(10)
    a = Client(broker, "alice", "eew/#")  # wildcards over everything: the ACL filters
    b = Client(broker, "bob", "eew/#")
    spy = Client(broker, "bob", f"eew/alice/{alice.id}/#")  # bob asks for alice's topic by name
    cfg = DeliveryConfig(attempts=5, backoff_initial_s=0.05, backoff_max_s=0.2, poll_s=0.2)
    d = AlertDelivery(outbox, cfg, metrics, senders={"mqtt": mqtt}, mqtt_prefix="eew/").start()
    try:
        d.submit(fresh(1))
        assert wait_until(
            lambda: all(
                [r.status for r in outbox.deliveries(s.id)] == [DELIVERED] for s in (alice, bob)
            ),
            20,
        )
        # bob tries to inject a retained message into alice's topic (refused by the ACL)
        b.client.publish(f"eew/alice/{alice.id}/alerts", b'{"forged":true}', qos=1, retain=True).wait_for_publish(5)
        # A sentinel published after everything else: once it arrives, earlier messages have too.
        for owner in ("alice", "bob"):
            mqtt.client.publish(f"eew/{owner}/sentinel", b"end", qos=1).wait_for_publish(5)
        assert wait_until(lambda: "eew/alice/sentinel" in a.topics() and "eew/bob/sentinel" in b.topics(), 10)
    finally:
        d.close(drain_s=0.5)
        mqtt.close()
        for c in (a, b, spy):
            c.close()
        outbox.close()
    assert a.topics() == {f"eew/alice/{alice.id}/alerts", "eew/alice/sentinel"}
    assert b.topics() == {f"eew/bob/{bob.id}/alice/{alice.id}/alerts", "eew/bob/sentinel"}
    assert all(b'"forged"' not in p for _, p, _ in a.messages)
    assert spy.messages == []  # routed before the sentinels: nothing of alice's reached bob
    late = Client(broker, "alice", f"eew/alice/{alice.id}/#")  # the retained alert is alice's own
    try:
        assert wait_until(lambda: late.messages, 10)
        assert all(b'"forged"' not in p for _, p, _ in late.messages)
    finally:
        late.close()
