"""The wired ``eew ingest`` service: live SeedLink -> Kafka waveform topic.

A producer loop, so of the service harness it takes what fits: ``services.common.lifecycle.run_service``
(signals, metrics/health server, exit codes; ``__main__``), the broker wait, and an ExitStack
shutdown (flush, save the state, close, in that order however the link ends). The loop itself is
the SeedLink session (``SeedLinkIngester.run``), not ``ConsumeLoop``: there is nothing to poll or commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

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
        self.health: HealthServer | None = None  # set by services.common.lifecycle.serve_health
        self.ingester: SeedLinkIngester | None = None
        self.publisher: Publisher | None = None
        self._broker_probe = CachedProbe(self._check_broker, settings.broker_check_interval_s)

    # ---- health ----------------------------------------------------------------------------------
    def alive(self) -> bool:
        """The SeedLink loop is running (and its watchdog turning); true while starting up."""
        return self.ingester is None or self.ingester.alive

    def checks(self) -> dict[str, Callable[[], tuple[bool, str]]]:
        return {"broker": self._broker_probe, "data": self._ready_data, "stations": self._ready_stations}

    def notes(self) -> dict[str, Callable[[], str]]:
        return {"stalled_stations": self._stalled_note, "side_links": self._side_note}

    def _check_broker(self) -> tuple[bool, str]:
        s = self.settings
        ok = broker_reachable(s.bootstrap_servers, s.broker_check_timeout_s)
        return (True, "ok") if ok else (False, "broker unreachable")

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

    def _side_note(self) -> str:
        """Stations streaming on a side link of their own (refused at first, or moved off a broken subscription)."""
        ing = self.ingester
        sides = ing.side_stations() if ing is not None else {}
        return ", ".join(f"{k} {state}" for k, state in sorted(sides.items())) or "none"

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

        publisher = self.publisher = Publisher(
            new_producer(), self.metrics, producer_factory=new_producer, close_timeout_s=s.close_timeout_s
        )
        ingester = self.ingester = SeedLinkIngester(
            s.server,
            self.specs,
            self.core,
            Emitter(publisher, self.metrics),
            self.tracker,
            self.store,
            self.metrics,
            self.stop,
            connect_timeout_s=s.connect_timeout_s,
            network_timeout_s=s.network_timeout_s,
            keepalive_s=s.keepalive_s,
            stall_timeout_s=s.stall_timeout_s,
            state_save_interval_s=s.state_save_interval_s,
            settle_timeout_s=s.flush_timeout_s,
            watchdog_interval_s=s.watchdog_interval_s,
            backoff=Backoff(s.reconnect_min_s, s.reconnect_max_s),
            retry=s.station_retry,
            join_timeout_s=s.join_timeout_s,
        )
        log.info(
            "ingesting %s from %s into %s (state file %s)",
            ",".join(x.key for x in self.specs),
            s.server,
            s.bootstrap_servers,
            s.state_file or "disabled",
        )
        t0 = 0.0
        flushed = False

        def flush() -> None:
            nonlocal t0, flushed
            t0 = time.monotonic()
            flushed = publisher.flush(s.flush_timeout_s)

        def report() -> None:
            log.info(
                "stopped: flushed=%s in %.2f s, %d acknowledged, %d failed, state saved",
                flushed,
                time.monotonic() - t0,
                publisher.acked,
                publisher.failed,
            )

        with ExitStack() as exits:  # unwound last-in first-out: flush, save, close, report
            exits.callback(report)
            exits.callback(publisher.close, s.close_timeout_s)
            exits.callback(ingester.save_state)
            exits.callback(flush)
            ingester.run()
        return 0
