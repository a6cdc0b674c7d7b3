"""Alert delivery: fan-out into the durable outbox, then a delivery engine that sends the rows.

Path of one alert version (after the broker acknowledged it on the alerts topic)::

    AlertDelivery.submit(alert)             never blocks the service loop (bounded queue)
      -> Fanout thread                      alert-log row, then for every subscriber (least
                                            warning time first): site forecast (intensity.py),
                                            thresholds (Subscriber.decide), body per channel and
                                            format (JSON / CAP 1.2 / QuakeML), rows committed in
                                            chunks of 100 subscribers
      -> DeliveryEngine                     scheduler + ``workers`` sender threads: the oldest
                                            pending row of each lane (subscriber/channel) when due
      -> WebhookSender / MqttSender         result -> delivered | retry later | dead

Retries: failures that may pass (connection errors, timeouts, 408, 425, 429, 5xx, MQTT not
connected or no PUBACK) are retried up to ``attempts`` times with exponential backoff and full
jitter, sleep = uniform(0, min(backoff_max, backoff_initial * 2**attempt)), at least the
receiver's ``Retry-After`` (capped at backoff_max). Other 4xx answers, refused targets and alerts
older than ``max_age_s`` (too late to be useful) are final. Final failures stay in the outbox as
``dead`` rows (the dead letters: reason in ``last_error``, listed by the API and counted in
``eew_alert_delivery_failures_total``). Retries wait in the database, not in a thread, so a
restart resumes them, and one unreachable subscriber holds back only its own lane.

Webhook requests: ``POST`` with ``Content-Type`` of the format, ``Idempotency-Key:
<event_id>:<version>`` (the same on every retry and after restarts: receivers deduplicate on it),
``X-EEW-Event-Id``, ``X-EEW-Version``, ``X-EEW-Delivery`` (outbox row id) and, when the subscriber
has a secret, the Standard Webhooks headers of ``formats/signing.py`` (``webhook-id`` = the idempotency
key; signed afresh per attempt). Redirects are not followed. Before every attempt the host is
resolved once and, for API-made subscribers (unless private targets are allowed), every address
is checked; the request then goes to a checked address itself (``pinned``: the URL's host
replaced by the address, the ``Host`` header and the TLS server name kept), so a second DNS
answer cannot point the connection elsewhere (DNS rebinding).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
from pydantic import Field, model_validator

from services.alerting.association.intensity import SiteForecast
from services.alerting.dispatch.outbox import FEED, Delivery, NewDelivery, Outbox
from services.alerting.dispatch.subscribers import (
    Subscriber,
    check_target,
    forecasts,
    mqtt_topic,
    static_subscribers,
)
from services.alerting.exceptions import OutboxError, TargetRefused
from services.alerting.formats.cap import CAP_MIME, CapConfig, alert_to_cap
from services.alerting.formats.messages import PB_TO_KIND, alert_to_json
from services.alerting.formats.quakeml import QUAKEML_MIME, alert_to_quakeml
from services.alerting.formats.signing import sign
from services.alerting.metrics import AlertingMetrics
from services.common.exceptions import ConfigError
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.settings import CoreModel, not_a_setting
from services.common.timeutil import NS_PER_S, now_ns

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
JSON_MIME = "application/json"


class DeliveryConfig(CoreModel):
    """Knobs of the webhook/MQTT delivery; the service exposes them as ``--delivery-*`` (group ``delivery``)."""

    attempts: int = Field(
        5, description="Attempts per (alert, subscriber, channel) before the outbox row is dead-lettered."
    )
    backoff_initial_s: float = Field(0.2, description="First retry backoff ceiling (doubles).")
    backoff_max_s: float = Field(5.0, description="Largest retry backoff.")
    connect_timeout_s: float = Field(2.0, description="Webhook connect timeout.")
    read_timeout_s: float = Field(5.0, description="Webhook read/write timeout.")
    max_age_s: float = Field(
        120.0,
        description="Alerts older than this are no longer delivered (dead-lettered as expired); also how far "
        "back the alerts topic is checked at start for alerts missing from the outbox.",
    )
    workers: int = Field(16, description="Deliveries in flight at once (one per subscriber channel).")
    in_flight_grace_s: float = Field(
        1.0,
        ge=0.0,
        description="At shutdown, after --drain-s, a webhook/MQTT request in flight gets this much longer; "
        "then it is abandoned (its outbox row stays pending for the next start).",
    )
    poll_s: float = not_a_setting(1.0, "Pause of an idle worker before it looks at the outbox again.")
    fanout_queue_size: int = Field(
        10_000, description="Alerts waiting to be written to the outbox before new ones are dropped (counted)."
    )
    allow_private: bool = not_a_setting(False, "The service's --allow-private-webhooks (the API group's knob).")
    retention_days: float = Field(
        30.0, gt=0, description="Finished deliveries and logged alerts older than this are deleted."
    )
    purge_every_s: float = not_a_setting(3600.0, "Interval of the outbox purge.")

    @model_validator(mode="after")
    def _check(self) -> DeliveryConfig:
        if self.attempts < 1 or self.workers < 1 or self.fanout_queue_size < 1:
            raise ConfigError("delivery attempts, workers and queue size must be >= 1")
        if min(self.backoff_initial_s, self.backoff_max_s, self.connect_timeout_s, self.read_timeout_s) <= 0:
            raise ConfigError("delivery timeouts and backoff must be > 0")
        return self

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86400.0


def backoff_s(attempt: int, cfg: DeliveryConfig, rng: random.Random) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (0-based)."""
    return rng.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_initial_s * (2.0**attempt)))


