"""The dashboard's HTTP side (Starlette): the page, its token check, its data and live updates.

Routes::

    GET    /                 the page (a shell without data; public)
    GET    /assets/...       the bundled front end and the basemap (public, served from the package)
    POST   /api/session      Authorization: Bearer <token> -> 204 + an HttpOnly session cookie
    DELETE /api/session      forget the session
    GET    /api/snapshot     everything the page shows (JSON)
    GET    /api/stream       live updates (server-sent events, one JSON message per tick)
    GET    /api/site?lat=&lon=   warning time and intensity at a chosen site, per located event

Every /api route but POST /api/session needs a token (``Authorization: Bearer``) or the session
cookie that POST /api/session hands out after checking one (an EventSource cannot send headers).
Tokens are the subscriber API's (``name:token[:role]``); every role (read, write, admin) may read.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.alerting.dispatch.api import ApiToken
from services.dashboard.metrics import DashboardMetrics

log = logging.getLogger(__name__)

COOKIE = "eew_dashboard_session"
# The page loads nothing from elsewhere: no CDN, no tile server.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class Sessions:
    """Session ids handed out after a token check, with an expiry; bounded in number."""

    def __init__(self, ttl_s: float, max_sessions: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.max_sessions, self.clock = ttl_s, max_sessions, clock
        self._s: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def open(self, token_name: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            if len(self._s) >= self.max_sessions:
                self._s = {k: v for k, v in self._s.items() if v[1] > now}
                while len(self._s) >= self.max_sessions:  # still full: forget the oldest
                    del self._s[min(self._s, key=lambda k: self._s[k][1])]
            self._s[sid] = (token_name, now + self.ttl_s)
        return sid

    def name(self, sid: str) -> str | None:
        with self._lock:
            hit = self._s.get(sid)
            if hit is None:
                return None
            if hit[1] <= self.clock():
                del self._s[sid]
                return None
            return hit[0]

    def close(self, sid: str) -> None:
        with self._lock:
            self._s.pop(sid, None)


def check_bearer(tokens: tuple[ApiToken, ...], header: str) -> ApiToken | None:
    """The token an ``Authorization: Bearer ...`` header names (constant-time compare), else None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    found = None
    for t in tokens:
        if hmac.compare_digest(t.token.encode(), value.strip().encode()):
            found = t
    return found


class Feed:
    """What the HTTP side needs from the service (implemented by ``service.LiveState``)."""

    stopping: threading.Event

    def frame(self) -> dict[str, Any]: ...  # noqa: D102 (see LiveState.frame)

    def snapshot(self) -> dict[str, Any]: ...  # noqa: D102

    def predict(self, lat: float, lon: float) -> list[dict[str, Any]]: ...  # noqa: D102


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def make_app(
    feed: Feed,
    tokens: tuple[ApiToken, ...],
    assets: Path,
    metrics: DashboardMetrics,
    tick_s: float = 0.5,
    heartbeat_s: float = 1.0,
    max_clients: int = 50,
    session_ttl_s: float = 43200.0,
) -> Starlette:
    """The ASGI application of the page; ``assets`` is the built front end (index.html, app.js...)."""
    sessions = Sessions(session_ttl_s)
    clients = {"n": 0}
    clients_lock = threading.Lock()
    if not tokens:
        log.warning("dashboard: no tokens configured, every data request will be refused (401)")

    def who(request: Request) -> str | None:
        tok = check_bearer(tokens, request.headers.get("authorization", ""))
        if tok is not None:
            return tok.name
        sid = request.cookies.get(COOKIE)
        return sessions.name(sid) if sid else None

    def refuse() -> JSONResponse:
        metrics.auth_failures.inc()
        return _error(401, "unauthorized", "a dashboard token is required (Authorization: Bearer, or a session)",
                      {"WWW-Authenticate": 'Bearer realm="eew-dashboard"'})

    async def index(request: Request) -> Response:
        return FileResponse(assets / "index.html", headers={"Cache-Control": "no-cache"})

    async def open_session(request: Request) -> Response:
        tok = check_bearer(tokens, request.headers.get("authorization", ""))
        if tok is None:
            return refuse()
        sid = sessions.open(tok.name)
        resp = Response(status_code=204)
        resp.set_cookie(COOKIE, sid, max_age=int(session_ttl_s), httponly=True, samesite="strict", path="/")
        log.info("dashboard: session opened for token %r", tok.name)
        return resp

    async def close_session(request: Request) -> Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            sessions.close(sid)
        resp = Response(status_code=204)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def snapshot(request: Request) -> Response:
        if who(request) is None:
            return refuse()
        body = await anyio.to_thread.run_sync(feed.snapshot)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def site(request: Request) -> Response:
        if who(request) is None:
            return refuse()
        try:
            lat, lon = float(request.query_params["lat"]), float(request.query_params["lon"])
            if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 360):
                raise ValueError("out of range")
        except (KeyError, ValueError) as exc:
            return _error(400, "bad_site", f"lat and lon (degrees) are required: {exc}")
        return JSONResponse({"predictions": await anyio.to_thread.run_sync(feed.predict, lat, lon)})

    async def stream(request: Request) -> Response:
        if who(request) is None:
            return refuse()
        with clients_lock:
            if clients["n"] >= max_clients:
                return _error(503, "too_many_streams", f"{max_clients} update streams are open",
                              {"Retry-After": "5"})
            clients["n"] += 1
            metrics.clients.set(clients["n"])
        return StreamingResponse(
            _updates(request), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _updates(request: Request) -> AsyncIterator[bytes]:
        """One message per tick with what changed since the last one (the first: everything)."""
        sent: dict[int, tuple] = {}
        seen = {"layout": -1, "events": -1, "health": -1, "sites": 0}
        last = time.monotonic()
        try:
            yield b"retry: 2000\n\n"
            while not feed.stopping.is_set():
                f = await anyio.to_thread.run_sync(feed.frame)
                msg: dict[str, Any] = {"now_ns": f["now_ns"], "clock_ns": f["clock_ns"], "counts": f["counts"]}
                if f["layout_generation"] != seen["layout"]:
                    seen["layout"] = f["layout_generation"]
                    msg["layout"] = f["layout"]
                    sent = {}
                changed = [r for r in f["rows"] if sent.get(r[0]) != r]
                for r in changed:
                    sent[r[0]] = r
                if changed:
                    msg["rows"] = changed
                for key in ("events", "health", "sites"):
                    if f[f"{key}_generation"] != seen[key]:
                        seen[key] = f[f"{key}_generation"]
                        msg[key] = f[key]
                if len(msg) > 3 or time.monotonic() - last >= heartbeat_s:
                    last = time.monotonic()
                    yield b"data: " + json.dumps(msg, separators=(",", ":")).encode() + b"\n\n"
                await anyio.sleep(tick_s)
        finally:
            with clients_lock:
                clients["n"] -= 1
                metrics.clients.set(clients["n"])

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/session", open_session, methods=["POST"]),
        Route("/api/session", close_session, methods=["DELETE"]),
        Route("/api/snapshot", snapshot),
        Route("/api/site", site),
        Route("/api/stream", stream),
        Mount("/assets", app=StaticFiles(directory=assets), name="assets"),
    ])
    return _SecurityHeaders(app)  # type: ignore[return-value]


class _SecurityHeaders:
    """ASGI wrapper adding the content security policy (everything from this origin) to every answer."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
