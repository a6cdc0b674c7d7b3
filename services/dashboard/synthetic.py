"""Scores and alert versions of one earthquake, shifted to a chosen time (browser tests, benchmark).

Built from an event description like the demo's shipped ``services/demo/data/synthetic/event.json``
(epicentre, depth, stations with their P times): stations score once a second, trigger at their P,
and the alert goes NEW (first stations, not located) -> UPDATE (located) -> UPDATE (magnitude) as
the real alerting does, so the page can be driven without running the detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.alerting.association import ScoreRecord
from services.alerting.formats.messages import record_to_score
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import now_ns

NS = 1_000_000_000


@dataclass(frozen=True)
class QuakeStation:
    network: str
    station: str
    latitude: float
    longitude: float
    p_offset_s: float  # P arrival after the origin


def score(network: str, station: str, window_end_ns: int, probability: float = 0.02,
          p_onset_ns: int | None = None, scored_ns: int | None = None) -> pb.StationScore:
    """One StationScore for the second ending at ``window_end_ns``."""
    scored = now_ns() if scored_ns is None else scored_ns
    rec = ScoreRecord(
        network=network, station=station, location="", channel_prefix="HH",
        window_start_ns=window_end_ns - NS, window_end_ns=window_end_ns, probability=probability,
        triggered=probability >= 0.5, p_onset_ns=p_onset_ns, p_onset_probability=probability if p_onset_ns else 0.0,
        ingest_time_ns=scored - 50_000_000, scored_time_ns=scored,
    )
    return record_to_score(rec, model_id="synthetic", model_version="0")


def alert_versions(
    event_id: str, origin_ns: int, latitude: float, longitude: float, depth_km: float, magnitude: float,
    stations: list[QuakeStation],
) -> list[pb.Alert]:
    """NEW with the first three stations, UPDATE located with all, UPDATE with the magnitude."""
    order = sorted(stations, key=lambda s: s.p_offset_s)
    p_ns = {s.station: origin_ns + int(s.p_offset_s * NS) for s in order}

    def contributions(members: list[QuakeStation]) -> list[pb.StationContribution]:
        return [pb.StationContribution(network=s.network, station=s.station, p_time_ns=p_ns[s.station],
                                       probability=0.95, latitude=s.latitude, longitude=s.longitude)
                for s in members]

    first = p_ns[order[0].station]
    out = []
    steps = [(order[:3], False, False, "3 stations triggered"),
             (order, True, False, f"located with {len(order)} stations"),
             (order, True, True, "magnitude from P displacement")]
    for k, (members, located, with_mag, reason) in enumerate(steps, start=1):
        decided = max(p_ns[s.station] for s in members) + (k - 1) * NS
        a = pb.Alert(
            schema_version=1, event_id=event_id, version=k,
            type=pb.ALERT_TYPE_NEW if k == 1 else pb.ALERT_TYPE_UPDATE,
            origin_time_ns=origin_ns if located else first, probability=0.9 + 0.03 * k,
            first_p_time_ns=first, created_time_ns=now_ns(), latest_ingest_time_ns=now_ns() - 200_000_000,
            decision_time_ns=decided, reason=reason,
        )
        a.stations.extend(contributions(members))
        if located:
            a.has_location, a.latitude, a.longitude, a.depth_km = True, latitude, longitude, depth_km
            a.location_uncertainty_km = 6.0
        if with_mag:
            a.has_magnitude, a.magnitude, a.magnitude_uncertainty, a.magnitude_type = True, magnitude, 0.3, "Mpd"
        out.append(a)
    return out
