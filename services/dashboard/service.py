"""``eew dashboard``: Kafka (scores, alerts, dead letters) -> core -> the page (Starlette + uvicorn).

Threads: the main one polls Kafka and updates the core; uvicorn serves the page on its own thread
(its event loop never waits on the core's lock: frames are built in a worker thread); a health
thread scrapes the services' /metrics and checks the broker every ``health_interval_s``.
The dashboard only reads: it joins no consumer group and commits nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.alerting.dispatch.api import parse_tokens
from services.alerting.formats.messages import decode_score
from services.common.exceptions import ConfigError, DecodeError, InventoryError
from services.common.inventory import StationInventory
from services.common.kafka import AdminClient, Consumer, broker_reachable, wait_for_broker
from services.common.lifecycle import StopFlag
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import now_ns
from services.dashboard.core import STATES, DashboardCore, parse_sites, sites_from_subscribers
from services.dashboard.exceptions import AssetsMissing, DashboardError
from services.dashboard.health import (
    Scrape,
    backlog,
    parse_lag_groups,
    parse_metrics,
    parse_targets,
    summarize,
)
from services.dashboard.metrics import DashboardMetrics
from services.dashboard.settings import DashboardSettings
from services.dashboard.web import make_app

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "web" / "dist"
NS = 1_000_000_000
# Pacing, not a setting: how often the start looks whether the web server is up (the wait itself is
# bounded by --broker-timeout-s).
WEB_START_POLL_S = 0.05


class LiveState:
    """The core behind a lock, plus the latest health; builds the frames the update streams send."""

    def __init__(self, core: DashboardCore, frame_cache_s: float = 0.2) -> None:
        self.core = core
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.health: dict[str, Any] = {"broker": None, "services": []}
        self.health_generation = 0
        self._frame: dict[str, Any] | None = None
        self._frame_at = 0.0
        self.frame_cache_s = frame_cache_s

    def set_health(self, health: dict[str, Any]) -> None:
        with self.lock:
            self.health = health
            self.health_generation += 1

    def frame(self) -> dict[str, Any]:
        """Everything at this instant; shared by every open stream for ``frame_cache_s``."""
        with self.lock:
            if self._frame is not None and time.monotonic() - self._frame_at < self.frame_cache_s:
                return self._frame
            now = now_ns()
            c = self.core
            rows = c.station_rows(now)
            counts = dict.fromkeys(STATES, 0)
            for r in rows:
                counts[STATES[r[1]]] += 1
            self._frame = {
                "now_ns": now, "clock_ns": c.clock_ns(now), "counts": counts,
                "layout_generation": c.layout_generation, "layout": c.station_layout(), "rows": rows,
                "events_generation": c.events_generation, "events": c.events(),
                "health_generation": self.health_generation,
                "sites_generation": c.sites_generation, "sites": c.site_choices(),
                "health": self.health | {"latency_s": c.latencies()},
            }
            self._frame_at = time.monotonic()
            return self._frame

    def snapshot(self) -> dict[str, Any]:
        f = self.frame()
        with self.lock:
            config = self.core.config_view()
        return {k: f[k] for k in ("now_ns", "clock_ns", "counts", "layout", "rows", "events", "health")} | {
            "config": config
        }

    def predict(self, lat: float, lon: float) -> list[dict[str, Any]]:
        with self.lock:
            return self.core.predict_for(lat, lon)


class DashboardService:
    """Reads the topics into the core and serves the page; ``run()`` until the stop flag is set."""

    def __init__(self, settings: DashboardSettings, registry: CollectorRegistry, stop: StopFlag) -> None:
        s = self.settings = settings
        self.stop = stop
        self.metrics = DashboardMetrics(registry)
        if not (ASSETS / "index.html").is_file():
            raise AssetsMissing(f"front end not built: {ASSETS}/index.html missing (run `make web`)")
        tokens = tuple(parse_tokens(s.api_tokens))
        try:
            inventory = StationInventory.load(s.stations) if s.stations else StationInventory()
        except InventoryError as exc:
            raise DashboardError(str(exc)) from exc
        self.targets = parse_targets(s.metrics_urls)
        self.lag_groups = parse_lag_groups(s.lag_groups)
        self.state = LiveState(DashboardCore(s.core, inventory, parse_sites(s.sites)))
        app = make_app(self.state, tokens, ASSETS, self.metrics, tick_s=s.tick_s, heartbeat_s=s.stream_heartbeat_s,
                       max_clients=s.max_clients, session_ttl_s=s.session_ttl_s)
        self.server = uvicorn.Server(uvicorn.Config(
            app, host=s.web_host, port=s.web_port, log_level="warning", lifespan="off", access_log=False,
            timeout_graceful_shutdown=max(1, int(s.shutdown_timeout_s)),
        ))
        self._heartbeat = time.monotonic()
        self._assigned = threading.Event()
        self._broker_ok = False
        self._scrapes: dict[str, Scrape | None] = {}
        self._admin: AdminClient | None = None  # health thread only
        self._offsets: KafkaConsumer | None = None
        self._log_budget: dict[str, float] = {}

    # ---- health --------------------------------------------------------------------------------

    def alive(self) -> bool:
        return time.monotonic() - self._heartbeat < 30.0

    def checks(self) -> dict[str, Any]:
        return {
            "web": lambda: (bool(self.server.started), "web server not started"),
            "topics_assigned": lambda: (self._assigned.is_set(), "topics not assigned yet"),
            "broker": lambda: (self._broker_ok, "broker not reachable"),
            "loop": lambda: (time.monotonic() - self._heartbeat < 10.0, "poll loop stalled"),
        }

    @property
    def url(self) -> str:
        """The page's address once the web server runs."""
        port = self.settings.web_port
        for srv in getattr(self.server, "servers", []) or []:
            for sock in srv.sockets:
                port = sock.getsockname()[1]
        return f"http://{self.settings.web_host}:{port}/"

    def _health_loop(self) -> None:
        try:
            self._health_checks()
        finally:
            for c in (self._admin, self._offsets):
                if c is not None:
                    c.close()

    def _health_checks(self) -> None:
        s = self.settings
        with httpx.Client(timeout=s.scrape_timeout_s) as client:
            while not self.stop.wait(0 if not self.state.health_generation else s.health_interval_s):
                self._broker_ok = broker_reachable(s.bootstrap_servers, s.scrape_timeout_s)
                rows = []
                for name, url in self.targets.items():
                    before = self._scrapes.get(name)
                    try:
                        r = client.get(url)
                        r.raise_for_status()
                        now = parse_metrics(r.text)
                        rows.append(summarize(name, now, before))
                        self._scrapes[name] = now
                    except (httpx.HTTPError, DecodeError) as exc:
                        self.metrics.scrape_failures.labels(name).inc()
                        self._warn(f"scrape:{name}", "dashboard: cannot read %s metrics at %s: %s", name, url, exc)
                        rows.append(summarize(name, None, None, error=str(exc)[:200]))
                        self._scrapes[name] = None
                if s.subscribers_url:
                    self._read_subscribers(client)
                self.state.set_health({
                    "broker": {"reachable": self._broker_ok, "bootstrap": s.bootstrap_servers},
                    "services": rows,
                    "backlog": self._backlogs() if self._broker_ok else [],
                    "provider": next((r["provider"] for r in rows if r.get("provider")), None),
                })

    def _backlogs(self) -> list[dict[str, Any]]:
        """Per consumer group: records of its topic not consumed yet (end offsets - committed)."""
        if not self.lag_groups:
            return []
        s = self.settings
        servers = [b.strip() for b in s.bootstrap_servers.split(",") if b.strip()]
        timeout_ms = int(s.scrape_timeout_s * 1000)
        out: list[dict[str, Any]] = []
        try:
            if self._admin is None or self._offsets is None:  # both, or neither (a failed pair is closed)
                lag_ms = int(s.lag_timeout_s * 1000)
                admin = AdminClient(bootstrap_servers=servers, client_id=f"{s.client_id}-lag",
                                    request_timeout_ms=timeout_ms, bootstrap_timeout_ms=lag_ms)
                try:
                    offsets = Consumer(bootstrap_servers=servers, client_id=f"{s.client_id}-lag", group_id=None,
                                       request_timeout_ms=lag_ms, bootstrap_timeout_ms=lag_ms)
                except BaseException:
                    admin.close()
                    raise
                self._admin, self._offsets = admin, offsets
            committed = self._admin.list_group_offsets({g: None for g, _ in self.lag_groups})
            for group, topic in self.lag_groups:
                ids = self._offsets.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in sorted(ids)]
                if not tps:
                    out.append({"group": group, "topic": topic, "records": None, "error": "topic not found"})
                    continue
                mine = {tp: o.offset for tp, o in (committed.get(group) or {}).items() if tp.topic == topic}
                n = backlog(mine, self._offsets.beginning_offsets(tps), self._offsets.end_offsets(tps))
                out.append({"group": group, "topic": topic, "records": n,
                            "error": "" if mine else "no committed offsets (group not running yet?)"})
        except KafkaError as exc:
            self.metrics.broker_errors.inc()
            self._warn("backlog", "dashboard: cannot read consumer group offsets: %s", exc)
            return [{"group": g, "topic": t, "records": None, "error": str(exc)[:200]} for g, t in self.lag_groups]
        return out

    def _read_subscribers(self, client: httpx.Client, max_pages: int = 20) -> None:
        """The subscribers' sites from the subscriber API (paged); on failure the last list stays."""
        s = self.settings
        sites, cursor = [], None
        try:
            for _ in range(max_pages):
                r = client.get(s.subscribers_url, params={"limit": 1000, **({"cursor": cursor} if cursor else {})},
                               headers={"Authorization": f"Bearer {s.subscribers_token}"})
                r.raise_for_status()
                doc = r.json()
                sites += sites_from_subscribers(doc)
                cursor = doc.get("next_cursor")
                if not cursor:
                    break
        except (httpx.HTTPError, ValueError, DecodeError) as exc:
            self.metrics.scrape_failures.labels("subscribers").inc()
            self._warn("subscribers", "dashboard: cannot list subscribers at %s: %s", s.subscribers_url, exc)
            return
        with self.state.lock:
            self.state.core.set_subscriber_sites(sites)

    def _warn(self, key: str, fmt: str, *args: object) -> None:
        """Log at most once a minute per key (bad input keeps its metric either way)."""
        now = time.monotonic()
        if now - self._log_budget.get(key, -1e9) >= 60.0:
            self._log_budget[key] = now
            log.warning(fmt, *args)

    # ---- Kafka ---------------------------------------------------------------------------------

    def _assign(self, consumer: KafkaConsumer) -> None:
        s = self.settings
        topics = (s.scores_topic, s.alerts_topic, s.deadletter_topic)
        deadline = time.monotonic() + s.broker_timeout_s
        parts: dict[str, list[TopicPartition]] = {}
        while len(parts) < len(topics):
            for t in topics:
                ids = consumer.partitions_for_topic(t)
                if ids:
                    parts[t] = [TopicPartition(t, p) for p in sorted(ids)]
            if len(parts) < len(topics):
                if time.monotonic() > deadline or self.stop.is_set():
                    raise DashboardError(f"topics {sorted(set(topics) - set(parts))} not found on {s.bootstrap_servers}")
                consumer.topics()  # refresh metadata
                self.stop.wait(s.metadata_retry_s)
        consumer.assign([tp for tps in parts.values() for tp in tps])
        if s.core.replay:
            consumer.seek_to_beginning()
        else:
            consumer.seek_to_end(*parts[s.scores_topic], *parts[s.deadletter_topic])
            since = int((time.time() - s.history_s) * 1000)
            found = consumer.offsets_for_times({tp: since for tp in parts[s.alerts_topic]})
            for tp in parts[s.alerts_topic]:
                hit = found.get(tp)
                # no record since then: Kafka answers None, Tansu offset 0 with timestamp -1
                if hit is None or hit.timestamp < 0:
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, hit.offset)
        self._assigned.set()
        log.info("dashboard: reading %s (%s)", ", ".join(topics), "from the beginning" if s.core.replay else "live")

    def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        s, core, m = self.settings, self.state.core, self.metrics
        received = now_ns()
        with self.state.lock:
            for tp, records in batch.items():
                m.messages_in.labels(tp.topic).inc(len(records))
                for r in records:
                    try:
                        if tp.topic == s.scores_topic:
                            core.on_score(decode_score(r.value), received)
                        elif tp.topic == s.alerts_topic:
                            core.on_alert(_decode_alert(r.value), received)
                        else:
                            headers = {k: v for k, v in (r.headers or [])}
                            key = (r.key or b"").decode(errors="replace")
                            core.on_rejected(key, headers.get("reason", b"").decode(errors="replace"), received)
                    except DecodeError as exc:
                        m.decode_errors.labels(tp.topic, exc.reason).inc()
                        self._warn(f"decode:{tp.topic}:{exc.reason}", "dashboard: unusable record %s[%d]@%d: %s",
                                   tp.topic, tp.partition, r.offset, exc)

    def _update_gauges(self) -> None:
        with self.state.lock:
            counts = self.state.core.state_counts(now_ns())
            self.metrics.events.set(self.state.core.event_count())
        for state, n in counts.items():
            self.metrics.stations.labels(state).set(n)

    def run(self) -> int:
        try:
            return self._run()
        except DashboardError as exc:  # web port taken, topics missing: a clear line, exit 2
            log.error("dashboard cannot run: %s", exc)
            return 2

    def _run(self) -> int:
        s = self.settings
        if not wait_for_broker(s.bootstrap_servers, s.broker_timeout_s, stop=self.stop):
            return 0  # stopped (SIGTERM) while waiting for the broker
        self._broker_ok = True
        web = threading.Thread(target=self.server.run, name="dashboard-web", daemon=True)
        web.start()
        deadline = time.monotonic() + s.broker_timeout_s
        while not self.server.started:
            if not web.is_alive() or time.monotonic() > deadline:
                raise DashboardError(f"web server did not start on {s.web_host}:{s.web_port}")
            time.sleep(WEB_START_POLL_S)
        log.info("dashboard: page on %s", self.url)
        health = threading.Thread(target=self._health_loop, name="dashboard-health", daemon=True)
        health.start()
        consumer = Consumer(
            bootstrap_servers=[b.strip() for b in s.bootstrap_servers.split(",") if b.strip()], client_id=s.client_id, group_id=None,
            enable_auto_commit=False, auto_offset_reset="latest", fetch_max_wait_ms=100,
        )
        try:
            self._assign(consumer)
            gauges_at = 0.0
            while not self.stop.is_set():
                self._heartbeat = time.monotonic()
                try:
                    batch = consumer.poll(timeout_ms=int(s.poll_timeout_s * 1000), max_records=5000)
                except KafkaError as exc:
                    self.metrics.broker_errors.inc()
                    self._warn("poll", "dashboard: Kafka poll failed (%s); retrying", exc)
                    self.stop.wait(s.retry_backoff_s)
                    continue
                if batch:
                    self._apply(batch)
                if time.monotonic() - gauges_at >= s.gauge_interval_s:  # silence changes states too
                    self._update_gauges()
                    gauges_at = time.monotonic()
            return 0
        finally:
            self.state.stopping.set()
            self.server.should_exit = True
            consumer.close()
            web.join(s.shutdown_timeout_s + 2)
            health.join(s.scrape_timeout_s * 2 + 1)


def _decode_alert(raw: bytes | None) -> pb.Alert:
    if not raw:
        raise DecodeError("empty", "null value")
    msg = pb.Alert()
    try:
        msg.ParseFromString(raw)
    except Exception as exc:  # protobuf raises DecodeError/ValueError/TypeError
        raise DecodeError("malformed_protobuf", str(exc)[:200]) from exc
    if msg.schema_version != 1:
        raise DecodeError("schema_version", f"got {msg.schema_version}")
    if not msg.event_id or msg.version < 1:
        raise DecodeError("missing_id", f"event {msg.event_id!r} version {msg.version}")
    return msg


STARTUP_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DashboardError)
