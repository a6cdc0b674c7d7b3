"""Server-sent events: ``GET /alerts/stream`` on the subscriber API (see ``api.py``).

Two streams, both read from the outbox database (so they survive restarts and can be resumed):

* the alert feed: every alert version as the documented JSON (``formats/messages.py``), event id = the
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
bounded in total (``max_clients``) and per token (``max_per_key``; public streams: per client
address), so one token cannot take them all; more get 503. They end when the server stops.
Streams are asyncio coroutines on the API's event loop: the hub wakes them from the fan-out
thread through ``call_soon_threadsafe``, and the outbox is read on the thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

from services.alerting.dispatch.outbox import Outbox
from services.alerting.exceptions import OutboxError
from services.alerting.metrics import AlertingMetrics

log = logging.getLogger(__name__)

Fetch = Callable[[int], list[tuple[int, str]]]
BATCH = 100


class SseHub:
    """Wakes open streams when alerts are written; counts and bounds the open streams."""

    def __init__(
        self,
        max_clients: int = 100,
        heartbeat_s: float = 15.0,
        metrics: AlertingMetrics | None = None,
        max_per_key: int = 5,
    ):
        self.max_clients = max_clients
        self.max_per_key = max_per_key
        self.heartbeat_s = heartbeat_s
        self.metrics = metrics
        self._lock = threading.Lock()
        self._generation = 0
        self._per_key: dict[str, int] = {}
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.stopping = threading.Event()

    def notify(self) -> None:
        """Something was written (any thread): wake every waiting stream."""
        with self._lock:
            self._generation += 1
            waiters = list(self._waiters)
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop is closed: its stream is gone
                pass

    def generation(self) -> int:
        with self._lock:
            return self._generation

    async def wait(self, seen: int, timeout_s: float) -> int:
        """Wait until something was written after generation ``seen`` (or timeout / stop)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
            gen = self._generation
        try:
            if gen == seen and not self.stopping.is_set():
                try:
                    await asyncio.wait_for(entry[1].wait(), timeout_s)
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                self._waiters.discard(entry)
        return self.generation()

    def acquire(self, key: str) -> str | None:
        """Take a stream slot for ``key`` (token or client address): None, or why not."""
        with self._lock:
            if sum(self._per_key.values()) >= self.max_clients:
                return "too_many_streams"
            if self._per_key.get(key, 0) >= self.max_per_key:
                return "too_many_streams_for_token"
            self._per_key[key] = self._per_key.get(key, 0) + 1
        if self.metrics is not None:
            self.metrics.sse_clients.inc()
        return None

    def release(self, key: str) -> None:
        with self._lock:
            n = self._per_key.get(key, 0) - 1
            if n > 0:
                self._per_key[key] = n
            else:
                self._per_key.pop(key, None)
        if self.metrics is not None:
            self.metrics.sse_clients.dec()

    @property
    def clients(self) -> int:
        with self._lock:
            return sum(self._per_key.values())

    def stop(self) -> None:
        self.stopping.set()
        self.notify()


def alert_feed(outbox: Outbox) -> Fetch:
    def fetch(after: int) -> list[tuple[int, str]]:
        return [(a.seq, a.body) for a in outbox.alerts_after(after, limit=BATCH)]

    return fetch


def subscriber_feed(outbox: Outbox, subscriber_id: str) -> Fetch:
    def fetch(after: int) -> list[tuple[int, str]]:
        return [(d.id, d.body) for d in outbox.feed_after(subscriber_id, after, limit=BATCH)]

    return fetch


def event_bytes(event_id: int, data: str, event: str = "alert") -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"id: {event_id}\nevent: {event}\n{lines}\n".encode()


async def stream(fetch: Fetch, last_id: int, hub: SseHub) -> AsyncIterator[bytes]:
    """The stream's bytes: events after ``last_id``, then live ones (and keep-alive comments)
    until the hub stops; the client going away cancels it (Starlette's StreamingResponse)."""
    yield b"retry: 2000\n\n"
    seen = hub.generation()
    while not hub.stopping.is_set():
        try:
            rows = await run_in_threadpool(fetch, last_id)
        except OutboxError as exc:
            log.warning("SSE: outbox read failed (retrying): %s", exc)
            rows = []
            await asyncio.sleep(1.0)
        if rows:
            yield b"".join(event_bytes(eid, body) for eid, body in rows)
            last_id = rows[-1][0]
            if hub.metrics is not None:
                hub.metrics.sse_events.inc(len(rows))
            if len(rows) >= BATCH:
                continue  # more waiting: read on without sleeping
        gen = await hub.wait(seen, hub.heartbeat_s)
        if gen == seen and not hub.stopping.is_set():
            yield b": keepalive\n\n"
        seen = gen
