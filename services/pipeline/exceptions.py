"""Errors of a local pipeline run."""

from services.common.exceptions import EEWError


class PipelineError(EEWError):
    """The broker, detector, alerting or replay process failed during a run."""
