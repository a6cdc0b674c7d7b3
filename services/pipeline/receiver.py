"""A local webhook receiver (stdlib HTTP server in a thread) that records the alerts POSTed to it.

With a ``secret`` it verifies every request's Standard Webhooks signature (``signing.verify``:
id, timestamp and body signed; stale timestamps and replays refused) and answers 401 to those
that do not verify, as the README tells subscribers to do."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.alerting.exceptions import SignatureError
from services.alerting.formats.signing import ReplayCache, verify

log = logging.getLogger(__name__)


@dataclass
class Received:
    """One POST: its JSON body, headers and the wall-clock time it arrived (ns)."""

    body: dict[str, Any]
    headers: dict[str, str]
    received_ns: int


@dataclass
class WebhookReceiver:
    """Collects JSON POSTs on 127.0.0.1; ``fail_first`` answers 500 to the first N requests;
    with ``secret``, unsigned or badly signed requests get 401 (reasons in ``refused``)."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    secret: str | None = field(default=None, repr=False)
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.requests = 0
        self._replays = ReplayCache()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with outer._cond:
                    outer.requests += 1
                    fail = outer.requests <= outer.fail_first
                if fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                if outer.secret is not None:
                    try:
                        verify(outer.secret, raw, dict(self.headers), replay_cache=outer._replays)
                    except SignatureError as exc:
                        with outer._cond:
                            outer.refused.append(exc.reason)
                        log.warning("receiver: refused a request: %s", exc)
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with outer._cond:
                    outer.received.append(Received(body, dict(self.headers), time.time_ns()))
                    outer._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("receiver: " + fmt, *args)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="webhook-receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/alerts"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Block until ``count`` alerts have arrived or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
