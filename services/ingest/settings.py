"""Settings of ``eew ingest`` (live SeedLink) and ``eew replay`` (archives)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from services.common.settings import CoreModel, ServiceSettings, group
from services.ingest.core import ValidationConfig

#: Live input: records ending more than this before the wall clock are refused (a week).
LIVE_MAX_PAST_S = 7 * 86400.0


class StationRetryConfig(CoreModel):
    """The own schedule of a refused or stalled station (``services.ingest.seedlink`` side links):
    exponential backoff with full jitter, so one dead station never disturbs the others' link."""

    initial_s: float = Field(
        30.0,
        gt=0.0,
        description="First retry of a refused station, or first probe of a stalled one, after this.",
    )
    factor: float = Field(
        2.0, ge=1.0, description="Each failed retry multiplies the delay's ceiling by this."
    )
    max_s: float = Field(600.0, gt=0.0, description="Largest delay between two retries of one station.")
    probe_s: float = Field(
        10.0,
        gt=0.0,
        description="A probe of a stalled station waits this long for data newer than what was published "
        "before it closes (the station then stays reported and backs off).",
    )

    lookback_s: float = Field(
        60.0,
        ge=0.0,
        description="A refused station never received before is asked by time from this long before the "
        "ingester first asked for it (a record that started earlier can reach the server later).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_s < self.initial_s:
            raise ValueError(f"station retry max_s {self.max_s} is below initial_s {self.initial_s}")
        return self


class _InputSettings(ServiceSettings):
    """What both inputs share: the broker wait and the core's validation limits (``validation`` group)."""

    broker_timeout_s: float = Field(
        30.0, description="At start-up, wait this long for the broker (SIGTERM ends the wait at once)."
    )
    validation: ValidationConfig = Field(
        ValidationConfig(), description="Validation limits (services.ingest.core)."
    )
    close_timeout_s: float = Field(
        2.0, ge=0.0, description="At exit, longest wait for the producer to hand over what it still holds."
    )


class IngestSettings(_InputSettings):
    """``eew ingest``: SeedLink server -> waveform topic."""

    client_id: str = Field("eew-ingest", description="Kafka client id.")
    server: str = Field("127.0.0.1:18000", description="SeedLink server as host:port.")
    streams: str = Field(
        "",
        description="Stations and selectors, 'NET_STA[:SEL SEL],NET_STA[:SEL]', e.g. 'NC_MEM:HH?,NC_JAS:HH? EH?'.",
    )
    default_selectors: str = Field(
        "", description="Selectors for stations listed without any (space-separated)."
    )
    state_file: str = Field(
        "eew-ingest-state.json",
        description="SeedLink state file (per-station sequence numbers, per-channel last sample time) used "
        "to resume; empty disables resume.",
    )
    state_save_interval_s: float = Field(
        1.0, description="How often the state file is rewritten (when it changed)."
    )
    connect_timeout_s: float = Field(10.0, description="TCP connect timeout towards the SeedLink server.")
    network_timeout_s: float = Field(
        120.0,
        description="Socket read timeout: no bytes at all for this long drops the link (SeedLink 'netto').",
    )
    keepalive_s: float = Field(
        0.0, description="Send a SeedLink keep-alive (INFO ID) after this idle time (0: off)."
    )
    stall_timeout_s: float = Field(
        30.0,
        description="A station that delivered data and is then silent this long is reported (metric, log, "
        "/readyz) and probed on its own schedule (--station-retry-*); when no station at all delivered for "
        "this long the main link is reconnected (0: off).",
    )
    reconnect_min_s: float = Field(0.5, description="First reconnect delay; doubles per failed attempt.")
    reconnect_max_s: float = Field(30.0, description="Largest reconnect delay.")
    station_retry: StationRetryConfig = group(
        StationRetryConfig(),
        "Own schedule of refused and stalled stations (side links of their own), flags --station-retry-*.",
        prefix="station_retry_",
    )
    join_timeout_s: float = Field(
        5.0,
        gt=0.0,
        description="At shutdown, longest wait for the side links' threads to end (they end at once).",
    )
    validation: ValidationConfig = Field(
        ValidationConfig(max_past_s=LIVE_MAX_PAST_S),
        description="Validation limits (services.ingest.core); live data older than a week is refused.",
    )
    ready_max_data_age_s: float = Field(
        60.0, description="/readyz fails when no packet arrived for this long (expected data latency bound)."
    )
    flush_timeout_s: float = Field(
        5.0,
        description="At shutdown, wait this long for the broker to acknowledge; after delivery failures, "
        "the link resumes once a flush of this length completes.",
    )
    close_timeout_s: float = Field(
        1.0,
        ge=0.0,
        description="At exit (after the flush), and when a producer is replaced after delivery failures, "
        "longest wait for the producer to hand over what it still holds.",
    )
    broker_check_timeout_s: float = Field(
        1.0, gt=0.0, description="Timeout of the /readyz broker check (a TCP connect)."
    )
    broker_check_interval_s: float = Field(
        5.0, ge=0.0, description="The /readyz broker check is cached this long."
    )
    watchdog_interval_s: float = Field(
        0.1, gt=0.0, description="How often the link watchdog checks stalls, keep-alives and the state file."
    )
    request_timeout_s: float = Field(30.0, description="Kafka produce request timeout.")
    delivery_timeout_s: float = Field(
        120.0,
        description="A packet not acknowledged within this time fails; the link then resumes from acknowledged data.",
    )
    max_block_s: float = Field(
        30.0, description="How long a send may block on a full producer buffer (backpressure) before failing."
    )


class ReplaySettings(_InputSettings):
    """``eew replay``: miniSEED files or an SDS archive -> waveform topic, as if live."""

    client_id: str = Field("eew-replay", description="Kafka client id.")
    files: str = Field(
        "", description="Comma-separated miniSEED files, directories (searched recursively) or glob patterns."
    )
    sds: str = Field("", description="Root of an SDS archive (use with --start and --end).")
    start: str = Field("", description="SDS window start, ISO-8601 UTC (e.g. 2024-01-01T00:00:00Z).")
    end: str = Field("", description="SDS window end, ISO-8601 UTC.")
    nslc: str = Field("*.*.*.*", description="SDS selection NET.STA.LOC.CHA (wildcards * and ?).")
    speed: float = Field(0.0, description="1 = real time, N = N times real time, 0 = as fast as possible.")
    packet_seconds: float = Field(
        1.0, description="Records are cut into packets of this many seconds (0: keep whole)."
    )
    align_packets: bool = Field(
        True, description="Cut packets on multiples of --packet-seconds in absolute time."
    )
    flush_timeout_s: float = Field(
        30.0, description="At the end, wait this long for the broker to acknowledge."
    )
