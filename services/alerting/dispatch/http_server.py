"""Serving an ASGI app with uvicorn on its own thread, with the limits the subscriber API needs.

uvicorn's HTTP/1.1 protocol (h11) gets three guards here (``GuardedH11Protocol``):

* a **whole-request deadline**: from the moment a connection opens (or a keep-alive connection
  finishes a response) the next request's headers and body must have arrived within
  ``request_timeout_s``, however slowly the bytes trickle in; otherwise the connection gets a JSON
  408 and is closed (slow-header and slow-body clients hold nothing for long); a connection that
  sent nothing of a new request by then is closed without an answer;
* **connections per client address** (``max_per_client``) and in total (``max_connections``):
  the connection over the limit gets a JSON 503 and is closed at once, so one address cannot
  take every slot, and nothing is spent on it before authentication;
* a header limit (``max_header_bytes``, h11's incomplete-event limit): more gets a JSON 431.

Connections are asyncio objects, not threads, so idle or slow ones cost a file descriptor each.
Clients that go away early are logged once at DEBUG (uvicorn's own loggers are quietened).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.common.exceptions import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    request_timeout_s: float = 10.0
    max_connections: int = 1000
    max_per_client: int = 32
    max_header_bytes: int = 16_384
    keep_alive_s: int = 5  # whole seconds: uvicorn takes ints
    shutdown_s: int = 2


# Not settings: margins of ThreadedServer.stop past the operator's shutdown_s. uvicorn closes the
# connections itself after shutdown_s; these only bound the wait for its thread to end (then it is
# forced, and given FORCED_EXIT_S), so a stuck server cannot hang the service's exit.
STOP_MARGIN_S = 3.0
FORCED_EXIT_S = 2.0


def raw_json_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with the API's JSON error body, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "cache-control: no-store\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


class _Guard:
    """Connection counts per client address, shared by every connection of one server."""

    def __init__(self, limits: ServerLimits, on_refused: Any = None) -> None:
        self.limits = limits
        self.per_client: dict[str, int] = {}
        self.total = 0
        self.on_refused = on_refused or (lambda reason: None)

    def admit(self, addr: str) -> str | None:
        """None if the connection may stay, else why not."""
        if self.total >= self.limits.max_connections:
            return "server_busy"
        if self.per_client.get(addr, 0) >= self.limits.max_per_client:
            return "too_many_connections"
        self.total += 1
        self.per_client[addr] = self.per_client.get(addr, 0) + 1
        return None

    def release(self, addr: str) -> None:
        self.total -= 1
        n = self.per_client.get(addr, 0) - 1
        if n > 0:
            self.per_client[addr] = n
        else:
            self.per_client.pop(addr, None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the module's guards (one subclass per server: ``guard``)."""

    guard: _Guard

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._addr = self.client[0] if self.client else "?"
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None
        why = self.guard.admit(self._addr)
        if why is not None:
            self.guard.on_refused(why)
            log.debug("api: refused a connection from %s (%s)", self._addr, why)
            transport.write(raw_json_response(503, "Service Unavailable", why, "too many connections"))
            transport.close()
            return
        self._admitted = True
        self._arm()

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._armed_cycle = self.cycle
        self._started_request = False  # no byte of the next request yet (an idle connection)
        self._deadline = self.loop.call_later(self.guard.limits.request_timeout_s, self._expired)

    def data_received(self, data: bytes) -> None:
        self._started_request = True
        super().data_received(data)

    def _expired(self) -> None:
        self._deadline = None
        cycle = self.cycle
        waiting_for_request = cycle is self._armed_cycle and self.conn.their_state is not h11.DONE
        body_unfinished = cycle is not self._armed_cycle and cycle is not None and cycle.more_body
        if not (waiting_for_request or body_unfinished) or self.transport.is_closing():
            return
        if waiting_for_request and not self._started_request:  # idle: close without an answer
            self.guard.on_refused("idle_timeout")
            log.debug("api: idle connection from %s closed", self._addr)
            self.transport.close()
            return
        self.guard.on_refused("request_timeout")
        log.debug("api: request from %s not complete within %.1f s: closed", self._addr,
                  self.guard.limits.request_timeout_s)
        if cycle is None or not cycle.response_started:
            self.transport.write(
                raw_json_response(408, "Request Timeout", "request_timeout", "request not complete in time")
            )
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this keep-alive connection has its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None
        if getattr(self, "_admitted", False):
            self._admitted = False
            self.guard.release(self._addr)
        if exc is not None:
            log.debug("api: connection from %s lost: %s", getattr(self, "_addr", "?"), exc)
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        too_big = len(self.conn.trailing_data[0]) > self.guard.limits.max_header_bytes
        status, reason, code = (431, "Request Header Fields Too Large", "headers_too_large") if too_big else (
            400, "Bad Request", "bad_request")
        self.guard.on_refused(code)
        self.transport.write(raw_json_response(status, reason, code, msg if not too_big else "headers too large"))
        self.transport.close()


class ThreadedServer:
    """uvicorn serving ``app`` on a socket bound at construction (so bind errors surface at once
    and port 0 gets a free port), on its own thread with its own event loop."""

    def __init__(self, app: Any, host: str, port: int, limits: ServerLimits, on_refused: Any = None,
                 name: str = "http") -> None:
        self.limits = limits
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(2048)
        sock.setblocking(False)
        self.sock = sock
        self.guard = guard = _Guard(limits, on_refused)
        protocol = type("ServerH11Protocol", (GuardedH11Protocol,), {"guard": guard})
        config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_keep_alive=limits.keep_alive_s,
            timeout_graceful_shutdown=limits.shutdown_s,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        for name in ("uvicorn.error", "uvicorn.access"):  # per-connection noise (bad requests, ...)
            logging.getLogger(name).setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except Exception:  # the serving thread must say why it ended
            log.exception("HTTP server on %s:%d stopped with an error", *self.address)

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise ConfigError(f"HTTP server on {self.address[0]}:{self.address[1]} did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=self.limits.shutdown_s + STOP_MARGIN_S)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(timeout=FORCED_EXIT_S)
        try:
            self.sock.close()
        except OSError:
            pass
