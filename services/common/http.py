"""The /metrics, /healthz and /readyz server every service runs (stdlib HTTP, own thread)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], tuple[bool, str]]


class HealthServer:
    """Serves metrics from an injected registry, liveness, and named readiness checks.

    /healthz answers 200 while the process loop is alive (``alive`` returns True);
    /readyz answers 200 only when every check passes, with a JSON body naming each.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        alive: Callable[[], bool] | None = None,
        checks: dict[str, ReadyCheck] | None = None,
    ) -> None:
        self.registry = registry
        self.alive = alive or (lambda: True)
        self.checks = dict(checks or {})
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(server.registry), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    ok = server.alive()
                    body = json.dumps({"alive": ok}).encode()
                    ctype, code = "application/json", 200 if ok else 503
                elif path == "/readyz":
                    ok, detail = server.readiness()
                    body = json.dumps({"ready": ok, "checks": detail}).encode()
                    ctype, code = "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("http: " + fmt, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}"

    def readiness(self) -> tuple[bool, dict[str, str]]:
        detail: dict[str, str] = {}
        ok = True
        for name, check in self.checks.items():
            try:
                passed, why = check()
            except Exception as exc:  # a failing probe means not ready, never a crash
                passed, why = False, f"check raised {exc!r}"
            detail[name] = "ok" if passed else why
            ok = ok and passed
        return ok, detail

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("metrics and health on %s (/metrics /healthz /readyz)", self.url)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
