"""The records the association consumes and produces (times in ns UTC): ``ScoreRecord`` in,
``AlertRecord`` (with its ``Contribution`` per station) out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.alerting.association.locate import Location
from services.alerting.association.magnitude import MagnitudeEstimate
from services.common.domain import station_id, stream_key

NS = 1_000_000_000


class AlertKind(StrEnum):
    NEW = "NEW"
    UPDATE = "UPDATE"
    CANCEL = "CANCEL"


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """The fields of one StationScore the association needs (times in ns UTC)."""

    network: str
    station: str
    location: str
    channel_prefix: str
    window_start_ns: int
    window_end_ns: int
    probability: float
    triggered: bool
    p_onset_ns: int | None = None
    p_onset_probability: float = 0.0
    peak_amplitude: float = 0.0
    ingest_time_ns: int = 0
    scored_time_ns: int = 0
    peak_displacement: float = 0.0  # peak |vertical displacement| in counts*s (0: not sent)
    new_trigger: bool = False  # the detector's trigger on a new P onset (a re-trigger, also mid-coda)

    @property
    def stream(self) -> str:
        """The sensor's stream key ``NET.STA.LOC.BI?`` (``services.common.domain``)."""
        return stream_key(self.network, self.station, self.location, self.channel_prefix)

    @property
    def station_id(self) -> str:
        return station_id(self.network, self.station)


@dataclass(frozen=True, slots=True)
class Contribution:
    """One station behind an alert."""

    network: str
    station: str
    location: str
    p_time_ns: int
    probability: float
    latitude: float | None = None
    longitude: float | None = None
    peak_amplitude: float = 0.0
    peak_displacement: float = 0.0  # counts*s, over the first amplitude_window_s of P
    amplitude_window_s: float = 0.0  # seconds of P covered by the two peaks so far


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One version of one event, before it is stamped with a created time and serialised."""

    event_id: str
    version: int
    kind: AlertKind
    origin_time_ns: int
    first_p_time_ns: int
    probability: float
    stations: tuple[Contribution, ...]
    latest_ingest_time_ns: int
    reason: str = ""
    event_time_ns: int = 0  # event time (watermark) at which this version was decided
    location: Location | None = None
    magnitude: MagnitudeEstimate | None = None
    gap_deg: float | None = None  # azimuthal gap of the members around the epicentre (located only)
    location_uncertain: bool = False  # 95 % uncertainty above LocatorConfig.max_uncertainty_km, or open

    @property
    def key(self) -> tuple[str, int]:
        return (self.event_id, self.version)
