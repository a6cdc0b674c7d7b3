"""QuakeML 1.2 for alerts, built as an ObsPy ``Catalog`` (one Event per alert version).

Mapping: Event ``smi:<authority>/event/<event_id>`` (type ``earthquake``, certainty ``known`` at
probability >= 0.95 else ``suspected``; a CANCEL is type ``not existing``), creation_info.version
= the alert version; one automatic, preliminary P Pick per contributing station (its probability
in a comment); when located an Origin (time, latitude, longitude, depth in m, horizontal
uncertainty at 95 % confidence, P arrivals referring to the picks) and, with a magnitude, a
Magnitude referring to it. ObsPy writes the XML (``alert_to_quakeml``); ``obspy.read_events``
reads it back.

One builder for the alerting (subscribers' QuakeML) and ``eew validate`` (its detections.xml):
``station_pick`` makes every pick, ``alert_event`` every alert event. Every resource id is stable
(derived from the event id, version, station and time), comments included, so the same alert gives
the same document (ObsPy would give a comment without an id a random one); ``creation_times=False``
leaves the creation times out, for files that must be identical for identical inputs.
"""

from __future__ import annotations

import io
import math

from obspy import UTCDateTime
from obspy.core.event import (
    Arrival,
    Catalog,
    Comment,
    CreationInfo,
    Event,
    Magnitude,
    Origin,
    OriginQuality,
    OriginUncertainty,
    Pick,
    QuantityError,
    ResourceIdentifier,
    WaveformStreamID,
)

from services.common.pb.eew.v1 import messages_pb2 as pb

QUAKEML_MIME = "application/xml"
DEFAULT_AUTHORITY = "local.eew"
_TYPE = {pb.ALERT_TYPE_NEW: "NEW", pb.ALERT_TYPE_UPDATE: "UPDATE", pb.ALERT_TYPE_CANCEL: "CANCEL"}


def _t(ns: int) -> UTCDateTime:
    return UTCDateTime(ns=int(ns))


def comment(text: str, resource_id: str) -> Comment:
    """A comment with a stable id (ObsPy would give it a random one)."""
    return Comment(text=text, resource_id=ResourceIdentifier(resource_id))


def station_pick(
    pick_id: str,
    network: str,
    station: str,
    location: str,
    time_ns: int,
    probability: float,
    channel: str | None = None,
    phase_hint: str | None = "P",
    note: str = "",
) -> Pick:
    """An automatic, preliminary pick of one station (its probability in a comment with a stable id);
    ``phase_hint`` None for a pick that is a trigger onset rather than a P pick."""
    return Pick(
        resource_id=ResourceIdentifier(pick_id),
        time=_t(time_ns),
        waveform_id=WaveformStreamID(
            network_code=network, station_code=station, location_code=location, channel_code=channel
        ),
        phase_hint=phase_hint,
        evaluation_mode="automatic",
        evaluation_status="preliminary",
        comments=[comment(f"station probability {probability:.3f}" + (f"; {note}" if note else ""),
                          f"{pick_id}/comment/0")],
    )


def alert_event(
    msg: pb.Alert, authority: str = DEFAULT_AUTHORITY, agency_id: str = "EEW", creation_times: bool = True
) -> Event:
    """The QuakeML Event of one alert version (see the module docstring)."""
    base = f"smi:{authority}"
    eid = msg.event_id
    info = CreationInfo(
        agency_id=agency_id,
        author="eew-alerting",
        creation_time=_t(msg.created_time_ns) if creation_times else None,
        version=str(msg.version),
    )
    cancel = msg.type == pb.ALERT_TYPE_CANCEL
    ev = Event(
        resource_id=ResourceIdentifier(f"{base}/event/{eid}"),
        event_type="not existing" if cancel else "earthquake",
        event_type_certainty="known" if msg.probability >= 0.95 else "suspected",
        creation_info=info,
    )
    ev.comments.append(
        comment(
            f"EEW {_TYPE.get(msg.type, '?')} version {msg.version}, probability "
            f"{msg.probability:.3f}" + (f": {msg.reason}" if msg.reason else ""),
            f"{base}/comment/{eid}/{msg.version}",
        )
    )
    picks: dict[str, Pick] = {}
    for s in msg.stations:
        key = f"{s.network}.{s.station}.{s.location}"
        pick = station_pick(f"{base}/pick/{eid}/{key}", s.network, s.station, s.location, s.p_time_ns,
                            s.probability)
        picks[key] = pick
        ev.picks.append(pick)
    if msg.has_location and math.isfinite(msg.latitude) and math.isfinite(msg.longitude):
        origin = Origin(
            resource_id=ResourceIdentifier(f"{base}/origin/{eid}/{msg.version}"),
            time=_t(msg.origin_time_ns),
            latitude=float(msg.latitude),
            longitude=float(msg.longitude),
            depth=float(msg.depth_km) * 1000.0,
            depth_type="from location",
            evaluation_mode="automatic",
            evaluation_status="preliminary",
            method_id=ResourceIdentifier(f"{base}/method/grid-search-p"),
            quality=OriginQuality(used_station_count=len(msg.stations), used_phase_count=len(msg.stations)),
            creation_info=info.copy(),
        )
        if math.isfinite(msg.location_uncertainty_km):
            origin.origin_uncertainty = OriginUncertainty(
                horizontal_uncertainty=float(msg.location_uncertainty_km) * 1000.0,
                preferred_description="horizontal uncertainty",
                confidence_level=95.0,
            )
        for key, pick in picks.items():
            origin.arrivals.append(
                Arrival(
                    resource_id=ResourceIdentifier(f"{base}/arrival/{eid}/{msg.version}/{key}"),
                    pick_id=pick.resource_id,
                    phase="P",
                )
            )
        ev.origins.append(origin)
        ev.preferred_origin_id = origin.resource_id
        if msg.has_magnitude and math.isfinite(msg.magnitude):
            mag = Magnitude(
                resource_id=ResourceIdentifier(f"{base}/magnitude/{eid}/{msg.version}"),
                mag=float(msg.magnitude),
                magnitude_type=msg.magnitude_type or "M",
                origin_id=origin.resource_id,
                station_count=len(msg.stations),
                evaluation_mode="automatic",
                evaluation_status="preliminary",
                creation_info=info.copy(),
            )
            if math.isfinite(msg.magnitude_uncertainty) and msg.magnitude_uncertainty > 0:
                mag.mag_errors = QuantityError(uncertainty=float(msg.magnitude_uncertainty))
            ev.magnitudes.append(mag)
            ev.preferred_magnitude_id = mag.resource_id
    return ev


def alert_to_catalog(msg: pb.Alert, authority: str = DEFAULT_AUTHORITY, agency_id: str = "EEW") -> Catalog:
    """The ObsPy Catalog (one Event) for one alert version."""
    base = f"smi:{authority}"
    ev = alert_event(msg, authority, agency_id)
    return Catalog(
        events=[ev],
        resource_id=ResourceIdentifier(f"{base}/catalog/{msg.event_id}/{msg.version}"),
        creation_info=ev.creation_info.copy(),
        description=f"EEW alert {msg.event_id} version {msg.version}",
    )


def alert_to_quakeml(msg: pb.Alert, authority: str = DEFAULT_AUTHORITY) -> bytes:
    """QuakeML 1.2 (UTF-8 bytes) for one alert version, written by ObsPy."""
    buf = io.BytesIO()
    alert_to_catalog(msg, authority).write(buf, format="QUAKEML")
    return buf.getvalue()
