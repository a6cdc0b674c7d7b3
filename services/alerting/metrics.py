"""The alerting service's Prometheus metrics, built on an injected registry."""

from __future__ import annotations

from collections import Counter as PyCounter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Packet arrival -> alert: dominated by the detector stride (1 s) plus reorder hold (<= max_lateness_s).
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
# Alert created -> subscriber acknowledged: outbox write + a local POST take ms, retries take seconds.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# core stat name -> (metric attribute, label) ; see AlertingMetrics.sync_core
_CORE_MAP: dict[str, tuple[str, str]] = {
    "scores": ("scores_accepted", ""),
    "duplicates": ("scores_dropped", "duplicate"),
    "invalid": ("scores_dropped", "invalid"),
    "future_time": ("scores_dropped", "future_time"),
    "before_horizon": ("scores_dropped", "before_restart_horizon"),
    "late": ("scores_late", ""),
    "expressed": ("scores_expressed", ""),
    "triggers": ("triggers", ""),
    "triggers_retracted": ("trigger_outcomes", "retracted"),
    "triggers_rejected_inconsistent": ("trigger_outcomes", "rejected_inconsistent"),
    "triggers_rejected_station_in_event": ("trigger_outcomes", "rejected_station_in_event"),
    "triggers_rejected_by_location": ("trigger_outcomes", "rejected_by_location"),
    "triggers_duplicate_station": ("trigger_outcomes", "duplicate_station"),
    "triggers_unassociated": ("trigger_outcomes", "expired_unassociated"),
    "members_swapped_out": ("trigger_outcomes", "swapped_out_of_event"),
    "triggers_without_pick": ("trigger_outcomes", "without_pick"),
    "triggers_without_coordinates": ("trigger_outcomes", "without_coordinates"),
    "picks_refused": ("picks_refused", ""),
    "associations_time_only": ("trigger_outcomes", "associated_time_only"),
    "events": ("events", "declared"),
    "events_closed": ("events", "closed"),
    "events_cancelled": ("events", "cancelled"),
    "events_withdrawn_unpublished": ("events", "withdrawn_unpublished"),
    "locations": ("events", "located"),
    "locations_rejected": ("events", "location_rejected"),
    "locations_one_pick_dropped": ("events", "located_without_one_pick"),
}


