"""SSE feed on the subscriber API: a real HTTP client receives alerts live, and after a disconnect
resumes with Last-Event-ID without losing or repeating one; a subscriber's own stream carries its
site forecast; the number of streams is bounded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.alerting.dispatch.api import ApiConfig, ApiToken, SubscriberApi
from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig
from services.alerting.dispatch.outbox import Outbox
from services.alerting.dispatch.sse import SseHub
from services.alerting.metrics import AlertingMetrics
from tests.integration.test_alerting_delivery import fresh, wait_until

pytestmark = pytest.mark.integration

TOKEN = "dashboard-token-0123456789"
OPS = "ops-token-0123456789abcdef"


@dataclass
class Stack:
    outbox: Outbox
    delivery: AlertDelivery
    api: SubscriberApi
    registry: CollectorRegistry

    def auth(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    reg = CollectorRegistry()
    metrics = AlertingMetrics(reg)
    outbox = Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
    d = AlertDelivery(outbox, DeliveryConfig(poll_s=0.2), metrics)
    hub = SseHub(max_clients=3, heartbeat_s=0.3, metrics=metrics)
    d.listeners.append(hub.notify)
    cfg = ApiConfig(
        tokens=(ApiToken("dash", TOKEN, "read"), ApiToken("ops", OPS, "write")), rate_per_s=100, burst=100
    )
    api = SubscriberApi(cfg, outbox, metrics, hub, d.directory.invalidate)
    d.start()
    api.start()
    yield Stack(outbox, d, api, reg)
    api.stop()
    d.close(drain_s=0.5)
    outbox.close()


@dataclass
class SseClient:
    """Reads an SSE stream on a thread; ``events`` are (id, event, data) as parsed from the wire."""

    url: str
    headers: dict[str, str]
    events: list[tuple[int, str, str]] = field(default_factory=list)
    status: int | None = None
    comments: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(5.0)) as c,
            c.stream("GET", self.url, headers=self.headers) as r,
        ):
            self.status = r.status_code
            if r.status_code != 200:
                return
            cur: dict[str, str] = {}
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments += 1
                elif line == "":
                    if "id" in cur:
                        self.events.append((int(cur["id"]), cur.get("event", ""), cur.get("data", "")))
                    cur = {}
                else:
                    k, _, v = line.partition(":")
                    cur[k] = v[1:] if v.startswith(" ") else v

    def wait(self, n: int, timeout_s: float = 10.0) -> list[tuple[int, str, str]]:
        wait_until(lambda: len(self.events) >= n, timeout_s)
        return list(self.events)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()


def test_stream_live_then_resume_with_last_event_id(stack: Stack) -> None:
    url = f"{stack.api.url}/alerts/stream"
    a = SseClient(url, stack.auth())
    assert wait_until(lambda: a.status == 200 and stack.api.hub.clients == 1)
    alerts = [fresh(v) for v in (1, 2, 3, 4, 5)]
    for m in alerts[:2]:
        stack.delivery.submit(m)
    got = a.wait(2)
    a.close()
    assert [(json.loads(d)["version"], e) for _, e, d in got] == [(1, "alert"), (2, "alert")]
    assert got[0][0] < got[1][0]
    assert wait_until(lambda: stack.api.hub.clients == 0)  # the server noticed the client left

    for m in alerts[2:4]:  # written while nobody listens
        stack.delivery.submit(m)
    assert wait_until(lambda: stack.outbox.last_alert_seq() >= got[-1][0] + 2)
    b = SseClient(url, {**stack.auth(), "Last-Event-ID": str(got[-1][0])})
    missed = b.wait(2)
    stack.delivery.submit(alerts[4])  # and live again
    after = b.wait(3)
    time.sleep(0.5)
    b.close()
    assert [json.loads(d)["version"] for _, _, d in after] == [3, 4, 5]  # nothing lost, nothing twice
    assert missed[:2] == after[:2] and len(b.events) == 3
    assert b.comments >= 1  # keep-alive comments while idle
    assert stack.registry.get_sample_value("eew_alert_sse_events_total") == 5


def test_new_client_starts_live_or_replays(stack: Stack) -> None:
    for v in (1, 2, 3):
        stack.delivery.submit(fresh(v))
    assert wait_until(lambda: stack.outbox.last_alert_seq() == 3)
    live = SseClient(f"{stack.api.url}/alerts/stream", stack.auth())
    replay = SseClient(f"{stack.api.url}/alerts/stream?replay=2", stack.auth())
    assert replay.wait(2) and wait_until(lambda: live.status == 200)
    time.sleep(0.5)
    assert live.events == [] and [json.loads(d)["version"] for _, _, d in replay.events] == [2, 3]
    live.close()
    replay.close()


def test_subscriber_stream_has_site_and_is_owner_only(stack: Stack) -> None:
    spec = {
        "name": "dashboard-site",
        "latitude": 35.4,
        "longitude": -118.1,
        "channels": {"sse": True},
    }
    r = httpx.post(f"{stack.api.url}/v1/subscribers", json=spec, headers=stack.auth(OPS), timeout=5)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    url = f"{stack.api.url}/alerts/stream?subscriber={sid}"
    other = httpx.get(url, headers=stack.auth(TOKEN), timeout=5)  # a read token that does not own it
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"  # not told apart
    mine = SseClient(url, stack.auth(OPS))
    assert wait_until(lambda: mine.status == 200)
    stack.delivery.submit(fresh(1))
    (eid, _, data), *_ = mine.wait(1)
    mine.close()
    doc = json.loads(data)
    assert doc["site"]["subscriber_id"] == sid and doc["site"]["warning_time_s"] is not None
    assert doc["site"]["expected_intensity_mmi"] > 1
    resumed = SseClient(url, {**stack.auth(OPS), "Last-Event-ID": str(eid - 1)})
    assert [e[0] for e in resumed.wait(1)] == [eid]
    resumed.close()


def test_streams_are_bounded_and_need_a_token(stack: Stack) -> None:
    url = f"{stack.api.url}/alerts/stream"
    assert httpx.get(url, timeout=5).status_code == 401
    clients = [SseClient(url, stack.auth()) for _ in range(3)]
    assert wait_until(lambda: stack.api.hub.clients == 3)
    r = httpx.get(url, headers=stack.auth(), timeout=5)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    for c in clients:
        c.close()
    assert wait_until(lambda: stack.api.hub.clients == 0)
