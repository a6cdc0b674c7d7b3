"""Errors shared by every service."""


class EEWError(Exception):
    """Base class of every error raised on purpose by this project."""


class ConfigError(EEWError):
    """A setting is missing or inconsistent."""


class DecodeError(EEWError):
    """A message could not be decoded; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BrokerUnavailable(EEWError):
    """The Kafka broker could not be reached in time."""


class DeliveryError(EEWError):
    """A produced message was not acknowledged by the broker."""


class UnconfirmedDelivery(DeliveryError):
    """The broker acknowledged a message without the offset it was written at (see
    ``services.common.kafka.confirmed``): treated as not delivered."""


class InventoryError(ConfigError):
    """The station inventory file is missing, unreadable or malformed."""
