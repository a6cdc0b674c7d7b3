"""Errors of the ingest service."""

from services.common.exceptions import ConfigError, EEWError


class IngestError(EEWError):
    """Base class of the ingest service's errors."""


class StreamSpecError(ConfigError):
    """A ``--streams`` entry is not ``NET_STA[:SELECTORS]``."""


class StateFileError(IngestError):
    """The SeedLink state file cannot be read or written."""


class SeedLinkConnectionLost(IngestError):
    """The SeedLink connection dropped (EOF, read error or watchdog); the caller reconnects."""


class ReplayInputError(IngestError):
    """No readable input was found for a replay."""
