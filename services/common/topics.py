"""Topic names and their partition counts.

Partition counts are final at creation: Tansu cannot add partitions, and on Apache Kafka adding
partitions re-maps station keys. Scale consumers up to the partition count, not past it.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    description: str


WAVEFORMS = TopicSpec("eew.waveforms.v1", 12, "WaveformPacket, keyed by station stream NET.STA.LOC.BI?")
SCORES = TopicSpec("eew.scores.v1", 6, "StationScore, keyed by station stream")
ALERTS = TopicSpec("eew.alerts.v1", 1, "Alert, keyed by event id (one partition keeps global order)")
DEADLETTER = TopicSpec("eew.deadletter.v1", 1, "Rejected input with its reason in the headers")

ALL_TOPICS = (WAVEFORMS, SCORES, ALERTS, DEADLETTER)
