"""Collect what a run produced: every station score and alert on the topics, read from the beginning."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

from kafka import TopicPartition

from services.alerting.association import ScoreRecord
from services.alerting.formats.messages import decode_score
from services.common.exceptions import DecodeError
from services.common.kafka import Consumer, make_reader
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.topics import ALERTS, SCORES
from services.pipeline.exceptions import PipelineError

log = logging.getLogger(__name__)
NS = 1_000_000_000
A = TypeVar("A")


class TopicCollector(Generic[A]):
    """Reads the scores and alerts topics from the beginning (no group, no commits); keeps each
    score once per (stream, window end) and each alert version once, as ``alert_of`` makes it."""

    def __init__(self, bootstrap: str, alert_of: Callable[[pb.Alert], A], scores_topic: str = SCORES.name,
                 alerts_topic: str = ALERTS.name, partitions_timeout_s: float = 20.0,
                 client_id: str = "eew-pipeline-collector") -> None:
        self.alert_of = alert_of
        self.scores_topic, self.alerts_topic = scores_topic, alerts_topic
        self.consumer = make_reader(bootstrap, client_id)
        tps: list[TopicPartition] = []
        deadline = time.monotonic() + partitions_timeout_s
        for topic in (scores_topic, alerts_topic):
            parts = None
            while not parts and time.monotonic() < deadline:
                parts = self.consumer.partitions_for_topic(topic)
                if not parts:
                    time.sleep(0.2)
            if not parts:
                self.consumer.close()
                raise PipelineError(f"topic {topic} not found on {bootstrap}")
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.scores: dict[tuple[str, int], ScoreRecord] = {}
        self.alerts: dict[tuple[str, int], A] = {}
        self.score_messages = 0
        self.alert_messages = 0
        self.errors: Counter[str] = Counter()
        self.scored_seconds = 0.0  # unique station-seconds scored
        self.last_new = time.monotonic()

    def poll(self, timeout_ms: int = 200) -> int:
        """One poll; returns the number of records read."""
        batch = self.consumer.poll(timeout_ms=timeout_ms, max_records=5000)
        n = 0
        for tp, msgs in batch.items():
            for m in msgs:
                n += 1
                if tp.topic == self.scores_topic:
                    self.score_messages += 1
                    try:
                        rec = decode_score(m.value)
                    except DecodeError as exc:
                        self.errors[f"score_{exc.reason}"] += 1
                        log.warning("undecodable score at %s[%d]@%d: %s", tp.topic, tp.partition, m.offset, exc)
                        continue
                    key = (rec.stream, rec.window_end_ns)
                    if key not in self.scores:
                        self.scores[key] = rec
                        self.scored_seconds += (rec.window_end_ns - rec.window_start_ns) / NS
                else:
                    self.alert_messages += 1
                    msg = pb.Alert()
                    try:
                        msg.ParseFromString(m.value or b"")
                    except Exception as exc:  # noqa: BLE001 -- protobuf raises several types
                        self.errors["alert_malformed_protobuf"] += 1
                        log.warning("undecodable alert at %s[%d]@%d: %s", tp.topic, tp.partition, m.offset, exc)
                        continue
                    if not msg.event_id:
                        self.errors["alert_missing_id"] += 1
                        continue
                    self.alerts.setdefault((msg.event_id, int(msg.version)), self.alert_of(msg))
        if n:
            self.last_new = time.monotonic()
        return n

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def read_alerts(bootstrap: str, timeout_s: float = 5.0) -> list[pb.Alert]:
    """Every Alert message on the alerts topic, from the beginning (no group); stops at the first
    1.5 s without a new one or after ``timeout_s``."""
    consumer = Consumer(
        ALERTS.name, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=1500,
    )
    out: list[pb.Alert] = []
    deadline = time.monotonic() + timeout_s
    try:
        for msg in consumer:
            a = pb.Alert()
            a.ParseFromString(msg.value)
            out.append(a)
            if time.monotonic() > deadline:
                break
    finally:
        consumer.close()
    return out
