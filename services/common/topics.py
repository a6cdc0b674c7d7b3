"""Topic names, their partition counts and their retention.

Partition counts are final at creation: Tansu cannot add partitions, and on Apache Kafka adding
partitions re-maps station keys. Scale consumers up to the partition count, not past it.

Retention (``retention_ms``, -1 = kept forever) is set here once: the Apache Kafka topic jobs in
``deploy/`` create the topics with the same ``retention.ms`` (a test keeps them in step), and
``eew broker --durable`` enforces it itself (Tansu ignores ``retention.ms``; see
``services/broker/retention.py``). ``eew broker --retention-ms TOPIC=MS`` overrides it.
"""

from dataclasses import dataclass

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    description: str
    retention_ms: int = -1


WAVEFORMS = TopicSpec(
    "eew.waveforms.v1", 12, "WaveformPacket, keyed by station stream NET.STA.LOC.BI?", retention_ms=DAY_MS
)
SCORES = TopicSpec("eew.scores.v1", 6, "StationScore, keyed by station stream", retention_ms=7 * DAY_MS)
ALERTS = TopicSpec("eew.alerts.v1", 1, "Alert, keyed by event id (one partition keeps global order)")
DEADLETTER = TopicSpec(
    "eew.deadletter.v1", 1, "Rejected input with its reason in the headers", retention_ms=14 * DAY_MS
)

ALL_TOPICS = (WAVEFORMS, SCORES, ALERTS, DEADLETTER)
