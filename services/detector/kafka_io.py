"""Thin Kafka adapter of the detector: the waveform consumer (group, manual commits, rebalance
callbacks, pause/resume) and the idempotent producer of scores and dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from services.common.kafka import make_consumer, make_producer

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[set[TopicPartition]], None]


class _Listener(ConsumerRebalanceListener):
    """Forwards rebalance callbacks (they run inside ``poll`` on the loop thread)."""

    def __init__(
        self, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback, on_lost: PartitionsCallback
    ) -> None:
        self._revoked = on_revoked
        self._assigned = on_assigned
        self._lost = on_lost

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._revoked(set(revoked))

    def on_partitions_lost(self, lost: Any) -> None:
        self._lost(set(lost))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._assigned(set(assigned))


class DetectorKafka:
    """Consumer of the waveform topic and producer of scores/dead letters."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        client_id: str,
        topic: str,
        on_revoked: PartitionsCallback,
        on_assigned: PartitionsCallback,
        on_lost: PartitionsCallback,
        max_poll_records: int = 2000,
    ) -> None:
        self.topic = topic
        self.producer = make_producer(bootstrap, client_id)
        self.consumer = make_consumer(bootstrap, group_id, client_id, max_poll_records=max_poll_records)
        self.consumer.subscribe([topic], listener=_Listener(on_revoked, on_assigned, on_lost))

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        return self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> FutureRecordMetadata:
        return self.producer.send(topic, key=key, value=value, headers=headers)

    def flush(self, timeout_s: float) -> None:
        self.producer.flush(timeout=timeout_s)

    def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        """Commit ``offsets`` (next record to read) synchronously; False (logged) on failure."""
        if not offsets:
            return True
        try:
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
            return True
        except KafkaError as exc:
            log.warning(
                "commit of %s failed: %s",
                {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()},
                exc,
            )
            return False

    def committed(self, tp: TopicPartition) -> int | None:
        try:
            return self.consumer.committed(tp)
        except KafkaError as exc:
            log.warning("could not read the committed offset of %s[%d]: %s", tp.topic, tp.partition, exc)
            return None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.seek(tp, offset)

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        if tps:
            self.consumer.pause(*tps)

    def resume_all(self) -> None:
        paused = list(self.consumer.paused())
        if paused:
            self.consumer.resume(*paused)

    def paused(self) -> bool:
        return bool(self.consumer.paused())

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the consumer first (its revoke callback may still flush and commit), then the producer."""
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.producer.close(timeout=timeout_s)
