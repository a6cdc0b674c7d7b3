"""MQTT channel: publish outbox rows to an MQTT broker (Mosquitto, ...) with QoS 1.

One paho-mqtt client (MQTT 3.1.1) per service, connected in the background and reconnecting by
itself (1 s to 30 s between tries). ``send`` publishes the row's body to its topic (the
subscriber's topic under ``topic_prefix``; ``{event_id}`` in it is replaced by the event id) with
QoS 1 and the subscriber's ``retain`` flag, and succeeds when the broker's PUBACK arrives within
``publish_timeout_s``. While disconnected nothing is published and the attempt is retried by the
delivery engine (backoff, dead letter after N attempts), so the outbox -- not paho's in-memory
queue -- holds what is undelivered. QoS 1 is at-least-once: a retry after a lost PUBACK may
publish twice, so consumers deduplicate on ``event_id`` + ``version`` (in every payload).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt.client as paho

from services.alerting.dispatch.delivery import SendResult
from services.alerting.dispatch.outbox import Delivery
from services.alerting.dispatch.subscribers import Subscriber
from services.alerting.metrics import AlertingMetrics

log = logging.getLogger(__name__)


class MqttSender:
    """The ``mqtt`` channel of the delivery engine."""

    channel = "mqtt"

    def __init__(
        self,
        host: str,
        port: int = 1883,
        client_id: str = "eew-alerting",
        username: str = "",
        password: str = "",
        keepalive_s: int = 30,
        publish_timeout_s: float = 5.0,
        metrics: AlertingMetrics | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.publish_timeout_s = publish_timeout_s
        self.keepalive_s = keepalive_s
        self.metrics = metrics
        self._connected = threading.Event()
        client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        if username:
            client.username_pw_set(username, password or None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        self._started = False

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        log.info("MQTT connected to %s:%d", self.host, self.port)
        self._connected.set()
        if self.metrics is not None:
            self.metrics.mqtt_connected.set(1)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if self._connected.is_set():
            log.warning("MQTT disconnected from %s:%d: %s", self.host, self.port, reason)
        self._connected.clear()
        if self.metrics is not None:
            self.metrics.mqtt_connected.set(0)

    def start(self) -> MqttSender:
        """Connect in the background (never raises: an unreachable broker is retried)."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        self._started = True
        return self

    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def send(self, row: Delivery, sub: Subscriber) -> SendResult:
        m = sub.mqtt()
        if m is None:
            return SendResult(False, "channel_removed", retryable=False)
        if not self._connected.is_set():
            return SendResult(False, "mqtt_disconnected")
        try:
            info = self.client.publish(row.target, row.body.encode(), qos=1, retain=m.retain)
        except ValueError as exc:  # bad topic or payload: not going to work on retry
            log.error("MQTT publish to %r refused: %s", row.target, exc)
            return SendResult(False, "mqtt_bad_topic", retryable=False)
        if info.rc == paho.MQTT_ERR_NO_CONN:
            return SendResult(False, "mqtt_disconnected")
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            return SendResult(False, "mqtt_queue_full")
        try:
            info.wait_for_publish(self.publish_timeout_s)
        except (RuntimeError, ValueError) as exc:
            log.warning("MQTT publish to %s failed: %s", row.target, exc)
            return SendResult(False, "mqtt_error")
        if not info.is_published():
            return SendResult(False, "mqtt_no_puback")
        return SendResult(True, "ok")

    def close(self) -> None:
        if self._started:
            try:
                self.client.disconnect()
            finally:
                self.client.loop_stop()
            self._started = False
