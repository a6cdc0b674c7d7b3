"""Errors of the dashboard service."""

from services.common.exceptions import EEWError


class DashboardError(EEWError):
    """The dashboard cannot start (web port taken, front end not built, bad inventory)."""


class AssetsMissing(DashboardError):
    """The built front end (``services/dashboard/web/dist``) is not there: run ``make web``."""
