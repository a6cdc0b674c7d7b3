"""The subscriber API (stdlib ThreadingHTTPServer): subscribers CRUD, alert documents, SSE.

Authentication: ``Authorization: Bearer <token>``; tokens come from the settings
(``--api-tokens name:token[:role],...``, role ``write`` by default). Roles:

* ``read``: GET alerts and the alert stream (dashboards);
* ``write``: also create subscribers and read, change and delete its own (owner = token name);
* ``admin``: every subscriber.

No or unknown token: 401 (``WWW-Authenticate: Bearer``); a known token without the right: 403.
Every answer is JSON; errors are ``{"error": {"code": ..., "message": ..., "details": [...]}}``.
Requests are rate-limited per token (per client address before authentication) by a token
bucket (``rate_per_s`` refill, ``burst`` capacity): 429 with ``Retry-After``.

Routes::

    GET    /v1/subscribers                   own subscribers (admin: all)
    POST   /v1/subscribers                   create (SubscriberSpec) -> 201 + Location
    GET    /v1/subscribers/{id}
    PUT    /v1/subscribers/{id}              replace (SubscriberSpec)
    PATCH  /v1/subscribers/{id}              change some fields (SubscriberPatch)
    DELETE /v1/subscribers/{id}              -> 204 (its pending deliveries become dead)
    GET    /v1/subscribers/{id}/deliveries   outbox rows, newest first (?status=dead: dead letters)
    GET    /v1/alerts/{event_id}             newest version (?version=N, ?format=json|cap|quakeml)
    GET    /alerts/stream                    SSE (see sse.py); ?subscriber={id} for its own feed

Webhook URLs are checked with ``subscribers.check_target`` (SSRF: the host must resolve only to
public addresses) unless ``allow_private_webhooks``; secrets are write-only (answers show
``has_secret``). Bodies over ``max_body_bytes`` get 413.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ValidationError

from services.alerting.cap import CAP_MIME, CapConfig, alert_to_cap
from services.alerting.exceptions import OutboxError, TargetRefused
from services.alerting.messages import alert_to_json
from services.alerting.metrics import AlertingMetrics
from services.alerting.outbox import DEAD, DELIVERED, FEED, PENDING, Outbox
from services.alerting.quakeml import QUAKEML_MIME, alert_to_quakeml
from services.alerting.sse import SseHub, alert_feed, stream, subscriber_feed
from services.alerting.subscribers import (
    Subscriber,
    SubscriberPatch,
    SubscriberSpec,
    check_target,
    new_subscriber_id,
)
from services.common.exceptions import ConfigError
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import now_ns

log = logging.getLogger(__name__)

ROLES = ("read", "write", "admin")
_SUB_RE = re.compile(r"^/v1/subscribers/(sub-[0-9a-f]{16})(/deliveries)?$")
_ALERT_RE = re.compile(r"^/v1/alerts/([A-Za-z0-9_.:-]{1,100})$")


@dataclass(frozen=True)
class ApiToken:
    name: str
    token: str = field(repr=False)
    role: str = "write"


def parse_tokens(text: str) -> list[ApiToken]:
    """``name:token[:role]`` comma-separated; tokens must be at least 16 characters."""
    out: list[ApiToken] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ConfigError("API tokens must be name:token[:role], comma-separated")
        role = parts[2] if len(parts) == 3 else "write"
        if role not in ROLES:
            raise ConfigError(f"API token role must be one of {ROLES}, got {role!r}")
        if len(parts[1]) < 16:
            raise ConfigError(f"API token of {parts[0]!r} is shorter than 16 characters")
        if any(t.name == parts[0] for t in out):
            raise ConfigError(f"API token name {parts[0]!r} given twice")
        out.append(ApiToken(parts[0], parts[1], role))
    return out


class TokenBucket:
    """Per-key token buckets: ``rate_per_s`` refill, ``burst`` capacity (bounded key count)."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ConfigError("rate limit needs rate > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_keys = max_keys
        self._b: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._b.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._b[key] = (tokens - 1.0, now)
                ok, wait = True, 0.0
            else:
                self._b[key] = (tokens, now)
                ok, wait = False, (1.0 - tokens) / self.rate
            if len(self._b) > self.max_keys:  # forget full buckets (they are the default state)
                full = [k for k, (t, last) in self._b.items() if t + (now - last) * self.rate >= self.burst]
                for k in full:
                    del self._b[k]
            return ok, wait


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 0
    tokens: tuple[ApiToken, ...] = ()
    rate_per_s: float = 5.0
    burst: int = 20
    allow_private_webhooks: bool = False
    mqtt_enabled: bool = False
    max_body_bytes: int = 65_536
    request_timeout_s: float = 10.0
    sse_public: bool = False
    max_connections: int = 64  # concurrent non-stream requests (SSE streams are bounded by the hub)


