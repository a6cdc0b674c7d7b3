"""Server-sent events: ``GET /alerts/stream`` on the subscriber API (see ``api.py``).

Two streams, both read from the outbox database (so they survive restarts and can be resumed):

* the alert feed: every alert version as the documented JSON (``messages.py``), event id = the
  alert-log ``seq``;
* ``?subscriber=<id>``: that subscriber's own SSE rows (personalised JSON with ``site``), event id
  = the outbox row id; only for subscribers with the ``sse`` channel, for their owner (or admin).

Wire format (https://html.spec.whatwg.org/multipage/server-sent-events.html)::

    retry: 2000                         (reconnect after 2 s)

    id: 17
    event: alert
    data: {"schema":"eew.alert.v1",...}

    : keepalive                         (a comment every ``heartbeat_s`` without alerts)

A client that reconnects sends ``Last-Event-ID: 17`` (browsers' EventSource do it by themselves;
``?last_event_id=17`` works too) and gets every event after 17, then live ones. A new client
without it starts with the live stream (``?replay=N`` first sends the last N alerts). Streams are
bounded (``max_clients``; more get 503) and end when the server stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import BinaryIO

from services.alerting.exceptions import OutboxError
from services.alerting.metrics import AlertingMetrics
from services.alerting.outbox import Outbox

log = logging.getLogger(__name__)

Fetch = Callable[[int], list[tuple[int, str]]]


class SseHub:
    """Wakes open streams when alerts are written; counts and bounds the open streams."""

    def __init__(
        self, max_clients: int = 100, heartbeat_s: float = 15.0, metrics: AlertingMetrics | None = None
    ):
        self.max_clients = max_clients
        self.heartbeat_s = heartbeat_s
        self.metrics = metrics
        self._cond = threading.Condition()
        self._generation = 0
        self._clients = 0
        self.stopping = threading.Event()

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout_s: float) -> int:
        """Wait until something was written after generation ``seen`` (or timeout / stop)."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen or self.stopping.is_set(), timeout_s)
            return self._generation

    def acquire(self) -> bool:
        with self._cond:
            if self._clients >= self.max_clients:
                return False
            self._clients += 1
        if self.metrics is not None:
            self.metrics.sse_clients.inc()
        return True

    def release(self) -> None:
        with self._cond:
            self._clients -= 1
        if self.metrics is not None:
            self.metrics.sse_clients.dec()

    @property
    def clients(self) -> int:
        with self._cond:
            return self._clients

    def stop(self) -> None:
        self.stopping.set()
        self.notify()


def alert_feed(outbox: Outbox) -> Fetch:
    def fetch(after: int) -> list[tuple[int, str]]:
        return [(a.seq, a.body) for a in outbox.alerts_after(after, limit=100)]

    return fetch


def subscriber_feed(outbox: Outbox, subscriber_id: str) -> Fetch:
    def fetch(after: int) -> list[tuple[int, str]]:
        return [(d.id, d.body) for d in outbox.feed_after(subscriber_id, after, limit=100)]

    return fetch


def event_bytes(event_id: int, data: str, event: str = "alert") -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"id: {event_id}\nevent: {event}\n{lines}\n".encode()


def stream(out: BinaryIO, fetch: Fetch, last_id: int, hub: SseHub) -> int:
    """Write events after ``last_id`` then live ones until the client leaves or the hub stops;
    return the last id written. The caller has sent the response headers."""
    out.write(b"retry: 2000\n\n")
    out.flush()
    seen = hub.generation()
    while not hub.stopping.is_set():
        try:
            rows = fetch(last_id)
        except OutboxError as exc:
            log.warning("SSE: outbox read failed (retrying): %s", exc)
            rows = []
            hub.stopping.wait(1.0)
        for eid, body in rows:
            out.write(event_bytes(eid, body))
            last_id = eid
            if hub.metrics is not None:
                hub.metrics.sse_events.inc()
        if rows:
            out.flush()
            if len(rows) >= 100:
                continue  # more waiting: read on without sleeping
        gen = hub.wait(seen, hub.heartbeat_s)
        if gen == seen and not hub.stopping.is_set():
            out.write(b": keepalive\n\n")  # also detects clients that went away
            out.flush()
        seen = gen
    return last_id
