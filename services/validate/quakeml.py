"""The detections catalogue: every alert event and every station pick as QuakeML (ObsPy).

Alert events and picks are built by the one QuakeML builder (``services.alerting.formats.quakeml``:
``alert_event``, the event subscribers get, and ``station_pick``; every id stable), alert events from
each alert event's last version that is not a CANCEL; the validation adds a comment with its versions and classification, and an alert that
ended in a CANCEL gets event type "not existing". Every station trigger of the run that is not
already a pick of an alert is a pick of one more event, ``smi:local.eew/validate/station-picks``
(type "not reported"; triggers by the shared rule, ``services.validate.core.station_triggers``):
time = its P pick (phase hint "P"), or, for a trigger without one of its own (e.g. a re-trigger on
S or coda), the rule's coarse P (the start of its triggering window) with no phase hint and the
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
from services.common.domain import StreamId
from services.validate.core import NS, ValidationResult, dedupe_scores, station_triggers

NAMESPACE = "https://github.com/eew/eew/xmlns/validate/1"
BASE = "smi:local.eew"
SAME_PICK_S = 0.5


def write_detections(path: Path, result: ValidationResult, scores: Sequence[ScoreRecord] = ()) -> None:
    from obspy.core.event import Catalog, Event, ResourceIdentifier

    from services.alerting.formats.quakeml import alert_event, comment, station_pick
    from services.validate.alerts import alert_to_pb

    cat = Catalog(resource_id=ResourceIdentifier(f"{BASE}/validate/detections"),
                  description="eew validate: alert events and station picks")
    in_alert: dict[str, list[int]] = {}
    for a in result.alerts:
        ev = alert_event(alert_to_pb(a.best), creation_times=False)
        if a.cancelled:
            ev.event_type = "not existing"
        ev.comments.append(comment(
            f"EEW alert {a.event_id}: {len(a.versions)} version(s) ({' '.join(v.kind for v in a.versions)}), "
            f"max probability {a.max_probability:.3f}; validation: {a.classification}"
            + (f" (catalogue event {a.matched_event_id})" if a.matched_event_id else ""),
            f"{BASE}/validate/comment/{a.event_id}",
        ))
        for s in a.best.stations:
            in_alert.setdefault(s.station_id, []).append(s.p_time_ns)
        cat.append(ev)

    cfg = result.config
    picks_ev = Event(resource_id=ResourceIdentifier(f"{BASE}/validate/station-picks"), event_type="not reported")
    picks_ev.comments.append(comment(
        "Every station trigger of the run that is not a pick of an alert above (an alert's pick stands for "
        "one trigger): time = the detector's P pick (phase P), else the trigger's coarse P, the start of its "
        "triggering window (no phase: a trigger without a P pick of its own, e.g. on S or coda); the trigger's highest station probability in "
        "eew:probability.", f"{BASE}/validate/comment/station-picks"))
    for stream, recs in dedupe_scores(scores).items():
        sid = StreamId.parse(stream)
        for t in station_triggers(recs, cfg.trigger):
            mine = in_alert.get(sid.station_id, [])
            hit = next((i for i, p in enumerate(mine) if abs(t.p_ns - p) <= SAME_PICK_S * NS), None)
            if hit is not None:
                del mine[hit]  # one alert pick accounts for one trigger
                continue
            p = station_pick(
                f"{BASE}/validate/pick/{stream[:-1]}/{t.onset_ns}", sid.network, sid.station, sid.location,
                t.p_ns, t.probability, channel=sid.band_instrument + "Z",
                phase_hint="P" if t.pick_ns is not None else None,
                note="" if t.pick_ns is not None else "no P pick: trigger onset",
            )
            p.extra = {"probability": {"value": f"{t.probability:.4f}", "namespace": NAMESPACE}}
            picks_ev.picks.append(p)
    cat.append(picks_ev)
    cat.write(str(path), format="QUAKEML", nsmap={"eew": NAMESPACE})
