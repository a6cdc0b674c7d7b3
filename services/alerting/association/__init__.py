"""Association: station scores -> station triggers -> events -> alert records (pure, event time).

NumPy/stdlib science with no I/O (no Kafka, no HTTP, no database): the ``Associator`` facade
(``associator``) over its four jobs -- the event-time reorder buffer (``reorder``), station
triggers (``triggers``, on the shared rule of ``services.common.triggers``), association of
triggers into events (``events``) and emission of located alerts with magnitude (``emission``) --
and the science they use: location (``locate``), magnitude (``magnitude``), intensity and warning
time (``intensity``), the station inventory (``stations``) and the network's geometry
(``geometry``). ``synthetic`` makes score streams for tests and demos. The records and knobs the
core consumes and produces are exported here.
"""

from services.alerting.association.associator import Associator
from services.alerting.association.config import AssociationConfig
from services.alerting.association.emission import azimuthal_gap_deg, event_probability
from services.alerting.association.events import make_event_id
from services.alerting.association.geometry import NetworkGeometry
from services.alerting.association.records import NS, AlertKind, AlertRecord, Contribution, ScoreRecord

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
