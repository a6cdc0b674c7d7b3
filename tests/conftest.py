"""Shared fixtures: a real embedded broker, a fresh metrics registry, the ../shared data path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.broker.embedded import EmbeddedBroker

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared data folder: $EEW_SHARED_DIR, else ../shared beside the repository."""
    return Path(os.environ.get("EEW_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared, or skip with the reason when it is absent."""
    path = shared_dir()
    if not (path / "data" / "nc_phasenet").is_dir():
        pytest.skip(f"real data folder not found at {path} (set EEW_SHARED_DIR): CI provides it")
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real Tansu broker (memory storage) for the session, topics created."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh Prometheus registry per test."""
    return CollectorRegistry()
