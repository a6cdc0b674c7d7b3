"""An acknowledgement without an offset is not a delivery.

kafka-python turns a DUPLICATE_SEQUENCE_NUMBER answer into a success with offset -1; Tansu gives
that answer after a restart for batches it did not keep. The publisher must report such a send
as failed (so the ingester fetches it again), never as acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from services.common.codec import Packet
from services.common.kafka import confirmed
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Publisher


@dataclass
class _Meta:
    offset: int


class _Future:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def add_callback(self, fn: Any) -> None:
        fn(_Meta(self.offset))

    def add_errback(self, fn: Any) -> None:
        pass


class _Producer:
    """Acknowledges the n-th send at offset ``offsets[n]``."""

    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets
        self.n = 0

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> _Future:
        f = _Future(self.offsets[self.n])
        self.n += 1
        return f


def _packet(seq: int) -> Packet:
    return Packet(
        network="XX", station="STA", location="", channel="HHZ", start_time_ns=seq * 10**9,
        sampling_rate=100.0, data=np.zeros(100, np.float32), sequence=seq, source="test",
    )  # fmt: skip


def test_confirmed_needs_a_real_offset() -> None:
    assert confirmed(_Meta(0)) and confirmed(_Meta(12345))
    assert not confirmed(_Meta(-1))
    assert not confirmed(None)


def test_publisher_reports_an_offsetless_ack_as_a_failure() -> None:
    registry = CollectorRegistry()
    pub = Publisher(_Producer([7, -1, 8]), IngestMetrics(registry))
    outcomes: list[bool] = []
    for seq in range(3):
        assert pub.publish(_packet(seq), outcomes.append)
    assert outcomes == [True, False, True]
    assert (pub.acked, pub.failed, pub.in_flight) == (2, 1, 0)
    assert registry.get_sample_value("eew_ingest_packets_acked_total") == 2
    assert registry.get_sample_value("eew_ingest_publish_failures_total", {"topic": pub.waveform_topic}) == 1