class AlertingMetrics:
    """Every metric of the alerting service (association, alert output, webhook delivery)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.scores_in = Counter("eew_alerting_scores_in", "StationScore messages consumed.", registry=r)
        self.broker_errors = Counter(
            "eew_alerting_broker_errors", "Retriable Kafka errors ridden out (broker restarts, moves).", registry=r
        )
        self.decode_errors = Counter(
            "eew_alerting_decode_errors",
            "Consumed messages that could not be used, by reason.",
            ["reason"],
            registry=r,
        )
        self.deadletters = Counter(
            "eew_alerting_deadletters",
            "Messages written to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.scores_accepted = Counter(
            "eew_alerting_scores_accepted", "Scores accepted by the association core.", registry=r
        )
        self.scores_dropped = Counter(
            "eew_alerting_scores_dropped", "Scores dropped by the core, by reason.", ["reason"], registry=r
        )
        self.scores_late = Counter(
            "eew_alerting_scores_late",
            "Scores that arrived after the low watermark passed them (processed out of order).",
            registry=r,
        )
        self.scores_expressed = Counter(
            "eew_alerting_scores_expressed",
            "Scores processed ahead of the event-time order because their station triggered (express-triggers).",
            registry=r,
        )
        self.triggers = Counter("eew_alerting_triggers", "Station triggers opened.", registry=r)
        self.picks_refused = Counter(
            "eew_alerting_picks_refused",
            "P picks refused for a trigger: older than pick-max-lead-s before it, or before the end of the "
            "station's previous trigger or the onset that re-triggered it (services.common.triggers.picks).",
            registry=r,
        )
        self.trigger_outcomes = Counter(
            "eew_alerting_trigger_outcomes",
            "What happened to station triggers, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.events = Counter("eew_alerting_events", "Event lifecycle steps, by step.", ["step"], registry=r)
        self.alerts_out = Counter(
            "eew_alerts_out",
            "Alerts produced to the alerts topic (acknowledged), by type.",
            ["type"],
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "eew_alerting_alerts_suppressed",
            "Alerts not re-emitted because (event_id, version) was already on the alerts topic.",
            registry=r,
        )
        self.publish_errors = Counter(
            "eew_alerting_publish_errors", "Failed attempts to produce alerts (retried).", registry=r
        )
        self.processing_latency = Histogram(
            "eew_alert_processing_latency_seconds",
            "Alert created time minus ingest time of the newest packet behind it (packet arrival -> alert).",
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.commits = Counter("eew_alerting_commits", "Offset commits of the scores consumer.", registry=r)
        self.pending_scores = Gauge(
            "eew_alerting_pending_scores", "Scores held in the event-time reorder buffer.", registry=r
        )
        self.open_events = Gauge("eew_alerting_open_events", "Events still accepting updates.", registry=r)
        self.watermark = Gauge(
            "eew_alerting_watermark_seconds",
            "Newest score window end seen (event time, Unix seconds).",
            registry=r,
        )
        self.unsent_alerts = Gauge(
            "eew_alerting_unsent_alerts", "Alerts waiting for a broker acknowledgement.", registry=r
        )
        # Delivery (outbox -> webhook / MQTT; SSE is read by clients). ``subscriber`` is the
        # subscriber id (static webhooks: host:port/path), ``channel`` webhook|mqtt|sse.
        self.deliveries = Counter(
            "eew_alert_deliveries",
            "Deliveries by subscriber, channel and final outcome (ok/failed).",
            ["subscriber", "channel", "outcome"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "eew_alert_delivery_failures",
            "Deliveries given up (dead-lettered in the outbox), by subscriber, channel and reason.",
            ["subscriber", "channel", "reason"],
            registry=r,
        )
        self.delivery_attempts = Counter(
            "eew_alert_delivery_attempts",
            "Delivery attempts by subscriber, channel and result (ok, http_<code>, timeout, ...).",
            ["subscriber", "channel", "result"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "eew_alert_delivery_latency_seconds",
            "Alert created time -> subscriber acknowledged (2xx / MQTT PUBACK), retries included.",
            ["subscriber", "channel"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.outbox_rows = Gauge(
            "eew_alert_outbox_rows",
            "Outbox rows by channel and status (pending, delivered, dead, feed), refreshed every few seconds.",
            ["channel", "status"],
            registry=r,
        )
        self.outbox_errors = Counter(
            "eew_alert_outbox_errors",
            "Outbox database operations that failed (retried), by operation.",
            ["operation"],
            registry=r,
        )
        self.fanout_alerts = Counter(
            "eew_alert_fanout_alerts",
            "Alerts handed to the fan-out (alert -> per-subscriber outbox rows), by outcome.",
            ["outcome"],
            registry=r,
        )
        self.fanout_rows = Counter(
            "eew_alert_fanout_rows",
            "Outbox rows written by the fan-out, by channel.",
            ["channel"],
            registry=r,
        )
        self.fanout_skipped = Counter(
            "eew_alert_fanout_skipped",
            "(alert, subscriber) pairs not sent, by reason (thresholds, cancel of an unsent event).",
            ["reason"],
            registry=r,
        )
        self.fanout_queue = Gauge(
            "eew_alert_fanout_queue_depth", "Alerts waiting to be written to the outbox.", registry=r
        )
        self.mqtt_connected = Gauge(
            "eew_alert_mqtt_connected",
            "1 while connected to the MQTT broker (0 if down or disabled).",
            registry=r,
        )
        self.sse_clients = Gauge("eew_alert_sse_clients", "Open SSE streams.", registry=r)
        self.sse_events = Counter("eew_alert_sse_events", "Events written to SSE streams.", registry=r)
        self.api_requests = Counter(
            "eew_alert_api_requests",
            "Subscriber API requests by method, route and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.api_refused = Counter(
            "eew_alert_api_connections_refused",
            "Subscriber API connections closed by a server limit (too many per address or in total, "
            "request not complete in time, idle connection, headers too large, bad request), by reason.",
            ["reason"],
            registry=r,
        )
        self._synced: PyCounter[str] = PyCounter()

    def sync_core(self, stats: PyCounter[str]) -> None:
        """Add the core's counters (plain ints) into the Prometheus counters, by difference."""
        for name, value in stats.items():
            delta = value - self._synced[name]
            if delta <= 0:
                continue
            self._synced[name] = value
            if name.startswith("alerts_"):
                continue  # alerts are counted when acknowledged (alerts_out)
            attr, label = _CORE_MAP.get(name, ("trigger_outcomes", name))
            metric = getattr(self, attr)
            (metric.labels(label) if label else metric).inc(delta)
