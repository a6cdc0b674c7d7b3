"""Delivery through the outbox to real local HTTP receivers: signatures checked by the receiver,
retries, timeouts, isolation, dead letters, per-subscriber thresholds and personalised bodies.

The receivers here (stdlib http.server) are also used by the other alerting integration tests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.alerting.exceptions import SignatureError
from services.alerting.formats.signing import ReplayCache, verify


class Receiver:
    """Records every POST; answers ``fail_status`` to the first ``fail_first`` requests.

    With ``secret`` it is a receiver as the docs tell subscribers to write one: it verifies the
    HMAC signature (and refuses replays) and answers 401 to requests that do not verify."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500, secret: str | None = None) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.secret = secret
        self.replays = ReplayCache()
        self.requests: list[tuple[dict[str, str], bytes]] = []  # every request, failed ones included
        self.accepted: list[dict[str, Any]] = []  # JSON bodies answered 200
        self.accepted_raw: list[tuple[dict[str, str], bytes]] = []
        self.refused: list[str] = []  # signature failure reasons
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                code = 200
                with outer._lock:
                    outer.requests.append((headers, body))
                    fail = len(outer.requests) <= outer.fail_first
                    if fail:
                        code = outer.fail_status
                    elif outer.secret is not None:
                        try:
                            verify(outer.secret, body, headers, replay_cache=outer.replays)
                        except SignatureError as exc:
                            outer.refused.append(exc.reason)
                            code = 401
                    if code == 200:
                        outer.accepted_raw.append((headers, body))
                        ctype = headers.get("content-type", "")
                        outer.accepted.append(json.loads(body) if "json" in ctype else {"raw": body})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, fmt: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/hook"

    def wait_for(self, n: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.accepted) >= n:
                    return list(self.accepted)
            time.sleep(0.05)
        with self._lock:
            return list(self.accepted)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class Silent:
    """A TCP port that accepts connections (kernel backlog) but never answers: read timeouts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def close(self) -> None:
        self.sock.close()


def closed_port_url() -> str:
    """A URL on a port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def wait_until(cond, timeout_s: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


# ---------------------------------------------------------------------------- tests

from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
import standardwebhooks  # noqa: E402
from lxml import etree  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig  # noqa: E402
from services.alerting.dispatch.outbox import DEAD, DELIVERED, Outbox  # noqa: E402
from services.alerting.dispatch.subscribers import Subscriber, SubscriberSpec, forecasts, static_subscribers  # noqa: E402
from services.alerting.metrics import AlertingMetrics  # noqa: E402
from services.common.pb.eew.v1 import messages_pb2 as pb  # noqa: E402
from services.common.timeutil import now_ns  # noqa: E402
from tests.unit.test_alerting_cap import XSD, alert_msg  # noqa: E402

pytestmark = pytest.mark.integration

SECRET = "receiver-shared-secret-1234"
FAST = DeliveryConfig(
    attempts=4,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    connect_timeout_s=0.5,
    read_timeout_s=0.5,
    poll_s=0.2,
)


def fresh(version: int = 1, kind: int | None = None, **kw: Any) -> pb.Alert:
    """An alert created now (so it is not expired)."""
    if kind is None:
        kind = pb.ALERT_TYPE_NEW if version == 1 else pb.ALERT_TYPE_UPDATE
    return alert_msg(version, kind, created_ns=now_ns(), **kw)


def outbox_at(tmp_path: Path) -> Outbox:
    return Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_signed_delivery_in_order_verified_by_receiver(registry: CollectorRegistry, tmp_path: Path) -> None:
    """Each version is POSTed once, in order, signed; the receiver verifies every signature."""
    rx = Receiver(secret=SECRET)
    outbox = outbox_at(tmp_path)
    d = AlertDelivery.for_urls(outbox, rx.url, FAST, AlertingMetrics(registry), secret=SECRET).start()
    try:
        for v in (1, 2, 3):
            assert d.submit(fresh(v))
        got = rx.wait_for(3)
        assert d.wait_idle(10)
    finally:
        d.close(drain_s=2.0)
    rx.close()
    assert rx.refused == []
    assert [g["version"] for g in got] == [1, 2, 3]
    headers = [h for h, _ in rx.requests]
    assert [h["idempotency-key"] for h in headers] == [f"{got[0]['event_id']}:{v}" for v in (1, 2, 3)]
    assert all(
        h["content-type"] == "application/json"
        and h["webhook-signature"].startswith("v1,")
        and h["webhook-id"] == h["idempotency-key"]
        for h in headers
    )
    # An off-the-shelf Standard Webhooks verifier accepts every real delivery (the secret is not
    # whsec_-prefixed, so the library takes its UTF-8 bytes as the key, as documented).
    lib = standardwebhooks.Webhook(SECRET.encode())
    assert [lib.verify(body, h)["version"] for h, body in rx.accepted_raw] == [1, 2, 3]
    assert "site" not in got[0]  # static subscribers get the documented body unchanged
    sub = static_subscribers(rx.url)[0].label
    assert value(registry, "eew_alert_deliveries_total", subscriber=sub, channel="webhook", outcome="ok") == 3
    assert value(registry, "eew_alert_delivery_latency_seconds_count", subscriber=sub, channel="webhook") == 3
    rows = Outbox.open(f"sqlite:///{tmp_path / 'outbox.sqlite'}").deliveries()
    assert sorted(r.status for r in rows) == [DELIVERED] * 3 and all(r.attempts == 1 for r in rows)


def test_tampered_and_replayed_requests_are_refused_by_the_receiver(tmp_path: Path) -> None:
    """A request captured from the service, re-sent as is (replay) or with a changed body, or
    signed with the wrong secret, is refused by a receiver using verify()."""
    rx = Receiver(secret=SECRET)
    d = AlertDelivery.for_urls(
        outbox_at(tmp_path), rx.url, FAST, AlertingMetrics(CollectorRegistry()), SECRET
    )
    d.start()
    try:
        d.submit(fresh())
        assert len(rx.wait_for(1)) == 1
    finally:
        d.close(drain_s=1.0)
    headers, body = rx.accepted_raw[0]
    keep = {
        k: v
        for k, v in headers.items()
        if k.startswith(("x-eew", "webhook-")) or k in ("content-type", "idempotency-key")
    }
    with httpx.Client(timeout=5.0) as c:
        replay = c.post(rx.url, content=body, headers=keep)
        tampered = c.post(rx.url, content=body.replace(b'"version":1', b'"version":9'), headers=keep)
        other_id = c.post(rx.url, content=body, headers={**keep, "webhook-id": "eew-other:1"})
        wrong = AlertDelivery.for_urls(
            outbox_at(tmp_path / "b"),
            rx.url,
            FAST,
            AlertingMetrics(CollectorRegistry()),
            "not-the-right-secret",
        ).start()
        wrong.submit(fresh())
        assert wait_until(lambda: len(rx.refused) >= 4)
        wrong.close(drain_s=0.5)
    rx.close()
    assert replay.status_code == 401 and tampered.status_code == 401 and other_id.status_code == 401
    assert rx.refused[:4] == ["replayed", "signature_mismatch", "signature_mismatch", "signature_mismatch"]
    assert len(rx.accepted) == 1
    # A capture replayed after the tolerance fails on its timestamp even with a fresh cache.
    with pytest.raises(SignatureError, match="stale_timestamp"):
        verify(SECRET, body, keep, now=int(keep["webhook-timestamp"]) + 301, replay_cache=ReplayCache())


def test_failing_receiver_is_retried_until_it_accepts(registry: CollectorRegistry, tmp_path: Path) -> None:
    """A receiver answering 500 to the first 2 requests gets the alert on the 3rd attempt."""
    rx = Receiver(fail_first=2)
    d = AlertDelivery.for_urls(outbox_at(tmp_path), rx.url, FAST, AlertingMetrics(registry)).start()
    try:
        d.submit(fresh())
        got = rx.wait_for(1)
    finally:
        d.close(drain_s=2.0)
        rx.close()
    assert len(got) == 1 and len(rx.requests) == 3
    assert len({h["idempotency-key"] for h, _ in rx.requests}) == 1  # same key on every retry
    assert len({h["x-eew-delivery"] for h, _ in rx.requests}) == 1
    sub = static_subscribers(rx.url)[0].label
    assert (
        value(
            registry,
            "eew_alert_delivery_attempts_total",
            subscriber=sub,
            channel="webhook",
            result="http_500",
        )
        == 2
    )
    assert value(registry, "eew_alert_deliveries_total", subscriber=sub, channel="webhook", outcome="ok") == 1


def test_unreachable_and_silent_subscribers_do_not_block_others(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    """Refused and never-answering subscribers are dead-lettered (counted) while a healthy one gets
    everything, in order; submit() never waits for HTTP."""
    rx = Receiver()
    silent = Silent()
    urls = [closed_port_url(), silent.url, rx.url]
    cfg = DeliveryConfig(
        attempts=2,
        backoff_initial_s=0.05,
        backoff_max_s=0.1,
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        poll_s=0.2,
    )
    outbox = outbox_at(tmp_path)
    d = AlertDelivery.for_urls(outbox, urls, cfg, AlertingMetrics(registry)).start()
    try:
        t0 = time.monotonic()
        for v in (1, 2, 3):
            d.submit(fresh(v))
        submit_s = time.monotonic() - t0
        got = rx.wait_for(3, timeout_s=10)
        # idle() does not count rows waiting for a retry: wait until every failing row is final
        assert wait_until(lambda: len(outbox.deliveries(status=DEAD)) == 6, 20)
        assert d.wait_idle(20)
    finally:
        d.close(drain_s=1.0)
        rx.close()
        silent.close()
    print(f"submit() of 3 alerts for 3 subscribers took {submit_s * 1e3:.2f} ms")
    assert [g["version"] for g in got] == [1, 2, 3]
    refused, hung, ok = (s.label for s in static_subscribers(urls))
    assert (
        value(registry, "eew_alert_deliveries_total", subscriber=refused, channel="webhook", outcome="failed")
        == 3
    )
    assert (
        value(
            registry,
            "eew_alert_delivery_failures_total",
            subscriber=refused,
            channel="webhook",
            reason="attempts_exhausted_connect_error",
        )
        == 3
    )
    assert (
        value(
            registry,
            "eew_alert_delivery_failures_total",
            subscriber=hung,
            channel="webhook",
            reason="attempts_exhausted_timeout",
        )
        == 3
    )
    assert value(registry, "eew_alert_deliveries_total", subscriber=ok, channel="webhook", outcome="ok") == 3
    dead = outbox.deliveries(status=DEAD)
    assert len(dead) == 6 and all(r.attempts == 2 for r in dead)


def test_client_error_and_expired_alerts_are_dead_lettered_at_once(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    """A 400 answer is final (one request); an alert older than max_age is never sent."""
    rx = Receiver(fail_first=100, fail_status=400)
    outbox = outbox_at(tmp_path)
    d = AlertDelivery.for_urls(outbox, rx.url, FAST, AlertingMetrics(registry)).start()
    try:
        d.submit(fresh())
        d.submit(alert_msg(2, pb.ALERT_TYPE_UPDATE, created_ns=now_ns() - 600 * 1_000_000_000))
        assert wait_until(lambda: len(outbox.deliveries(status=DEAD)) == 2)
    finally:
        d.close(drain_s=1.0)
        rx.close()
    assert len(rx.requests) == 1
    sub = static_subscribers(rx.url)[0].label
    reasons = sorted(r.last_error for r in outbox.deliveries(status=DEAD))
    assert reasons == ["expired", "rejected"]
    assert (
        value(
            registry,
            "eew_alert_delivery_failures_total",
            subscriber=sub,
            channel="webhook",
            reason="rejected",
        )
        == 1
    )


def _api_sub(sid: str, url: str, **kw: Any) -> Subscriber:
    spec = SubscriberSpec.model_validate(
        {
            "name": sid,
            "latitude": kw.pop("latitude", 35.3),
            "longitude": -118.0,
            "channels": {"webhook": {"url": url, "secret": SECRET, "format": kw.pop("format", "json")}},
            **kw,
        }
    )
    return Subscriber(id=sid, owner="ops", spec=spec, created_ns=now_ns(), updated_ns=now_ns())


def test_per_subscriber_thresholds_site_fields_and_cap(registry: CollectorRegistry, tmp_path: Path) -> None:
    """Subscribers stored in the outbox: the one whose threshold the event meets gets NEW, UPDATE
    and CANCEL with its own site forecast; the one with a higher magnitude threshold gets nothing;
    a CAP subscriber's documents validate and its Update references the Alert."""
    rx_a, rx_b, rx_cap = Receiver(secret=SECRET), Receiver(secret=SECRET), Receiver(secret=SECRET)
    outbox = outbox_at(tmp_path)
    a = _api_sub("sub-aaaaaaaaaaaaaaaa", rx_a.url, min_probability=0.5, min_magnitude=5.0)
    b = _api_sub("sub-bbbbbbbbbbbbbbbb", rx_b.url, min_magnitude=6.5)
    c = _api_sub("sub-cccccccccccccccc", rx_cap.url, format="cap", latitude=36.5)
    for s in (a, b, c):
        outbox.add_subscriber(s)
    cfg = DeliveryConfig(**{**FAST.__dict__, "allow_private": True})  # receivers are on loopback
    d = AlertDelivery(outbox, cfg, AlertingMetrics(registry)).start()
    new, upd = fresh(1, magnitude=5.4), fresh(2, magnitude=5.6)
    cancel = fresh(3, pb.ALERT_TYPE_CANCEL)
    try:
        for m in (new, upd, cancel):
            d.submit(m)
        got_a = rx_a.wait_for(3)
        got_c = rx_cap.wait_for(3)
        assert d.wait_idle(10)
    finally:
        d.close(drain_s=1.0)
    for r in (rx_a, rx_b, rx_cap):
        r.close()
    assert [g["type"] for g in got_a] == ["NEW", "UPDATE", "CANCEL"] and rx_b.requests == []
    want = forecasts(new, [a])[a.id]
    site = got_a[0]["site"]
    assert site["subscriber_id"] == a.id and site["warning_time_s"] == pytest.approx(
        want.warning_time_s, abs=0.01
    )
    assert site["expected_intensity_mmi"] == pytest.approx(want.mmi, abs=0.01)
    assert got_a[2]["site"] is not None  # the cancel of a located event still says where
    assert value(registry, "eew_alert_fanout_skipped_total", reason="below_magnitude") == 2
    assert value(registry, "eew_alert_fanout_skipped_total", reason="cancel_never_sent") == 1
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    docs = [etree.fromstring(g["raw"]) for g in got_c]
    assert all(schema.validate(doc) for doc in docs), schema.error_log
    ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
    assert [doc.findtext("c:msgType", namespaces=ns) for doc in docs] == ["Alert", "Update", "Cancel"]
    assert f"{new.event_id}-v1" in docs[1].findtext("c:references", namespaces=ns)
    assert rx_cap.accepted_raw[0][0]["content-type"] == "application/cap+xml"
    assert (
        value(registry, "eew_alert_delivery_latency_seconds_count", subscriber=a.id, channel="webhook") == 3
    )


def test_private_target_is_refused_again_at_send_time(registry: CollectorRegistry, tmp_path: Path) -> None:
    """A stored subscriber whose host resolves to a private address (e.g. DNS changed after the
    API check) is dead-lettered without a request, unless private targets are allowed."""
    rx = Receiver()
    outbox = outbox_at(tmp_path)
    outbox.add_subscriber(_api_sub("sub-dddddddddddddddd", rx.url))
    d = AlertDelivery(outbox, FAST, AlertingMetrics(registry)).start()
    try:
        d.submit(fresh())
        assert wait_until(lambda: len(outbox.deliveries(status=DEAD)) == 1)
    finally:
        d.close(drain_s=0.5)
        rx.close()
    assert rx.requests == [] and outbox.deliveries(status=DEAD)[0].last_error == "target_private_target"
