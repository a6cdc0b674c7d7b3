"""The subscriber API (Starlette on uvicorn): subscribers CRUD, alert documents, SSE.

Authentication: ``Authorization: Bearer <token>``; tokens come from the settings
(``EEW_API_TOKENS`` or ``--api-tokens-file``: ``name:token[:role],...``, role ``write`` by
default). Roles:

* ``read``: GET alerts and the alert stream (dashboards);
* ``write``: also create subscribers and read, change and delete its own (owner = token name);
* ``admin``: every subscriber.

No or unknown token: 401 (``WWW-Authenticate: Bearer``); a known token without the right: 403; a
subscriber id that is not the caller's answers 404 exactly as one that does not exist.
Every answer is JSON, errors included (``{"error": {"code", "message", "details"}}``), those of
the server's own limits too (408, 431, 503: ``http_server.py``). Requests are rate-limited per
token (per client address before authentication) by a token bucket (``rate_per_s`` refill,
``burst`` capacity): 429 with ``Retry-After``. Each write token may own at most
``max_subscribers_per_token`` subscribers (409 ``quota_exceeded``); lists are paginated.
Bodies are JSON with strict types (``"35"`` is not a latitude, ``"yes"`` not a boolean).

Routes::

    GET    /v1/subscribers                   own subscribers (admin: all); ?limit=&cursor=
    POST   /v1/subscribers                   create (SubscriberSpec) -> 201 + Location
    GET    /v1/subscribers/{id}
    PUT    /v1/subscribers/{id}              replace (SubscriberSpec)
    PATCH  /v1/subscribers/{id}              change some fields (SubscriberPatch)
    DELETE /v1/subscribers/{id}              -> 204 (its pending deliveries become dead)
    GET    /v1/subscribers/{id}/deliveries   outbox rows, newest first (?status=dead: dead letters)
    GET    /v1/alerts/{event_id}             newest version (?version=N, ?format=json|cap|quakeml)
    GET    /alerts/stream                    SSE (see sse.py); ?subscriber={id} for its own feed

Webhook URLs are checked with ``subscribers.check_target`` (SSRF: the host must resolve only to
public addresses) unless ``allow_private_webhooks``; a refused target gets one generic message
whatever the reason (the details go to the log). Secrets are write-only (answers show
``has_secret``). Bodies over ``max_body_bytes`` get 413.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import CliImplicitFlag
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.alerting.dispatch.http_server import ServerLimits, ThreadedServer
from services.alerting.dispatch.outbox import DEAD, DELIVERED, FEED, PENDING, Outbox
from services.alerting.dispatch.sse import SseHub, alert_feed, stream, subscriber_feed
from services.alerting.dispatch.subscribers import (
    TARGET_REFUSED_MESSAGE,
    Subscriber,
    SubscriberPatch,
    SubscriberSpec,
    check_target,
    new_subscriber_id,
)
from services.alerting.exceptions import OutboxError, TargetRefused
from services.alerting.formats.cap import CAP_MIME, CapConfig, alert_to_cap
from services.alerting.formats.messages import alert_to_json
from services.alerting.formats.quakeml import QUAKEML_MIME, alert_to_quakeml
from services.alerting.metrics import AlertingMetrics
from services.common.exceptions import ConfigError
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.settings import CoreModel, not_a_setting
from services.common.timeutil import now_ns

log = logging.getLogger(__name__)

ROLES = ("read", "write", "admin")
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # it names MQTT topic levels and ACL users
_CURSOR_RE = re.compile(r"^([0-9]{1,20})\.(sub-[0-9a-f]{16})$")


@dataclass(frozen=True)
class ApiToken:
    name: str
    token: str = field(repr=False)
    role: str = "write"


def parse_tokens(text: str) -> list[ApiToken]:
    """``name:token[:role]`` comma- or newline-separated; names ``[A-Za-z0-9_.-]``, tokens >= 16 chars."""
    out: list[ApiToken] = []
    for item in (t.strip() for t in re.split(r"[,\n]", text)):
        if not item or item.startswith("#"):
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ConfigError("API tokens must be name:token[:role], comma-separated")
        if not TOKEN_NAME_RE.match(parts[0]):
            raise ConfigError(f"API token name {parts[0]!r} must be 1-64 of A-Z a-z 0-9 _ . -")
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


class ApiConfig(CoreModel):
    """Knobs of the subscriber API; the service exposes them as ``--api-*`` (group ``api``)."""

    host: str = Field("127.0.0.1", description="Address the subscriber API listens on.")
    port: int | None = Field(None, description="Port of the subscriber API and SSE feed (0: a free port); unset: no API.")
    tokens: tuple[ApiToken, ...] = not_a_setting((), "Parsed from --api-tokens and --api-tokens-file at start.")
    rate_per_s: float = Field(5.0, description="API requests per second per token (token-bucket refill).")
    burst: int = Field(20, description="API requests a token may make at once (token-bucket size).")
    allow_private_webhooks: CliImplicitFlag[bool] = Field(
        False,
        description="Accept API subscribers whose webhook host is (or resolves to) a loopback, private or "
        "link-local address (SSRF protection off: test setups only).",
    )
    mqtt_enabled: bool = not_a_setting(False, "Whether the service has an MQTT broker (--mqtt-host).")
    max_body_bytes: int = not_a_setting(65_536, "Largest request body.")
    request_timeout_s: float = Field(
        10.0,
        description="Whole-request deadline of the API: headers and body must arrive within this, "
        "however slowly they trickle in (408 and close otherwise).",
    )
    keep_alive_s: int = Field(5, gt=0, description="An idle keep-alive API connection is closed after this (whole seconds).")
    shutdown_s: int = Field(
        2, ge=0, description="At shutdown, open API requests and SSE streams get this long (whole seconds) before they are closed."
    )
    sse_public: bool = Field(False, description="Serve the alert SSE feed without a token.")
    max_connections: int = Field(1000, description="Open API connections in total (SSE included).")
    max_connections_per_client: int = Field(
        32, description="Open API connections per client address (more get 503 at once)."
    )
    max_header_bytes: int = not_a_setting(16_384, "Largest request head.")
    max_subscribers_per_token: int = Field(
        100, description="Subscribers one write token may own (more: 409 quota_exceeded)."
    )
    page_size: int = not_a_setting(100, "Subscribers per page by default (at most 1000 with ?limit=).")


class _Error(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict | None = None) -> Response:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _json(doc: Any, status: int = 200, headers: dict | None = None) -> Response:
    if status == 204:
        return Response(status_code=204, headers={"Cache-Control": "no-store"})
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Response(body, status, {"Cache-Control": "no-store", **(headers or {})}, "application/json")


def _details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_input=False, include_url=False, include_context=False)
    ]


class _StreamResponse(StreamingResponse):
    """A streaming response that runs ``on_close`` however it ends (done, client gone, stop)."""

    def __init__(self, content: Any, on_close: Callable[[], None], **kw: Any) -> None:
        super().__init__(content, **kw)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except OSError as exc:  # the client went away mid-stream: once, at DEBUG
            log.debug("SSE client %s went away: %s", scope.get("client"), exc)
        finally:
            self.on_close()


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
        routes = [
            Route("/v1/subscribers", self._subscribers, methods=["GET", "POST"]),
            Route("/v1/subscribers/{sid:str}", self._subscriber, methods=["GET", "PUT", "PATCH", "DELETE"]),
            Route("/v1/subscribers/{sid:str}/deliveries", self._deliveries, methods=["GET"]),
            Route("/v1/alerts/{event_id:str}", self._alert, methods=["GET"]),
            Route("/alerts/stream", self._stream, methods=["GET"]),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={
                HTTPException: self._http_exception,
                _Error: self._error,
                OutboxError: self._outbox_error,
                ClientDisconnect: self._gone,
                Exception: self._internal,
            },
        )
        self.app = _Guarded(app, self)
        limits = ServerLimits(
            request_timeout_s=cfg.request_timeout_s,
            max_connections=cfg.max_connections,
            max_per_client=cfg.max_connections_per_client,
            max_header_bytes=cfg.max_header_bytes,
            keep_alive_s=cfg.keep_alive_s,
            shutdown_s=cfg.shutdown_s,
        )
        self._server = ThreadedServer(
            self.app,
            cfg.host,
            cfg.port or 0,
            limits,
            on_refused=lambda reason: metrics.api_refused.labels(reason).inc(),
            name="subscriber-api",
        )

    @property
    def port(self) -> int:
        return self._server.address[1]

    @property
    def url(self) -> str:
        host = self._server.address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def connections(self) -> int:
        """Open client connections (all addresses)."""
        return self._server.guard.total

    def start(self) -> SubscriberApi:
        self._server.start()
        log.info("subscriber API on %s (/v1/subscribers, /v1/alerts, /alerts/stream)", self.url)
        return self

    def stop(self) -> None:
        self.hub.stop()
        self._server.stop()

    # ------------------------------------------------------------------ plumbing

    def authenticate(self, header: str) -> ApiToken | None:
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        given_b = given.strip().encode()
        found = None
        for t in self.cfg.tokens:  # compare with every token, in constant time each
            if hmac.compare_digest(given_b, t.token.encode()):
                found = t
        return found

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else exc.detail
        return error_response(exc.status_code, code, str(message), headers=dict(exc.headers or {}))

    async def _error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Error)
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    async def _outbox_error(self, request: Request, exc: Exception) -> Response:
        log.error("api %s %s: outbox unavailable: %s", request.method, request.url.path, exc)
        return error_response(503, "unavailable", "storage unavailable, retry later", headers={"Retry-After": "5"})

    async def _internal(self, request: Request, exc: Exception) -> Response:
        return error_response(500, "internal", "internal error")  # logged by _Guarded

    async def _gone(self, request: Request, exc: Exception) -> Response:
        log.debug("api %s %s: client went away", request.method, request.url.path)
        return error_response(499, "client_closed", "client closed the request")

    @staticmethod
    def _token(request: Request) -> ApiToken:
        token = request.scope.get("eew.token")
        if token is None:  # the stream route lets public requests through; others never get here
            raise _Error(401, "unauthorized", "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return token

    async def _body(self, request: Request, model: type[BaseModel]) -> Any:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Error(415, "unsupported_media_type", "send the body as application/json")
        try:
            length = int(request.headers.get("content-length", ""))
        except ValueError:
            raise _Error(411, "length_required", "Content-Length is required") from None
        if length < 0 or length > self.cfg.max_body_bytes:
            raise _Error(413, "too_large", f"body larger than {self.cfg.max_body_bytes} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > length:
                raise _Error(400, "bad_length", "body longer than its Content-Length")
        try:
            return model.model_validate_json(bytes(raw), strict=True)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise _Error(400, "bad_json", "body is not valid JSON") from None
            raise _Error(422, "invalid", "the subscriber is not valid", _details(exc)) from None

    @staticmethod
    def _need(token: ApiToken, role: str) -> None:
        if ROLES.index(token.role) < ROLES.index(role):
            raise _Error(403, "forbidden", f"this needs a {role} token, {token.name!r} is {token.role}")

    @staticmethod
    def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?[0-9]{1,10}", raw):
            raise _Error(400, "bad_query", f"{name} must be an integer")
        v = int(raw)
        if not lo <= v <= hi:
            raise _Error(400, "bad_query", f"{name} must be in [{lo}, {hi}]")
        return v

    def _own(self, sid: str, token: ApiToken) -> Subscriber:
        """The caller's subscriber ``sid`` (admin: any); 404 alike for none and another's."""
        sub = self.outbox.get_subscriber(sid) if re.fullmatch(r"sub-[0-9a-f]{16}", sid) else None
        if sub is None or (token.role != "admin" and sub.owner != token.name):
            raise _Error(404, "not_found", f"no subscriber {sid}")
        return sub

    def _check_spec(self, spec: SubscriberSpec) -> None:
        """SSRF and channel checks (blocking: DNS; run on the thread pool)."""
        wh = spec.channels.webhook
        if wh is not None:
            try:
                check_target(wh.url, self.cfg.allow_private_webhooks, self.resolve)
            except TargetRefused as exc:
                log.info("api: webhook target refused: %s", exc)
                raise _Error(
                    422, "target_refused", TARGET_REFUSED_MESSAGE, [{"loc": ["channels", "webhook", "url"]}]
                ) from None
        if spec.channels.mqtt is not None and not self.cfg.mqtt_enabled:
            raise _Error(422, "mqtt_disabled", "this service has no MQTT broker configured")

    # ------------------------------------------------------------------ routes

    async def _subscribers(self, request: Request) -> Response:
        token = self._token(request)
        if request.method == "GET":
            limit = self._int(request, "limit", self.cfg.page_size, 1, 1000)
            cursor = request.query_params.get("cursor")
            after = None
            if cursor is not None:
                m = _CURSOR_RE.match(cursor)
                if m is None:
                    raise _Error(400, "bad_query", "cursor is not one this API gave")
                after = (int(m.group(1)), m.group(2))
            owner = None if token.role == "admin" else token.name
            subs = await run_in_threadpool(self.outbox.list_subscribers, owner, limit + 1, after)
            page, more = subs[:limit], len(subs) > limit
            nxt = f"{page[-1].created_ns}.{page[-1].id}" if more else None
            return _json({"subscribers": [s.public() for s in page], "next_cursor": nxt})
        self._need(token, "write")
        spec = await self._body(request, SubscriberSpec)
        await run_in_threadpool(self._check_spec, spec)
        now = now_ns()
        sub = Subscriber(id=new_subscriber_id(), owner=token.name, spec=spec, created_ns=now, updated_ns=now)
        if not await run_in_threadpool(self.outbox.add_subscriber, sub, self.cfg.max_subscribers_per_token):
            raise _Error(
                409,
                "quota_exceeded",
                f"{token.name!r} already has {self.cfg.max_subscribers_per_token} subscribers",
            )
        self.on_change()
        log.info("api: %s created subscriber %s (%s)", token.name, sub.id, ",".join(sub.channels))
        return _json(sub.public(), 201, {"Location": f"/v1/subscribers/{sub.id}"})

    async def _subscriber(self, request: Request) -> Response:
        token = self._token(request)
        sid = request.path_params["sid"]
        sub = await run_in_threadpool(self._own, sid, token)
        if request.method == "GET":
            return _json(sub.public())
        self._need(token, "write")
        if request.method == "DELETE":
            if not await run_in_threadpool(self.outbox.delete_subscriber, sid, now_ns()):
                raise _Error(404, "not_found", f"no subscriber {sid}")
            self.on_change()
            log.info("api: %s deleted subscriber %s", token.name, sid)
            return _json(None, 204)
        assert sub.spec is not None
        if request.method == "PUT":
            spec = await self._body(request, SubscriberSpec)
        else:
            patch = await self._body(request, SubscriberPatch)
            try:
                spec = patch.apply(sub.spec)
            except ValidationError as exc:
                raise _Error(422, "invalid", "the changed subscriber is not valid", _details(exc)) from None
        await run_in_threadpool(self._check_spec, spec)
        updated = await run_in_threadpool(self.outbox.update_subscriber, sid, spec, now_ns())
        if updated is None:
            raise _Error(404, "not_found", f"no subscriber {sid}")
        self.on_change()
        return _json(updated.public())

    async def _deliveries(self, request: Request) -> Response:
        token = self._token(request)
        sid = request.path_params["sid"]
        await run_in_threadpool(self._own, sid, token)
        status_q = request.query_params.get("status")
        if status_q not in (None, PENDING, DELIVERED, DEAD, FEED):
            raise _Error(400, "bad_query", "status must be pending, delivered, dead or feed")
        limit = self._int(request, "limit", 100, 1, 1000)
        rows = await run_in_threadpool(self.outbox.deliveries, sid, status_q, limit)
        return _json({"deliveries": [d.public() for d in rows]})

    async def _alert(self, request: Request) -> Response:
        self._token(request)
        event_id = request.path_params["event_id"]
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", event_id):
            raise _Error(404, "not_found", "no such alert")
        version = self._int(request, "version", 0, 0, 1_000_000) or None
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "cap", "quakeml"):
            raise _Error(400, "bad_query", "format must be json, cap or quakeml")
        raw = await run_in_threadpool(self.outbox.alert_bytes, event_id, version)
        if raw is None:
            raise _Error(404, "not_found", f"no alert {event_id}" + (f" version {version}" if version else ""))
        alert = pb.Alert.FromString(raw)
        if fmt == "cap":
            refs = await run_in_threadpool(self.outbox.event_versions, event_id, alert.created_time_ns)
            body, ctype = await run_in_threadpool(alert_to_cap, alert, self.cap, refs), CAP_MIME
        elif fmt == "quakeml":
            body, ctype = alert_to_quakeml(alert), QUAKEML_MIME
        else:
            body, ctype = alert_to_json(alert), "application/json"
        return Response(body, 200, {"Cache-Control": "no-store"}, ctype)

    async def _stream(self, request: Request) -> Response:
        token: ApiToken | None = request.scope.get("eew.token")
        sid = request.query_params.get("subscriber")
        if sid is not None:
            token = self._token(request)
            sub = await run_in_threadpool(self._own, sid, token)
            if "sse" not in sub.channels:
                raise _Error(409, "no_sse_channel", "this subscriber has no sse channel")
            fetch = subscriber_feed(self.outbox, sid)
        else:
            fetch = alert_feed(self.outbox)
        last_raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        if last_raw is not None:
            if not re.fullmatch(r"[0-9]{1,18}", last_raw.strip()):
                raise _Error(400, "bad_last_event_id", "Last-Event-ID must be a non-negative integer")
            last = int(last_raw)
        elif sid is None:
            replay = self._int(request, "replay", 0, 0, 1000)
            last = max(0, await run_in_threadpool(self.outbox.last_alert_seq) - replay)
        else:
            replay = self._int(request, "replay", 0, 0, 1000)
            last = await run_in_threadpool(self.outbox.feed_start, sid, replay)
        client = request.client.host if request.client else "?"
        key = f"token:{token.name}" if token is not None else f"addr:{client}"
        why = self.hub.acquire(key)
        if why is not None:
            raise _Error(503, why, "too many open streams, retry later", headers={"Retry-After": "5"})
        return _StreamResponse(
            stream(fetch, last, self.hub),
            on_close=lambda: self.hub.release(key),
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


class _Guarded:
    """ASGI wrapper: authentication and rate limit before routing, request metrics after."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], api: SubscriberApi) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        api = self.api
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = api.authenticate(headers.get("authorization", ""))
        path = scope["path"]
        public_stream = (
            path == "/alerts/stream" and api.cfg.sse_public and b"subscriber=" not in scope["query_string"]
        )
        client = scope.get("client") or ("?", 0)
        key = f"token:{token.name}" if token else f"addr:{client[0]}"
        status = [500, False]  # status, response started

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0], status[1] = message["status"], True
            await send(message)

        ok, wait = api.buckets.take(key)
        resp: Response | None = None
        head_bytes = len(scope.get("raw_path", b"")) + len(scope["query_string"]) + sum(
            len(k) + len(v) + 4 for k, v in scope["headers"]
        )
        if head_bytes > api.cfg.max_header_bytes:  # h11 stops only headers that arrive in pieces
            resp = error_response(431, "headers_too_large", "headers too large")
        elif not ok:
            resp = error_response(
                429, "rate_limited", "too many requests", headers={"Retry-After": str(max(1, round(wait + 0.5)))}
            )
        elif token is None and not public_stream:
            resp = error_response(
                401, "unauthorized", "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            if resp is not None:
                await resp(scope, receive, send_status)
            else:
                scope["eew.token"] = token
                await self.app(scope, receive, send_status)
        except Exception:  # a bug answers 500 (JSON) and is logged once, with its traceback
            log.exception("api %s %s: unexpected error", scope["method"], path)
            if not status[1]:
                status[0] = 500
                await error_response(500, "internal", "internal error")(scope, receive, send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or (path if path in ("/v1/subscribers", "/alerts/stream") else "other")
            name = name.replace("{sid:str}", "{id}").replace("{event_id:str}", "{event_id}")
            api.metrics.api_requests.labels(scope["method"], name, str(status[0])).inc()
