"""Which waveform streams the system can score: one rule shared by replay, ingest and detector.

A stream is scorable when its channel code (SEED band + instrument + component) names a
seismometer or an accelerometer component the model uses, and its sampling rate lies in
``[MIN_RATE_HZ, MAX_RATE_HZ]`` with a rational ratio to the model rate the detector's resampler
takes (``resample_ratio``). Everything else is refused with one of the reasons below, each with
the hint that goes into the log line and the validation report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

#: Lowest rate scored: below it P-wave energy (1-10 Hz) is not reliably recorded.
MIN_RATE_HZ = 20.0
#: Highest rate scored (the resampler's filters grow with the ratio).
MAX_RATE_HZ = 1000.0
#: Largest up/down factor of the rational resampling ratio.
MAX_RATIO_TERM = 64
#: Relative rate error taken as clock drift rather than another rate.
RATE_TOLERANCE = 1e-4

#: Last letter of the channel code -> row of the model input (component order Z, N|1, E|2).
COMPONENT_ROW: dict[str, int] = {"Z": 0, "N": 1, "1": 1, "E": 2, "2": 2}
#: SEED instrument codes of velocity sensors: H high-gain seismometer (HH?, BH?, EH?, SH?), P
#: geophone / short-period (DP?, EP?).
VELOCITY_INSTRUMENTS = frozenset("HP")
#: Instrument code of accelerometers (SEED N: HN?, EN?, BN?).
ACCELERATION_INSTRUMENTS = frozenset("N")
#: Low-gain codes: accelerometers on the broadband/high-rate bands H and B (HL?, HG?, BL?, BG?), as
#: ANSS and several networks use them for strong motion; SEED's low-gain seismometer (velocity) on
#: the others (e.g. EL?, SL?).
LOW_GAIN_INSTRUMENTS = frozenset("LG")
STRONG_MOTION_BANDS = frozenset("HB")

VELOCITY, ACCELERATION = "velocity", "acceleration"

#: Rejection reason -> what would fix it (logged once per stream and put in the validation report).
REJECT_HINTS: dict[str, str] = {
    "bad_channel": "channel codes must have 3 characters (band, instrument, component), e.g. HHZ",
    "unknown_component": "the component letter must be Z, N, E, 1 or 2",
    "unsupported_instrument": "only seismometers (instrument codes H, P, and L on bands E/S: HH?, BH?, "
    "EH?, SH?, DP?, EL?) and accelerometers (N, and L/G on bands H/B: HN?, EN?, HL?, HG?) are scored; "
    "select those channels",
    "rate_below_minimum": f"sampling rates below {MIN_RATE_HZ:g} Hz do not record P waves well enough "
    "to be scored; select a higher-rate channel of this station",
    "rate_above_maximum": f"sampling rates above {MAX_RATE_HZ:g} Hz are not taken; decimate upstream "
    "or select a lower-rate channel",
    "unsupported_rate": "the sampling rate has no small rational ratio to the model rate "
    f"(up/down factors <= {MAX_RATIO_TERM}); resample upstream",
    "bad_rate": "the packet's sampling rate is not a positive finite number",
    "non_finite": "samples hold NaN or infinity",
    "empty": "the packet has no samples",
    "future_time": "the packet's time lies far in the future: check the station's clock",
    "too_many_stations": "raise --max-stations or add detector processes",
    "late": "data arrived after its window was scored (raise --buffer-s for slow links)",
    "duplicate": "the same samples arrived twice (harmless)",
}


#: Reasons that refuse a whole stream (its channel code or rate), not one packet.
STREAM_REASONS = frozenset(
    {"bad_channel", "unknown_component", "unsupported_instrument", "rate_below_minimum",
     "rate_above_maximum", "unsupported_rate", "bad_rate"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What a channel code says: model input row and physical quantity."""

    row: int
    quantity: str  # VELOCITY or ACCELERATION


def classify_channel(channel: str) -> ChannelInfo | str:
    """The model row and quantity of a channel code, or the rejection reason."""
    if len(channel) != 3:
        return "bad_channel"
    row = COMPONENT_ROW.get(channel[2].upper())
    if row is None:
        return "unknown_component"
    band, inst = channel[0].upper(), channel[1].upper()
    if inst in VELOCITY_INSTRUMENTS:
        return ChannelInfo(row, VELOCITY)
    if inst in ACCELERATION_INSTRUMENTS:
        return ChannelInfo(row, ACCELERATION)
    if inst in LOW_GAIN_INSTRUMENTS:
        return ChannelInfo(row, ACCELERATION if band in STRONG_MOTION_BANDS else VELOCITY)
    return "unsupported_instrument"


@lru_cache(maxsize=1024)
def resample_ratio(rate_hz: float, model_rate_hz: float) -> tuple[int, int] | str:
    """(up, down) with ``rate * up / down == model rate`` (within drift), or the rejection reason."""
    if not math.isfinite(rate_hz) or rate_hz <= 0:
        return "bad_rate"
    if rate_hz < MIN_RATE_HZ * (1 - RATE_TOLERANCE):
        return "rate_below_minimum"
    if rate_hz > MAX_RATE_HZ * (1 + RATE_TOLERANCE):
        return "rate_above_maximum"
    frac = Fraction(model_rate_hz / rate_hz).limit_denominator(MAX_RATIO_TERM)
    up, down = frac.numerator, frac.denominator
    if up > MAX_RATIO_TERM or abs(rate_hz * up / down - model_rate_hz) > RATE_TOLERANCE * model_rate_hz:
        return "unsupported_rate"
    return up, down


def nominal_rate(rate_hz: float, model_rate_hz: float) -> float | None:
    """The exact rate the ratio stands for (drift removed), or None when the rate is refused."""
    r = resample_ratio(rate_hz, model_rate_hz)
    if isinstance(r, str):
        return None
    up, down = r
    return model_rate_hz * down / up


def scorable(channel: str, rate_hz: float, model_rate_hz: float = 100.0) -> str | None:
    """None when the detector scores this stream, else the rejection reason (see REJECT_HINTS)."""
    info = classify_channel(channel)
    if isinstance(info, str):
        return info
    r = resample_ratio(rate_hz, model_rate_hz)
    return r if isinstance(r, str) else None


def hint(reason: str) -> str:
    """What would fix a rejection reason (empty when there is nothing to say)."""
    return REJECT_HINTS.get(reason, "")
