"""What a run reads of its services' Prometheus /metrics: samples, sums, labelled counters."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape_samples(port: int, timeout_s: float = 2.0,
                   names: tuple[str, ...] | None = None) -> list[tuple[str, dict[str, str], float]] | None:
    """Samples (name, labels, value) of a service's /metrics, only those whose name starts with one
    of ``names`` when given (parsing the whole exposition costs the run CPU); None when unreachable."""
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s)
        r.raise_for_status()
    except httpx.HTTPError:
        return None
    text = r.text
    if names is not None:
        text = "\n".join(line for line in text.splitlines() if line.startswith(names)) + "\n"
    return [(s.name, dict(s.labels), float(s.value)) for fam in text_string_to_metric_families(text)
            for s in fam.samples]


def scrape(port: int, timeout_s: float = 2.0, names: tuple[str, ...] | None = None) -> dict[str, float] | None:
    """Sample sums by sample name from a service's /metrics (None when unreachable)."""
    samples = scrape_samples(port, timeout_s, names)
    if samples is None:
        return None
    out: dict[str, float] = {}
    for name, _labels, value in samples:
        out[name] = out.get(name, 0.0) + value
    return out


#: The metrics the "done" checks read.
DETECTOR_DONE = ("eew_detector_packets_in_total", "eew_detector_backlog_stations", "eew_detector_unacked_messages",
                 "eew_detector_scores_acked_total")
ALERTING_DONE = ("eew_alerting_scores_in_total", "eew_alerting_pending_scores", "eew_alerting_unsent_alerts",
                 "eew_alerts_out_total")


def by_label(samples: list[tuple[str, dict[str, str], float]], name: str, label: str) -> dict[str, int]:
    """One labelled counter's values by label value (zeros left out)."""
    out: dict[str, int] = {}
    for n, labels, value in samples:
        if n == name and label in labels and value:
            out[labels[label]] = out.get(labels[label], 0) + int(value)
    return dict(sorted(out.items()))


#: The detector's Prometheus counter of refused packets (label ``reason``), services/detector/metrics.py.
DETECTOR_REJECTED = "eew_detector_rejected_packets_total"
#: Streams the detector refused for their channel code or rate, by ``reason`` (once per stream).
DETECTOR_REJECTED_STREAMS = "eew_detector_rejected_streams_total"
