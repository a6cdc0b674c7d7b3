"""Broker launcher errors."""

from services.common.exceptions import EEWError


class BrokerStartError(EEWError):
    """The embedded broker (or its storage) did not start or did not become ready."""


class RetentionError(EEWError):
    """The retention janitor met something in the object store it does not understand."""
