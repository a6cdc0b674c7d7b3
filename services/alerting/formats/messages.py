"""Protobuf <-> core records: decode and validate StationScore, build Alert, alert JSON.

JSON schema of a webhook body (``alert_to_json``), schema id ``eew.alert.v1``::

    {
      "schema": "eew.alert.v1",
      "event_id": "eew-20240101T120000-1a2b3c4d",   # stable across versions of one event
      "version": 2,                                  # 1 = NEW, +1 per UPDATE/CANCEL
      "type": "NEW" | "UPDATE" | "CANCEL",
      "origin_time": "2024-01-01T12:00:00.123Z",     # ISO-8601 UTC (first P until located)
      "first_p_time": "2024-01-01T12:00:00.123Z",
      "probability": 0.93,                           # event probability, 0 on CANCEL
      "stations": [{"network": "CI", "station": "PAS", "location": "",
                    "p_time": "...Z", "probability": 0.97,
                    "latitude": 34.1, "longitude": -118.2}],   # lat/lon null when unknown
      "location": {"latitude": .., "longitude": .., "depth_km": .., "uncertainty_km": ..,
                   "uncertain": false} | null,
      "magnitude": {"value": .., "uncertainty": .., "type": "Mpd" | "Mpd_uncal",
                    "lower_bound": false} | null,
      "created_time": "...Z",                        # wall clock when this version was made
      "reason": "4 stations triggered"
    }

Field notes: ``location.uncertainty_km`` is the radius of the 95 % region of the grid search
(``association/locate.py``); ``magnitude`` is present once the event is located and at least one station with a
known gain has >= 1 s of P (``association/magnitude.py``): ``value`` the mean station Pd magnitude (Wu & Zhao
2006), ``uncertainty`` one standard deviation, ``type`` "Mpd" (calibrated gains) or "Mpd_uncal"
(a configured nominal gain, no per-station calibration), ``lower_bound`` true whenever the P windows
behind it are too short for the rupture of an earthquake that large (``association/magnitude.py``: saturation):
the event may be larger. ``location.uncertain`` is true when the location is published although its
95 % uncertainty exceeds ``--locate-max-uncertainty-km`` (or its 95 % region reaches the grid edge):
subscribers get it, with that uncertainty, rather than no location.

The HTTP request carries ``Idempotency-Key: <event_id>:<version>``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf.message import DecodeError as PbDecodeError

from services.alerting.association import AlertKind, AlertRecord, Contribution, ScoreRecord
from services.alerting.association.locate import Location
from services.alerting.association.magnitude import MagnitudeEstimate
from services.common.domain import station_id
from services.common.exceptions import DecodeError
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import ns_to_iso

SCHEMA_VERSION = 1
JSON_SCHEMA_ID = "eew.alert.v1"

_KIND_TO_PB = {
    AlertKind.NEW: pb.ALERT_TYPE_NEW,
    AlertKind.UPDATE: pb.ALERT_TYPE_UPDATE,
    AlertKind.CANCEL: pb.ALERT_TYPE_CANCEL,
}
PB_TO_KIND = {v: k for k, v in _KIND_TO_PB.items()}


def score_to_record(msg: pb.StationScore) -> ScoreRecord:
    """Validate a parsed StationScore; raise DecodeError(reason) when it cannot be used."""
    if msg.schema_version != SCHEMA_VERSION:
        raise DecodeError("schema_version", f"got {msg.schema_version}")
    if not msg.network or not msg.station:
        raise DecodeError("missing_id", "network and station are required")
    if not math.isfinite(msg.probability) or not 0.0 <= msg.probability <= 1.0:
        raise DecodeError("bad_probability", str(msg.probability))
    if msg.window_end_time_ns <= 0 or msg.window_start_time_ns > msg.window_end_time_ns:
        raise DecodeError("bad_window", f"{msg.window_start_time_ns}..{msg.window_end_time_ns}")
    amp = float(msg.peak_amplitude)
    if not math.isfinite(amp):
        raise DecodeError("bad_amplitude", str(amp))
    # Peak displacement (counts*s) for the Pd magnitude: read when the schema has the field (a
    # proposed StationScore addition); absent or non-finite -> 0, i.e. no magnitude from this score.
    disp = float(getattr(msg, "peak_displacement", 0.0))
    if not math.isfinite(disp) or disp < 0:
        disp = 0.0
    return ScoreRecord(
        network=msg.network,
        station=msg.station,
        location=msg.location,
        channel_prefix=msg.channel_prefix,
        window_start_ns=msg.window_start_time_ns,
        window_end_ns=msg.window_end_time_ns,
        probability=float(msg.probability),
        triggered=bool(msg.triggered),
        p_onset_ns=msg.p_onset_time_ns if msg.has_p_onset else None,
        p_onset_probability=float(msg.p_onset_probability),
        peak_amplitude=amp,
        ingest_time_ns=msg.ingest_time_ns,
        scored_time_ns=msg.scored_time_ns,
        peak_displacement=disp,
        # The detector's trigger on a new P onset (issue 13): read when the schema has the field.
        new_trigger=bool(getattr(msg, "new_trigger", False)),
    )


def record_to_score(
    rec: ScoreRecord, model_id: str = "synthetic", model_version: str = "0"
) -> pb.StationScore:
    """A StationScore message for a record (synthetic inputs for tests and demos)."""
    msg = pb.StationScore(
        schema_version=SCHEMA_VERSION,
        network=rec.network,
        station=rec.station,
        location=rec.location,
        channel_prefix=rec.channel_prefix,
        window_start_time_ns=rec.window_start_ns,
        window_end_time_ns=rec.window_end_ns,
        probability=rec.probability,
        triggered=rec.triggered,
        has_p_onset=rec.p_onset_ns is not None,
        p_onset_time_ns=rec.p_onset_ns or 0,
        p_onset_probability=rec.p_onset_probability,
        model_id=model_id,
        model_version=model_version,
        ingest_time_ns=rec.ingest_time_ns,
        scored_time_ns=rec.scored_time_ns,
        peak_amplitude=rec.peak_amplitude,
        components=3,
    )
    if rec.new_trigger and "new_trigger" in pb.StationScore.DESCRIPTOR.fields_by_name:
        msg.new_trigger = True
    return msg


def decode_score(raw: bytes | None) -> ScoreRecord:
    """Parse and validate a serialised StationScore."""
    if raw is None:
        raise DecodeError("empty", "null value")
    msg = pb.StationScore()
    try:
        msg.ParseFromString(raw)
    except (PbDecodeError, ValueError, TypeError) as exc:
        raise DecodeError("malformed_protobuf", str(exc)) from exc
    return score_to_record(msg)


def alert_to_pb(alert: AlertRecord, created_time_ns: int) -> pb.Alert:
    """The Alert message for one alert record, stamped with its created time."""
    msg = pb.Alert(
        schema_version=SCHEMA_VERSION,
        event_id=alert.event_id,
        version=alert.version,
        type=_KIND_TO_PB[alert.kind],
        origin_time_ns=alert.origin_time_ns,
        probability=alert.probability,
        has_location=alert.location is not None,
        has_magnitude=alert.magnitude is not None,
        created_time_ns=created_time_ns,
        first_p_time_ns=alert.first_p_time_ns,
        latest_ingest_time_ns=alert.latest_ingest_time_ns,
        reason=alert.reason,
        decision_time_ns=alert.event_time_ns,
        azimuthal_gap_deg=alert.gap_deg if alert.gap_deg is not None else math.nan,
    )
    if alert.location is not None:
        loc = alert.location
        msg.latitude, msg.longitude, msg.depth_km = loc.latitude, loc.longitude, loc.depth_km
        msg.location_uncertainty_km = loc.uncertainty_km
        msg.origin_time_uncertainty_s = loc.origin_time_uncertainty_s
        msg.location_uncertain = alert.location_uncertain
    if alert.magnitude is not None:
        mag = alert.magnitude
        msg.magnitude, msg.magnitude_uncertainty = mag.value, mag.uncertainty
        msg.magnitude_type = mag.magnitude_type
        msg.magnitude_station_count = mag.n_stations
        msg.magnitude_lower_bound = mag.saturated
    for c in alert.stations:
        msg.stations.append(
            pb.StationContribution(
                network=c.network,
                station=c.station,
                location=c.location,
                p_time_ns=c.p_time_ns,
                probability=c.probability,
                latitude=c.latitude if c.latitude is not None else math.nan,
                longitude=c.longitude if c.longitude is not None else math.nan,
            )
        )
    return msg


def pb_to_record(msg: pb.Alert) -> AlertRecord:
    """Inverse of ``alert_to_pb`` (NaN coordinates mean unknown)."""
    return AlertRecord(
        event_id=msg.event_id,
        version=msg.version,
        kind=PB_TO_KIND.get(msg.type, AlertKind.UPDATE),
        origin_time_ns=msg.origin_time_ns,
        first_p_time_ns=msg.first_p_time_ns,
        probability=float(msg.probability),
        stations=tuple(
            Contribution(
                network=s.network,
                station=s.station,
                location=s.location,
                p_time_ns=s.p_time_ns,
                probability=float(s.probability),
                latitude=None if math.isnan(s.latitude) else s.latitude,
                longitude=None if math.isnan(s.longitude) else s.longitude,
            )
            for s in msg.stations
        ),
        latest_ingest_time_ns=msg.latest_ingest_time_ns,
        reason=msg.reason,
        event_time_ns=msg.decision_time_ns,
        gap_deg=None if math.isnan(msg.azimuthal_gap_deg) or not msg.has_location else msg.azimuthal_gap_deg,
        location_uncertain=msg.has_location and msg.location_uncertain,
        location=(
            Location(
                msg.latitude,
                msg.longitude,
                msg.depth_km,
                msg.origin_time_ns,
                msg.location_uncertainty_km,
                0.0,
                len(msg.stations),
                msg.origin_time_uncertainty_s,
            )
            if msg.has_location
            else None
        ),
        magnitude=(
            MagnitudeEstimate(
                value=msg.magnitude,
                uncertainty=msg.magnitude_uncertainty,
                magnitude_type=msg.magnitude_type,
                n_stations=msg.magnitude_station_count,
                saturated=msg.magnitude_lower_bound,
                window_s=0.0,
            )
            if msg.has_magnitude
            else None
        ),
    )


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def alert_to_dict(msg: pb.Alert) -> dict[str, Any]:
    """The documented JSON object (see the module docstring) for one Alert message."""
    kind = PB_TO_KIND.get(msg.type)
    return {
        "schema": JSON_SCHEMA_ID,
        "event_id": msg.event_id,
        "version": msg.version,
        "type": kind.value if kind else "UNSPECIFIED",
        "origin_time": ns_to_iso(msg.origin_time_ns),
        "first_p_time": ns_to_iso(msg.first_p_time_ns),
        "probability": round(float(msg.probability), 4),
        "stations": [
            {
                "network": s.network,
                "station": s.station,
                "location": s.location,
                "p_time": ns_to_iso(s.p_time_ns),
                "probability": round(float(s.probability), 4),
                "latitude": _num(s.latitude),
                "longitude": _num(s.longitude),
            }
            for s in msg.stations
        ],
        "location": (
            {
                "latitude": _num(msg.latitude),
                "longitude": _num(msg.longitude),
                "depth_km": _num(msg.depth_km),
                "uncertainty_km": _num(msg.location_uncertainty_km),
                "uncertain": bool(msg.location_uncertain),
            }
            if msg.has_location
            else None
        ),
        "magnitude": (
            {
                "value": _num(msg.magnitude),
                "uncertainty": _num(msg.magnitude_uncertainty),
                "type": msg.magnitude_type,
                "lower_bound": bool(msg.magnitude_lower_bound),
            }
            if msg.has_magnitude
            else None
        ),
        "created_time": ns_to_iso(msg.created_time_ns),
        "reason": msg.reason,
    }


def alert_to_json(msg: pb.Alert) -> bytes:
    return json.dumps(alert_to_dict(msg), separators=(",", ":"), allow_nan=False).encode()


def alert_line(msg: pb.Alert) -> str:
    """One readable log line per alert."""
    kind = PB_TO_KIND.get(msg.type)
    stas = ",".join(station_id(s.network, s.station) for s in msg.stations)
    return (
        f"ALERT {kind.value if kind else '?'} {msg.event_id} v{msg.version} "
        f"first_P={ns_to_iso(msg.first_p_time_ns)} p={msg.probability:.3f} "
        f"stations({len(msg.stations)})={stas}"
        + (
            f" origin={ns_to_iso(msg.origin_time_ns)} at {msg.latitude:.3f},{msg.longitude:.3f} "
            f"{msg.depth_km:.0f} km (+-{msg.location_uncertainty_km:.0f} km)"
            if msg.has_location
            else ""
        )
        + (
            f" {msg.magnitude_type}={msg.magnitude:.1f}+-{msg.magnitude_uncertainty:.1f}"
            if msg.has_magnitude
            else ""
        )
        + (f" reason={msg.reason!r}" if msg.reason else "")
    )
