"""Knobs of the association core (seconds, km/s, probabilities); see the modules that use them."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.exceptions import ConfigError
from services.common.triggers.hysteresis import RETRIGGER_SEPARATION_S, TriggerRule
from services.common.triggers.picks import PICK_MAX_LEAD_S


@dataclass(frozen=True)
class AssociationConfig:
    """Knobs of the association (all in seconds / km/s / probabilities)."""

    min_stations: int = 3
    vp_min_km_s: float = 5.5
    tolerance_s: float = 1.0
    max_spread_s: float | None = None  # None: from the network's geometry (NetworkGeometry)
    min_trigger_duration_s: float = 2.0
    detrigger_s: float = 2.0
    detrigger_threshold: float = 0.5
    event_ttl_s: float = 60.0
    max_lateness_s: float = 3.0
    max_hold_s: float = 1.0
    station_idle_s: float = 2.0
    pick_max_lead_s: float = PICK_MAX_LEAD_S  # a trigger's P pick lies at most this long before it
    retrigger_separation_s: float = RETRIGGER_SEPARATION_S  # a re-trigger's P is this much after the last
    trigger_threshold: float | None = None
    correlation: float = 0.3
    amplitude_window_s: float = 3.0
    max_p_window_s: float = 8.0  # the P window grows to the S arrival, at most this long (saturation)
    magnitude_update_step: float = 0.2
    max_retain_s: float = 600.0
    max_future_s: float = 120.0
    express_triggers: bool = False
    max_link_km: float | None = None  # a trigger joins only stations this close (0: any; None: per station)
    explained_coda_s: float = 30.0  # a located event explains its stations' re-triggers this long after S

    def __post_init__(self) -> None:
        if self.min_stations < 1:
            raise ConfigError("min_stations must be >= 1")
        if self.vp_min_km_s <= 0:
            raise ConfigError("vp_min_km_s must be > 0")
        for name in (
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
        ):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("max_spread_s", "max_link_km"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name} must be >= 0 (or None: from the network geometry)")
        if not 0.0 <= self.correlation <= 1.0:
            raise ConfigError("correlation must be in [0, 1]")
        self.trigger_rule()  # threshold and detrigger level checked by the trigger rule

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
