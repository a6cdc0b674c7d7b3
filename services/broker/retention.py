"""Retention for the durable embedded broker (pure: no I/O).

Tansu 0.6.0 ignores ``retention.ms`` and ``retention.bytes`` and panics on ``DeleteRecords``,
so ``eew broker --durable`` removes expired data itself, on the storage side. Its ``s3://``
engine writes every produced batch as one object
``clusters/<cluster>/topics/<topic>/partitions/<10-digit partition>/records/<20-digit base offset>.batch``
and finds batches by listing that folder, so removing the oldest objects of a partition moves
its earliest offset forward exactly as Kafka's segment deletion does: ListOffsets(earliest)
answers the first kept batch, a fetch below it is served from the first kept batch, consumers
at committed offsets inside the kept range are unaffected, and a restarted broker sees the
same (``tests/integration/test_broker_retention.py`` shows each).

The rules, as Kafka's for time retention: an object expires when it was written more than
``retention_ms`` ago; only a prefix of a partition is removed (never a hole), and the newest
object of a partition is always kept (Kafka's active segment), so a partition's offsets never
restart from its first kept batch.

SeaweedFS's filer also logs every metadata change (each batch written or removed) into files
under ``/topics/.system/log/<day>/<HH-MM>.<filer>``, which it never removes: about 1 MB a minute
at 10 batches/s. Nothing in a single ``weed mini`` reads old entries back (its subscribers read
from "now"), so files older than the janitor's ``meta_log_keep_ms`` (10 min) are removed too
(``expired_files``), the newest always kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from services.common.exceptions import ConfigError
from services.common.topics import TopicSpec

NS_PER_MS = 1_000_000
BATCH_RE = re.compile(r"^(\d{20})\.batch$")


@dataclass(frozen=True)
class BatchObject:
    """One stored batch: object name (``<base offset>.batch``), when it was written, its size."""

    name: str
    mtime_ns: int
    size: int

    @property
    def base_offset(self) -> int:
        m = BATCH_RE.match(self.name)
        if m is None:
            raise ValueError(f"not a Tansu batch object name: {self.name!r}")
        return int(m.group(1))


def is_batch(name: str) -> bool:
    """Whether ``name`` is a Tansu batch object (anything else in a partition is never touched)."""
    return BATCH_RE.match(name) is not None


def expired(
    page: Sequence[BatchObject], now_ns: int, retention_ms: int, more_follow: bool
) -> tuple[list[BatchObject], bool]:
    """The expired prefix of one listing page (sorted by base offset), and whether to read on.

    ``more_follow``: the partition has objects after this page (then the page's last object is
    not the partition's newest and may expire). Reading on is worthwhile only when the whole
    page expired and more follow.
    """
    if retention_ms < 0 or not page:
        return [], False
    cutoff = now_ns - retention_ms * NS_PER_MS
    ordered = sorted(page, key=lambda o: o.base_offset)
    candidates = ordered if more_follow else ordered[:-1]
    out: list[BatchObject] = []
    for obj in candidates:
        if obj.mtime_ns > cutoff:
            return out, False
        out.append(obj)
    return out, more_follow and len(out) == len(ordered)


def parse_overrides(items: Iterable[str]) -> dict[str, int]:
    """``TOPIC=MS`` strings (``-1`` keeps forever) to a mapping; a clear error for anything else."""
    out: dict[str, int] = {}
    for item in items:
        topic, sep, value = item.partition("=")
        topic, value = topic.strip(), value.strip()
        try:
            ms = int(value)
        except ValueError:
            ms = -2
        if not sep or not topic or ms < -1:
            raise ConfigError(
                f"retention override {item!r}: expected TOPIC=MILLISECONDS (an integer >= 0, or -1 to keep"
                " forever), e.g. eew.waveforms.v1=3600000"
            )
        out[topic] = ms
    return out


def resolve(topics: Sequence[TopicSpec], overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Retention (ms, -1 = forever) of every topic: ``topics.py``'s, then the overrides."""
    known = {t.name: t.retention_ms for t in topics}
    for topic in overrides or {}:
        if topic not in known:
            raise ConfigError(f"retention override for unknown topic {topic!r}: known {sorted(known)}")
    return {**known, **(overrides or {})}


def expired_files(files: Sequence[tuple[str, int]], now_ns: int, keep_ms: int) -> list[str]:
    """Paths of (path, mtime_ns) files written more than ``keep_ms`` ago, never the newest one."""
    if keep_ms < 0 or len(files) < 2:
        return []
    cutoff = now_ns - keep_ms * NS_PER_MS
    newest = max(files, key=lambda f: (f[1], f[0]))[0]
    return [path for path, mtime in sorted(files) if mtime <= cutoff and path != newest]
