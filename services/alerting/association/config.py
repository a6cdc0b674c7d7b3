"""The association core's knobs, declared once (``services.common.settings`` pattern).

``AssociationConfig`` is the ``association`` group of ``eew alert``'s settings: flags
``--min-stations`` ..., environment ``EEW_MIN_STATIONS`` ...; the core takes it as is.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from services.common.exceptions import ConfigError
from services.common.settings import CoreModel
from services.common.triggers.hysteresis import RETRIGGER_SEPARATION_S, TriggerRule
from services.common.triggers.picks import PICK_MAX_LEAD_S

_NON_NEGATIVE = (
    "tolerance_s",
    "explained_coda_s",
    "min_trigger_duration_s",
    "detrigger_s",
    "event_ttl_s",
    "max_lateness_s",
    "max_hold_s",
    "station_idle_s",
    "pick_max_lead_s",
    "retrigger_separation_s",
    "amplitude_window_s",
    "max_p_window_s",
    "magnitude_update_step",
    "max_retain_s",
    "max_future_s",
)


class AssociationConfig(CoreModel):
    """Knobs of the association (seconds, km/s, probabilities); invalid values raise ConfigError."""

    min_stations: int = Field(3, description="Triggered stations needed to declare an event.")
    vp_min_km_s: float = Field(5.5, description="Slowest P velocity for the travel-time consistency test.")
    tolerance_s: float = Field(1.0, description="Pick-time tolerance added to distance / vp_min.")
    max_spread_s: float | None = Field(
        None,
        description="Largest P-time spread within one event; auto (unset): max(20 s, 2 x the median link "
        "radius / vp-min) (see README, association rules).",
    )
    max_link_km: float | None = Field(
        None,
        description="A trigger joins an event (or seeds one) only within this distance of one of its "
        "stations; auto (unset): per station pair, the larger of their link radii (2 x the distance to each "
        "one's 3rd-nearest station, from --stations); 0 turns the rule off.",
    )
    explained_coda_s: float = Field(
        30.0,
        description="A trigger between the P arrival a located event predicts at its station and the S "
        "arrival plus this long is that event's (late P, S, coda): it never seeds a second event.",
    )
    min_trigger_duration_s: float = Field(
        2.0,
        description="A trigger that ends (see detrigger-s) before lasting this long is a glitch: retracted.",
    )
    detrigger_threshold: float = Field(
        0.5, description="A trigger stays on while the station probability is at least this (hysteresis)."
    )
    detrigger_s: float = Field(
        2.0,
        description="A trigger ends once its station has stayed below threshold this long (dips are ignored).",
    )
    event_ttl_s: float = Field(60.0, description="Event time after an event's last change before it closes.")
    max_lateness_s: float = Field(
        3.0,
        description="A station more than this much event time behind the newest score, and silent for "
        "station-idle-s, stops holding the others back in the event-time reorder buffer.",
    )
    max_hold_s: float = Field(
        1.0,
        description="Longest wall time a score waits in the reorder buffer for slower stations (the most "
        "latency ordering may add). Raise it for fast replays whose stations arrive far apart.",
    )
    station_idle_s: float = Field(
        2.0, description="Wall seconds without scores after which a lagging station is no longer waited for."
    )
    pick_max_lead_s: float = Field(
        PICK_MAX_LEAD_S,
        description="A trigger's P pick lies at most this long before it; older picks, and picks before the "
        "station's previous trigger ended, are refused (counted: eew_alerting_picks_refused).",
    )
    retrigger_separation_s: float = Field(
        RETRIGGER_SEPARATION_S,
        description="A score flagged new_trigger whose P onset is this much later than the station's current "
        "trigger's P ends that trigger and opens a new one (a new P in the coda).",
    )
    trigger_threshold: float | None = Field(
        None, description="Station probability that triggers; unset: the detector's `triggered` flag."
    )
    correlation: float = Field(0.3, description="Assumed correlation between stations in the event probability.")
    amplitude_window_s: float = Field(
        3.0, description="Seconds of P whose peak displacement gives a station's Pd (Wu & Zhao 2006)."
    )
    max_p_window_s: float = Field(
        8.0,
        description="When the 3 s Pd magnitude may be saturated, a station's P window grows to its predicted "
        "S arrival, at most this long (Colombelli et al. 2012).",
    )
    magnitude_update_step: float = Field(
        0.2, description="A published event's magnitude change that emits an UPDATE as its P windows fill."
    )
    max_retain_s: float = Field(
        600.0, description="Most event time of scores the offsets are held back for (bounds a restart's re-read)."
    )
    max_future_s: float = Field(
        120.0, description="Scores whose window ends further than this after they were scored are dropped."
    )
    express_triggers: bool = Field(
        False,
        description="Process a station's scores as soon as it sends a triggered one, not in event-time order "
        "after the slowest station's window (alerts up to max-hold-s sooner; alert versions then depend on "
        "arrival order, so replays are not reproduced exactly).",
    )

    @field_validator("max_spread_s", "max_link_km", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        """``auto`` (flag or environment) is the unset value: derived from the network geometry."""
        return None if isinstance(value, str) and value.strip().lower() == "auto" else value

    @model_validator(mode="after")
    def _check(self) -> AssociationConfig:
        if self.min_stations < 1:
            raise ConfigError("min_stations must be >= 1")
        if self.vp_min_km_s <= 0:
            raise ConfigError("vp_min_km_s must be > 0")
        for name in _NON_NEGATIVE:
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("max_spread_s", "max_link_km"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name} must be >= 0 (or auto: from the network geometry)")
        if not 0.0 <= self.correlation <= 1.0:
            raise ConfigError("correlation must be in [0, 1]")
        self.trigger_rule()  # threshold and detrigger level checked by the trigger rule
        return self

    def trigger_rule(self) -> TriggerRule:
        """The station trigger rule (``services.common.triggers.hysteresis``) these knobs give."""
        return TriggerRule(
            threshold=self.trigger_threshold,
            detrigger_threshold=self.detrigger_threshold,
            detrigger_s=self.detrigger_s,
            min_trigger_duration_s=self.min_trigger_duration_s,
            pick_max_lead_s=self.pick_max_lead_s,
            retrigger_separation_s=self.retrigger_separation_s,
        )
