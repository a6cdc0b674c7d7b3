"""Settings of ``eew dashboard`` (the one declaration of its knobs)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import ServiceSettings
from services.common.topics import ALERTS, DEADLETTER, SCORES
from services.dashboard.core import CoreConfig


class DashboardSettings(ServiceSettings):
    """The operator's live web page: where it listens, who may read it, what it reads."""

    client_id: str = Field("eew-dashboard", description="Kafka client id.")
    web_host: str = Field("127.0.0.1", description="Address the web page listens on.")
    web_port: int = Field(8090, description="Port of the web page (0 picks a free port).")
    api_tokens: str = Field(
        "", description="Bearer tokens: name:token[:role],... as `eew alert --api-tokens` (every role may read "
        "the page; tokens >= 16 characters). Without tokens every data request is refused.",
    )
    stations: Path | None = Field(
        None, description="Station inventory (StationXML or CSV, as `eew alert`): stations shown before they "
        "send anything (a station never heard from is dead)."
    )
    sites: str = Field("", description="Sites whose warning time and intensity are counted down: name:lat:lon,...")
    subscribers_url: str = Field(
        "", description="Subscriber API listing, e.g. http://alerting:8080/v1/subscribers: the subscribers' sites join "
        "the countdown's choices (an admin token lists all, a write token its own); empty: none."
    )
    subscribers_token: str = Field(
        "", description="Bearer token for --subscribers-url (give it in the environment: EEW_SUBSCRIBERS_TOKEN)."
    )
    metrics_urls: str = Field(
        "", description="Services' metrics for the health panel: name=http://host:port/metrics,..."
    )
    lag_groups: str = Field(
        "eew-detector:eew.waveforms.v1,eew-alerting:eew.scores.v1",
        description="Consumer groups whose backlog (records not yet consumed) the health panel shows: group:topic,...",
    )
    scores_topic: str = Field(SCORES.name, description="Topic of the station scores.")
    alerts_topic: str = Field(ALERTS.name, description="Topic of the alerts.")
    deadletter_topic: str = Field(DEADLETTER.name, description="Topic of the rejected input (stations shown as rejected).")
    history_s: float = Field(900.0, description="Live mode: alerts from this far back are shown at start.")
    core: CoreConfig = Field(CoreConfig(), description="Station states and events (services.dashboard.core).")
    tick_s: float = Field(0.5, description="Interval of the page's live updates (server-sent events).")
    stream_heartbeat_s: float = Field(
        1.0, description="Longest silence on an update stream: a message with the clock goes out at least this often."
    )
    max_clients: int = Field(50, description="Most update streams open at once (more get 503).")
    session_ttl_s: float = Field(43200.0, description="A page session (cookie after a token check) lasts this long.")
    health_interval_s: float = Field(5.0, description="How often the services' metrics and the broker are checked.")
    scrape_timeout_s: float = Field(2.0, description="Timeout of one /metrics scrape and of the broker check.")
    lag_timeout_s: float = Field(
        6.0,
        gt=0.5,  # kafka-python wants it above the consumer's fetch wait (0.5 s)
        description="Timeout of the backlog check's offset requests (end offsets of the --lag-groups topics).",
    )
    poll_timeout_s: float = Field(0.2, description="Longest wait of one Kafka poll.")
    broker_timeout_s: float = Field(
        30.0, description="At start, wait this long for the broker, its topics and the web server."
    )
    metadata_retry_s: float = Field(0.2, gt=0.0, description="At start, pause between looks for the topics.")
    retry_backoff_s: float = Field(1.0, gt=0.0, description="Pause after a failed Kafka poll before the next.")
    gauge_interval_s: float = Field(1.0, gt=0.0, description="How often the station-state and event gauges are refreshed.")
    shutdown_timeout_s: float = Field(3.0, description="At shutdown, give open pages this long to be closed.")
