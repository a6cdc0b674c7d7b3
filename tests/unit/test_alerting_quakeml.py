"""The one QuakeML builder (``services.alerting.formats.quakeml``): stable ids everywhere, so the
subscribers' document and validate's detections.xml are the same for the same alert."""

from __future__ import annotations

import io

from obspy import read_events

from services.alerting.formats.quakeml import alert_event, alert_to_quakeml, station_pick
from services.common.pb.eew.v1 import messages_pb2 as pb
from tests.unit.test_alerting_cap import alert_msg


def test_same_alert_same_document() -> None:
    """No random ids (ObsPy gives a comment without an id a random one): byte-identical output."""
    msg = alert_msg(2, pb.ALERT_TYPE_UPDATE)
    assert alert_to_quakeml(msg) == alert_to_quakeml(msg)
    ev = read_events(io.BytesIO(alert_to_quakeml(msg)), format="QUAKEML")[0]
    for p in ev.picks:
        assert [str(c.resource_id) for c in p.comments] == [f"{p.resource_id}/comment/0"]
    assert not any(str(c.resource_id).startswith("smi:local/") for c in ev.comments)


def test_station_pick_and_creation_times() -> None:
    p = station_pick("smi:x/pick/1", "XA", "S01", "00", 1_700_000_000_250_000_000, 0.91, channel="HHZ",
                     phase_hint=None, note="no P pick: trigger onset")
    assert p.time.ns == 1_700_000_000_250_000_000 and p.phase_hint is None
    assert p.waveform_id.get_seed_string() == "XA.S01.00.HHZ"
    assert p.comments[0].text == "station probability 0.910; no P pick: trigger onset"
    ev = alert_event(alert_msg(1), creation_times=False)
    assert ev.creation_info.creation_time is None and ev.origins[0].creation_info.creation_time is None
    assert alert_event(alert_msg(1)).creation_info.creation_time is not None
