"""Which offsets the scores consumer may commit: everything the association state no longer needs.

The association core keeps state (open events, triggers, the reorder buffer) built from scores
that may be many seconds old. Committing the newest consumed offset would lose that state on a
restart; so per partition we remember (offset, window_end) of consumed scores and commit the
first offset whose score is still needed (window_end >= core.retain_from_ns()). A restarted
service re-reads from there, rebuilds the same state deterministically, and suppresses the alerts
it had already emitted. Memory is bounded by the core's retain horizon (``max_retain_s``) and by
``max_tracked`` entries per partition (past that, the oldest are forgotten and counted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

NO_TIME = -(1 << 62)


class OffsetTracker:
    """Per-partition (offset, window_end) history of consumed records, oldest first."""

    def __init__(self, max_tracked: int = 1_000_000) -> None:
        self.max_tracked = max_tracked
        self._parts: dict[Hashable, deque[tuple[int, int]]] = {}
        self._next: dict[Hashable, int] = {}
        self._committed: dict[Hashable, int] = {}
        self.forgotten = 0

    def add(self, partition: Hashable, offset: int, window_end_ns: int | None) -> None:
        """Record a consumed offset; ``window_end_ns`` None for records that carry no state (bad input)."""
        dq = self._parts.get(partition)
        if dq is None:
            dq = self._parts[partition] = deque()
        dq.append((offset, NO_TIME if window_end_ns is None else window_end_ns))
        self._next[partition] = offset + 1
        if len(dq) > self.max_tracked:
            dq.popleft()
            self.forgotten += 1

    def forget(self, partition: Hashable) -> None:
        """Drop a partition (revoked in a rebalance)."""
        self._parts.pop(partition, None)
        self._next.pop(partition, None)
        self._committed.pop(partition, None)

    def commit_offsets(self, retain_from_ns: int | None) -> dict[Hashable, int]:
        """Offsets to commit now (only partitions whose commit point moved).

        Conservative: a partition's commit point stops at its oldest record still needed, so a few
        older records behind it may be re-read after a restart (the core drops them by horizon).
        """
        out: dict[Hashable, int] = {}
        for part, dq in self._parts.items():
            while dq and (retain_from_ns is None or dq[0][1] < retain_from_ns):
                dq.popleft()
            target = dq[0][0] if dq else self._next[part]
            if self._committed.get(part) != target:
                out[part] = target
        return out

    def mark_committed(self, offsets: dict[Hashable, int]) -> None:
        self._committed.update(offsets)

    def tracked(self) -> int:
        return sum(len(d) for d in self._parts.values())
