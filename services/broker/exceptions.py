"""Broker launcher errors."""

from services.common.exceptions import EEWError


class BrokerStartError(EEWError):
    """The embedded broker (or its storage) did not start or did not become ready."""
