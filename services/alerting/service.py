"""The alerting service: scores topic -> association core -> alerts topic -> subscribers.

Loop: poll scores (group ``eew-alerting``) -> decode (bad input: metric + dead-letter with its
topic/partition/offset) -> core -> for each new alert: produce to the alerts topic keyed by event
id and wait for the acknowledgement -> commit the scores offsets the core no longer needs ->
hand the alert to delivery (``delivery.py``: fan-out into the durable outbox, then webhooks /
MQTT / SSE on their own threads; never blocks this loop). The subscriber API and the SSE feed
(``api.py``) run on their own port when ``--api-port`` is set.

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
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry
from pydantic import Field, SecretStr
from pydantic_settings import CliImplicitFlag

from services.alerting.association import NS, AlertRecord, AssociationConfig, Associator
from services.alerting.association.locate import LocatorConfig
from services.alerting.association.magnitude import MagnitudeConfig, gains_by_station, load_gains
from services.alerting.association.stations import StationInventory
from services.alerting.dispatch.api import ApiConfig, SubscriberApi, parse_tokens
from services.alerting.dispatch.delivery import AlertDelivery, DeliveryConfig, Sender, WebhookSender
from services.alerting.dispatch.outbox import Database, Outbox, redact_url
from services.alerting.dispatch.sse import SseHub
from services.alerting.dispatch.subscribers import static_subscribers
from services.alerting.exceptions import OutboxError
from services.alerting.formats.cap import CapConfig
from services.alerting.formats.messages import alert_line, alert_to_pb, decode_score
from services.alerting.metrics import AlertingMetrics
from services.alerting.offsets import OffsetTracker
from services.common.domain import station_id
from services.common.exceptions import ConfigError, DecodeError, UnconfirmedDelivery
from services.common.kafka import confirmed, make_consumer, make_producer, wait_for_broker
from services.common.lifecycle import StopFlag
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.retry import OutageTracker, is_retriable
from services.common.settings import ServiceSettings
from services.common.timeutil import now_ns
from services.common.topics import ALERTS, DEADLETTER, SCORES
from services.common.triggers.picks import PICK_MAX_LEAD_S

log = logging.getLogger("services.alerting")

HORIZON_PREFIX = "eew-alerting horizon_ns="


class AlertingSettings(ServiceSettings):
    """Settings of ``eew alert`` (flags ``--kebab-case``, env ``EEW_UPPER_CASE``)."""

    client_id: str = Field("eew-alerting", description="Kafka client id.")
    group_id: str = Field("eew-alerting", description="Consumer group on the scores topic.")
    broker_timeout_s: float = Field(
        30.0, description="How long a broker outage is ridden out (retrying) before the service exits."
    )
    scores_topic: str = Field(SCORES.name, description="Topic of StationScore messages.")
    alerts_topic: str = Field(ALERTS.name, description="Topic the Alert messages are written to.")
    deadletter_topic: str = Field(DEADLETTER.name, description="Topic for undecodable input.")
    stations: Path | None = Field(
        None,
        description="Station coordinates: CSV (network,station,location,latitude,longitude,elevation_m) "
        "or StationXML. Without it, association checks time spread only.",
    )
    webhook_urls: str = Field(
        "",
        description="Comma-separated webhook URLs that receive every alert as JSON (operator-configured "
        "static subscribers: no thresholds, private addresses allowed).",
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC-SHA256 key signing the --webhook-urls requests; empty: unsigned."
    )
    min_stations: int = Field(3, description="Triggered stations needed to declare an event.")
    vp_min_km_s: float = Field(5.5, description="Slowest P velocity for the travel-time consistency test.")
    tolerance_s: float = Field(1.0, description="Pick-time tolerance added to distance / vp_min.")
    max_spread_s: float | Literal["auto"] = Field(
        "auto",
        description="Largest P-time spread within one event; auto: max(20 s, 2 x the median link radius "
        "/ vp-min) (see README, association rules).",
    )
    max_link_km: float | Literal["auto"] = Field(
        "auto",
        description="A trigger joins an event (or seeds one) only within this distance of one of its "
        "stations; auto: per station pair, the larger of their link radii (2 x the distance to each one's "
        "3rd-nearest station, from --stations); 0 turns the rule off.",
    )
    explained_coda_s: float = Field(
        30.0,
        description="A trigger between the P arrival a located event predicts at its station and the S "
        "arrival plus this long is that event's (late P, S, coda): it never seeds a second event.",
    )
    min_trigger_duration_s: float = Field(
        2.0,
        description="A trigger that ends (see detrigger-s) before lasting this long is a glitch: retracted.",
    )
    detrigger_threshold: float = Field(
        0.5, description="A trigger stays on while the station probability is at least this (hysteresis)."
    )
    detrigger_s: float = Field(
        2.0,
        description="A trigger ends once its station has stayed below threshold this long (dips are ignored).",
    )
    event_ttl_s: float = Field(60.0, description="Event time after an event's last change before it closes.")
    max_lateness_s: float = Field(
        3.0,
        description="A station more than this much event time behind the newest score, and silent for "
        "station-idle-s, stops holding the others back in the event-time reorder buffer.",
    )
    max_hold_s: float = Field(
        1.0,
        description="Longest wall time a score waits in the reorder buffer for slower stations (the most "
        "latency ordering may add). Raise it for fast replays whose stations arrive far apart.",
    )
    station_idle_s: float = Field(
        2.0, description="Wall seconds without scores after which a lagging station is no longer waited for."
    )
    express_triggers: bool = Field(
        False,
        description="Process a station's scores as soon as it sends a triggered one, not in event-time order "
        "after the slowest station's window (alerts up to max-hold-s sooner; alert versions then depend on "
        "arrival order, so replays are not reproduced exactly).",
    )
    locate: bool = Field(True, description="Locate events by grid search (needs --stations coordinates).")
    locate_vp_km_s: float = Field(6.0, description="Homogeneous P velocity of the location grid search.")
    locate_min_stations: int = Field(
        3,
        description="Triggered stations with coordinates needed to locate (with 3, the stations that have not "
        "triggered yet bound the solution; an uncertain one is published flagged).",
    )
    magnitude_nominal_gain: float | None = Field(
        None,
        description="Counts per m/s assumed for stations without a gain in the station file; their magnitudes "
        "are typed Mpd_uncal with a larger uncertainty. Unset: stations without a gain give no magnitude.",
    )
    locate_max_uncertainty_km: float = Field(
        50.0,
        description="Locations more uncertain than this (95 %, horizontal) are published flagged "
        "uncertain (JSON location.uncertain), and not used to test which triggers join the event.",
    )
    locate_half_width_km: float | Literal["auto"] = Field(
        "auto",
        description="Half-width of the location grid around the earliest station; auto: max(150 km, "
        "1.25 x the 90th-percentile link radius).",
    )
    pick_max_lead_s: float = Field(
        PICK_MAX_LEAD_S,
        description="A trigger's P pick lies at most this long before it (older picks are refused, counted).",
    )
    trigger_threshold: float | None = Field(
        None, description="Station probability that triggers; unset: the detector's `triggered` flag."
    )
    correlation: float = Field(
        0.3, description="Assumed correlation between stations in the event probability."
    )
    restore_idle_s: float = Field(
        1.0,
        description="Startup: the alerts topic is read until no record arrives for this long; the scores "
        "backlog is buffered until then too, and released in event-time order.",
    )
    catch_up_max_buffer: int = Field(
        200_000, description="Startup: most scores buffered while catching up before releasing anyway."
    )
    delivery_attempts: int = Field(
        5, description="Attempts per (alert, subscriber, channel) before the outbox row is dead-lettered."
    )
    delivery_backoff_initial_s: float = Field(0.2, description="First retry backoff ceiling (doubles).")
    delivery_backoff_max_s: float = Field(5.0, description="Largest retry backoff.")
    delivery_connect_timeout_s: float = Field(2.0, description="Webhook connect timeout.")
    delivery_read_timeout_s: float = Field(5.0, description="Webhook read/write timeout.")
    delivery_workers: int = Field(
        16, description="Deliveries in flight at once (one per subscriber channel)."
    )
    delivery_max_age_s: float = Field(
        120.0,
        description="Alerts older than this are no longer delivered (dead-lettered as expired); also how far "
        "back the alerts topic is checked at start for alerts missing from the outbox.",
    )
    fanout_queue_size: int = Field(
        10_000,
        description="Alerts waiting to be written to the outbox before new ones are dropped (counted).",
    )
    drain_s: float = Field(
        3.0, description="At shutdown, time given to writing and sending queued deliveries."
    )
    outbox_db: str = Field(
        "sqlite:///.eew-run/alerting-outbox.sqlite",
        description="Outbox database (subscribers, alert log, deliveries): sqlite:///relative/path, "
        "sqlite:////absolute/path or postgresql://user@host:5432/db. Pending deliveries resume after a restart.",
    )
    outbox_table_prefix: str = Field("eew_", description="Prefix of the outbox tables.")
    outbox_retention_days: float = Field(
        30.0, description="Finished deliveries and logged alerts older than this are deleted."
    )
    allow_private_webhooks: CliImplicitFlag[bool] = Field(
        False,
        description="Accept API subscribers whose webhook host is (or resolves to) a loopback, private or "
        "link-local address (SSRF protection off: test setups only).",
    )
    api_port: int | None = Field(
        None, description="Port of the subscriber API and SSE feed (0: a free port); unset: no API."
    )
    api_host: str = Field("127.0.0.1", description="Address the subscriber API listens on.")
    api_tokens: SecretStr = Field(
        SecretStr(""),
        description="API bearer tokens: name:token[:role],... (role read, write or admin; default write; "
        "names [A-Za-z0-9_.-]; tokens >= 16 characters). Give them in the environment (EEW_API_TOKENS) or "
        "a file (--api-tokens-file): as a flag they show in the process list (a warning is logged). "
        "Without tokens the API refuses every request.",
    )
    api_tokens_file: Path | None = Field(
        None,
        description="File with the API tokens (name:token[:role], one per line or comma-separated; "
        "# comments), e.g. a mounted Kubernetes Secret; read at start, added to EEW_API_TOKENS.",
    )
    api_request_timeout_s: float = Field(
        10.0,
        description="Whole-request deadline of the API: headers and body must arrive within this, "
        "however slowly they trickle in (408 and close otherwise).",
    )
    api_max_connections: int = Field(1000, description="Open API connections in total (SSE included).")
    api_max_connections_per_client: int = Field(
        32, description="Open API connections per client address (more get 503 at once)."
    )
    api_max_subscribers_per_token: int = Field(
        100, description="Subscribers one write token may own (more: 409 quota_exceeded)."
    )
    api_rate_per_s: float = Field(5.0, description="API requests per second per token (token-bucket refill).")
    api_burst: int = Field(20, description="API requests a token may make at once (token-bucket size).")
    sse_public: bool = Field(False, description="Serve the alert SSE feed without a token.")
    sse_max_clients: int = Field(100, description="Most SSE streams open at once (more get 503).")
    sse_max_per_token: int = Field(
        5, description="Most SSE streams one token (public streams: one client address) may hold open."
    )
    sse_heartbeat_s: float = Field(15.0, description="SSE keep-alive comment interval without alerts.")
    mqtt_host: str = Field("", description="MQTT broker host for the mqtt channel; empty: MQTT disabled.")
    mqtt_port: int = Field(1883, description="MQTT broker port.")
    mqtt_username: str = Field("", description="MQTT user name (empty: anonymous).")
    mqtt_password: SecretStr = Field(SecretStr(""), description="MQTT password.")
    mqtt_topic_prefix: str = Field(
        "eew/", description="Prefix put before every subscriber's MQTT topic (keeps them in one subtree)."
    )
    mqtt_publish_timeout_s: float = Field(5.0, description="Wait for the broker's PUBACK (QoS 1) this long.")
    cap_sender: str = Field("eew-alerting@localhost", description="CAP <sender> (no spaces or commas).")
    cap_status: str = Field("Actual", description="CAP <status>: Actual, Exercise, System, Test or Draft.")
    cap_area_radius_km: float = Field(
        100.0, description="CAP <area> circle radius around the epicentre (plus the location uncertainty)."
    )
    cap_expires_s: float = Field(600.0, description="CAP <expires> after <sent>.")
    cap_signing_key: Path | None = Field(
        None,
        description="PEM private key (RSA or EC) signing every CAP message (enveloped XML signature, "
        "CAP 1.2 3.3.2.1); needs --cap-signing-cert. Unset: CAP messages are not signed.",
    )
    cap_signing_cert: Path | None = Field(
        None, description="PEM X.509 certificate of --cap-signing-key, embedded in each signature."
    )
    outbox_secret_keys: SecretStr = Field(
        SecretStr(""),
        description="Fernet keys (comma-separated, first one encrypts) encrypting the subscribers' "
        "webhook secrets in the outbox database; empty: stored in clear. Generate one with "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'.",
    )

    def association_config(self) -> AssociationConfig:
        return AssociationConfig(
            min_stations=self.min_stations,
            vp_min_km_s=self.vp_min_km_s,
            tolerance_s=self.tolerance_s,
            max_spread_s=None if self.max_spread_s == "auto" else self.max_spread_s,
            max_link_km=None if self.max_link_km == "auto" else self.max_link_km,
            explained_coda_s=self.explained_coda_s,
            min_trigger_duration_s=self.min_trigger_duration_s,
            detrigger_s=self.detrigger_s,
            detrigger_threshold=self.detrigger_threshold,
            event_ttl_s=self.event_ttl_s,
            max_lateness_s=self.max_lateness_s,
            max_hold_s=self.max_hold_s,
            station_idle_s=self.station_idle_s,
            express_triggers=self.express_triggers,
            pick_max_lead_s=self.pick_max_lead_s,
            trigger_threshold=self.trigger_threshold,
            correlation=self.correlation,
        )

    def locator_config(self) -> LocatorConfig | None:
        if not self.locate:
            return None
        return LocatorConfig(
            vp_km_s=self.locate_vp_km_s,
            min_stations=self.locate_min_stations,
            max_uncertainty_km=self.locate_max_uncertainty_km,
            half_width_km=None if self.locate_half_width_km == "auto" else self.locate_half_width_km,
        )

    def magnitude_config(self) -> MagnitudeConfig:
        return MagnitudeConfig(nominal_gain=self.magnitude_nominal_gain)

    def delivery_config(self) -> DeliveryConfig:
        return DeliveryConfig(
            attempts=self.delivery_attempts,
            backoff_initial_s=self.delivery_backoff_initial_s,
            backoff_max_s=self.delivery_backoff_max_s,
            connect_timeout_s=self.delivery_connect_timeout_s,
            read_timeout_s=self.delivery_read_timeout_s,
            max_age_s=self.delivery_max_age_s,
            workers=self.delivery_workers,
            fanout_queue_size=self.fanout_queue_size,
            allow_private=self.allow_private_webhooks,
            retention_s=self.outbox_retention_days * 86400.0,
        )

    def cap_config(self) -> CapConfig:
        try:
            key = self.cap_signing_key.read_bytes() if self.cap_signing_key else b""
            cert = self.cap_signing_cert.read_bytes() if self.cap_signing_cert else b""
        except OSError as exc:
            raise ConfigError(f"CAP signing key/certificate unreadable: {exc}") from exc
        try:
            return CapConfig(
                sender=self.cap_sender,
                status=self.cap_status,
                area_radius_km=self.cap_area_radius_km,
                expires_s=self.cap_expires_s,
                signing_key_pem=key,
                signing_cert_pem=cert,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def api_token_text(self) -> str:
        """The tokens from EEW_API_TOKENS / --api-tokens and --api-tokens-file (warns about the flag)."""
        if any(a == "--api-tokens" or a.startswith("--api-tokens=") for a in sys.argv):
            log.warning(
                "--api-tokens given as a flag: every local user can read it in the process list; "
                "use EEW_API_TOKENS or --api-tokens-file"
            )
        text = self.api_tokens.get_secret_value()
        if self.api_tokens_file is not None:
            try:
                text = ",".join(t for t in (text, self.api_tokens_file.read_text()) if t)
            except OSError as exc:
                raise ConfigError(f"API tokens file {self.api_tokens_file}: {exc}") from exc
        return text

    def api_config(self) -> ApiConfig:
        return ApiConfig(
            host=self.api_host,
            port=self.api_port or 0,
            tokens=tuple(parse_tokens(self.api_token_text())),
            rate_per_s=self.api_rate_per_s,
            burst=self.api_burst,
            allow_private_webhooks=self.allow_private_webhooks,
            mqtt_enabled=bool(self.mqtt_host),
            sse_public=self.sse_public,
            request_timeout_s=self.api_request_timeout_s,
            max_connections=self.api_max_connections,
            max_connections_per_client=self.api_max_connections_per_client,
            max_subscribers_per_token=self.api_max_subscribers_per_token,
        )


def read_emitted_alerts(
    bootstrap: str,
    topic: str,
    idle_s: float = 1.0,
    client_id: str = "eew-alerting-restore",
    max_wait_s: float = 60.0,
    recent: list[pb.Alert] | None = None,
    recent_since_ns: int = 0,
    events: dict[str, tuple[frozenset[str], int]] | None = None,
) -> set[tuple[str, int]]:
    """(event_id, version) of every Alert on ``topic``; reads until a poll window of ``idle_s`` is empty.
    Alerts created at or after ``recent_since_ns`` are also appended to ``recent`` (if given);
    ``events`` (if given) gets each event's stations and first P, so the rebuilt core keeps its id."""
    consumer = KafkaConsumer(
        bootstrap_servers=[b.strip() for b in bootstrap.split(",") if b.strip()],
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    seen: set[tuple[str, int]] = set()
    try:
        parts = None
        deadline = time.monotonic() + 10.0
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        if not parts:
            log.warning("alerts topic %s not found: nothing to restore", topic)
            return seen
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_data = time.monotonic()
        hard_stop = time.monotonic() + max_wait_s
        while time.monotonic() - last_data < idle_s and time.monotonic() < hard_stop:
            batch = consumer.poll(timeout_ms=200)
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


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: AlertingService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.service.tracker.forget(tp)
        if revoked:
            log.info("scores partitions revoked: %s", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        # Runs on kafka-python's IO thread: no blocking consumer calls here (see on_assigned).
        parts = sorted(tp.partition for tp in assigned)
        log.info("scores partitions assigned: %s", parts)
        self.service._assigned = set(assigned)


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
        if inventory is None:
            inventory = StationInventory.load(settings.stations) if settings.stations else StationInventory()
        self.inventory = inventory
        # Station gains (CSV ``gain``/``gain_unit`` columns or StationXML sensitivity) for Pd magnitudes.
        self.gains = gains_by_station(load_gains(settings.stations)) if settings.stations else {}
        if settings.stations and not self.gains:
            log.warning("no station gains in %s: alerts carry no magnitude unless --magnitude-nominal-gain "
                        "is set", settings.stations)
        self.assoc_config = settings.association_config()
        self.outbox, self.delivery, self.api = self._make_delivery(settings)
        self._delivery_closed = False
        self.tracker = OffsetTracker()
        self.core: Associator | None = None
        self.emitted: set[tuple[str, int]] = set()
        self._restored_events: dict[str, tuple[frozenset[str], int]] = {}  # from the alerts topic
        self.ready = threading.Event()
        self._unsent: deque[pb.Alert] = deque()
        self._heartbeat = time.monotonic()
        self._consumer: KafkaConsumer | None = None
        self._producer: Any = None
        self._deadletter_futures: list[Any] = []
        self._last_commit = 0.0
        self._dirty_commit = False
        self._assigned: set[TopicPartition] | None = None
        self._catching_up = True  # at start: buffer the scores backlog, release it in order when caught up
        self._last_input = time.monotonic()
        self._start_ms = 0

    def _make_delivery(self, s: AlertingSettings) -> tuple[Outbox, AlertDelivery, SubscriberApi | None]:
        """Outbox database, senders, fan-out + delivery engine, and the API (ConfigError if unusable)."""
        cfg = s.delivery_config()
        cap = s.cap_config()
        static = static_subscribers(s.webhook_urls, s.webhook_secret.get_secret_value())
        api_cfg = s.api_config() if s.api_port is not None else None
        if s.outbox_retention_days * 86400 < 10 * s.delivery_max_age_s:
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
                    f"subscriber API cannot listen on {s.api_host}:{s.api_port}: {exc}"
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
        return time.monotonic() - self._heartbeat < 30.0

    def _outbox_ok(self) -> tuple[bool, str]:
        try:
            self.outbox.db.execute("SELECT 1")
        except OutboxError as exc:
            return False, f"outbox database unavailable: {exc}"
        return True, ""

    def checks(self) -> dict[str, Any]:
        return {
            "started": lambda: (self.ready.is_set(), "restoring emitted alerts / joining the group"),
            "loop": lambda: (time.monotonic() - self._heartbeat < 10.0, "poll loop stalled"),
            "alerts_acknowledged": lambda: (not self._unsent, f"{len(self._unsent)} alerts not acknowledged"),
            "outbox": self._outbox_ok,
        }

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        s = self.settings
        log.info(
            "alerting: bootstrap %s, scores %s -> alerts %s, %d stations with coordinates",
            s.bootstrap_servers,
            s.scores_topic,
            s.alerts_topic,
            len(self.inventory),
        )
        # Delivery starts first: pending outbox rows of the previous run go out while we restore.
        for sender in self.delivery.senders.values():
            start = getattr(sender, "start", None)
            if start is not None:
                start()
        self.delivery.start()
        if self.api is not None:
            self.api.start()
        try:
            if not wait_for_broker(s.bootstrap_servers, timeout_s=30.0, stop=self.stop):
                self._close_delivery()  # stopped (SIGTERM) while waiting for the broker
                return 0
            recent: list[pb.Alert] = []
            self._restored_events = {}
            restored = read_emitted_alerts(
                s.bootstrap_servers,
                s.alerts_topic,
                s.restore_idle_s,
                client_id=f"{s.client_id}-restore",
                recent=recent,
                recent_since_ns=now_ns() - int(s.delivery_max_age_s * NS),
                events=self._restored_events,
            )
            self.emitted = restored
            log.info(
                "restored %d emitted alert versions (%d events) from %s",
                len(self.emitted),
                len({k[0] for k in self.emitted}),
                s.alerts_topic,
            )
            self._reconcile(recent)
            self._producer = make_producer(s.bootstrap_servers, s.client_id)
            consumer = make_consumer(s.bootstrap_servers, s.group_id, s.client_id)
        except BaseException:  # no broker, or stopped while starting: leave nothing running
            if self._producer is not None:
                self._producer.close(timeout=2)
            self._close_delivery()
            raise
        self._consumer = consumer
        consumer.subscribe([s.scores_topic], listener=_Rebalance(self))
        self._start_ms = int(time.time() * 1000)
        outage = OutageTracker(s.broker_timeout_s, "alerting")
        try:
            while not self.stop.is_set():
                self._heartbeat = time.monotonic()
                try:
                    self._step(consumer)
                    outage.ok()
                except KafkaError as exc:
                    delay = outage.failed(exc) if is_retriable(exc) else None
                    if delay is None:
                        raise
                    self.metrics.broker_errors.inc()
                    self.stop.wait(delay)
        except KafkaError:
            log.exception("alerting: Kafka error, stopping")
            self._shutdown()
            return 1
        self._shutdown()
        return 0

    def _step(self, consumer: KafkaConsumer) -> None:
        """One poll: decode, associate, publish, commit."""
        s = self.settings
        if self._unsent:
            if not self._publish_unsent():
                self.stop.wait(0.5)
                return
            if consumer.paused():
                consumer.resume(*consumer.paused())
        batch = consumer.poll(timeout_ms=200, max_records=2000)
        if self.core is None:  # built once the group gave us partitions
            if self._assigned is None:
                return
            self.on_assigned(self._assigned)
        self.ready.set()
        recs = []
        newest_ms = -1
        for tp, msgs in batch.items():
            for m in msgs:
                self.metrics.scores_in.inc()
                newest_ms = max(newest_ms, m.timestamp)
                try:
                    rec = decode_score(m.value)
                except DecodeError as exc:
                    self._reject(m, exc)
                    self.tracker.add(tp, m.offset, None)
                    continue
                self.tracker.add(tp, m.offset, rec.window_end_ns)
                recs.append(rec)
        now = time.monotonic()
        if batch:
            self._dirty_commit = True
            self._last_input = now
        alerts: list[AlertRecord] = []
        if self._catching_up:
            why = ""
            if newest_ms >= self._start_ms:
                why = "reached scores produced after start"
            elif not batch and now - self._last_input > s.restore_idle_s:
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
                consumer.pause(*consumer.assignment())
                return
        self._maybe_commit(force=bool(alerts))

    def on_assigned(self, assigned: Any) -> None:
        """First assignment (main thread): read the horizon from the commit metadata, build the core."""
        consumer = self._consumer
        if consumer is None:
            return
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
        self.core = Associator(
            self.assoc_config,
            self.inventory,
            ignore_before_ns=horizon,
            locator=self.settings.locator_config(),
            gains=self.gains,
            magnitude=self.settings.magnitude_config(),
            restored_events=self._restored_events,
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
        try:
            futures = [
                self._producer.send(
                    self.settings.alerts_topic, key=a.event_id.encode(), value=a.SerializeToString()
                )
                for a in sent
            ]
            self._producer.flush(timeout=10)
            for f in futures:
                meta = f.get(timeout=10)
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
        try:
            fut = self._producer.send(
                self.settings.deadletter_topic, key=m.key, value=m.value or b"", headers=headers
            )
            self._deadletter_futures.append((fut, exc.reason))
        except KafkaError as e:
            log.error("dead-letter produce failed for %s[%d]@%d: %s", m.topic, m.partition, m.offset, e)

    def _check_deadletters(self) -> None:
        for fut, reason in self._deadletter_futures:
            try:
                fut.get(timeout=10)
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

    def _maybe_commit(self, force: bool = False) -> None:
        if not self._dirty_commit or self._unsent or self.core is None or self._consumer is None:
            return
        if not force and time.monotonic() - self._last_commit < 0.5:
            return
        if self._deadletter_futures:
            self._producer.flush(timeout=10)
            self._check_deadletters()
        offsets = self.tracker.commit_offsets(self.core.retain_from_ns())
        self._dirty_commit = False
        self._last_commit = time.monotonic()
        if not offsets:
            return
        horizon = self._horizon()
        meta = f"{HORIZON_PREFIX}{horizon}" if horizon is not None else ""
        try:
            self._consumer.commit({tp: OffsetAndMetadata(off, meta, -1) for tp, off in offsets.items()})
        except KafkaError as exc:
            log.warning("offset commit failed (will retry): %s", exc)
            self._dirty_commit = True
            return
        self.tracker.mark_committed(offsets)
        self.metrics.commits.inc()

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

    def _shutdown(self) -> None:
        t0 = time.monotonic()
        log.info("alerting: stopping")
        try:
            if self._unsent:
                self._publish_unsent()
            if self._producer is not None:
                self._producer.flush(timeout=3)
            if self.core is not None:
                self._dirty_commit = True
                self._maybe_commit(force=True)
        except KafkaError as exc:
            log.warning("final flush/commit failed: %s", exc)
        finally:
            if self._consumer is not None:
                try:
                    self._consumer.close(autocommit=False)
                except KafkaError as exc:
                    log.warning("consumer close: %s", exc)
            if self._producer is not None:
                self._producer.close(timeout=2)
            self._close_delivery()
        log.info(
            "alerting: stopped in %.2f s (%d alerts emitted in total)",
            time.monotonic() - t0,
            len(self.emitted),
        )
