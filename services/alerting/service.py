"""The alerting service: scores topic -> association core -> alerts topic -> subscribers.

``services.common.loop.ConsumeLoop`` drives it (poll, pause while alerts are unacknowledged,
commits with the horizon metadata, broker outages, ExitStack shutdown); this module is the stage.
Loop: poll scores (group ``eew-alerting``) -> decode (bad input: metric + dead-letter with its
topic/partition/offset) -> core -> for each new alert: produce to the alerts topic keyed by event
id and wait for the acknowledgement -> commit the scores offsets the core no longer needs ->
hand the alert to delivery (``dispatch/delivery.py``: fan-out into the durable outbox, then webhooks /
MQTT / SSE on their own threads; never blocks this loop). The subscriber API and the SSE feed
(``dispatch/api.py``) run on their own port when ``--api-port`` is set.

Restart safety: at start the service reads the whole alerts topic (own consumer, no group; it
reads until a poll returns nothing for ``restore_idle_s``, because Tansu's high watermark is
wrong) to learn which (event_id, version) were already emitted. Committed offsets lag behind the
association state (see ``offsets.py``), so a restarted service re-reads the scores behind every
open event, rebuilds the same events (ids and versions are deterministic), and emits and delivers
only versions not emitted before. An alert acknowledged by the broker but not yet written to the
outbox when the process died is found on the alerts topic at the next start (created within
``delivery_max_age_s``, not in the outbox's alert log) and fanned out then, so a restart loses no
delivery. The commit metadata carries the event-time horizon before which
re-read scores are ignored. While catching up on that backlog (until a score produced after the
start arrives, or no score arrives for ``restore_idle_s``) the scores are only buffered and then
released in event-time order, so partitions fetched unevenly cannot reorder the rebuild.

The association needs every station, so run ONE instance (the group gives offset storage and
fail-over, not scale-out); a warning is logged if it is not assigned every partition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.alerting.association import NS, AlertRecord, Associator, ScoreRecord
from services.alerting.dispatch.api import SubscriberApi
from services.alerting.dispatch.delivery import AlertDelivery, Sender, WebhookSender
from services.alerting.dispatch.outbox import Database, Outbox, redact_url
from services.alerting.dispatch.sse import SseHub
from services.alerting.dispatch.subscribers import static_subscribers
from services.alerting.exceptions import OutboxError
from services.alerting.formats.messages import alert_line, alert_to_pb, decode_score
from services.alerting.metrics import AlertingMetrics
from services.alerting.offsets import OffsetTracker
from services.alerting.settings import AlertingSettings
from services.common.domain import station_id
from services.common.exceptions import ConfigError, DecodeError, UnconfirmedDelivery
from services.common.inventory import StationInventory, gains_by_station, load_gains
from services.common.kafka import confirmed, make_reader
from services.common.lifecycle import StopFlag
from services.common.loop import ConsumeLoop, KafkaIO, OwnLoopMetrics, Records
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import now_ns

log = logging.getLogger("services.alerting")

HORIZON_PREFIX = "eew-alerting horizon_ns="
# Pacing of the restore, not settings: how often the topic's metadata is asked for while it is
# missing, and one poll's wait (the read ends after --restore-idle-s without records anyway).
RESTORE_METADATA_RETRY_S = 0.2
RESTORE_POLL_MS = 200


def load_stations(settings: AlertingSettings) -> tuple[StationInventory, dict[str, float]]:
    """The station file's inventory and gains (CSV ``gain``/``gain_unit`` columns or StationXML
    sensitivity, for Pd magnitudes); empty without ``--stations``."""
    if not settings.stations:
        return StationInventory(), {}
    gains = gains_by_station(load_gains(settings.stations))
    if not gains:
        log.warning("no station gains in %s: alerts carry no magnitude unless --magnitude-nominal-gain "
                    "is set", settings.stations)
    return StationInventory.load(settings.stations), gains


def make_associator(
    settings: AlertingSettings,
    inventory: StationInventory,
    gains: dict[str, float],
    ignore_before_ns: int | None = None,
    restored_events: Mapping[str, tuple[frozenset[str], int]] | None = None,
) -> Associator:
    """The association core ``eew alert`` runs for these settings (also ``eew validate --mode in-process``)."""
    return Associator(
        settings.association,
        inventory,
        ignore_before_ns=ignore_before_ns,
        locator=settings.locator_config(),
        gains=gains,
        magnitude=settings.magnitude,
        restored_events=restored_events,
    )


def read_emitted_alerts(
    bootstrap: str,
    topic: str,
    idle_s: float = 1.0,
    client_id: str = "eew-alerting-restore",
    max_wait_s: float = 60.0,
    metadata_timeout_s: float = 10.0,
    recent: list[pb.Alert] | None = None,
    recent_since_ns: int = 0,
    events: dict[str, tuple[frozenset[str], int]] | None = None,
) -> set[tuple[str, int]]:
    """(event_id, version) of every Alert on ``topic``; reads until a poll window of ``idle_s`` is empty
    (at most ``max_wait_s``; a topic without metadata after ``metadata_timeout_s`` restores nothing).
    Alerts created at or after ``recent_since_ns`` are also appended to ``recent`` (if given);
    ``events`` (if given) gets each event's stations and first P, so the rebuilt core keeps its id."""
    consumer = make_reader(bootstrap, client_id)
    seen: set[tuple[str, int]] = set()
    try:
        parts = None
        deadline = time.monotonic() + metadata_timeout_s
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(RESTORE_METADATA_RETRY_S)
        if not parts:
            log.warning("alerts topic %s not found after %.1f s: nothing to restore", topic, metadata_timeout_s)
            return seen
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_data = time.monotonic()
        hard_stop = time.monotonic() + max_wait_s
        while time.monotonic() - last_data < idle_s and time.monotonic() < hard_stop:
            batch = consumer.poll(timeout_ms=RESTORE_POLL_MS)
            for tp, msgs in batch.items():
                for m in msgs:
                    msg = pb.Alert()
                    try:
                        msg.ParseFromString(m.value or b"")
                    except Exception as exc:  # a bad alert record must not stop the restore
                        log.warning(
                            "restore: undecodable alert at %s[%d]@%d: %s",
                            tp.topic,
                            tp.partition,
                            m.offset,
                            exc,
                        )
                        continue
                    if msg.event_id:
                        seen.add((msg.event_id, msg.version))
                        if events is not None:
                            sts, p0 = events.get(msg.event_id, (frozenset(), msg.first_p_time_ns))
                            sts = sts | {station_id(c.network, c.station) for c in msg.stations}
                            events[msg.event_id] = (sts, min(p0, msg.first_p_time_ns))
                        if recent is not None and msg.created_time_ns >= recent_since_ns:
                            recent.append(msg)
                last_data = time.monotonic()
    finally:
        consumer.close(autocommit=False)
    return seen


