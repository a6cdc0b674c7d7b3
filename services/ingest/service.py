"""The wired ``eew ingest`` service: live SeedLink -> Kafka waveform topic (``__main__`` adds flags and signals)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from services.common.http import HealthServer
from services.common.kafka import broker_reachable, make_producer, wait_for_broker
from services.common.lifecycle import StopFlag
from services.ingest.core import Backoff, IngestCore, parse_streams
from services.ingest.emit import Emitter
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher
from services.ingest.seedlink import SeedLinkIngester
from services.ingest.settings import IngestSettings
from services.ingest.state import SequenceTracker, StateStore

log = logging.getLogger("services.ingest")


class _IngestHealth(HealthServer):
    """The shared health server plus notes: /readyz details that never fail it (stalled stations)."""

    def __init__(self, *args: Any, notes: dict[str, Callable[[], str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes = notes

    def readiness(self) -> tuple[bool, dict[str, str]]:
        ok, detail = super().readiness()
        for name, note in self.notes.items():
            detail[name] = note()
        return ok, detail


class CachedProbe:
    """A readiness probe evaluated at most every ``ttl_s`` (HTTP probes must stay cheap)."""

    def __init__(self, fn: Callable[[], tuple[bool, str]], ttl_s: float = 5.0) -> None:
        self.fn = fn
        self.ttl_s = ttl_s
        self._at = -1e9
        self._value: tuple[bool, str] = (False, "not checked yet")
        self._lock = threading.Lock()

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                self._value = self.fn()
                self._at = time.monotonic()
            return self._value


class IngestService:
    """The wired service (usable in-process by tests; ``main`` adds flags and signals)."""

    def __init__(
        self, settings: IngestSettings, registry: CollectorRegistry, stop: StopFlag | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.stop = stop or StopFlag()
        self.metrics = IngestMetrics(registry)
        self.specs = parse_streams(settings.streams, settings.default_selectors.split())
        self.store = StateStore(settings.state_file or None, settings.server)
        self.tracker = SequenceTracker(self.store.load(), self.store.channels)
        self.core = IngestCore(settings.validation)
        self.health: HealthServer | None = None
        self.ingester: SeedLinkIngester | None = None
        self.publisher: Publisher | None = None

    def _ready_data(self) -> tuple[bool, str]:
        ing = self.ingester
        if ing is None or not ing.connected:
            return False, "SeedLink link is down"
        age = ing.seconds_since_data()
        if age is None:
            return False, "no data received yet"
        if age > self.settings.ready_max_data_age_s:
            return False, f"no data for {age:.0f} s (limit {self.settings.ready_max_data_age_s:.0f} s)"
        return True, "ok"

    def _ready_stations(self) -> tuple[bool, str]:
        """Not ready while the server refuses a configured station (a configuration error)."""
        ing = self.ingester
        if ing is None:
            return True, "ok"
        refused, _stalled = ing.station_report()
        if refused:
            return False, "refused by the server: " + "; ".join(
                f"{k}: {why}" for k, why in sorted(refused.items())
            )
        return True, "ok"

    def _stalled_note(self) -> str:
        """Stations silent past the stall timeout while the link delivers others (reported, not failing)."""
        ing = self.ingester
        if ing is None:
            return "none"
        _refused, stalled = ing.station_report()
        if not stalled:
            return "none"
        return ", ".join(f"{k} silent {q:.0f} s" for k, q in sorted(stalled.items()))

    def run(self) -> int:
        s = self.settings
        log.info("waiting for the Kafka broker at %s (up to %.0f s)", s.bootstrap_servers, s.broker_timeout_s)
        if not wait_for_broker(s.bootstrap_servers, s.broker_timeout_s, stop=self.stop):
            log.info("stopped while waiting for the broker at %s", s.bootstrap_servers)
            return 0

        def new_producer() -> KafkaProducer:
            return make_producer(
                s.bootstrap_servers,
                s.client_id,
                request_timeout_ms=int(s.request_timeout_s * 1000),
                delivery_timeout_ms=int(max(s.delivery_timeout_s, s.request_timeout_s + 0.1) * 1000),
                max_block_ms=int(s.max_block_s * 1000),
            )

        self.publisher = Publisher(new_producer(), self.metrics, producer_factory=new_producer)
        self.ingester = SeedLinkIngester(
            s.server,
            self.specs,
            self.core,
            Emitter(self.publisher, self.metrics),
            self.tracker,
            self.store,
            self.metrics,
            self.stop,
            connect_timeout_s=s.connect_timeout_s,
            network_timeout_s=s.network_timeout_s,
            keepalive_s=s.keepalive_s,
            stall_timeout_s=s.stall_timeout_s,
            state_save_interval_s=s.state_save_interval_s,
            backoff=Backoff(s.reconnect_min_s, s.reconnect_max_s),
        )
        broker_probe = CachedProbe(
            lambda: (
                (True, "ok") if broker_reachable(s.bootstrap_servers, 1.0) else (False, "broker unreachable")
            )
        )
        ingester = self.ingester
        self.health = _IngestHealth(
            self.registry,
            s.http_host,
            s.http_port,
            alive=lambda: ingester.alive,
            checks={"broker": broker_probe, "data": self._ready_data, "stations": self._ready_stations},
            notes={"stalled_stations": self._stalled_note},
        ).start()
        log.info(
            "ingesting %s from %s into %s (state file %s)",
            ",".join(x.key for x in self.specs),
            s.server,
            s.bootstrap_servers,
            s.state_file or "disabled",
        )
        try:
            ingester.run()
        finally:
            t0 = time.monotonic()
            flushed = self.publisher.flush(s.flush_timeout_s)
            ingester.save_state()
            self.publisher.close(1.0)
            self.health.stop()
            log.info(
                "stopped: flushed=%s in %.2f s, %d acknowledged, %d failed, state saved",
                flushed,
                time.monotonic() - t0,
                self.publisher.acked,
                self.publisher.failed,
            )
        return 0
