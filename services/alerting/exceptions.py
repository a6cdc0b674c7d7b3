"""Errors raised by the alerting service."""

from services.common.exceptions import ConfigError, EEWError


class SignatureError(EEWError):
    """A webhook request's signature headers do not verify; ``reason`` is a short label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class OutboxError(EEWError):
    """The outbox database could not be opened, migrated or written."""


class TargetRefused(ConfigError):
    """A webhook or MQTT target is not allowed (private address, bad scheme, unresolvable host)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