@dataclass(frozen=True)
class SendResult:
    ok: bool
    result: str  # metric label: ok, http_503, timeout, connect_error, target_refused, ...
    retryable: bool = True
    retry_after_s: float = 0.0


class Sender(Protocol):
    channel: str

    def send(self, row: Delivery, sub: Subscriber) -> SendResult: ...

    def close(self) -> None: ...


def _retry_after(value: str) -> float:
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


def pinned(url: str, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """(URL with its host replaced by ``address``, headers, request extensions) that connect to
    ``address`` while the server still sees the name: ``Host`` header and, for https, the TLS
    server name (SNI and certificate check) stay the URL's host."""
    u = httpx.URL(url)
    host = u.host
    default = 443 if u.scheme == "https" else 80
    host_header = host if u.port in (None, default) else f"{host}:{u.port}"
    ext = {"sni_hostname": host} if u.scheme == "https" else {}
    return u.copy_with(host=address.split("%", 1)[0]), {"Host": host_header}, ext


class WebhookSender:
    """POSTs outbox rows (see the module docstring for the request)."""

    channel = "webhook"

    def __init__(
        self,
        cfg: DeliveryConfig,
        resolve: Callable[..., list] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        self.resolve = resolve
        timeout = httpx.Timeout(
            connect=cfg.connect_timeout_s,
            read=cfg.read_timeout_s,
            write=cfg.read_timeout_s,
            pool=cfg.connect_timeout_s,
        )
        self.client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": "eew-alerting/1"},
            limits=httpx.Limits(max_connections=max(10, cfg.workers * 2)),
            transport=transport,
            trust_env=False,  # no proxy from the environment: it would connect by name again
        )

    def send(self, row: Delivery, sub: Subscriber) -> SendResult:
        hook = sub.webhook()
        if hook is None:
            return SendResult(False, "channel_removed", retryable=False)
        url = hook[0]
        allow_private = sub.spec is None or self.cfg.allow_private
        try:
            addrs = check_target(url, allow_private=allow_private, resolve=self.resolve)
        except TargetRefused as exc:
            log.warning("webhook %s: target refused before sending: %s", sub.label, exc)
            return SendResult(False, f"target_{exc.reason}", retryable=exc.reason == "unresolvable")
        body = row.body.encode()
        key = f"{row.event_id}:{row.version}"
        headers = {
            "Content-Type": row.content_type,
            "Idempotency-Key": key,
            "X-EEW-Event-Id": row.event_id,
            "X-EEW-Version": str(row.version),
            "X-EEW-Delivery": str(row.id),
        }
        secrets = sub.signing_secrets()
        if secrets:  # two while the subscriber rotates its secret (Standard Webhooks: space-separated)
            headers.update(sign(secrets, key, body))
        resp = None
        for i, addr in enumerate(addrs):  # the checked addresses only, in the resolver's order
            target, host, ext = pinned(url, addr)
            try:
                resp = self.client.post(target, content=body, headers={**headers, **host}, extensions=ext)
                break
            except httpx.ConnectError:
                if i == len(addrs) - 1:
                    return SendResult(False, "connect_error")
            except httpx.TimeoutException:
                return SendResult(False, "timeout")
            except httpx.TransportError:
                return SendResult(False, "connect_error")
            except httpx.HTTPError as exc:  # e.g. an invalid URL after an update
                return SendResult(False, f"http_error_{type(exc).__name__}", retryable=False)
        assert resp is not None
        code = resp.status_code
        if 200 <= code < 300:
            return SendResult(True, "ok")
        return SendResult(
            False,
            f"http_{code}",
            retryable=code in RETRYABLE_STATUS,
            retry_after_s=_retry_after(resp.headers.get("Retry-After", "")),
        )

    def close(self) -> None:
        self.client.close()


class SubscriberDirectory:
    """Every subscriber (static ones + the database's), cached; reloaded when the table changes."""

    def __init__(self, outbox: Outbox, static: Sequence[Subscriber] = (), check_every_s: float = 1.0) -> None:
        self.outbox = outbox
        self.static = list(static)
        self.static_ids = [s.id for s in self.static]
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._by_id: dict[str, Subscriber] = {s.id: s for s in self.static}
        self._version: tuple[int, int] | None = None
        self._checked = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._version = None

    def _refresh(self, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and self._version is not None and now - self._checked < self.check_every_s:
                return
            self._checked = now
            version = self.outbox.subscribers_version()
            if version == self._version:
                return
            subs = self.outbox.list_subscribers()
            self._by_id = {s.id: s for s in self.static} | {s.id: s for s in subs}
            self._version = version

    def all(self, fresh: bool = True) -> list[Subscriber]:
        self._refresh(force=fresh)
        with self._lock:
            return list(self._by_id.values())

    def get(self, sid: str) -> Subscriber | None:
        self._refresh(force=False)
        with self._lock:
            return self._by_id.get(sid)


def render_json(
    alert: pb.Alert, sub: Subscriber, forecast: SiteForecast | None, base: str | None = None
) -> str:
    """The documented JSON (messages.py), plus ``site`` for subscribers with a site. ``base`` is
    ``alert_to_json(alert)`` when the caller has it (one serialisation per alert, not per subscriber)."""
    base = base if base is not None else alert_to_json(alert).decode()
    if sub.spec is None:
        return base
    site = (
        json.dumps(forecast.as_dict(sub.id), separators=(",", ":"), allow_nan=False) if forecast else "null"
    )
    return f'{base[:-1]},"site":{site}}}'


class Fanout:
    """Alert -> alert-log row + delivery rows in the outbox; one thread, bounded queue."""

    def __init__(
        self,
        outbox: Outbox,
        directory: SubscriberDirectory,
        metrics: AlertingMetrics,
        cap: CapConfig,
        queue_size: int = 10_000,
        mqtt_prefix: str = "",
        on_written: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.outbox = outbox
        self.directory = directory
        self.metrics = metrics
        self.cap = cap
        self.mqtt_prefix = mqtt_prefix
        self.on_written = list(on_written)
        self.chunk = 100
        self.queue: queue.Queue[pb.Alert] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._busy = False
        self.thread = threading.Thread(target=self._run, name="alert-fanout", daemon=True)

    def start(self) -> Fanout:
        self.thread.start()
        return self

    def submit(self, alert: pb.Alert) -> bool:
        """Queue an alert (never blocks); False when the queue is full (counted, logged)."""
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.metrics.fanout_alerts.labels("dropped_queue_full").inc()
            log.error(
                "fan-out queue full (%d alerts: outbox database down?): %s v%d not delivered",
                self.queue.maxsize,
                alert.event_id,
                alert.version,
            )
            return False
        self.metrics.fanout_queue.set(self.queue.qsize())
        return True

    def idle(self) -> bool:
        return self.queue.empty() and not self._busy

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                alert = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._busy = True
            try:
                self._process_with_retry(alert)
            finally:
                self._busy = False
                self.queue.task_done()
                self.metrics.fanout_queue.set(self.queue.qsize())

    def _process_with_retry(self, alert: pb.Alert) -> None:
        wait = 0.2
        while True:
            try:
                self.process(alert)
                return
            except OutboxError as exc:
                self.metrics.outbox_errors.labels("fanout").inc()
                log.error(
                    "fan-out of %s v%d failed (retrying in %.1f s): %s",
                    alert.event_id,
                    alert.version,
                    wait,
                    exc,
                )
            except Exception:  # a bug must not kill the fan-out thread: count, log, drop this alert
                self.metrics.fanout_alerts.labels("error").inc()
                log.exception(
                    "fan-out of %s v%d: unexpected error, alert dropped", alert.event_id, alert.version
                )
                return
            if self._stop.wait(wait):
                return
            wait = min(5.0, wait * 2)

    def rows_for(
        self,
        alert: pb.Alert,
        subs: Sequence[Subscriber],
        fc: dict[str, SiteForecast],
        sent_before: set[str],
        cache: dict[str, object],
    ) -> list[NewDelivery]:
        """The delivery rows of one alert for ``subs`` (``cache`` keeps per-alert renderings)."""
        rows: list[NewDelivery] = []
        base = cache.get("json")
        if base is None:
            base = cache["json"] = alert_to_json(alert).decode()
        for sub in subs:
            forecast = fc.get(sub.id)
            send, reason = sub.decide(alert, forecast, sub.id in sent_before)
            if not send:
                self.metrics.fanout_skipped.labels(reason).inc()
                continue
            for channel in sub.channels:
                if channel == "webhook":
                    hook = sub.webhook()
                    assert hook is not None
                    target, fmt = hook[0], hook[2]
                elif channel == "mqtt":
                    m = sub.mqtt()
                    assert m is not None
                    target = mqtt_topic(self.mqtt_prefix, sub.owner, sub.id, m.topic, alert.event_id)
                    fmt = m.format
                else:
                    target, fmt = "sse", "json"
                if fmt == "cap":
                    refs = cache.get("refs")
                    if refs is None:
                        refs = cache["refs"] = self.outbox.event_versions(
                            alert.event_id, before_ns=alert.created_time_ns
                        )
                    ctype, body = CAP_MIME, alert_to_cap(alert, self.cap, refs, forecast).decode()  # type: ignore[arg-type]
                elif fmt == "quakeml":
                    if "quakeml" not in cache:
                        cache["quakeml"] = alert_to_quakeml(alert).decode()
                    ctype, body = QUAKEML_MIME, str(cache["quakeml"])
                else:
                    ctype, body = JSON_MIME, render_json(alert, sub, forecast, str(base))
                rows.append(
                    NewDelivery(
                        event_id=alert.event_id,
                        version=alert.version,
                        subscriber_id=sub.id,
                        channel=channel,
                        target=target,
                        content_type=ctype,
                        body=body,
                        alert_created_ns=alert.created_time_ns,
                        status=FEED if channel == "sse" else "pending",
                    )
                )
        return rows

    def process(self, alert: pb.Alert) -> int | None:
        """Log the alert and write its rows; the alert-log ``seq``, or None if that was done before.

        Subscribers are handled in order of expected S arrival at their site (least warning time
        first; unlocated events: stored order), ``chunk`` at a time, each chunk committed and the
        delivery engine woken at once: the first rows go out while later ones are still rendered.
        An interrupted fan-out (crash) is completed when the alert is processed again."""
        state = self.outbox.alert_state(alert.event_id, alert.version, alert.created_time_ns)
        if state is not None and state[1]:
            self.metrics.fanout_alerts.labels("duplicate").inc()
            log.info("fan-out: %s v%d already in the outbox", alert.event_id, alert.version)
            return None
        subs = self.directory.all()
        fc = forecasts(alert, subs)
        far = 2**62
        subs = sorted(subs, key=lambda s: fc[s.id].s_arrival_ns if s.id in fc else far)
        sent_before = self.outbox.subscribers_with_event(alert.event_id) if alert.version > 1 else set()
        cache: dict[str, object] = {"json": alert_to_json(alert).decode()}
        kind = PB_TO_KIND.get(alert.type)
        seq = (
            state[0]
            if state is not None
            else self.outbox.log_alert(
                alert.event_id,
                alert.version,
                kind.value if kind else "UNSPECIFIED",
                alert.created_time_ns,
                alert.SerializeToString(),
                str(cache["json"]),
                now_ns(),
            )
        )
        written: list[NewDelivery] = []
        for i in range(0, max(1, len(subs)), self.chunk):
            rows = self.rows_for(alert, subs[i : i + self.chunk], fc, sent_before, cache)
            self.outbox.enqueue(seq, rows, now_ns())
            written += rows
            for cb in self.on_written:
                cb()
        self.outbox.mark_fanned_out(seq)
        self.metrics.fanout_alerts.labels("written" if state is None else "resumed").inc()
        for r in written:
            self.metrics.fanout_rows.labels(r.channel).inc()
        log.info(
            "fan-out: %s v%d -> %d deliveries (%s)",
            alert.event_id,
            alert.version,
            len(written),
            ", ".join(
                sorted({f"{r.subscriber_id.removeprefix('static:')}/{r.channel}" for r in written[:20]})
            )
            + (" ..." if len(written) > 20 else "")
            or "none",
        )
        return seq

    def close(self, drain_s: float) -> None:
        """Write what is queued (up to ``drain_s``), then stop; the rest is re-read from the
        alerts topic at the next start (``AlertingService`` reconciles)."""
        deadline = time.monotonic() + drain_s
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=max(0.1, deadline - time.monotonic()))
        left = self.queue.qsize()
        if left:
            log.warning(
                "fan-out: %d alerts not written at shutdown (re-read from the topic at the next start)", left
            )


class DeliveryEngine:
    """Sends pending outbox rows: a scheduler thread and ``cfg.workers`` sender threads."""

    def __init__(
        self,
        outbox: Outbox,
        directory: SubscriberDirectory,
        senders: dict[str, Sender],
        cfg: DeliveryConfig,
        metrics: AlertingMetrics,
        seed: int | None = None,
    ) -> None:
        self.outbox = outbox
        self.directory = directory
        self.senders = senders
        self.cfg = cfg
        self.metrics = metrics
        self.rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight: set[str] = set()
        self._work: queue.Queue[Delivery] = queue.Queue(maxsize=cfg.workers)
        self._threads = [threading.Thread(target=self._scheduler, name="delivery-scheduler", daemon=True)] + [
            threading.Thread(target=self._worker, name=f"delivery-{i}", daemon=True)
            for i in range(cfg.workers)
        ]
        self._started = False
        self._last_gauges = 0.0
        self._last_purge = 0.0
        self.scheduler_errors = 0

    def start(self) -> DeliveryEngine:
        for t in self._threads:
            t.start()
        self._started = True
        return self

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ scheduler

    def _scheduler(self) -> None:
        while not self._stop.is_set():
            sleep_s = self.cfg.poll_s
            try:
                sleep_s = self._schedule()
                self._gauges()
                self._maybe_purge()
            except OutboxError as exc:
                self.scheduler_errors += 1
                self.metrics.outbox_errors.labels("schedule").inc()
                log.error("delivery scheduler: outbox error (retrying): %s", exc)
                sleep_s = 1.0
            self._wake.wait(sleep_s)
            self._wake.clear()

    def _schedule(self) -> float:
        """Hand due rows to free workers; return how long to sleep."""
        with self._lock:
            busy = set(self._inflight)
        free = self.cfg.workers - len(busy)
        now = now_ns()
        if free > 0:
            for row in self.outbox.due(now, free, busy, self.directory.static_ids):
                with self._lock:
                    self._inflight.add(row.lane)
                    busy.add(row.lane)
                self._work.put_nowait(row)  # never full: at most `workers` rows in flight
        nxt = self.outbox.next_due_ns(busy, self.directory.static_ids)
        if nxt is None:
            return self.cfg.poll_s
        return min(self.cfg.poll_s, max(0.005, (nxt - now_ns()) / NS_PER_S))

    def _gauges(self) -> None:
        if time.monotonic() - self._last_gauges < 5.0:
            return
        self._last_gauges = time.monotonic()
        for (channel, status), n in self.outbox.status_counts().items():
            self.metrics.outbox_rows.labels(channel, status).set(n)

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < self.cfg.purge_every_s and self._last_purge:
            return
        self._last_purge = time.monotonic()
        n = self.outbox.purge(now_ns() - int(self.cfg.retention_s * NS_PER_S))
        if n:
            log.info(
                "outbox: purged %d finished deliveries older than %.1f days", n, self.cfg.retention_s / 86400
            )

    # ------------------------------------------------------------------ workers

    def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                row = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._attempt(row)
            except OutboxError as exc:  # the result could not be stored: the row is sent again later
                self.metrics.outbox_errors.labels("mark").inc()
                log.error("delivery %d (%s): outbox error after the attempt: %s", row.id, row.lane, exc)
            except Exception:  # a bug here must not kill the worker
                log.exception("delivery %d (%s): unexpected error", row.id, row.lane)
                try:
                    self._dead(row, row.subscriber_id.removeprefix("static:"), row.attempts, "internal_error")
                except OutboxError:
                    pass
            finally:
                with self._lock:
                    self._inflight.discard(row.lane)
                self._wake.set()

    def _dead(self, row: Delivery, label: str, attempts: int, reason: str) -> None:
        self.outbox.mark_dead(row.id, attempts, reason, now_ns())
        self.metrics.deliveries.labels(label, row.channel, "failed").inc()
        self.metrics.delivery_failures.labels(label, row.channel, reason).inc()
        log.warning(
            "delivery %d: gave up on %s v%d for %s/%s after %d attempts (%s)",
            row.id,
            row.event_id,
            row.version,
            label,
            row.channel,
            attempts,
            reason,
        )

    def _attempt(self, row: Delivery) -> None:
        sub = self.directory.get(row.subscriber_id)
        label = sub.label if sub is not None else row.subscriber_id.removeprefix("static:")
        if sub is None:
            self._dead(row, label, row.attempts, "subscriber_deleted")
            return
        if now_ns() - row.alert_created_ns > self.cfg.max_age_s * NS_PER_S:
            self._dead(row, label, row.attempts, "expired")
            return
        sender = self.senders.get(row.channel)
        if sender is None:
            self._dead(row, label, row.attempts, "channel_disabled")
            return
        res = sender.send(row, sub)
        attempts = row.attempts + 1
        self.metrics.delivery_attempts.labels(label, row.channel, res.result).inc()
        done = now_ns()
        if res.ok:
            self.outbox.mark_delivered(row.id, attempts, done)
            self.metrics.deliveries.labels(label, row.channel, "ok").inc()
            latency = max(0.0, (done - row.alert_created_ns) / NS_PER_S)
            self.metrics.delivery_latency.labels(label, row.channel).observe(latency)
            log.info(
                "delivered %s v%d to %s/%s (attempt %d, %.3f s after the alert)",
                row.event_id,
                row.version,
                label,
                row.channel,
                attempts,
                latency,
            )
            return
        if not res.retryable:
            self._dead(row, label, attempts, "rejected" if res.result.startswith("http_") else res.result)
            return
        if attempts >= self.cfg.attempts:
            self._dead(row, label, attempts, f"attempts_exhausted_{res.result}")
            return
        with self._rng_lock:
            wait = backoff_s(row.attempts, self.cfg, self.rng)
        wait = max(wait, min(res.retry_after_s, self.cfg.backoff_max_s))
        self.outbox.mark_retry(row.id, attempts, done + int(wait * NS_PER_S), res.result)
        log.info(
            "delivery %d: %s v%d to %s/%s attempt %d failed (%s), retrying in %.2f s",
            row.id,
            row.event_id,
            row.version,
            label,
            row.channel,
            attempts,
            res.result,
            wait,
        )

    # ------------------------------------------------------------------ shutdown

    def idle(self) -> bool:
        """Nothing in flight and nothing due now (rows waiting for a later retry do not count)."""
        with self._lock:
            if self._inflight:
                return False
        nxt = self.outbox.next_due_ns((), self.directory.static_ids)
        return nxt is None or nxt > now_ns()

    def close(self, drain_s: float = 3.0, join_s: float | None = None) -> None:
        """Keep sending what is due for up to ``drain_s``, then stop (pending rows stay in the
        outbox for the next start; a request in flight gets at most ``join_s`` more, by default
        ``DeliveryConfig.in_flight_grace_s``)."""
        join_s = self.cfg.in_flight_grace_s if join_s is None else join_s
        if not self._started:
            return
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            try:
                if self.idle():
                    break
            except OutboxError:
                break
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        end = time.monotonic() + join_s
        for t in self._threads:
            t.join(timeout=max(0.0, end - time.monotonic()))
        self._started = False


class AlertDelivery:
    """Everything between an acknowledged alert and the subscribers (built by the service)."""

    def __init__(
        self,
        outbox: Outbox,
        cfg: DeliveryConfig,
        metrics: AlertingMetrics,
        static: Sequence[Subscriber] = (),
        cap: CapConfig | None = None,
        senders: dict[str, Sender] | None = None,
        mqtt_prefix: str = "",
        seed: int | None = None,
    ) -> None:
        self.outbox = outbox
        self.cfg = cfg
        self.metrics = metrics
        self.directory = SubscriberDirectory(outbox, static)
        self.senders: dict[str, Sender] = senders if senders is not None else {"webhook": WebhookSender(cfg)}
        self.engine = DeliveryEngine(outbox, self.directory, self.senders, cfg, metrics, seed=seed)
        self.listeners: list[Callable[[], None]] = [self.engine.wake]
        self.fanout = Fanout(
            outbox,
            self.directory,
            metrics,
            cap or CapConfig(),
            cfg.fanout_queue_size,
            mqtt_prefix,
            on_written=[self._notify],
        )
        self._started = False

    @classmethod
    def for_urls(
        cls,
        outbox: Outbox,
        urls: str | Sequence[str],
        cfg: DeliveryConfig,
        metrics: AlertingMetrics,
        secret: str = "",
    ) -> AlertDelivery:
        return cls(outbox, cfg, metrics, static_subscribers(urls, secret))

    def _notify(self) -> None:
        for cb in list(self.listeners):
            try:
                cb()
            except Exception:  # a listener (SSE hub) must not break the fan-out
                log.exception("alert listener failed")

    def start(self) -> AlertDelivery:
        self.fanout.start()
        self.engine.start()
        self._started = True
        return self

    def submit(self, alert: pb.Alert) -> bool:
        return self.fanout.submit(alert)

    def idle(self) -> bool:
        return self.fanout.idle() and self.engine.idle()

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.05)
        return self.idle()

    def close(self, drain_s: float = 3.0) -> None:
        if not self._started:
            for s in self.senders.values():
                s.close()
            return
        t0 = time.monotonic()
        self.fanout.close(drain_s)
        self.engine.close(max(0.0, drain_s - (time.monotonic() - t0)))
        for s in self.senders.values():
            s.close()
        self._started = False
