"""Errors of the detector service."""

from services.common.exceptions import ConfigError, EEWError


class DetectorError(EEWError):
    """Base class of the detector's own errors."""


class DetectorConfigError(DetectorError, ConfigError):
    """Detector settings are inconsistent with each other or with the model contract."""


class ScoreDeliveryError(DetectorError):
    """A station score (or dead-letter record) was not acknowledged by the broker."""
