"""Association: station scores -> station triggers -> events -> alert records (pure, event time).

NumPy/stdlib science with no I/O: the reorder buffer, station triggers, association of triggers
into events, location (``locate``), magnitude (``magnitude``), intensity and warning time
(``intensity``), the station inventory and its geometry (``stations``), and synthetic score
streams for tests and demos (``synthetic``). The public API of the association core is exported
here: ``Associator`` and the records it consumes and produces.
"""

from services.alerting.association.associator import (
    NS,
    AlertKind,
    AlertRecord,
    AssociationConfig,
    Associator,
    Contribution,
    NetworkGeometry,
    ScoreRecord,
    azimuthal_gap_deg,
    event_probability,
    make_event_id,
)

__all__ = [
    "NS",
    "AlertKind",
    "AlertRecord",
    "AssociationConfig",
    "Associator",
    "Contribution",
    "NetworkGeometry",
    "ScoreRecord",
    "azimuthal_gap_deg",
    "event_probability",
    "make_event_id",
]
