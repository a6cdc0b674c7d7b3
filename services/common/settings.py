"""Settings shared by every service, and the loader that reads flags and environment.

Each service defines one frozen pydantic-settings class deriving from ``ServiceSettings``.
Environment variables are ``EEW_<FIELD>`` (upper case); flags are ``--field-name``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T", bound="ServiceSettings")


class ServiceSettings(BaseSettings):
    """Fields every service has."""

    model_config = SettingsConfigDict(env_prefix="EEW_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port list."
    )
    http_host: str = Field("127.0.0.1", description="Address of the /metrics, /healthz and /readyz server.")
    http_port: int = Field(0, description="Port of the metrics/health server (0 picks a free port).")
    log_level: str = Field("INFO", description="Python logging level.")
    client_id: str = Field("eew", description="Kafka client id prefix, shown in broker logs.")


def load_settings(cls: type[T], argv: Sequence[str] | None = None, **overrides: object) -> T:
    """Build settings from environment, then flags (``argv``), then keyword overrides."""
    if argv is None:
        argv = []
    obj = cls(_cli_parse_args=list(argv), _cli_kebab_case=True, _cli_prog_name=f"eew {cls.__name__}", **overrides)
    return obj
