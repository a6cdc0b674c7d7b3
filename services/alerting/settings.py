"""Settings of ``eew alert`` (flags ``--kebab-case``, environment ``EEW_UPPER_CASE``).

Declared once (``services.common.settings``): the service's own knobs here, the association
core's as the nested ``association`` group (``services.alerting.association.config``; flat flags
such as ``--min-stations`` kept). The locator, magnitude, delivery, API and CAP knobs are still
service fields mapped onto their components' configs below (their flags carry a prefix, e.g.
``--locate-*``, ``--delivery-*``, that their components' field names do not).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import CliImplicitFlag

from services.alerting.association import AssociationConfig
from services.alerting.association.locate import LocatorConfig
from services.alerting.association.magnitude import MagnitudeConfig
from services.alerting.dispatch.api import ApiConfig, parse_tokens
from services.alerting.dispatch.delivery import DeliveryConfig
from services.alerting.formats.cap import CapConfig
from services.common.exceptions import ConfigError
from services.common.loop import LoopConfig
from services.common.settings import ServiceSettings
from services.common.topics import ALERTS, DEADLETTER, SCORES

log = logging.getLogger("services.alerting")


class AlertingSettings(ServiceSettings):
    """Settings of ``eew alert`` (flags ``--kebab-case``, env ``EEW_UPPER_CASE``)."""

    client_id: str = Field("eew-alerting", description="Kafka client id.")
    group_id: str = Field("eew-alerting", description="Consumer group on the scores topic.")
    loop: LoopConfig = Field(
        LoopConfig(
            poll_timeout_ms=200, commit_interval_s=0.5, flush_timeout_s=10.0, close_timeout_s=2.0, alive_timeout_s=30.0
        ),
        description="The consume loop (services.common.loop); an alert is acknowledged within flush-timeout-s.",
    )
    publish_retry_s: float = Field(
        0.5, gt=0.0, description="Pause before alerts the broker did not acknowledge are sent again."
    )
    ready_stall_s: float = Field(
        10.0, gt=0.0, description="/readyz fails when the loop has not turned for this long."
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
    association: AssociationConfig = Field(
        AssociationConfig(), description="The association core's knobs (services.alerting.association.config)."
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
        """The association core's config: the ``association`` group, as is."""
        return self.association

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


