"""Early magnitude from the first seconds of P: peak displacement Pd with a distance correction.

Relation
--------
Wu & Zhao (2006), "Magnitude estimation using the first three seconds P-wave amplitude in
earthquake early warning", GRL 33, L16312 (southern California)::

    log10(Pd) = -3.463 + 0.729 M - 1.374 log10(R)   (+- 0.305)

Pd: peak amplitude (cm) of the vertical displacement in the first 3 s after the P arrival, the
velocity record integrated once (accelerograms twice) and high-passed at 0.075 Hz (causal
Butterworth); R: hypocentral distance (km). So a station's magnitude is
M = (log10 Pd + 3.463 + 1.374 log10 R) / 0.729. The event magnitude is the mean over stations.

Accelerometers: a station whose stream is an accelerometer (``services.common.streams``: instrument
code N, L or G) gives Pd from its acceleration integrated twice (the detector's ``displacement.py``),
high-passed at 0.2 Hz rather than 0.075 Hz: double integration turns low-cost MEMS self-noise into
long-period drift that dominated Pd at 0.075 Hz (on the openeew_mx dev earthquakes the station
scatter of the magnitudes fell from 0.45 to 0.36 units, and the worst earthquake's bias from +1.2 to
+0.4). Those stations get ``accelerometer_correction`` added to their magnitude: +0.08, minus the
median over the openeew_mx ``dev`` earthquakes (6 earthquakes, M 4.6-5.2, models/splits/openeew_mx.txt)
of each earthquake's median station residual M_pd - M_catalogue (22 stations with a full 3 s
window). The held-out ``test`` earthquakes give -0.06 for the same median before the correction
(4 earthquakes with a full window, 18 stations): the term carries over. It is a network and
instrument term: re-fit it for another MEMS network (``bench/bench_openeew_alerts.py --pd-table``).
The 0.2 Hz high-pass also removes some of the long-period Pd of M > 6 ruptures, which adds to the
saturation below.

Uncertainty: a single station scatters by 0.305 / 0.729 = 0.42 magnitude units (the relation's
scatter); the event mean has the standard error s / sqrt(n) with s the station scatter (the
sample standard deviation when n >= 3, else 0.42), combined in quadrature with the 0.18 units by
which event Pd magnitudes differ from catalogue magnitudes in Wu & Zhao's data, and with
``uncalibrated_extra`` (1.0 by default) when the nominal gain is used (below).

Saturation: a P window of w seconds sees only the first w seconds of the rupture, so Pd stops
growing with M once the rupture lasts longer than the window: around M 6.5 for 3 s (Wu & Zhao report
their 0.18 agreement for M < 6.5; Kuyuk & Allen 2013, GRL 40, 6329-6333, find the same for
global Pd; Rydelek & Horiuchi 2006, Nature 442, E5-E6; Meier, Ampuero & Heaton 2017, Science 357,
1277-1281: the first seconds of large and small ruptures look alike). Since
rupture duration scales as M0^(1/3), i.e. 10^(M/2), the magnitude where a window of w seconds
saturates is ``M_sat(w) = saturation_m + 2 log10(w / 3 s)`` (M 5.5 at 1 s, 6.5 at 3 s). An estimate
is flagged as a lower bound (``MagnitudeEstimate.saturated``; JSON ``magnitude.lower_bound``)
whenever saturation is *possible*: when its value plus twice its uncertainty reaches M_sat of the
shortest window behind it -- not only once it has reached 6.5. The value itself is not inflated: a
flagged estimate says "at least this", and later versions with full windows (and more stations) can
raise it. When a full-window (3 s) estimate is flagged, the associator (``emission.Emitter._magnitude``)
lets each station's P window grow up to its predicted S arrival, at most 8 s (the expanding P-wave
time window of Colombelli, Zollo, Festa & Kanamori 2012, GRL 39, L22306: Pd keeps growing with the
window while the rupture goes on), and publishes the larger estimate, flagged against M_sat of those
longer windows (7.35 at 8 s). Beyond that, a P-wave amplitude cannot size the largest earthquakes;
finite-fault (FinDer) or geodetic methods can, and are not implemented here. Windows shorter than 3 s (right after the P arrival) give lower Pd, so early estimates of
M > ~4.5 events are low and grow as the windows fill. A partial-window station therefore only gives a lower
bound, so once ``min_full_stations`` stations have a full window only those are used; before that
every station with at least ``min_window_s`` of P is (the best early guess), and
``MagnitudeEstimate.window_s`` reports the shortest window used.

Calibration (what the counts mean)
----------------------------------
The detector reports per 1 s step ``peak_displacement``: the peak |vertical displacement| in
counts*s (counts*s^2 for accelerometers), made by ``services.common.displacement`` from raw counts. Dividing
by the channel's overall sensitivity (``gain``, counts per m/s for seismometers, counts per m/s^2
for accelerometers -- StationXML's InstrumentSensitivity, or the optional ``gain`` column of the
station CSV, both read by ``services.common.inventory.load_gains``) gives metres. A station without
a gain cannot give a real Pd: the estimate uses only calibrated stations (type ``Mpd``); when none is calibrated and a
network-wide ``nominal_gain`` is configured, it uses that and says so (type ``Mpd_uncal``, larger
uncertainty); otherwise there is no magnitude rather than a made-up one. Without
``peak_displacement`` (a detector that does not send it) there is no magnitude either: the
detector's ``peak_amplitude`` (raw counts, velocity for most sensors) is not a displacement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from services.common.settings import CoreModel, not_a_setting

MAGNITUDE_TYPE = "Mpd"
#: Added to the Pd magnitude of accelerometer stations: fit on the openeew_mx dev earthquakes (module doc).
ACCELEROMETER_CORRECTION = 0.08
MAGNITUDE_TYPE_UNCAL = "Mpd_uncal"


@dataclass(frozen=True)
class PdRelation:
    """log10(Pd cm) = a + b M + c log10(R km), with the per-station scatter of log10 Pd."""

    a: float
    b: float
    c: float
    sigma_log_pd: float
    event_sigma_m: float  # event-mean magnitude vs catalogue
    window_s: float
    saturation_m: float
    source: str

    def magnitude(self, pd_m: float, hypocentral_km: float) -> float:
        pd_cm = pd_m * 100.0
        return (math.log10(pd_cm) - self.a - self.c * math.log10(max(hypocentral_km, 1.0))) / self.b

    def pd_m(self, magnitude: float, hypocentral_km: float) -> float:
        """Expected Pd (m) for a magnitude at a hypocentral distance (scenario building, tests)."""
        return 10 ** (self.a + self.b * magnitude + self.c * math.log10(max(hypocentral_km, 1.0))) / 100.0

    @property
    def station_sigma_m(self) -> float:
        return self.sigma_log_pd / self.b

    def saturation_at(self, window_s: float) -> float:
        """Magnitude above which a Pd window of ``window_s`` seconds saturates (module docstring)."""
        return self.saturation_m + 2.0 * math.log10(max(window_s, 0.1) / self.window_s)


WU_ZHAO_2006 = PdRelation(
    a=-3.463,
    b=0.729,
    c=-1.374,
    sigma_log_pd=0.305,
    event_sigma_m=0.18,
    window_s=3.0,
    saturation_m=6.5,
    source="Wu & Zhao (2006), GRL 33, L16312",
)


class MagnitudeConfig(CoreModel):
    """Knobs of the Pd magnitude; the service exposes ``nominal_gain`` as ``--magnitude-nominal-gain``."""

    relation: PdRelation = not_a_setting(WU_ZHAO_2006, "The Pd-magnitude relation.")
    min_window_s: float = not_a_setting(1.0, "Seconds of P a station needs before its Pd is used.")
    min_full_stations: int = not_a_setting(2, "With this many full windows, partial ones are left out.")
    max_distance_km: float = not_a_setting(200.0, "Farther stations are left out (weak P, other phases).")
    nominal_gain: float | None = Field(
        None,
        description="Counts per m/s assumed for stations without a gain in the station file; their magnitudes "
        "are typed Mpd_uncal with a larger uncertainty. Unset: stations without a gain give no magnitude.",
    )
    uncalibrated_extra: float = not_a_setting(1.0, "Added (in quadrature) to the uncertainty of Mpd_uncal.")
    accelerometer_correction: float = not_a_setting(
        ACCELEROMETER_CORRECTION, "Added to accelerometer station magnitudes."
    )

    @property
    def window_s(self) -> float:
        return self.relation.window_s


@dataclass(frozen=True, slots=True)
class PdObservation:
    """One station's Pd input: peak displacement (counts*s), its gain, distance and window."""

    station_id: str
    peak_displacement: float
    gain: float | None
    hypocentral_km: float
    window_s: float
    accelerometer: bool = False  # Pd from double-integrated acceleration (accelerometer_correction)


