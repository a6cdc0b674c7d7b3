"""Alert messages as the scoring core's ``AlertVersion`` and back (the topic's protobuf <-> plain data)."""

from __future__ import annotations

import math

from services.alerting.formats.messages import PB_TO_KIND
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.validate.core import AlertStation, AlertVersion


def alert_from_pb(msg: pb.Alert) -> AlertVersion:
    """An Alert message as the scoring core's AlertVersion (NaN coordinates mean unknown)."""
    kind = PB_TO_KIND.get(msg.type)

    def coord(x: float) -> float | None:
        return None if not math.isfinite(x) else float(x)

    return AlertVersion(
        event_id=msg.event_id,
        version=int(msg.version),
        kind=kind.value if kind else "UPDATE",
        origin_time_ns=int(msg.origin_time_ns),
        first_p_time_ns=int(msg.first_p_time_ns),
        probability=float(msg.probability),
        stations=tuple(
            AlertStation(s.network, s.station, s.location, int(s.p_time_ns), float(s.probability),
                         coord(s.latitude), coord(s.longitude))
            for s in msg.stations
        ),
        has_location=bool(msg.has_location),
        latitude=float(msg.latitude) if msg.has_location else math.nan,
        longitude=float(msg.longitude) if msg.has_location else math.nan,
        depth_km=float(msg.depth_km) if msg.has_location else math.nan,
        location_uncertainty_km=float(msg.location_uncertainty_km) if msg.has_location else math.nan,
        has_magnitude=bool(msg.has_magnitude),
        magnitude=float(msg.magnitude) if msg.has_magnitude else math.nan,
        magnitude_type=msg.magnitude_type,
        created_time_ns=int(msg.created_time_ns),
        latest_ingest_time_ns=int(msg.latest_ingest_time_ns),
        reason=msg.reason,
        decision_time_ns=int(msg.decision_time_ns),
        magnitude_uncertainty=float(msg.magnitude_uncertainty) if msg.has_magnitude else math.nan,
        location_uncertain=bool(msg.location_uncertain),
        magnitude_lower_bound=bool(msg.magnitude_lower_bound),
    )


def alert_to_pb(v: AlertVersion) -> pb.Alert:
    """The Alert message of an AlertVersion (inverse of ``alert_from_pb``; NaN for unknown coordinates)."""
    kind = {"NEW": pb.ALERT_TYPE_NEW, "UPDATE": pb.ALERT_TYPE_UPDATE, "CANCEL": pb.ALERT_TYPE_CANCEL}
    msg = pb.Alert(
        schema_version=1, event_id=v.event_id, version=v.version, type=kind.get(v.kind, pb.ALERT_TYPE_UPDATE),
        origin_time_ns=v.origin_time_ns, probability=v.probability, has_location=v.has_location,
        latitude=v.latitude, longitude=v.longitude, depth_km=v.depth_km,
        location_uncertainty_km=v.location_uncertainty_km, has_magnitude=v.has_magnitude,
        magnitude=v.magnitude, magnitude_uncertainty=v.magnitude_uncertainty, magnitude_type=v.magnitude_type,
        created_time_ns=v.created_time_ns, first_p_time_ns=v.first_p_time_ns,
        latest_ingest_time_ns=v.latest_ingest_time_ns, reason=v.reason, decision_time_ns=v.decision_time_ns,
        location_uncertain=v.location_uncertain, magnitude_lower_bound=v.magnitude_lower_bound,
    )
    for s in v.stations:
        msg.stations.add(network=s.network, station=s.station, location=s.location, p_time_ns=s.p_time_ns,
                         probability=s.probability,
                         latitude=math.nan if s.latitude is None else s.latitude,
                         longitude=math.nan if s.longitude is None else s.longitude)
    return msg
