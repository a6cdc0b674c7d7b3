"""A detector fed only streams it cannot score says so: /readyz "receiving data but none scorable"
with the reasons, one WARNING per stream naming what would fix it, and per-reason metrics -- never a
silent "ready" with nothing scored (real broker, shipped model)."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import httpx
import numpy as np
import pytest

from services.common.codec import Packet, encode_packet
from services.common.http import HealthServer
from services.common.kafka import ensure_topics, make_producer
from services.common.lifecycle import StopFlag
from services.common.settings import load_settings
from services.common.topics import TopicSpec
from services.detector.service import DetectorService
from services.detector.settings import DetectorSettings

pytestmark = pytest.mark.integration

T0 = 1_600_000_000 * 10**9


def test_only_unscorable_streams_make_readyz_say_so(broker, registry, caplog) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    wave_t = TopicSpec(f"eew.waveforms.un-{tag}", 2, "test")
    score_t = TopicSpec(f"eew.scores.un-{tag}", 1, "test")
    dead_t = TopicSpec(f"eew.deadletter.un-{tag}", 1, "test")
    ensure_topics(broker.bootstrap, [wave_t, score_t, dead_t])
    producer = make_producer(broker.bootstrap, "test-unscorable")
    rng = np.random.default_rng(1)
    for sec in range(10):
        for ch in ("HHZ", "HHN", "HHE"):  # 15 Hz: below the 20 Hz minimum
            p = Packet("XX", "LOW", "", ch, T0 + sec * 10**9, 15.0, rng.standard_normal(15).astype(np.float32))
            producer.send(wave_t.name, key=p.key.encode(), value=encode_packet(p))
        p = Packet("XX", "MASS", "", "HMZ", T0 + sec * 10**9, 100.0, np.ones(100, dtype=np.float32))
        producer.send(wave_t.name, key=p.key.encode(), value=encode_packet(p))
    producer.flush()
    producer.close()

    settings = load_settings(
        DetectorSettings,
        [],
        bootstrap_servers=broker.bootstrap,
        group_id=f"detector-{tag}",
        waveforms_topic=wave_t.name,
        scores_topic=score_t.name,
        deadletter_topic=dead_t.name,
        intra_op_threads=1,
    )
    stop = StopFlag()
    service = DetectorService(settings, registry, stop)
    health = HealthServer(registry, alive=service.alive, checks=service.checks()).start()
    caplog.set_level(logging.WARNING, logger="services.detector.service")
    thread = threading.Thread(target=service.run, name="detector", daemon=True)
    thread.start()
    want = 'eew_detector_rejected_packets_total{reason="rate_below_minimum"} 30.0'
    metrics = ready_body = ""
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{health.url}/metrics", timeout=5.0).text
            if want in metrics and 'reason="unsupported_instrument"} 10.0' in metrics:
                break
            time.sleep(0.5)
        ready = httpx.get(f"{health.url}/readyz", timeout=5.0)
        ready_body = ready.text
    finally:
        stop.set()
        thread.join(15)
        health.stop()
    assert want in metrics, metrics[-3000:]
    assert 'eew_detector_rejected_streams_total{reason="rate_below_minimum"} 3.0' in metrics
    assert 'eew_detector_rejected_streams_total{reason="unsupported_instrument"} 1.0' in metrics
    assert ready.status_code == 503
    assert "receiving data but none scorable" in ready_body and "rate_below_minimum" in ready_body
    warnings = [r.getMessage() for r in caplog.records if "not scorable" in r.getMessage()]
    assert len(warnings) == 4  # one per stream, not one per packet
    assert any("XX.LOW..HHZ" in w and "below 20 Hz" in w for w in warnings)
