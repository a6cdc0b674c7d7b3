"""Regression tests for the external probe of the subscriber API and its feeds (loopback only):
slow clients cannot lock the API out, SSE streams are capped per token, quotas and pagination,
strict JSON types, JSON bodies for every error status, one message for every refused webhook
target, 404 for another's ids, quiet handling of clients that leave early, DNS-rebinding-proof
webhooks (pinned address), tokens from the environment or a file, secrets encrypted at rest."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry

from services.alerting.dispatch.api import ApiConfig, SubscriberApi
from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig, WebhookSender
from services.alerting.dispatch.outbox import Outbox
from services.alerting.dispatch.sse import SseHub
from services.alerting.dispatch.subscribers import Subscriber, SubscriberSpec, new_subscriber_id
from services.alerting.exceptions import OutboxError
from services.alerting.metrics import AlertingMetrics
from services.common.timeutil import now_ns
from tests.integration.test_alerting_api import ADMIN, OPS, OTHER, READ, SECRET, TOKENS, fake_resolver, spec
from tests.integration.test_alerting_delivery import Receiver, fresh, wait_until
from tests.integration.test_alerting_sse import SseClient

pytestmark = pytest.mark.integration


class Api:
    def __init__(self, tmp_path: Path, hub: SseHub | None = None, **cfg: object) -> None:
        self.registry = CollectorRegistry()
        metrics = AlertingMetrics(self.registry)
        self.outbox = Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}")
        conf = ApiConfig(**{"tokens": TOKENS, "rate_per_s": 200.0, "burst": 200, **cfg})  # type: ignore[arg-type]
        self.server = SubscriberApi(conf, self.outbox, metrics, hub, None, None, fake_resolver).start()
        self.client = httpx.Client(base_url=self.server.url, timeout=5.0)

    def req(self, method: str, path: str, token: str | None = OPS, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.outbox.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = Api(tmp_path)
    yield a
    a.close()


def _read_all(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection (bounded by ``timeout_s``)."""
    sock.settimeout(0.5)
    out = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def _error(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def test_slow_clients_do_not_lock_the_api_out(tmp_path: Path) -> None:
    """An address trickling header lines (no token) holds at most its per-address share of
    connections, each for at most the whole-request deadline, then gets a JSON 408; meanwhile a
    valid user from another address is served, and the excess connections get a JSON 503 at once."""
    api = Api(tmp_path, request_timeout_s=1.5, max_connections_per_client=4)
    attackers: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(12):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))  # the attacker's own loopback address
            s.connect(("127.0.0.1", api.server.port))
            s.sendall(b"GET /v1/subscribers HTTP/1.1\r\nHost: x\r\n")
            attackers.append(s)

        def trickle() -> None:  # one header line every 0.3 s: each read is "on time"
            i = 0
            while not stop.wait(0.3):
                for s in attackers:
                    try:
                        s.sendall(f"X-Slow-{i}: 1\r\n".encode())
                    except OSError:
                        pass
                i += 1

        threading.Thread(target=trickle, daemon=True).start()
        r = api.req("GET", "/v1/subscribers")  # from 127.0.0.1, during the attack
        assert r.status_code == 200, r.text
        answers = [_read_all(s, 10.0) for s in attackers]
    finally:
        stop.set()
        for s in attackers:
            s.close()
    try:
        statuses = sorted(_error(a)[0] for a in answers)
        assert statuses == [408] * 4 + [503] * 8, statuses
        assert {_error(a)[1]["error"]["code"] for a in answers} == {"request_timeout", "too_many_connections"}
        refused = api.registry.get_sample_value
        assert refused("eew_alert_api_connections_refused_total", {"reason": "request_timeout"}) == 4
        assert wait_until(lambda: api.server.connections <= 1, 10)
    finally:
        api.close()