@dataclass(frozen=True, slots=True)
class MagnitudeEstimate:
    value: float
    uncertainty: float
    magnitude_type: str
    n_stations: int
    saturated: bool  # saturation possible for its windows: a lower bound
    window_s: float  # shortest P window behind the estimate (s)


def estimate_magnitude(
    obs: Sequence[PdObservation], cfg: MagnitudeConfig | None = None
) -> MagnitudeEstimate | None:
    """Event magnitude from station Pd observations (see the module docstring), or None."""
    cfg = cfg or MagnitudeConfig()
    rel = cfg.relation
    usable = [
        o
        for o in obs
        if o.window_s >= cfg.min_window_s
        and o.peak_displacement > 0
        and math.isfinite(o.peak_displacement)
        and 0 <= o.hypocentral_km <= cfg.max_distance_km
    ]
    full = [o for o in usable if o.window_s >= rel.window_s - 1e-6]
    if len(full) >= cfg.min_full_stations:
        usable = full
    calibrated = [o for o in usable if o.gain is not None and o.gain > 0]
    if calibrated:
        chosen, gains, mtype = calibrated, [float(o.gain or 0.0) for o in calibrated], MAGNITUDE_TYPE
    elif usable and cfg.nominal_gain:
        chosen, gains, mtype = usable, [cfg.nominal_gain] * len(usable), MAGNITUDE_TYPE_UNCAL
    else:
        return None
    mags = np.array(
        [
            rel.magnitude(o.peak_displacement / g, o.hypocentral_km)
            + (cfg.accelerometer_correction if o.accelerometer else 0.0)
            for o, g in zip(chosen, gains, strict=True)
        ]
    )
    n = len(mags)
    scatter = float(mags.std(ddof=1)) if n >= 3 else rel.station_sigma_m
    unc2 = scatter**2 / n + rel.event_sigma_m**2
    if mtype == MAGNITUDE_TYPE_UNCAL:
        unc2 += cfg.uncalibrated_extra**2
    value = float(mags.mean())
    window = min(o.window_s for o in chosen)
    return MagnitudeEstimate(
        value=value,
        uncertainty=math.sqrt(unc2),
        magnitude_type=mtype,
        n_stations=n,
        saturated=value + 2.0 * math.sqrt(unc2) >= rel.saturation_at(window),
        window_s=window,
    )
