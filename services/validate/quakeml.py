"""The detections catalogue: every alert event and every station pick as QuakeML (ObsPy).

Alert events are built by the alerting's own QuakeML builder (``services.alerting.quakeml.
alert_to_catalog``, the one subscribers get), from each alert event's last version that is not a
CANCEL; the validation adds a comment with its versions and classification, and an alert that
ended in a CANCEL gets event type "not existing". Every station trigger of the run that is not
already a pick of an alert is a pick of one more event, ``smi:local.eew/validate/station-picks``
(type "not reported"): time = the detector's P pick (phase hint "P"), or, for a trigger without
one of its own (e.g. a re-trigger on S or coda), its trigger onset with no phase hint and the
comment "no P pick: trigger onset"; the trigger's highest station probability is both in a comment
and as ``eew:probability`` (namespace ``NAMESPACE``). An alert's pick stands for at most one
trigger (same station, P within ``SAME_PICK_S``, the first such trigger), so the file holds at least
one pick per station trigger. Creation times are left out, so the file is the same for the same
inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.alerting.association import ScoreRecord
from services.validate.core import NS, ValidationResult, dedupe_scores, station_triggers

NAMESPACE = "https://github.com/eew/eew/xmlns/validate/1"
BASE = "smi:local.eew"
SAME_PICK_S = 0.5


def write_detections(path: Path, result: ValidationResult, scores: Sequence[ScoreRecord] = ()) -> None:
    from obspy import UTCDateTime
    from obspy.core.event import Catalog, Comment, Event, Pick, ResourceIdentifier, WaveformStreamID

    from services.alerting.formats.quakeml import alert_to_catalog
    from services.validate.runner import alert_to_pb

    cat = Catalog(resource_id=ResourceIdentifier(f"{BASE}/validate/detections"),
                  description="eew validate: alert events and station picks")
    in_alert: dict[str, list[int]] = {}
    for a in result.alerts:
        ev = alert_to_catalog(alert_to_pb(a.best)).events[0]
        if a.cancelled:
            ev.event_type = "not existing"
        ev.comments.append(Comment(
            resource_id=ResourceIdentifier(f"{BASE}/validate/comment/{a.event_id}"),
            text=(f"EEW alert {a.event_id}: {len(a.versions)} version(s) ({' '.join(v.kind for v in a.versions)}), "
                  f"max probability {a.max_probability:.3f}; validation: {a.classification}"
                  + (f" (catalogue event {a.matched_event_id})" if a.matched_event_id else "")),
        ))
        for obj in [ev, *ev.origins, *ev.magnitudes]:
            if obj.creation_info is not None:
                obj.creation_info.creation_time = None
        for s in a.best.stations:
            in_alert.setdefault(s.station_id, []).append(s.p_time_ns)
        cat.append(ev)

    cfg = result.config
    picks_ev = Event(resource_id=ResourceIdentifier(f"{BASE}/validate/station-picks"), event_type="not reported")
    picks_ev.comments.append(Comment(
        resource_id=ResourceIdentifier(f"{BASE}/validate/comment/station-picks"),
        text="Every station trigger of the run that is not a pick of an alert above (an alert's pick stands for "
             "one trigger): time = the detector's P pick (phase P), else the trigger onset (no phase: a trigger "
             "without a P pick of its own, e.g. on S or coda); the trigger's highest station probability in "
             "eew:probability."))
    for stream, recs in dedupe_scores(scores).items():
        net, sta, loc, band = stream.split(".")
        for t in station_triggers(recs, cfg.detrigger_s, cfg.trigger_threshold):
            mine = in_alert.get(f"{net}.{sta}", [])
            hit = next((i for i, p in enumerate(mine) if abs(t.p_ns - p) <= SAME_PICK_S * NS), None)
            if hit is not None:
                del mine[hit]  # one alert pick accounts for one trigger
                continue
            p = Pick(
                resource_id=ResourceIdentifier(f"{BASE}/validate/pick/{stream[:-1]}/{t.onset_ns}"),
                time=UTCDateTime(ns=int(t.p_ns)),
                waveform_id=WaveformStreamID(network_code=net, station_code=sta, location_code=loc,
                                             channel_code=band[:-1] + "Z"),
                phase_hint="P" if t.pick_ns is not None else None,
                evaluation_mode="automatic",
                evaluation_status="preliminary",
                comments=[Comment(text=f"station probability {t.probability:.3f}"
                                  + ("" if t.pick_ns is not None else "; no P pick: trigger onset"))],
            )
            p.extra = {"probability": {"value": f"{t.probability:.4f}", "namespace": NAMESPACE}}
            picks_ev.picks.append(p)
    cat.append(picks_ev)
    for ev in cat:  # comments without an id get a random one from ObsPy: give each a stable one
        for obj in [ev, *ev.picks, *ev.origins]:
            for i, c in enumerate(obj.comments):
                if str(c.resource_id).startswith("smi:local/"):
                    c.resource_id = ResourceIdentifier(f"{obj.resource_id}/comment/{i}")
    cat.write(str(path), format="QUAKEML", nsmap={"eew": NAMESPACE})
