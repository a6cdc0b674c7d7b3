"""Riding out broker outages in a service loop.

kafka-python lets some retriable errors escape ``poll()`` (e.g. ``KafkaConnectionError`` while the
coordinator is looked up during a broker restart). A service must not exit on those: it keeps its
buffers and unacknowledged work, backs off and tries again, and gives up only after the broker has
been unreachable for longer than its budget (then a supervisor restarts it).
"""

from __future__ import annotations

import logging
import time

from kafka.errors import KafkaConnectionError, KafkaError

log = logging.getLogger(__name__)


def is_retriable(exc: BaseException) -> bool:
    """A Kafka error worth retrying (connection trouble, leader/coordinator moves, timeouts)."""
    return isinstance(exc, KafkaConnectionError) or bool(getattr(exc, "retriable", False))


class OutageTracker:
    """Counts consecutive retriable errors and says when the outage has lasted too long."""

    def __init__(self, budget_s: float, name: str) -> None:
        self.budget_s = budget_s
        self.name = name
        self.since: float | None = None
        self.errors = 0

    def ok(self) -> None:
        """A loop step succeeded: the outage (if any) is over."""
        if self.since is not None:
            log.info("%s: broker reachable again after %.1f s (%d errors)", self.name,
                     time.monotonic() - self.since, self.errors)
        self.since, self.errors = None, 0

    def failed(self, exc: KafkaError) -> float | None:
        """Record a retriable error; return the back-off delay, or None once the budget is spent."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        self.errors += 1
        elapsed = now - self.since
        if elapsed > self.budget_s:
            return None
        if self.errors == 1 or self.errors % 20 == 0:
            log.warning("%s: retriable Kafka error (%s), retrying for up to %.0f s more", self.name,
                        exc, self.budget_s - elapsed)
        return min(2.0, 0.1 * 2 ** min(self.errors, 5))
