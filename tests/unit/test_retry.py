"""Broker-outage riding: retriable errors back off until the budget is spent, others do not retry."""

from types import SimpleNamespace

import pytest
from kafka.errors import KafkaConnectionError, KafkaError, UnknownTopicOrPartitionError

from services.common import retry
from services.common.retry import OutageTracker, is_retriable


def test_connection_errors_and_retriable_errors_are_retried() -> None:
    assert is_retriable(KafkaConnectionError("refused"))
    assert is_retriable(UnknownTopicOrPartitionError())
    assert not is_retriable(KafkaError("generic"))


def test_budget_is_spent_after_the_outage_lasts_too_long_and_reset_by_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]  # a clock the test moves (OutageTracker reads time.monotonic)
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=lambda: now[0]))
    t = OutageTracker(0.2, "test")
    assert t.failed(KafkaConnectionError()) is not None
    now[0] += 0.15
    assert t.failed(KafkaConnectionError()) is not None  # within the budget: still retrying
    now[0] += 0.1  # 0.25 s into the outage
    assert t.failed(KafkaConnectionError()) is None
    t.ok()
    assert t.failed(KafkaConnectionError()) is not None  # a new outage starts a new budget
