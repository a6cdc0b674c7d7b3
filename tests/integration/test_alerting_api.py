"""Subscriber API over real HTTP (Starlette on uvicorn): token auth (401/403, 404 for another's
subscriber), CRUD with validation, SSRF refusals, per-token rate limits (429), JSON errors,
write-only secrets, and alert documents by id. The security regressions (slow clients, quotas,
strict types, ...) are in tests/integration/test_security_api.py."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree
from prometheus_client import CollectorRegistry

from services.alerting.dispatch.api import ApiConfig, ApiToken, SubscriberApi
from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig
from services.alerting.dispatch.outbox import Outbox
from services.alerting.metrics import AlertingMetrics
from services.common.pb.eew.v1 import messages_pb2 as pb
from tests.integration.test_alerting_delivery import Receiver, fresh, wait_until
from tests.unit.test_alerting_cap import XSD

pytestmark = pytest.mark.integration

OPS = "ops-token-0123456789abcdef"
OTHER = "other-token-0123456789abcd"
READ = "read-token-0123456789abcde"
ADMIN = "admin-token-0123456789abcd"
SECRET = "subscriber-secret-0123456789"
TOKENS = (
    ApiToken("ops", OPS),
    ApiToken("other", OTHER),
    ApiToken("dash", READ, "read"),
    ApiToken("root", ADMIN, "admin"),
)


def fake_resolver(host: str, port: int, type: int = 0) -> list[tuple]:  # noqa: A002
    """Public names for the tests (no internet here), the real resolver for everything else."""
    table = {"hooks.example.org": "93.184.215.14", "rebind.example.org": "127.0.0.1"}
    if host in table:
        return [(socket.AF_INET, type, 6, "", (table[host], port))]
    return socket.getaddrinfo(host, port, type=type)


class Api:
    def __init__(self, tmp_path: Path, **cfg: object) -> None:
        self.registry = CollectorRegistry()
        metrics = AlertingMetrics(self.registry)
        self.outbox = Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
        conf = ApiConfig(**{"tokens": TOKENS, "rate_per_s": 50.0, "burst": 50, **cfg})  # type: ignore[arg-type]
        self.delivery = AlertDelivery(
            self.outbox, DeliveryConfig(poll_s=0.2, allow_private=conf.allow_private_webhooks), metrics
        )
        self.server = SubscriberApi(
            conf, self.outbox, metrics, None, self.delivery.directory.invalidate, None, fake_resolver
        )
        self.delivery.start()
        self.server.start()
        self.client = httpx.Client(base_url=self.server.url, timeout=5.0)

    def req(self, method: str, path: str, token: str | None = OPS, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.delivery.close(drain_s=0.5)
        self.outbox.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = Api(tmp_path)
    yield a
    a.close()


def spec(url: str = "https://hooks.example.org/eew", **kw: object) -> dict:
    return {
        "name": "school",
        "latitude": 35.2,
        "longitude": -118.1,
        "min_probability": 0.6,
        "channels": {"webhook": {"url": url, "secret": SECRET}},
        **kw,
    }


def test_auth_401_and_403(api: Api) -> None:
    r = api.req("GET", "/v1/subscribers", token=None)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized"
    assert api.req("GET", "/v1/subscribers", token="wrong-token-0123456789").status_code == 401
    assert api.client.get("/v1/subscribers", headers={"Authorization": f"Basic {OPS}"}).status_code == 401
    r = api.req("POST", "/v1/subscribers", token=READ, json=spec())
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    sid = api.req("POST", "/v1/subscribers", json=spec()).json()["id"]
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        r = api.req(method, f"/v1/subscribers/{sid}", token=OTHER, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, r.text)
    assert api.req("GET", f"/v1/subscribers/{sid}", token=ADMIN).status_code == 200
    assert api.req("GET", "/v1/subscribers", token=OTHER).json() == {"subscribers": [], "next_cursor": None}
    assert len(api.req("GET", "/v1/subscribers", token=ADMIN).json()["subscribers"]) == 1


def test_crud_roundtrip_and_secret_never_returned(api: Api) -> None:
    r = api.req("POST", "/v1/subscribers", json=spec(min_intensity=4.5))
    assert r.status_code == 201, r.text
    doc = r.json()
    sid = doc["id"]
    assert r.headers["Location"] == f"/v1/subscribers/{sid}" and doc["owner"] == "ops"
    assert doc["channels"]["webhook"] == {
        "url": "https://hooks.example.org/eew",
        "format": "json",
        "has_secret": True,
    }
    assert SECRET not in r.text
    listing = api.req("GET", "/v1/subscribers")
    assert [s["id"] for s in listing.json()["subscribers"]] == [sid] and SECRET not in listing.text
    r = api.req("PATCH", f"/v1/subscribers/{sid}", json={"min_probability": 0.9, "min_intensity": None})
    assert r.status_code == 200 and r.json()["min_probability"] == 0.9 and r.json()["min_intensity"] is None
    assert r.json()["revision"] == 2
    r = api.req("PUT", f"/v1/subscribers/{sid}", json=spec(name="clinic", channels={"sse": True}))
    assert r.status_code == 200 and r.json()["name"] == "clinic" and r.json()["channels"]["webhook"] is None
    assert api.outbox.get_subscriber(sid).spec.name == "clinic"
    assert api.req("DELETE", f"/v1/subscribers/{sid}").status_code == 204
    assert api.req("GET", f"/v1/subscribers/{sid}").status_code == 404
    assert api.req("DELETE", f"/v1/subscribers/{sid}").status_code == 404
    assert api.req("GET", "/v1/nothing").json()["error"]["code"] == "not_found"
    assert api.req("DELETE", "/v1/subscribers").status_code == 405


@pytest.mark.parametrize(
    "body,status,code",
    [
        (spec(latitude=123), 422, "invalid"),
        (spec(channels={}), 422, "invalid"),
        (spec(extra=1), 422, "invalid"),
        (
            {**spec(), "channels": {"webhook": {"url": "https://hooks.example.org/", "secret": "short"}}},
            422,
            "invalid",
        ),
        (spec(channels={"mqtt": {"topic": "a/b"}}), 422, "mqtt_disabled"),
    ],
)
def test_validation_errors_are_json(api: Api, body: dict, status: int, code: str) -> None:
    r = api.req("POST", "/v1/subscribers", json=body)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert "short" not in r.text  # rejected input values are not echoed (secrets)
    if code == "invalid":
        assert r.json()["error"]["details"][0]["loc"]


def test_malformed_requests(api: Api) -> None:
    auth = {"Authorization": f"Bearer {OPS}"}
    r = api.client.post(
        "/v1/subscribers", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
    r = api.client.post("/v1/subscribers", content=b"name=x", headers={**auth, "Content-Type": "text/plain"})
    assert r.status_code == 415
    big = b'{"name": "' + b"x" * 70_000 + b'"}'
    r = api.client.post("/v1/subscribers", content=big, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9000/hook",
        "http://rebind.example.org/hook",  # a name that resolves to loopback
        "http://[::1]/hook",
    ],
)
def test_ssrf_targets_refused(api: Api, url: str) -> None:
    r = api.req("POST", "/v1/subscribers", json=spec(url))
    assert r.status_code == 422 and r.json()["error"]["code"] == "target_refused", r.text
    assert api.outbox.list_subscribers() == []
    sid = api.req("POST", "/v1/subscribers", json=spec()).json()["id"]
    r = api.req(
        "PATCH", f"/v1/subscribers/{sid}", json={"channels": {"webhook": {"url": url, "secret": SECRET}}}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "target_refused"


def test_private_targets_allowed_when_configured_and_delivery_works(tmp_path: Path) -> None:
    """With allow_private_webhooks a loopback receiver can subscribe, and gets a signed alert with
    its site forecast; its deliveries are listed by the API."""
    api = Api(tmp_path, allow_private_webhooks=True)
    rx = Receiver(secret=SECRET)
    try:
        r = api.req("POST", "/v1/subscribers", json=spec(rx.url))
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        api.delivery.submit(fresh(1))
        got = rx.wait_for(1)
        assert got and got[0]["site"]["subscriber_id"] == sid and rx.refused == []
        assert wait_until(lambda: api.req("GET", f"/v1/subscribers/{sid}/deliveries").json()["deliveries"])
        rows = api.req("GET", f"/v1/subscribers/{sid}/deliveries").json()["deliveries"]
        assert wait_until(
            lambda: (
                api.req("GET", f"/v1/subscribers/{sid}/deliveries").json()["deliveries"][0]["status"]
                == "delivered"
            )
        )
        assert rows[0]["event_id"] == got[0]["event_id"] and "body" not in rows[0]
        assert api.req("GET", f"/v1/subscribers/{sid}/deliveries?status=dead").json() == {"deliveries": []}
        assert api.req("GET", f"/v1/subscribers/{sid}/deliveries?status=nope").status_code == 400
    finally:
        rx.close()
        api.close()


def test_rate_limit_per_token(tmp_path: Path) -> None:
    api = Api(tmp_path, rate_per_s=0.5, burst=3)
    try:
        codes = [api.req("GET", "/v1/subscribers").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = api.req("GET", "/v1/subscribers")
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
        assert api.req("GET", "/v1/subscribers", token=OTHER).status_code == 200  # other tokens unaffected
        anon = [api.req("GET", "/v1/subscribers", token=None).status_code for _ in range(5)]
        assert anon == [401, 401, 401, 429, 429]  # guessing tokens is throttled by address too
        # The counter is bumped after the response is written: wait for the last request's.
        limited = {"method": "GET", "route": "/v1/subscribers", "status": "429"}
        assert wait_until(lambda: api.registry.get_sample_value("eew_alert_api_requests_total", limited) == 5)
        assert api.registry.get_sample_value("eew_alert_api_requests_total", limited) == 5
    finally:
        api.close()


def test_alert_documents_by_id(api: Api) -> None:
    v1, v2 = fresh(1), fresh(2)
    for m in (v1, v2):
        api.delivery.submit(m)
    assert wait_until(lambda: api.outbox.last_alert_seq() == 2)
    r = api.req("GET", f"/v1/alerts/{v1.event_id}", token=READ)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert api.req("GET", f"/v1/alerts/{v1.event_id}?version=1", token=READ).json()["version"] == 1
    cap = api.req("GET", f"/v1/alerts/{v1.event_id}?format=cap", token=READ)
    assert cap.headers["content-type"] == "application/cap+xml"
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.parse(io.BytesIO(cap.content))
    assert schema.validate(doc), schema.error_log
    assert f"{v1.event_id}-v1" in doc.getroot().findtext("{urn:oasis:names:tc:emergency:cap:1.2}references")
    qml = api.req("GET", f"/v1/alerts/{v1.event_id}?format=quakeml", token=READ)
    assert qml.status_code == 200 and b"quakeml" in qml.content
    assert api.req("GET", "/v1/alerts/eew-nope", token=READ).status_code == 404
    assert api.req("GET", f"/v1/alerts/{v1.event_id}?format=pdf", token=READ).status_code == 400
    assert pb.Alert.FromString(api.outbox.alert_bytes(v1.event_id, 1)).version == 1
