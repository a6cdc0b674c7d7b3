"""Errors raised by ``eew validate``."""

from services.common.exceptions import ConfigError, EEWError


class ValidateError(EEWError):
    """Base class of the validation tool's errors."""


class CatalogError(ConfigError):
    """The catalogue file is missing, unreadable or has no usable event."""