def test_every_error_status_is_json(api: Api) -> None:
    r = api.req("DELETE", "/v1/subscribers")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = api.req("BREW", "/v1/subscribers")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = api.req("GET", "/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    auth = {"Authorization": f"Bearer {OPS}", "Content-Type": "application/json"}
    r = api.client.post("/v1/subscribers", content=b"x" * 70_000, headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = api.client.get("/v1/subscribers", headers={"Authorization": f"Bearer {OPS}", "X-Big": "y" * 40_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=5) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, doc = _error(_read_all(s, 5.0))
    assert status == 400 and doc["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "change",
    [
        {"latitude": "35"},
        {"latitude": True},
        {"min_probability": "0.5"},
        {"channels": {"sse": "yes"}},
        {"channels": {"sse": 1}},
        {"name": 5},
    ],
)
def test_json_types_are_strict(api: Api, change: dict) -> None:
    r = api.req("POST", "/v1/subscribers", json=spec(**change))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid", r.text
    assert api.req("POST", "/v1/subscribers", json=spec(latitude=35)).status_code == 201  # an int is a number


def test_refused_targets_get_one_message_that_tells_nothing(api: Api) -> None:
    answers = [
        api.req("POST", "/v1/subscribers", json=spec(url)).json()["error"]
        for url in ("http://rebind.example.org/h", "http://nowhere.invalid/h", "http://10.1.2.3/h")
    ]
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1, answers
    assert answers[0]["code"] == "target_refused"
    assert "127.0.0.1" not in answers[0]["message"] and "10.1.2.3" not in answers[0]["message"]


def test_another_tokens_ids_look_like_missing_ones(api: Api) -> None:
    sid = api.req("POST", "/v1/subscribers", json=spec(channels={"sse": True})).json()["id"]
    missing = "sub-0000000000000000"
    for method, path, body in (
        ("GET", "/v1/subscribers/{}", None),
        ("PATCH", "/v1/subscribers/{}", {"name": "x"}),
        ("PUT", "/v1/subscribers/{}", spec()),
        ("DELETE", "/v1/subscribers/{}", None),
        ("GET", "/v1/subscribers/{}/deliveries", None),
        ("GET", "/alerts/stream?subscriber={}", None),
    ):
        theirs = api.req(method, path.format(sid), token=OTHER, json=body)
        none = api.req(method, path.format(missing), token=OTHER, json=body)
        assert theirs.status_code == none.status_code == 404, (method, path)
        assert theirs.json()["error"]["code"] == none.json()["error"]["code"] == "not_found"
        assert theirs.json()["error"]["message"].replace(sid, "X") == none.json()["error"]["message"].replace(
            missing, "X"
        )
    assert api.req("GET", f"/v1/subscribers/{sid}", token=ADMIN).status_code == 200


def test_quota_per_token_and_pagination(tmp_path: Path) -> None:
    api = Api(tmp_path, max_subscribers_per_token=5)
    try:
        made = [api.req("POST", "/v1/subscribers", json=spec(name=f"s{i}")) for i in range(6)]
        assert [r.status_code for r in made] == [201] * 5 + [409]
        assert made[-1].json()["error"]["code"] == "quota_exceeded"
        assert api.req("POST", "/v1/subscribers", token=OTHER, json=spec()).status_code == 201  # own quota
        ids, cursor, pages = [], None, 0
        while True:
            q = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = api.req("GET", f"/v1/subscribers{q}").json()
            ids += [s["id"] for s in page["subscribers"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3 and ids == [r.json()["id"] for r in made[:5]]  # all, once, in creation order
        assert api.req("GET", "/v1/subscribers?cursor=garbage").status_code == 400
        assert api.req("GET", "/v1/subscribers?limit=5000").status_code == 400
        assert len(api.req("GET", "/v1/subscribers?limit=1000", token=ADMIN).json()["subscribers"]) == 6
    finally:
        api.close()


def test_sse_streams_are_capped_per_token(tmp_path: Path) -> None:
    hub = SseHub(max_clients=10, heartbeat_s=0.3, max_per_key=2)
    api = Api(tmp_path, hub=hub)
    url = f"{api.server.url}/alerts/stream"
    mine = [SseClient(url, {"Authorization": f"Bearer {READ}"}) for _ in range(2)]
    other = None
    try:
        assert wait_until(lambda: hub.clients == 2)
        r = api.req("GET", "/alerts/stream", token=READ)
        assert r.status_code == 503 and r.json()["error"]["code"] == "too_many_streams_for_token"
        other = SseClient(url, {"Authorization": f"Bearer {OPS}"})  # other tokens still get theirs
        assert wait_until(lambda: other.status == 200 and hub.clients == 3)
    finally:
        for c in mine + ([other] if other else []):
            c.close()
    assert wait_until(lambda: hub.clients == 0)
    api.close()


def test_clients_leaving_early_are_logged_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Half-sent requests and abandoned streams: no warning, no traceback (DEBUG at most)."""
    caplog.set_level(logging.DEBUG)
    api = Api(tmp_path, hub=SseHub(heartbeat_s=0.3))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", api.server.port), timeout=5) as s:
            s.sendall(b"POST /v1/subscribers HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
    c = SseClient(f"{api.server.url}/alerts/stream", {"Authorization": f"Bearer {READ}"})
    assert wait_until(lambda: api.server.hub.clients == 1)
    c.close()
    assert wait_until(lambda: api.server.hub.clients == 0 and api.server.connections == 0, 10)
    api.close()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [(r.name, r.getMessage()) for r in loud]


def test_webhook_connects_to_the_checked_address(tmp_path: Path) -> None:
    """DNS rebinding: the resolver answers a public address first and loopback on every later
    query. The request goes to the address that was checked (Host and TLS server name kept),
    the name is resolved once per attempt, and the loopback receiver never hears of it."""
    rx = Receiver()
    port = int(rx.url.rsplit(":", 1)[1].split("/")[0])
    answers = iter(["93.184.215.14"])
    queries: list[str] = []

    def rebinding(host: str, port_: int, type: int = 0) -> list[tuple]:  # noqa: A002
        queries.append(host)
        return [(socket.AF_INET, type, 6, "", (next(answers, "127.0.0.1"), port_))]

    seen: list[httpx.Request] = []

    def public_internet(request: httpx.Request) -> httpx.Response:  # stands in for 93.184.215.14
        seen.append(request)
        return httpx.Response(200)

    sender = WebhookSender(DeliveryConfig(), rebinding, httpx.MockTransport(public_internet))
    outbox = Outbox.open(f"sqlite:///{tmp_path / 'o.sqlite'}")
    try:
        sub = Subscriber(
            new_subscriber_id(),
            "ops",
            SubscriberSpec.model_validate(
                {**spec(f"https://rebind.example.org:{port}/hook"), "channels": {"webhook": {
                    "url": f"https://rebind.example.org:{port}/hook", "secret": SECRET}}}
            ),
            now_ns(),
            now_ns(),
        )
        d = AlertDelivery(outbox, DeliveryConfig(poll_s=0.1), AlertingMetrics(CollectorRegistry()),
                          senders={"webhook": sender})  # fmt: skip
        outbox.add_subscriber(sub)
        d.start()
        d.submit(fresh(1))
        assert wait_until(lambda: len(seen) == 1)
        d.close(drain_s=1.0)
    finally:
        outbox.close()
        rx.close()
    req = seen[0]
    assert req.url.host == "93.184.215.14" and req.url.port == port
    assert req.headers["host"] == f"rebind.example.org:{port}"
    assert req.extensions["sni_hostname"] == "rebind.example.org"
    assert queries == ["rebind.example.org"]  # resolved once: no second answer was ever used
    assert rx.requests == []


def test_pinned_request_reaches_a_real_receiver_with_its_host_name(tmp_path: Path) -> None:
    """Private targets allowed (operator/test set-up): still one resolution, the connection to
    that address, the name in the Host header."""
    rx = Receiver(secret=SECRET)
    port = int(rx.url.rsplit(":", 1)[1].split("/")[0])

    def resolver(host: str, port_: int, type: int = 0) -> list[tuple]:  # noqa: A002
        assert host == "receiver.test"
        return [(socket.AF_INET, type, 6, "", ("127.0.0.1", port_))]

    sender = WebhookSender(DeliveryConfig(allow_private=True), resolver)
    outbox = Outbox.open(f"sqlite:///{tmp_path / 'o.sqlite'}")
    url = f"http://receiver.test:{port}/hook"
    sub = Subscriber(new_subscriber_id(), "ops", SubscriberSpec.model_validate(
        {**spec(url), "channels": {"webhook": {"url": url, "secret": SECRET}}}), now_ns(), now_ns())  # fmt: skip
    d = AlertDelivery(outbox, DeliveryConfig(poll_s=0.1, allow_private=True), AlertingMetrics(CollectorRegistry()),
                      senders={"webhook": sender})  # fmt: skip
    outbox.add_subscriber(sub)
    d.start()
    try:
        d.submit(fresh(1))
        assert rx.wait_for(1, 15)
    finally:
        d.close(drain_s=1.0)
        outbox.close()
        rx.close()
    headers, _ = rx.accepted_raw[0]
    assert headers["host"] == f"receiver.test:{port}" and rx.refused == []


def test_webhook_secrets_are_encrypted_at_rest(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    key = Fernet.generate_key().decode()
    outbox = Outbox.open(f"sqlite:///{db}", secret_keys=[key])
    sub = Subscriber(new_subscriber_id(), "ops", SubscriberSpec.model_validate(spec()), now_ns(), now_ns())
    outbox.add_subscriber(sub)
    (stored,) = outbox.db.execute("SELECT spec FROM eew_subscribers")[0]
    assert SECRET not in stored and '"secret": "enc:v1:' in stored
    assert outbox.get_subscriber(sub.id).webhook()[1] == SECRET  # type: ignore[index,union-attr]
    outbox.close()
    rotated = Outbox.open(f"sqlite:///{db}", secret_keys=[Fernet.generate_key().decode(), key])
    assert rotated.get_subscriber(sub.id).webhook()[1] == SECRET  # type: ignore[index,union-attr]
    rotated.close()
    for keys in ([Fernet.generate_key().decode()], []):
        other = Outbox.open(f"sqlite:///{db}", secret_keys=keys)
        with pytest.raises(OutboxError, match="secret"):
            other.get_subscriber(sub.id)
        other.close()


def test_tokens_from_environment_or_file_and_a_warning_for_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from services.alerting.settings import AlertingSettings
    from services.common.settings import load_settings

    tokens = tmp_path / "tokens"
    tokens.write_text("# API tokens\nops:ops-token-0123456789abcdef:write\ndash:read-token-0123456789abcde:read\n")
    monkeypatch.setenv("EEW_API_TOKENS", "root:admin-token-0123456789abcd:admin")
    s = load_settings(AlertingSettings, ["--api-port", "0", "--api-tokens-file", str(tokens)])
    with caplog.at_level(logging.WARNING):
        cfg = s.api_config()
    assert [(t.name, t.role) for t in cfg.tokens] == [("root", "admin"), ("ops", "write"), ("dash", "read")]
    assert not any("process list" in r.getMessage() for r in caplog.records)
    monkeypatch.delenv("EEW_API_TOKENS")
    argv = ["--api-port", "0", "--api-tokens", "ops:ops-token-0123456789abcdef"]
    monkeypatch.setattr(sys, "argv", ["eew", "alert", *argv])
    with caplog.at_level(logging.WARNING):
        load_settings(AlertingSettings, argv).api_config()
    assert any("process list" in r.getMessage() for r in caplog.records)


def test_secret_rotation_signs_with_both_secrets(api: Api) -> None:
    """A subscriber rotating its secret (PATCH with secret + previous_secret) gets requests that
    verify with either secret, with the standardwebhooks package; neither secret is ever returned."""
    import standardwebhooks

    old, new = SECRET, "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LTEyMzQ1Njc4"
    sid = api.req("POST", "/v1/subscribers", json=spec()).json()["id"]
    hook = {"url": "https://hooks.example.org/eew", "secret": new, "previous_secret": old}
    r = api.req("PATCH", f"/v1/subscribers/{sid}", json={"channels": {"webhook": hook}})
    assert r.status_code == 200 and r.json()["channels"]["webhook"]["has_previous_secret"] is True
    assert old not in r.text and new not in r.text
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    sender = WebhookSender(DeliveryConfig(), fake_resolver, httpx.MockTransport(capture))
    d = AlertDelivery(api.outbox, DeliveryConfig(poll_s=0.1), AlertingMetrics(CollectorRegistry()),
                      senders={"webhook": sender})  # fmt: skip
    d.start()
    try:
        d.submit(fresh(1))
        assert wait_until(lambda: len(seen) == 1)
    finally:
        d.close(drain_s=0.5)
    body, headers = seen[0].content, dict(seen[0].headers)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert standardwebhooks.Webhook(new).verify(body, headers)["version"] == 1
    assert standardwebhooks.Webhook(old.encode()).verify(body, headers)["version"] == 1
