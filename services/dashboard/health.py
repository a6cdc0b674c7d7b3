"""Pipeline health from the services' Prometheus text (pure: the service does the scraping).

From each scraped ``/metrics`` page it keeps what an operator needs on one screen: packets in,
packets rejected by reason, the ONNX execution provider in use (CPU/CUDA) and the mean data and
processing latency since the previous scrape (from the histograms' ``_sum``/``_count``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from services.common.exceptions import ConfigError, DecodeError

# counter family (without _total) -> what it counts, per service prefix
PACKETS_IN = ("eew_ingest_packets_in", "eew_detector_packets_in", "eew_alerting_scores_in")
REJECTED = ("eew_ingest_rejected", "eew_detector_rejected_packets", "eew_alerting_scores_dropped")
LATENCY = {
    "eew_ingest_data_latency_seconds": "ingest data latency",
    "eew_detector_data_latency_seconds": "detector data latency",
    "eew_detector_processing_latency_seconds": "detector processing",
    "eew_alert_processing_latency_seconds": "alerting processing",
    "eew_alert_delivery_latency_seconds": "alert delivery",
}
PROVIDER = "eew_detector_execution_provider"


def parse_lag_groups(text: str) -> list[tuple[str, str]]:
    """``group:topic,...`` -> [(group, topic)]: the consumer groups whose backlog is shown."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        group, sep, topic = item.partition(":")
        if not sep or not group or not topic:
            raise ConfigError(f"lag group {item!r}: need group:topic")
        out.append((group, topic))
    return out


def backlog(committed: dict[Any, int], begin: dict[Any, int], end: dict[Any, int]) -> int:
    """Records a group has not consumed yet, summed over the topic's partitions (keys: partitions).

    A partition without a committed offset counts from its beginning (nothing of it consumed)."""
    total = 0
    for tp, last in end.items():
        done = committed.get(tp)
        total += max(0, last - (begin.get(tp, 0) if done is None or done < 0 else done))
    return total


def parse_targets(text: str) -> dict[str, str]:
    """``name=http://host:port/metrics,...`` -> {name: url}."""
    out: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ConfigError(f"metrics target {item!r}: need name=http://host:port/metrics")
        out[name] = url
    return out


@dataclass
class Scrape:
    """Totals read from one /metrics page."""

    packets_in: float = 0.0
    rejected: dict[str, float] = field(default_factory=dict)
    latency_sum: dict[str, float] = field(default_factory=dict)
    latency_count: dict[str, float] = field(default_factory=dict)
    provider: str | None = None
    model: str | None = None


def parse_metrics(text: str) -> Scrape:
    """Read the families above from Prometheus text; a malformed page raises DecodeError."""
    out = Scrape()
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError) as exc:
        raise DecodeError("bad_metrics_text", str(exc)[:200]) from exc
    for fam in families:
        for s in fam.samples:
            if s.name == f"{fam.name}_total" and fam.name in PACKETS_IN:
                out.packets_in += s.value
            elif s.name == f"{fam.name}_total" and fam.name in REJECTED:
                reason = s.labels.get("reason", "unknown")
                out.rejected[reason] = out.rejected.get(reason, 0.0) + s.value
            elif fam.name in LATENCY and s.name == f"{fam.name}_sum":
                out.latency_sum[LATENCY[fam.name]] = s.value
            elif fam.name in LATENCY and s.name == f"{fam.name}_count":
                out.latency_count[LATENCY[fam.name]] = s.value
            elif fam.name == PROVIDER and s.value == 1:
                out.provider = s.labels.get("provider")
                out.model = f"{s.labels.get('model_id', '')} {s.labels.get('model_version', '')}".strip()
    return out


def summarize(name: str, now: Scrape | None, before: Scrape | None, error: str = "") -> dict[str, Any]:
    """One service's health row; latencies are means over the interval between two scrapes."""
    if now is None:
        return {"service": name, "up": False, "error": error}
    lat: dict[str, float | None] = {}
    for stage, total in now.latency_sum.items():
        n = now.latency_count.get(stage, 0.0)
        if before is not None and stage in before.latency_sum:
            dn = n - before.latency_count.get(stage, 0.0)
            ds = total - before.latency_sum[stage]
            lat[stage] = round(ds / dn, 3) if dn > 0 else None
        else:
            lat[stage] = round(total / n, 3) if n > 0 else None
    return {
        "service": name, "up": True, "packets_in": now.packets_in,
        "rejected": {k: v for k, v in sorted(now.rejected.items()) if v > 0},
        "latency_s": lat, "provider": now.provider, "model": now.model,
    }
