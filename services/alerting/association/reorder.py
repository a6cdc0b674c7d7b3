"""Event-time reorder buffer: scores from several partitions, released in ``(window_end, stream)`` order.

Scores arrive from several Kafka partitions, so stations interleave arbitrarily while each
station stays in order. The buffer holds scores and releases them in event-time order
``(window_end, stream)`` up to the *low watermark*

    L = min(newest window_end of every stream that is waited for).

A stream is waited for unless it lags the newest score of any stream (``watermark_ns``) by more
than ``max_lateness_s`` of event time AND (when the caller passes wall arrival times, as the
service does) has been silent for ``station_idle_s`` of wall time; inventory stations that have
not reported yet are waited for during the first ``station_idle_s``. Whatever L says, no score
waits more than ``max_hold_s`` of wall time, which bounds the latency a slow or dead station adds.
So a burst (a fast replay, a restart backlog) is put in order even when partitions arrive
seconds of event time apart, and live operation waits at most ``max_hold_s`` for stragglers.
A score that arrives after L has passed its window_end is *late* (counted) and processed at once.
With ``express_triggers`` (live operation, lowest latency) a triggered score does not wait: its
stream's buffered scores are processed at once (``take``), so a NEW alert goes out when the
third station's triggered score arrives instead of after the slowest station's window of that
second. Consequence (express off): **any arrival order in which no score is late gives identical
alerts** (``tests/unit/test_alerting_core.py`` checks it on shuffled interleavings and
partition-sized bursts). Without wall times only the event-time rule applies.

Intake checks: an invalid probability or window, a window_end more than ``max_future_s`` after
its scoring time, or one before ``ignore_before_ns`` is dropped (counted). Duplicates (the
detector is at-least-once) are dropped by (stream, window_end): a score whose window_end is not
after the stream's newest one is a duplicate or a per-stream reordering, both dropped.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from services.alerting.association.config import AssociationConfig
from services.alerting.association.records import NS, ScoreRecord

NEVER = -(1 << 62)


class Intake(Enum):
    """What ``ReorderBuffer.accept`` did with a score."""

    DROPPED = 0  # invalid, out of range or a duplicate (counted)
    LATE = 1  # behind the released watermark: the caller processes it at once
    BUFFERED = 2


@dataclass(eq=False)
class _Arrival:
    last_end: int = NEVER  # newest window_end received
    last_wall_ns: int | None = None  # wall time of its newest score (when the caller gives wall times)


class ReorderBuffer:
    """Holds scores and releases them in event-time order (see the module docstring)."""

    def __init__(
        self,
        config: AssociationConfig,
        station_ids: Iterable[str] = (),
        ignore_before_ns: int | None = None,
        stats: Counter[str] | None = None,
    ) -> None:
        self.config = config
        self.ignore_before_ns = ignore_before_ns
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self.watermark_ns: int | None = None  # max window_end seen
        self.released_until: int = NEVER
        self._streams: dict[str, _Arrival] = {}
        self._heap: list[tuple[int, str, ScoreRecord]] = []
        self._arrivals: deque[tuple[int, int]] = deque()  # (wall arrival, window_end) of buffered scores
        # Inventory stations not seen yet: waited for (when wall times are given) until station_idle_s.
        self._unseen: dict[str, int | None] = dict.fromkeys(station_ids)
        self._lateness = int(config.max_lateness_s * NS)
        self._hold = int(config.max_hold_s * NS)
        self._idle_wall = int(config.station_idle_s * NS)
        self._future = int(config.max_future_s * NS)

    def __len__(self) -> int:
        return len(self._heap)

    def buffered_ends(self) -> list[int]:
        """window_end of every buffered score."""
        return [end for end, _, _ in self._heap]

    def arrived(self, now_ns: int | None) -> None:
        """A batch arrives at wall time ``now_ns``: inventory stations not seen yet are waited for
        from now on, for ``station_idle_s``."""
        if now_ns is None:
            return
        for sid, since in self._unseen.items():
            if since is None:
                self._unseen[sid] = now_ns

    def accept(self, rec: ScoreRecord, now_ns: int | None) -> Intake:
        """Check one score and buffer it (see ``Intake``)."""
        if not (math.isfinite(rec.probability) and 0.0 <= rec.probability <= 1.0) or rec.window_end_ns <= 0:
            self.stats["invalid"] += 1
            return Intake.DROPPED
        if rec.scored_time_ns > 0 and rec.window_end_ns > rec.scored_time_ns + self._future:
            self.stats["future_time"] += 1
            return Intake.DROPPED
        if self.ignore_before_ns is not None and rec.window_end_ns < self.ignore_before_ns:
            self.stats["before_horizon"] += 1
            return Intake.DROPPED
        self.stats["scores"] += 1
        st = self._streams.get(rec.stream)
        if st is None:
            st = self._streams[rec.stream] = _Arrival()
            self._unseen.pop(rec.station_id, None)
        if rec.window_end_ns <= st.last_end:
            self.stats["duplicates"] += 1
            return Intake.DROPPED
        st.last_end = rec.window_end_ns
        st.last_wall_ns = now_ns
        if self.watermark_ns is None or rec.window_end_ns > self.watermark_ns:
            self.watermark_ns = rec.window_end_ns
        if rec.window_end_ns <= self.released_until:
            self.stats["late"] += 1
            return Intake.LATE
        heapq.heappush(self._heap, (rec.window_end_ns, rec.stream, rec))
        if now_ns is not None:
            self._arrivals.append((now_ns, rec.window_end_ns))
        return Intake.BUFFERED

    def _waited_for(self, st: _Arrival, horizon: int, now_ns: int | None) -> bool:
        """A stream holds the others back unless it lags in event time AND is silent in wall time."""
        if st.last_end >= horizon:
            return True
        return (
            now_ns is not None and st.last_wall_ns is not None and now_ns - st.last_wall_ns <= self._idle_wall
        )

    def low_watermark(self, now_ns: int | None) -> int:
        """How far event time may be released now (the module docstring's L)."""
        if self.watermark_ns is None:
            return self.released_until
        horizon = self.watermark_ns - self._lateness
        low = min(
            (s.last_end for s in self._streams.values() if self._waited_for(s, horizon, now_ns)),
            default=self.watermark_ns,
        )
        if now_ns is not None:
            if any(
                since is not None and now_ns - since <= self._idle_wall for since in self._unseen.values()
            ):
                low = self.released_until  # an inventory station has not reported yet: wait a little
            # No score waits longer than max_hold_s of wall time for slower stations.
            while self._arrivals and self._arrivals[0][0] <= now_ns - self._hold:
                low = max(low, self._arrivals.popleft()[1])
        return low

    def pop(self, upto: int) -> ScoreRecord | None:
        """The next buffered score in event-time order with window_end <= ``upto``, else None."""
        if self._heap and self._heap[0][0] <= upto:
            return heapq.heappop(self._heap)[2]
        return None

    def released(self, upto: int) -> None:
        """Everything up to ``upto`` has been released: later arrivals before it are late."""
        if upto > self.released_until:
            self.released_until = upto

    def take(self, streams: set[str]) -> list[ScoreRecord]:
        """Remove and return the buffered scores of ``streams`` in event-time order (express)."""
        mine = [e for e in self._heap if e[1] in streams]
        if mine:
            self._heap = [e for e in self._heap if e[1] not in streams]
            heapq.heapify(self._heap)
        return [rec for _, _, rec in sorted(mine, key=lambda e: (e[0], e[1]))]
