"""The detections catalogue: every alert event as a QuakeML event (ObsPy), readable by other tools.

One event per alert event id, from its last version that is not a CANCEL: the P picks of its
stations, an origin (the alert's epicentre when it has one; otherwise the position of its earliest
station with coordinates, flagged in a comment, since the alerting does not locate yet), the
magnitude when the alert has one. Alerts that ended in a CANCEL get event type "not existing".
Comments carry the probability, the versions and the validation's classification. Every object
has an explicit resource id and no creation time, so the file is the same for the same inputs.
"""

from __future__ import annotations

import math
from pathlib import Path

from services.validate.core import ValidationResult


def write_detections(path: Path, result: ValidationResult) -> None:
    from obspy import UTCDateTime
    from obspy.core.event import (
        Arrival,
        Catalog,
        Comment,
        CreationInfo,
        Event,
        Magnitude,
        Origin,
        OriginUncertainty,
        Pick,
        ResourceIdentifier,
        WaveformStreamID,
    )

    def rid(*parts: str) -> ResourceIdentifier:
        return ResourceIdentifier("smi:eew/" + "/".join(parts))

    info = CreationInfo(agency_id="EEW", author="eew validate")
    cat = Catalog(resource_id=rid("validate", "detections"), description="eew validate: alert events",
                  creation_info=info)
    for a in result.alerts:
        b = a.best
        eid = a.event_id
        ev = Event(resource_id=rid("event", eid), creation_info=info,
                   event_type="not existing" if a.cancelled else "earthquake",
                   event_type_certainty="suspected")
        ev.comments.append(Comment(
            resource_id=rid("comment", eid, "alert"),
            text=(f"EEW alert {eid}: {len(a.versions)} version(s) ({' '.join(v.kind for v in a.versions)}), "
                  f"max probability {a.max_probability:.3f}; validation: {a.classification}"
                  + (f" (catalogue event {a.matched_event_id})" if a.matched_event_id else "")),
        ))
        for s in b.stations:
            p = Pick(
                resource_id=rid("pick", eid, s.network, s.station, s.location or "--"),
                time=UTCDateTime(ns=int(s.p_time_ns)),
                waveform_id=WaveformStreamID(network_code=s.network, station_code=s.station,
                                             location_code=s.location),
                phase_hint="P",
                evaluation_mode="automatic",
                creation_info=info,
            )
            ev.picks.append(p)
        lat = lon = None
        note = ""
        if b.has_location and math.isfinite(b.latitude) and math.isfinite(b.longitude):
            lat, lon = b.latitude, b.longitude
        else:
            first = sorted((s for s in b.stations if s.latitude is not None and s.longitude is not None),
                           key=lambda s: (s.p_time_ns, s.station_id))
            if first:
                lat, lon = first[0].latitude, first[0].longitude
                note = (f"epicentre not estimated by the alerting: position of the earliest station "
                        f"{first[0].station_id}; origin time = first P time")
        if lat is not None and lon is not None:
            o = Origin(
                resource_id=rid("origin", eid),
                time=UTCDateTime(ns=int(b.origin_time_ns)),
                latitude=float(lat),
                longitude=float(lon),
                evaluation_mode="automatic",
                creation_info=info,
            )
            if b.has_location and math.isfinite(b.depth_km):
                o.depth = float(b.depth_km) * 1000.0
            if b.has_location and math.isfinite(b.location_uncertainty_km):
                o.origin_uncertainty = OriginUncertainty(
                    horizontal_uncertainty=float(b.location_uncertainty_km) * 1000.0,
                    preferred_description="horizontal uncertainty",
                )
            if note:
                o.comments.append(Comment(resource_id=rid("comment", eid, "origin"), text=note))
            for p in ev.picks:
                o.arrivals.append(Arrival(resource_id=rid("arrival", *str(p.resource_id).split("/")[2:]),
                                          pick_id=p.resource_id, phase="P"))
            ev.origins.append(o)
            ev.preferred_origin_id = o.resource_id
            if b.has_magnitude and math.isfinite(b.magnitude):
                m = Magnitude(resource_id=rid("magnitude", eid), mag=float(b.magnitude),
                              magnitude_type=b.magnitude_type or None, origin_id=o.resource_id,
                              evaluation_mode="automatic", creation_info=info)
                ev.magnitudes.append(m)
                ev.preferred_magnitude_id = m.resource_id
        cat.append(ev)
    cat.write(str(path), format="QUAKEML")
