"""Pure helpers of a validation run: Alert message conversion (``services.validate.alerts``), the
progress line, metrics scraping and the failed-services rule (``services.pipeline``)."""

from __future__ import annotations

import io
import math

from services.broker.embedded import free_port
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.pipeline.metrics import scrape
from services.pipeline.run import Progress
from services.validate.alerts import alert_from_pb, alert_to_pb


def test_alert_from_pb_keeps_every_field_and_unknown_coordinates() -> None:
    msg = pb.Alert(schema_version=1, event_id="e", version=2, type=pb.ALERT_TYPE_UPDATE, origin_time_ns=10,
                   first_p_time_ns=12, probability=0.5, has_location=True, latitude=1.5, longitude=2.5,
                   depth_km=7.0, location_uncertainty_km=3.0, has_magnitude=True, magnitude=4.2,
                   magnitude_type="Mpd", created_time_ns=99, latest_ingest_time_ns=90, reason="r",
                   decision_time_ns=11, location_uncertain=True, magnitude_lower_bound=True)
    msg.stations.append(pb.StationContribution(network="XX", station="A", location="", p_time_ns=12,
                                               probability=0.9, latitude=math.nan, longitude=math.nan))
    msg.stations.append(pb.StationContribution(network="XX", station="B", location="00", p_time_ns=13,
                                               probability=0.8, latitude=1.0, longitude=2.0))
    a = alert_from_pb(msg)
    assert (a.event_id, a.version, a.kind, a.origin_time_ns, a.first_p_time_ns) == ("e", 2, "UPDATE", 10, 12)
    assert (a.latitude, a.longitude, a.depth_km, a.magnitude, a.magnitude_type) == (1.5, 2.5, 7.0, 4.2, "Mpd")
    assert a.stations[0].latitude is None and a.stations[0].longitude is None
    assert (a.stations[1].location, a.stations[1].latitude) == ("00", 1.0)
    assert (a.created_time_ns, a.latest_ingest_time_ns, a.reason) == (99, 90, "r")
    assert (a.decision_time_ns, a.location_uncertain, a.magnitude_lower_bound) == (11, True, True)
    back = alert_to_pb(a)  # the inverse, for the alerting's QuakeML builder
    assert alert_from_pb(back) == a and back.stations[0].station == "A" and math.isnan(back.stations[0].latitude)
    unlocated = alert_from_pb(pb.Alert(event_id="f", version=1, type=pb.ALERT_TYPE_NEW))
    assert unlocated.kind == "NEW" and math.isnan(unlocated.latitude) and not unlocated.has_magnitude


def test_progress_line_on_a_pipe() -> None:
    """Not a terminal: whole lines (no carriage returns), data hours and percentage."""
    out = io.StringIO()
    p = Progress(total_station_s=7200.0, data_hours=1.0, stream=out)
    p.update(3600.0, 2, force=True)
    p.finish(7200.0, 3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert "0.500/1.000 data h (50%)" in lines[0] and "2 alert versions" in lines[0]
    assert "1.000/1.000 data h (100%)" in lines[1] and "data h/wall min" in lines[1]


def test_scrape_of_nothing_is_none() -> None:
    assert scrape(free_port(), timeout_s=0.5) is None


def test_failed_services_rule() -> None:
    """A service that exited on its own, or stopped with an error code, fails the run; one the run's
    SIGTERM ended (-15) or killed after ignoring it for 10 s (-9), its output collected, does not."""
    from services.pipeline.run import RunOutput

    run = RunOutput([], [], {}, services={
        "detector": {"code": -9, "exited_early": False},
        "alerting": {"code": 0, "exited_early": True},
    })
    assert run.failed_services == ["alerting"]
    run.services["alerting"] = {"code": -15, "exited_early": False}
    assert run.failed_services == []
    run.services["alerting"] = {"code": 0, "exited_early": True}
    run.services["detector"] = {"code": 1, "exited_early": False}
    assert run.failed_services == ["alerting", "detector"]
    assert RunOutput([], [], {}, services={"detector": {"code": 0, "exited_early": False}}).failed_services == []
