"""UTC time helpers: integer nanoseconds since the epoch everywhere, never naive datetimes."""

import time
from datetime import UTC, datetime

NS_PER_S = 1_000_000_000


def now_ns() -> int:
    """Wall clock, ns UTC."""
    return time.time_ns()


def ns_to_datetime(ns: int) -> datetime:
    """Timezone-aware UTC datetime (microsecond precision) for an ns timestamp."""
    return datetime.fromtimestamp(ns / NS_PER_S, tz=UTC)


def ns_to_iso(ns: int) -> str:
    """ISO-8601 UTC string with millisecond precision and a Z suffix."""
    return ns_to_datetime(ns).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def datetime_to_ns(dt: datetime) -> int:
    """ns UTC for an aware datetime; naive datetimes are refused."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware UTC datetime")
    return int(round(dt.timestamp() * 1e6)) * 1000
