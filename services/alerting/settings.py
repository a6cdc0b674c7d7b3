"""Settings of ``eew alert`` (flags ``--kebab-case``, environment ``EEW_UPPER_CASE``).

Declared once (``services.common.settings``): the service's own knobs here, the association
core's as the nested ``association`` group (``services.alerting.association.config``; flat flags
such as ``--min-stations`` kept), and the locator, magnitude, delivery, API and CAP configs as the
groups ``locator``, ``magnitude``, ``delivery``, ``api`` and ``cap``, whose flat names carry a
prefix (``--locate-min-stations``, ``EEW_DELIVERY_ATTEMPTS``, ``EEW_API_PORT``, ``--cap-sender``).
What a component needs beyond its knobs (parsed API tokens, the CAP key's bytes) the accessors
below add at start.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pydantic import Field, SecretStr

from services.alerting.association import AssociationConfig
from services.alerting.association.locate import LocatorConfig
from services.alerting.association.magnitude import MagnitudeConfig
from services.alerting.dispatch.api import ApiConfig, parse_tokens
from services.alerting.dispatch.delivery import DeliveryConfig
from services.alerting.formats.cap import CapConfig
from services.common.exceptions import ConfigError
from services.common.loop import LoopConfig
from services.common.settings import ServiceSettings, group
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
    locator: LocatorConfig = group(
        LocatorConfig(min_stations=3),
        "The grid-search locator (services.alerting.association.locate), flags --locate-*.",
        prefix="locate_",
    )
    magnitude: MagnitudeConfig = group(
        MagnitudeConfig(), "The Pd magnitude (services.alerting.association.magnitude).", prefix="magnitude_"
    )
    restore_idle_s: float = Field(
        1.0,
        description="Startup: the alerts topic is read until no record arrives for this long; the scores "
        "backlog is buffered until then too, and released in event-time order.",
    )
    restore_max_s: float = Field(
        60.0, gt=0.0, description="Startup: the alerts topic is read for at most this long (however busy)."
    )
    restore_metadata_timeout_s: float = Field(
        10.0,
        gt=0.0,
        description="Startup: wait this long for the alerts topic's metadata; without it nothing is restored "
        "(a warning is logged).",
    )
    catch_up_max_buffer: int = Field(
        200_000, description="Startup: most scores buffered while catching up before releasing anyway."
    )
    delivery: DeliveryConfig = group(
        DeliveryConfig(),
        "The webhook/MQTT delivery (services.alerting.dispatch.delivery), flags --delivery-*.",
        prefix="delivery_",
        names={"fanout_queue_size": "fanout_queue_size", "retention_days": "outbox_retention_days"},
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
    api: ApiConfig = group(
        ApiConfig(),
        "The subscriber API (services.alerting.dispatch.api), flags --api-*.",
        prefix="api_",
        names={"allow_private_webhooks": "allow_private_webhooks", "sse_public": "sse_public"},
    )
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
    cap: CapConfig = group(CapConfig(), "CAP 1.2 rendering (services.alerting.formats.cap), flags --cap-*.", prefix="cap_")
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
        """The ``association`` group, as is (kept for callers outside the service)."""
        return self.association

    def magnitude_config(self) -> MagnitudeConfig:
        """The ``magnitude`` group, as is (kept for callers outside the service)."""
        return self.magnitude

    def locator_config(self) -> LocatorConfig | None:
        """The locator group, or None with --locate false."""
        return self.locator if self.locate else None

    def delivery_config(self) -> DeliveryConfig:
        """The delivery group with the API group's --allow-private-webhooks (one knob for both)."""
        return self.delivery.model_copy(update={"allow_private": self.api.allow_private_webhooks})

    def cap_config(self) -> CapConfig:
        """The cap group with the signing key and certificate read from their files."""
        try:
            key = self.cap_signing_key.read_bytes() if self.cap_signing_key else b""
            cert = self.cap_signing_cert.read_bytes() if self.cap_signing_cert else b""
        except OSError as exc:
            raise ConfigError(f"CAP signing key/certificate unreadable: {exc}") from exc
        try:
            return self.cap.replace(signing_key_pem=key, signing_cert_pem=cert)
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
        """The api group with the tokens parsed and MQTT enabled by --mqtt-host (read at start)."""
        return self.api.model_copy(
            update={"tokens": tuple(parse_tokens(self.api_token_text())), "mqtt_enabled": bool(self.mqtt_host)}
        )
