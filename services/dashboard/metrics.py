"""The dashboard's own metrics, as one typed bundle on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DashboardMetrics:
    """Messages read, bad input, page clients and scrapes of the services' metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages_in = Counter("eew_dashboard_messages_in", "Messages read, by topic.", ["topic"], registry=r)
        self.decode_errors = Counter(
            "eew_dashboard_decode_errors", "Messages that could not be used, by topic and reason.",
            ["topic", "reason"], registry=r,
        )
        self.broker_errors = Counter("eew_dashboard_broker_errors", "Kafka errors ridden out.", registry=r)
        self.stations = Gauge("eew_dashboard_stations", "Stations on the map, by state.", ["state"], registry=r)
        self.events = Gauge("eew_dashboard_events", "Events on the page.", registry=r)
        self.clients = Gauge("eew_dashboard_stream_clients", "Live update streams open.", registry=r)
        self.auth_failures = Counter(
            "eew_dashboard_auth_failures", "Requests refused for a missing or unknown token.", registry=r
        )
        self.scrape_failures = Counter(
            "eew_dashboard_scrape_failures", "Failed scrapes of a service's /metrics, by target.", ["target"],
            registry=r,
        )