class _BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most ``max_threads`` handler threads; more connections get a
    bare 503 and are closed (no unbounded thread growth under a connection flood)."""

    daemon_threads = True

    def __init__(
        self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_threads: int
    ) -> None:
        super().__init__(addr, handler)
        self._slots = threading.BoundedSemaphore(max_threads)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(
                    b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        t = threading.Thread(target=self._run_one, args=(request, client_address), daemon=True)
        t.start()

    def _run_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Error(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers or {}


class SubscriberApi:
    """The HTTP API server; ``start()`` serves on its own thread, ``stop()`` ends it and every stream."""

    def __init__(
        self,
        cfg: ApiConfig,
        outbox: Outbox,
        metrics: AlertingMetrics,
        hub: SseHub | None = None,
        on_change: Callable[[], None] | None = None,
        cap: CapConfig | None = None,
        resolve: Callable[..., list] | None = None,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.metrics = metrics
        self.hub = hub or SseHub(metrics=metrics)
        self.on_change = on_change or (lambda: None)
        self.cap = cap or CapConfig()
        self.resolve = resolve
        self.buckets = TokenBucket(cfg.rate_per_s, cfg.burst)
        if not cfg.tokens:
            log.warning("subscriber API: no tokens configured, every request will be refused (401)")
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "eew-alerting-api/1"
            timeout = cfg.request_timeout_s

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                api._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                api._handle(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                api._handle(self, "PUT")

            def do_PATCH(self) -> None:  # noqa: N802
                api._handle(self, "PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                api._handle(self, "DELETE")

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("api: " + fmt, *args)

        self._httpd = _BoundedServer(
            (cfg.host, cfg.port), Handler, cfg.max_connections + self.hub.max_clients
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="subscriber-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> SubscriberApi:
        self._thread.start()
        log.info("subscriber API on %s (/v1/subscribers, /v1/alerts, /alerts/stream)", self.url)
        return self

    def stop(self) -> None:
        self.hub.stop()
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------------ plumbing

    def _authenticate(self, h: BaseHTTPRequestHandler) -> ApiToken | None:
        value = h.headers.get("Authorization", "")
        scheme, _, given = value.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        given_b = given.strip().encode()
        found = None
        for t in self.cfg.tokens:  # compare with every token, in constant time each
            if hmac.compare_digest(given_b, t.token.encode()):
                found = t
        return found

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, headers: dict | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD" and body:
            h.wfile.write(body)

    def _json(self, h: BaseHTTPRequestHandler, status: int, doc: Any, headers: dict | None = None) -> None:
        body = b"" if status == 204 else json.dumps(doc, separators=(",", ":")).encode()
        self._send(h, status, body, "application/json", headers)

    def _body(self, h: BaseHTTPRequestHandler, model: type[BaseModel]) -> Any:
        ctype = h.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Error(415, "unsupported_media_type", "send the body as application/json")
        try:
            length = int(h.headers.get("Content-Length", ""))
        except ValueError:
            raise _Error(411, "length_required", "Content-Length is required") from None
        if length < 0 or length > self.cfg.max_body_bytes:
            raise _Error(413, "too_large", f"body larger than {self.cfg.max_body_bytes} bytes")
        raw = h.rfile.read(length)
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Error(400, "bad_json", f"body is not valid JSON: {exc}") from None
        try:
            return model.model_validate(doc)
        except ValidationError as exc:
            details = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_input=False, include_url=False, include_context=False)
            ]
            raise _Error(422, "invalid", "the subscriber is not valid", details) from None

    def _route_name(self, path: str) -> str:
        if path == "/v1/subscribers":
            return "/v1/subscribers"
        m = _SUB_RE.match(path)
        if m:
            return "/v1/subscribers/{id}" + (m.group(2) or "")
        if _ALERT_RE.match(path):
            return "/v1/alerts/{event_id}"
        if path == "/alerts/stream":
            return path
        return "other"

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        path, query = split.path, parse_qs(split.query)
        route = self._route_name(path)
        status = 500
        try:
            token = self._authenticate(h)
            public_stream = route == "/alerts/stream" and self.cfg.sse_public and "subscriber" not in query
            key = f"token:{token.name}" if token else f"addr:{h.client_address[0]}"
            ok, wait = self.buckets.take(key)
            if not ok:
                raise _Error(
                    429,
                    "rate_limited",
                    "too many requests",
                    headers={"Retry-After": str(max(1, round(wait + 0.5)))},
                )
            if token is None and not public_stream:
                raise _Error(
                    401,
                    "unauthorized",
                    "a valid bearer token is required",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            status = self._dispatch(h, method, path, route, query, token)
        except _Error as e:
            status = e.status
            self._json(
                h,
                e.status,
                {"error": {"code": e.code, "message": e.message, "details": e.details}},
                e.headers,
            )
        except OutboxError as exc:
            status = 503
            log.error("api %s %s: outbox unavailable: %s", method, path, exc)
            self._json(
                h, 503, {"error": {"code": "unavailable", "message": "storage unavailable, retry later"}}
            )
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            status = 499
        except Exception:  # a bug must answer 500, never kill the server thread silently
            log.exception("api %s %s: unexpected error", method, path)
            status = 500
            try:
                self._json(h, 500, {"error": {"code": "internal", "message": "internal error"}})
            except OSError:
                pass
        self.metrics.api_requests.labels(method, route, str(status)).inc()

    # ------------------------------------------------------------------ routes

    def _dispatch(
        self,
        h: BaseHTTPRequestHandler,
        method: str,
        path: str,
        route: str,
        query: dict[str, list[str]],
        token: ApiToken | None,
    ) -> int:
        if route == "/alerts/stream" and method == "GET":
            return self._stream(h, query, token)
        assert token is not None
        if route == "/v1/subscribers":
            if method == "GET":
                subs = self.outbox.list_subscribers(None if token.role == "admin" else token.name)
                self._json(h, 200, {"subscribers": [s.public() for s in subs]})
                return 200
            if method == "POST":
                self._need(token, "write")
                spec = self._body(h, SubscriberSpec)
                self._check_spec(spec)
                now = now_ns()
                sub = Subscriber(
                    id=new_subscriber_id(), owner=token.name, spec=spec, created_ns=now, updated_ns=now
                )
                self.outbox.add_subscriber(sub)
                self.on_change()
                log.info("api: %s created subscriber %s (%s)", token.name, sub.id, ",".join(sub.channels))
                self._json(h, 201, sub.public(), {"Location": f"/v1/subscribers/{sub.id}"})
                return 201
            raise _Error(
                405, "method_not_allowed", f"{method} not allowed here", headers={"Allow": "GET, POST"}
            )
        m = _SUB_RE.match(path)
        if m:
            sid, sub_path = m.group(1), m.group(2)
            sub = self.outbox.get_subscriber(sid)
            if sub is None:
                raise _Error(404, "not_found", f"no subscriber {sid}")
            if token.role != "admin" and sub.owner != token.name:
                raise _Error(403, "forbidden", "this subscriber belongs to another token")
            if sub_path:
                if method != "GET":
                    raise _Error(405, "method_not_allowed", "GET only", headers={"Allow": "GET"})
                status_q = (query.get("status") or [None])[0]
                if status_q not in (None, PENDING, DELIVERED, DEAD, FEED):
                    raise _Error(400, "bad_query", "status must be pending, delivered, dead or feed")
                limit = self._int(query, "limit", 100, 1, 1000)
                rows = self.outbox.deliveries(sid, status_q, limit)
                self._json(h, 200, {"deliveries": [d.public() for d in rows]})
                return 200
            if method == "GET":
                self._json(h, 200, sub.public())
                return 200
            self._need(token, "write")
            if method in ("PUT", "PATCH"):
                assert sub.spec is not None
                if method == "PUT":
                    spec = self._body(h, SubscriberSpec)
                else:
                    patch = self._body(h, SubscriberPatch)
                    try:
                        spec = patch.apply(sub.spec)
                    except ValidationError as exc:
                        details = [
                            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                            for e in exc.errors(include_input=False, include_url=False, include_context=False)
                        ]
                        raise _Error(422, "invalid", "the changed subscriber is not valid", details) from None
                self._check_spec(spec)
                updated = self.outbox.update_subscriber(sid, spec, now_ns())
                if updated is None:
                    raise _Error(404, "not_found", f"no subscriber {sid}")
                self.on_change()
                self._json(h, 200, updated.public())
                return 200
            if method == "DELETE":
                if not self.outbox.delete_subscriber(sid, now_ns()):
                    raise _Error(404, "not_found", f"no subscriber {sid}")
                self.on_change()
                log.info("api: %s deleted subscriber %s", token.name, sid)
                self._json(h, 204, None)
                return 204
            raise _Error(405, "method_not_allowed", f"{method} not allowed here")
        m = _ALERT_RE.match(path)
        if m and method == "GET":
            return self._alert(h, m.group(1), query)
        raise _Error(404, "not_found", f"no route {method} {path}")

    @staticmethod
    def _need(token: ApiToken, role: str) -> None:
        if ROLES.index(token.role) < ROLES.index(role):
            raise _Error(403, "forbidden", f"this needs a {role} token, {token.name!r} is {token.role}")

    @staticmethod
    def _int(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
        raw = (query.get(name) or [None])[0]
        if raw is None:
            return default
        try:
            v = int(raw)
        except ValueError:
            raise _Error(400, "bad_query", f"{name} must be an integer") from None
        if not lo <= v <= hi:
            raise _Error(400, "bad_query", f"{name} must be in [{lo}, {hi}]")
        return v

    def _check_spec(self, spec: SubscriberSpec) -> None:
        wh = spec.channels.webhook
        if wh is not None:
            try:
                check_target(wh.url, self.cfg.allow_private_webhooks, self.resolve)
            except TargetRefused as exc:
                raise _Error(
                    422, "target_refused", str(exc), [{"loc": ["channels", "webhook", "url"]}]
                ) from None
        if spec.channels.mqtt is not None and not self.cfg.mqtt_enabled:
            raise _Error(422, "mqtt_disabled", "this service has no MQTT broker configured")

    def _alert(self, h: BaseHTTPRequestHandler, event_id: str, query: dict[str, list[str]]) -> int:
        version = self._int(query, "version", 0, 0, 1_000_000) or None
        fmt = (query.get("format") or ["json"])[0]
        if fmt not in ("json", "cap", "quakeml"):
            raise _Error(400, "bad_query", "format must be json, cap or quakeml")
        raw = self.outbox.alert_bytes(event_id, version)
        if raw is None:
            raise _Error(
                404, "not_found", f"no alert {event_id}" + (f" version {version}" if version else "")
            )
        alert = pb.Alert.FromString(raw)
        if fmt == "cap":
            refs = self.outbox.event_versions(event_id, before_ns=alert.created_time_ns)
            self._send(h, 200, alert_to_cap(alert, self.cap, refs), CAP_MIME)
        elif fmt == "quakeml":
            self._send(h, 200, alert_to_quakeml(alert), QUAKEML_MIME)
        else:
            self._send(h, 200, alert_to_json(alert), "application/json")
        return 200

    def _stream(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]], token: ApiToken | None) -> int:
        sid = (query.get("subscriber") or [None])[0]
        if sid is not None:
            assert token is not None
            sub = self.outbox.get_subscriber(sid)
            if sub is None:
                raise _Error(404, "not_found", f"no subscriber {sid}")
            if token.role != "admin" and sub.owner != token.name:
                raise _Error(403, "forbidden", "this subscriber belongs to another token")
            if "sse" not in sub.channels:
                raise _Error(409, "no_sse_channel", "this subscriber has no sse channel")
            fetch = subscriber_feed(self.outbox, sid)
        else:
            fetch = alert_feed(self.outbox)
        last_raw = h.headers.get("Last-Event-ID") or (query.get("last_event_id") or [None])[0]
        if last_raw is not None:
            try:
                last = max(0, int(last_raw))
            except ValueError:
                raise _Error(400, "bad_last_event_id", "Last-Event-ID must be an integer") from None
        elif sid is None:
            replay = self._int(query, "replay", 0, 0, 1000)
            last = max(0, self.outbox.last_alert_seq() - replay)
        else:
            last = self.outbox.feed_start(sid, self._int(query, "replay", 0, 0, 1000))
        if not self.hub.acquire():
            raise _Error(
                503, "too_many_streams", "too many open streams, retry later", headers={"Retry-After": "5"}
            )
        try:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream; charset=utf-8")
            h.send_header("Cache-Control", "no-store")
            h.send_header("X-Accel-Buffering", "no")
            h.end_headers()
            h.close_connection = True
            try:
                stream(h.wfile, fetch, last, self.hub)
            except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
                pass  # the client went away
        finally:
            self.hub.release()
        return 200