class AlertingService:
    """Runs the loop until ``stop`` is set; ``run()`` returns the exit code."""

    def __init__(
        self,
        settings: AlertingSettings,
        registry: CollectorRegistry,
        stop: StopFlag | None = None,
        inventory: StationInventory | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop or StopFlag()
        self.metrics = AlertingMetrics(registry)
        loaded, self.gains = load_stations(settings)
        self.inventory = loaded if inventory is None else inventory
        self.assoc_config = settings.association
        self.outbox, self.delivery, self.api = self._make_delivery(settings)
        self._delivery_closed = False
        self.tracker = OffsetTracker()
        self.core: Associator | None = None
        self.emitted: set[tuple[str, int]] = set()
        self._restored_events: dict[str, tuple[frozenset[str], int]] = {}  # from the alerts topic
        self.ready = threading.Event()
        self._unsent: deque[pb.Alert] = deque()
        self.io: KafkaIO | None = None
        self._deadletter_futures: list[Any] = []
        self._dirty_commit = False
        self._meta = ""  # commit metadata of the offsets safe_offsets returned last
        self._recs: list[ScoreRecord] = []  # decoded this turn (handle -> process)
        self._newest_ms = -1
        self._got_input = False
        self._stopping_at: float | None = None
        self._assigned: set[TopicPartition] | None = None
        self._catching_up = True  # at start: buffer the scores backlog, release it in order when caught up
        self._last_input = time.monotonic()
        self._start_ms = 0
        loop_metrics = OwnLoopMetrics(
            registry, "eew_alerting", broker_errors=self.metrics.broker_errors, commits=self.metrics.commits
        )
        self.loop = ConsumeLoop("alerting", settings.loop, self, self.stop, loop_metrics)

    def _make_delivery(self, s: AlertingSettings) -> tuple[Outbox, AlertDelivery, SubscriberApi | None]:
        """Outbox database, senders, fan-out + delivery engine, and the API (ConfigError if unusable)."""
        cfg = s.delivery_config()
        cap = s.cap_config()
        static = static_subscribers(s.webhook_urls, s.webhook_secret.get_secret_value())
        api_cfg = s.api_config() if s.api.port is not None else None
        if s.delivery.retention_s < 10 * s.delivery.max_age_s:
            raise ConfigError("outbox retention must be at least 10 x delivery-max-age-s")
        try:
            keys = [k for k in s.outbox_secret_keys.get_secret_value().split(",") if k.strip()]
            outbox = Outbox(Database(s.outbox_db), s.outbox_table_prefix, keys)
        except OutboxError as exc:
            raise ConfigError(str(exc)) from exc
        senders: dict[str, Sender] = {"webhook": WebhookSender(cfg)}
        if s.mqtt_host:
            from services.alerting.dispatch.mqtt import MqttSender  # paho only when MQTT is used

            senders["mqtt"] = MqttSender(
                s.mqtt_host,
                s.mqtt_port,
                client_id=f"{s.client_id}-{s.group_id}",
                username=s.mqtt_username,
                password=s.mqtt_password.get_secret_value(),
                publish_timeout_s=s.mqtt_publish_timeout_s,
                metrics=self.metrics,
            )
        delivery = AlertDelivery(
            outbox, cfg, self.metrics, static, cap, senders, mqtt_prefix=s.mqtt_topic_prefix
        )
        api = None
        if api_cfg is not None:
            hub = SseHub(s.sse_max_clients, s.sse_heartbeat_s, self.metrics, s.sse_max_per_token)
            delivery.listeners.append(hub.notify)
            try:
                api = SubscriberApi(api_cfg, outbox, self.metrics, hub, delivery.directory.invalidate, cap)
            except OSError as exc:
                outbox.close()
                raise ConfigError(
                    f"subscriber API cannot listen on {s.api.host}:{s.api.port}: {exc}"
                ) from exc
        log.info(
            "outbox %s; static webhooks %s; mqtt %s; API %s",
            redact_url(s.outbox_db),
            [sub.label for sub in static] or "none",
            f"{s.mqtt_host}:{s.mqtt_port}" if s.mqtt_host else "off",
            api.url if api is not None else "off",
        )
        return outbox, delivery, api

    # ------------------------------------------------------------------ health

    def alive(self) -> bool:
        return self.loop.alive()

    def _outbox_ok(self) -> tuple[bool, str]:
        try:
            self.outbox.db.execute("SELECT 1")
        except OutboxError as exc:
            return False, f"outbox database unavailable: {exc}"
        return True, ""

    def checks(self) -> dict[str, Any]:
        return {
            "started": lambda: (self.ready.is_set(), "restoring emitted alerts / joining the group"),
            "loop": lambda: (self.loop.turned_within(self.settings.ready_stall_s), "poll loop stalled"),
            "broker": self.loop.broker_check(self.settings.bootstrap_servers),
            "alerts_acknowledged": lambda: (not self._unsent, f"{len(self._unsent)} alerts not acknowledged"),
            "outbox": self._outbox_ok,
        }

    # ------------------------------------------------------------------ the stage's hooks

    def run(self) -> int:
        s = self.settings
        log.info(
            "alerting: bootstrap %s, scores %s -> alerts %s, %d stations with coordinates",
            s.bootstrap_servers,
            s.scores_topic,
            s.alerts_topic,
            len(self.inventory),
        )
        return self.loop.run(s.bootstrap_servers)

    def prepare(self) -> None:
        """Delivery starts first: pending outbox rows of the previous run go out while we restore."""
        for sender in self.delivery.senders.values():
            start = getattr(sender, "start", None)
            if start is not None:
                start()
        self.delivery.start()
        if self.api is not None:
            self.api.start()

    def open(self) -> KafkaIO:
        """Restore what was emitted from the alerts topic, then the clients (scores consumer, producer)."""
        s = self.settings
        recent: list[pb.Alert] = []
        self._restored_events = {}
        self.emitted = read_emitted_alerts(
            s.bootstrap_servers,
            s.alerts_topic,
            s.restore_idle_s,
            client_id=f"{s.client_id}-restore",
            max_wait_s=s.restore_max_s,
            metadata_timeout_s=s.restore_metadata_timeout_s,
            recent=recent,
            recent_since_ns=now_ns() - int(s.delivery.max_age_s * NS),
            events=self._restored_events,
        )
        log.info(
            "restored %d emitted alert versions (%d events) from %s",
            len(self.emitted),
            len({k[0] for k in self.emitted}),
            s.alerts_topic,
        )
        self._reconcile(recent)
        self.io = KafkaIO(
            s.bootstrap_servers,
            s.group_id,
            s.client_id,
            s.scores_topic,
            self._on_revoked,
            self._on_assigned,
            self._on_revoked,  # lost: as kafka-python's default listener, forgotten like revoked
            max_poll_records=s.loop.max_poll_records,
        )
        self._start_ms = int(time.time() * 1000)
        return self.io

    def settle(self, records: Records) -> Records:
        if self.core is None:  # built once the group gave us partitions
            if self._assigned is None:
                return {}
            self.on_assigned(self._assigned)
        self.ready.set()
        return records

    def handle(self, tp: TopicPartition, m: Any, wall_ns: int, mono_ns: int) -> None:
        self.metrics.scores_in.inc()
        self._newest_ms = max(self._newest_ms, m.timestamp)
        self._got_input = True
        try:
            rec = decode_score(m.value)
        except DecodeError as exc:
            self._reject(m, exc)
            self.tracker.add(tp, m.offset, None)
            return
        self.tracker.add(tp, m.offset, rec.window_end_ns)
        self._recs.append(rec)

    def process(self) -> int:
        """Associate this turn's scores and publish new alerts; 1 (intake paused) while any alert is
        not acknowledged by the broker."""
        s = self.settings
        if self._unsent:
            if not self._publish_unsent():
                self.stop.wait(s.publish_retry_s)
                return 1
        if self.core is None:
            return 0
        recs, newest_ms, got = self._recs, self._newest_ms, self._got_input
        self._recs, self._newest_ms, self._got_input = [], -1, False
        now = time.monotonic()
        if got:
            self._dirty_commit = True
            self._last_input = now
        alerts: list[AlertRecord] = []
        if self._catching_up:
            why = ""
            if newest_ms >= self._start_ms:
                why = "reached scores produced after start"
            elif not got and now - self._last_input > s.restore_idle_s:
                why = f"no backlog left, {s.restore_idle_s:.1f} s without scores"
            elif self.core.pending + len(recs) > s.catch_up_max_buffer:
                why = f"backlog larger than {s.catch_up_max_buffer} scores"
            if why:
                self._catching_up = False
                log.info(
                    "caught up (%s): releasing %d buffered scores in event-time order",
                    why,
                    self.core.pending + len(recs),
                )
            alerts = self.core.add_many(recs, release=not self._catching_up, now_ns=now_ns())
        else:  # also without new scores, so buffered ones time out (max_hold_s)
            alerts = self.core.add_many(recs, now_ns=now_ns())
        self._update_gauges()
        if alerts:
            self._queue(alerts)
            if not self._publish_unsent():
                return 1
            self.loop.flush_and_commit()  # what the new alerts consumed, at once
        return 0

    def housekeeping(self, mono_ns: int) -> None:
        pass  # the core times buffered scores out in every turn (add_many)

    def rewind(self) -> None:
        pass  # nothing goes through loop.send: alerts and dead letters are acknowledged here

    def drain(self) -> None:
        self._stopping_at = time.monotonic()
        log.info("alerting: stopping")
        if self._unsent:
            self._publish_unsent()
        if self.core is not None:
            self._dirty_commit = True  # the last commit goes out even without new input

    def close(self) -> None:
        self._close_delivery()
        if self._stopping_at is not None:
            log.info(
                "alerting: stopped in %.2f s (%d alerts emitted in total)",
                time.monotonic() - self._stopping_at,
                len(self.emitted),
            )

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.tracker.forget(tp)
        if revoked:
            log.info("scores partitions revoked: %s", sorted(tp.partition for tp in revoked))

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Runs inside poll: no blocking consumer calls here (see on_assigned).
        log.info("scores partitions assigned: %s", sorted(tp.partition for tp in assigned))
        self._assigned = set(assigned)

    def on_assigned(self, assigned: Any) -> None:
        """First assignment (main thread): read the horizon from the commit metadata, build the core."""
        if self.io is None:
            return
        consumer = self.io.consumer
        all_parts = consumer.partitions_for_topic(self.settings.scores_topic) or set()
        if all_parts and {tp.partition for tp in assigned} != set(all_parts):
            log.warning(
                "assigned %d of %d scores partitions: run a single alerting instance, association "
                "needs every station",
                len(assigned),
                len(all_parts),
            )
        if self.core is not None:
            return
        horizon: int | None = None
        for tp in assigned:
            try:
                om = consumer.committed(tp, metadata=True)
            except KafkaError as exc:
                log.warning("cannot read committed offset of %s[%d]: %s", tp.topic, tp.partition, exc)
                continue
            meta = getattr(om, "metadata", "") or ""
            if meta.startswith(HORIZON_PREFIX):
                try:
                    h = int(meta[len(HORIZON_PREFIX) :])
                except ValueError:
                    continue
                horizon = h if horizon is None else min(horizon, h)
        self._make_core(horizon)

    def _reconcile(self, recent: list[pb.Alert]) -> None:
        """Fan out recent alerts of the topic that never reached the outbox (crash in between);
        alerts made before the outbox database was created are left alone."""
        missing = 0
        for a in sorted(recent, key=lambda m: (m.created_time_ns, m.event_id, m.version)):
            if a.created_time_ns < self.outbox.created_ns:
                continue  # made before this outbox existed: not ours to deliver
            try:
                logged = self.outbox.is_logged(a.event_id, a.version, a.created_time_ns)
            except OutboxError as exc:
                log.error("reconcile: outbox unavailable, %d recent alerts not checked: %s", len(recent), exc)
                return
            if not logged:
                missing += 1
                self.delivery.submit(a)
        if missing:
            log.warning(
                "reconcile: %d recent alerts from the topic were not in the outbox: delivering them", missing
            )

    def _make_core(self, horizon: int | None) -> None:
        self.core = make_associator(
            self.settings, self.inventory, self.gains, ignore_before_ns=horizon, restored_events=self._restored_events
        )
        log.info(
            "network geometry: %s; max spread %.0f s; location grid half-width %s",
            self.core.geometry.describe(),
            self.core.config.max_spread_s,
            f"{self.core.locator.half_width_km:.0f} km" if self.core.locator else "-",
        )
        self._last_input = time.monotonic()
        if horizon is not None:
            log.info("resuming: scores before event time %.3f (commit horizon) are ignored", horizon / NS)

    # ------------------------------------------------------------------ output

    def _queue(self, alerts: list[AlertRecord]) -> None:
        for rec in alerts:
            if rec.key in self.emitted:
                self.metrics.alerts_suppressed.inc()
                log.info("already emitted before restart, not re-sent: %s v%d", rec.event_id, rec.version)
                continue
            self._unsent.append(alert_to_pb(rec, now_ns()))
        self.metrics.unsent_alerts.set(len(self._unsent))

    def _publish_unsent(self) -> bool:
        """Produce every unsent alert and wait for the acknowledgements; False if any failed."""
        if not self._unsent:
            return True
        sent = list(self._unsent)
        assert self.io is not None
        wait_s = self.settings.loop.flush_timeout_s
        try:
            futures = [
                self.io.send(self.settings.alerts_topic, a.event_id.encode(), a.SerializeToString()) for a in sent
            ]
            self.io.flush(wait_s)
            for f in futures:
                meta = f.get(timeout=wait_s)
                if not confirmed(meta):
                    raise UnconfirmedDelivery(f"alert acknowledged without an offset ({meta!r})")
        except (KafkaError, UnconfirmedDelivery) as exc:
            self.metrics.publish_errors.inc()
            log.error("alerts not acknowledged by the broker (%d queued, will retry): %s", len(sent), exc)
            # A retry may duplicate the ones that did land: consumers dedupe on (event_id, version).
            return False
        for a in sent:
            self._unsent.popleft()
            self.emitted.add((a.event_id, a.version))
            self.metrics.alerts_out.labels(pb.AlertType.Name(a.type).removeprefix("ALERT_TYPE_")).inc()
            if a.latest_ingest_time_ns > 0:
                self.metrics.processing_latency.observe(
                    max(0.0, (a.created_time_ns - a.latest_ingest_time_ns) / NS)
                )
            log.info(
                "%s latency=%.3fs",
                alert_line(a),
                (a.created_time_ns - a.latest_ingest_time_ns) / NS
                if a.latest_ingest_time_ns
                else float("nan"),
            )
            self.delivery.submit(a)
        self.metrics.unsent_alerts.set(0)
        return True

    def _reject(self, m: Any, exc: DecodeError) -> None:
        self.metrics.decode_errors.labels(exc.reason).inc()
        log.warning("undecodable score at %s[%d]@%d: %s", m.topic, m.partition, m.offset, exc)
        headers = [
            ("reason", exc.reason.encode()),
            ("detail", str(exc)[:500].encode()),
            ("source_topic", m.topic.encode()),
            ("source_partition", str(m.partition).encode()),
            ("source_offset", str(m.offset).encode()),
            ("service", b"alerting"),
        ]
        assert self.io is not None
        try:
            fut = self.io.send(self.settings.deadletter_topic, m.key, m.value or b"", headers)
            self._deadletter_futures.append((fut, exc.reason))
        except KafkaError as e:
            log.error("dead-letter produce failed for %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)

    def _check_deadletters(self) -> None:
        for fut, reason in self._deadletter_futures:
            try:
                fut.get(timeout=self.settings.loop.flush_timeout_s)
                self.metrics.deadletters.labels(reason).inc()
            except KafkaError as e:
                log.error("dead-letter record not acknowledged (%s): %s", reason, e)
        self._deadletter_futures.clear()

    # ------------------------------------------------------------------ commits

    def _horizon(self) -> int | None:
        assert self.core is not None
        r = self.core.retain_from_ns()
        if r is not None:
            return r
        low = self.core.low_watermark_ns
        return None if low is None else low + 1

    def safe_offsets(self, tps: set[TopicPartition] | None) -> dict[TopicPartition, int]:
        """The scores offsets the core no longer needs (none while an alert is unacknowledged)."""
        if not self._dirty_commit or self._unsent or self.core is None or self.io is None:
            return {}
        if self._deadletter_futures:
            self.io.flush(self.settings.loop.flush_timeout_s)
            self._check_deadletters()
        offsets = self.tracker.commit_offsets(self.core.retain_from_ns())
        if not offsets:
            self._dirty_commit = False
            return {}
        horizon = self._horizon()
        self._meta = f"{HORIZON_PREFIX}{horizon}" if horizon is not None else ""
        return offsets

    def commit_metadata(self) -> str:
        return self._meta

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self.tracker.mark_committed(offsets)
        self._dirty_commit = False

    def _update_gauges(self) -> None:
        assert self.core is not None
        self.metrics.sync_core(self.core.stats)
        self.metrics.pending_scores.set(self.core.pending)
        self.metrics.open_events.set(len(self.core.open_events))
        if self.core.watermark_ns is not None:
            self.metrics.watermark.set(self.core.watermark_ns / NS)

    # ------------------------------------------------------------------ shutdown

    def _close_delivery(self) -> None:
        if self._delivery_closed:
            return
        self._delivery_closed = True
        if self.api is not None:
            self.api.stop()
        self.delivery.close(self.settings.drain_s)
        self.outbox.close()
