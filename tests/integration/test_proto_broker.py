"""Protobuf messages survive a round trip through the real broker, keyed and ordered per station."""

import time
import uuid

import numpy as np
import pytest

from services.common.codec import Packet, decode_packet, encode_packet
from services.common.kafka import make_consumer, make_producer
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.topics import WAVEFORMS

pytestmark = pytest.mark.integration


def test_waveform_packets_round_trip_in_order(broker) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1)
    sent: dict[str, list[Packet]] = {}
    producer = make_producer(broker.bootstrap, "test-proto")
    futures = []
    marker = uuid.uuid4().hex[:8]
    for i in range(30):
        for sta in ("A" + marker[:4], "B" + marker[:4]):
            for cha in ("HHZ", "HHN", "HHE"):
                p = Packet("XX", sta, "", cha, 1_700_000_000_000_000_000 + i * 10**9, 100.0,
                           rng.integers(-2**20, 2**20, 100).astype(np.int32), sequence=i)
                sent.setdefault(p.nslc, []).append(p)
                futures.append(producer.send(WAVEFORMS.name, key=p.key.encode(), value=encode_packet(p)))
    producer.flush()
    assert all(f.get(timeout=10) is not None for f in futures)
    producer.close()

    consumer = make_consumer(broker.bootstrap, f"g-{marker}", "test-proto", [WAVEFORMS.name])
    got: dict[str, list[Packet]] = {}
    partitions: dict[str, set[int]] = {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        batch = consumer.poll(500)
        for tp, msgs in batch.items():
            for m in msgs:
                p = decode_packet(m.value)
                if marker[:4] in p.station:
                    got.setdefault(p.nslc, []).append(p)
                    partitions.setdefault(p.key, set()).add(tp.partition)
        if sum(map(len, got.values())) == 180:
            break
    consumer.close()
    assert sum(map(len, got.values())) == 180
    for nslc, packets in sent.items():
        assert [p.start_time_ns for p in got[nslc]] == [p.start_time_ns for p in packets]  # per-key order
        for a, b in zip(got[nslc], packets, strict=True):
            np.testing.assert_array_equal(a.data, b.data)
    assert all(len(parts) == 1 for parts in partitions.values())  # one sensor -> one partition


def test_alert_message_round_trip(broker) -> None:  # noqa: ANN001
    alert = pb.Alert(schema_version=1, event_id="eew-test", version=2, type=pb.ALERT_TYPE_UPDATE,
                     origin_time_ns=5, probability=0.9,
                     stations=[pb.StationContribution(network="XX", station="S1", p_time_ns=7)])
    producer = make_producer(broker.bootstrap, "test-alert")
    producer.send("eew.test-alerts", key=b"eew-test", value=alert.SerializeToString()).get(timeout=10)
    producer.close()
    consumer = make_consumer(broker.bootstrap, f"g-{uuid.uuid4().hex[:8]}", "t", ["eew.test-alerts"])
    back = None
    deadline = time.monotonic() + 30
    while back is None and time.monotonic() < deadline:
        for msgs in consumer.poll(500).values():
            back = pb.Alert.FromString(msgs[0].value)
    consumer.close()
    assert back == alert
