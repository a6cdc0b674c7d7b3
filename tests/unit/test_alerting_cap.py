"""CAP 1.2 and QuakeML documents of every lifecycle message, validated by real schema validators.

CAP: lxml's XML Schema validator with the OASIS CAP 1.2 schema shipped in
tests/support/cap/CAP-v1.2.xsd. QuakeML: ObsPy's QuakeML 1.2 RelaxNG validation, then read back.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lxml import etree

from services.alerting.association.intensity import SiteForecast
from services.alerting.formats.cap import (
    CAP_NS,
    CapConfig,
    alert_to_cap,
    area_circle,
    cap_time,
    certainty,
    severity,
)
from services.alerting.formats.quakeml import alert_to_quakeml
from services.common.pb.eew.v1 import messages_pb2 as pb

XSD = Path(__file__).resolve().parents[1] / "support" / "cap" / "CAP-v1.2.xsd"
NS = {"cap": CAP_NS}
S = 1_000_000_000
T0 = 1_700_000_000 * S  # 2023-11-14T22:13:20Z


def alert_msg(
    version: int = 1,
    kind: int = pb.ALERT_TYPE_NEW,
    located: bool = True,
    magnitude: float | None = 5.4,
    probability: float = 0.97,
    event_id: str = "eew-20231114T221320-0a1b2c3d",
    created_ns: int | None = None,
    n_stations: int = 4,
) -> pb.Alert:
    """An Alert message like the service makes (epicentre 35.0 N 118.0 W, 8 km deep)."""
    msg = pb.Alert(
        schema_version=1,
        event_id=event_id,
        version=version,
        type=kind,
        origin_time_ns=T0,
        first_p_time_ns=T0 + 3 * S,
        probability=0.0 if kind == pb.ALERT_TYPE_CANCEL else probability,
        created_time_ns=created_ns if created_ns is not None else T0 + (5 + version) * S + 123_456_789,
        latest_ingest_time_ns=T0 + (5 + version) * S,
        reason="retracted" if kind == pb.ALERT_TYPE_CANCEL else f"{n_stations} stations triggered",
    )
    for i in range(n_stations):
        msg.stations.append(
            pb.StationContribution(
                network="XA",
                station=f"S{i:02d}",
                location="00",
                p_time_ns=T0 + (3 + i) * S,
                probability=0.9,
                latitude=35.0 + 0.1 * (i % 2),
                longitude=-118.0 + 0.1 * (i // 2),
            )
        )
    if located:
        msg.has_location = True
        msg.latitude, msg.longitude, msg.depth_km, msg.location_uncertainty_km = 35.0, -118.0, 8.0, 4.5
    if magnitude is not None:
        msg.has_magnitude = True
        msg.magnitude, msg.magnitude_uncertainty, msg.magnitude_type = magnitude, 0.4, "Mpd"
    return msg


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def _valid(schema: etree.XMLSchema, xml: bytes) -> etree._Element:
    doc = etree.parse(io.BytesIO(xml))
    assert schema.validate(doc), schema.error_log.filter_from_errors()
    return doc.getroot()


def _text(root: etree._Element, path: str) -> str:
    return root.findtext(path, namespaces=NS)


def _params(root: etree._Element) -> dict[str, str]:
    return {
        p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
        for p in root.iterfind("cap:info/cap:parameter", NS)
    }


def test_schema_validator_is_real(cap_schema: etree.XMLSchema) -> None:
    """The shipped schema rejects what CAP 1.2 forbids (so passing documents mean something)."""
    good = alert_to_cap(alert_msg())
    _valid(cap_schema, good)
    for bad in (
        good.replace(b"+00:00</sent>", b"Z</sent>"),  # CAP 1.2 needs an explicit offset
        good.replace(b"<msgType>Alert</msgType>", b"<msgType>New</msgType>"),
        good.replace(b"<certainty>Observed</certainty>", b"<certainty>Sure</certainty>"),
        good.replace(b"<scope>Public</scope>", b""),
    ):
        assert not cap_schema.validate(etree.parse(io.BytesIO(bad)))


def test_new_update_cancel_validate_and_reference_earlier_versions(cap_schema: etree.XMLSchema) -> None:
    """Alert -> Update -> Cancel of one event: each validates; Update/Cancel reference all earlier
    messages as sender,identifier,sent; incidents carry the event id."""
    cfg = CapConfig(sender="eew@example.org")
    v1 = alert_msg(1, pb.ALERT_TYPE_NEW, located=False, magnitude=None, probability=0.8)
    v2 = alert_msg(2, pb.ALERT_TYPE_UPDATE)
    v3 = alert_msg(3, pb.ALERT_TYPE_CANCEL)
    issued = [(1, v1.created_time_ns), (2, v2.created_time_ns)]
    roots = [
        _valid(cap_schema, alert_to_cap(v1, cfg)),
        _valid(cap_schema, alert_to_cap(v2, cfg, issued[:1])),
        _valid(cap_schema, alert_to_cap(v3, cfg, issued)),
    ]
    assert [_text(r, "cap:msgType") for r in roots] == ["Alert", "Update", "Cancel"]
    assert [_text(r, "cap:identifier") for r in roots] == [f"{v1.event_id}-v{i}" for i in (1, 2, 3)]
    assert all(_text(r, "cap:incidents") == v1.event_id for r in roots)
    assert roots[0].find("cap:references", NS) is None
    ref1 = f"eew@example.org,{v1.event_id}-v1,{cap_time(v1.created_time_ns)}"
    ref2 = f"eew@example.org,{v1.event_id}-v2,{cap_time(v2.created_time_ns)}"
    assert _text(roots[1], "cap:references") == ref1
    assert _text(roots[2], "cap:references") == f"{ref1} {ref2}"
    assert _text(roots[0], "cap:sent") == "2023-11-14T22:13:26+00:00"  # whole seconds, explicit offset
    # Certainty from probability; Cancel is all-clear.
    assert _text(roots[0], "cap:info/cap:certainty") == "Likely"  # p = 0.8
    assert _text(roots[1], "cap:info/cap:certainty") == "Observed"  # p = 0.97
    assert _text(roots[2], "cap:info/cap:certainty") == "Unlikely"
    assert _text(roots[2], "cap:info/cap:responseType") == "AllClear"
    assert _text(roots[2], "cap:info/cap:urgency") == "Past"
    assert _text(roots[1], "cap:info/cap:severity") == "Moderate"  # M5.4
    assert _text(roots[0], "cap:info/cap:severity") == "Unknown"  # no magnitude yet


def test_area_circle_around_epicentre_or_stations(cap_schema: etree.XMLSchema) -> None:
    located = _valid(cap_schema, alert_to_cap(alert_msg(), CapConfig(area_radius_km=50)))
    assert _text(located, "cap:info/cap:area/cap:circle") == "35.0000,-118.0000 54.5"  # 50 + 4.5 km
    assert "epicentre" in _text(located, "cap:info/cap:area/cap:areaDesc")
    unloc = alert_msg(located=False)
    desc, circle = area_circle(unloc, 50)
    centre, radius = circle.split(" ")
    lat, lon = map(float, centre.split(","))
    assert lat == pytest.approx(35.05) and lon == pytest.approx(-117.95) and float(radius) > 50
    assert "not located" in desc
    no_coords = alert_msg(located=False)
    for s in no_coords.stations:
        s.latitude = s.longitude = float("nan")
    root = _valid(cap_schema, alert_to_cap(no_coords))
    assert root.find("cap:info/cap:area", NS) is None


def test_personalised_cap_carries_site_forecast(cap_schema: etree.XMLSchema) -> None:
    site = SiteForecast(35.3, -118.0, 33.4, 34.3, T0 + 5 * S, T0 + 10 * S, 3.5, 6.3, 0.12, 9.0)
    root = _valid(cap_schema, alert_to_cap(alert_msg(), site=site))
    p = _params(root)
    assert p["WarningTimeSeconds"] == "3.5" and p["ExpectedIntensityMMI"] == "6.3"
    assert p["SArrivalTime"] == "2023-11-14T22:13:30.000Z" and p["EpicentralDistanceKm"] == "33.4"
    assert p["Magnitude"] == "5.4" and p["EventVersion"] == "1" and p["DepthKm"] == "8.0"
    assert _text(root, "cap:info/cap:severity") == "Severe"  # MMI 6.3 at the site beats M5.4
    assert "may arrive in 4 s (expected intensity 6.3)" in _text(root, "cap:info/cap:headline")


def test_mappings() -> None:
    assert [certainty(p) for p in (1.0, 0.95, 0.6, 0.5, 0.2, 0.01)] == [
        "Observed",
        "Observed",
        "Likely",
        "Possible",
        "Possible",
        "Unlikely",
    ]
    assert [severity(m) for m in (7.2, 6.1, 5.0, 3.0, None)] == [
        "Extreme",
        "Severe",
        "Moderate",
        "Minor",
        "Unknown",
    ]
    assert [severity(None, i) for i in (8.5, 6.0, 4.2, 2.0)] == ["Extreme", "Severe", "Moderate", "Minor"]
    with pytest.raises(ValueError):
        CapConfig(status="Real")
    with pytest.raises(ValueError):
        CapConfig(sender="a b")


@pytest.mark.parametrize(
    "msg",
    [
        alert_msg(1, pb.ALERT_TYPE_NEW, located=False, magnitude=None),
        alert_msg(2, pb.ALERT_TYPE_UPDATE),
        alert_msg(3, pb.ALERT_TYPE_CANCEL),
    ],
    ids=["new-unlocated", "update-located", "cancel"],
)
def test_quakeml_validates_and_reads_back(msg: pb.Alert) -> None:
    """ObsPy writes QuakeML that passes ObsPy's QuakeML 1.2 schema check and reads back."""
    from obspy import read_events
    from obspy.io.quakeml.core import _validate

    xml = alert_to_quakeml(msg)
    assert _validate(io.BytesIO(xml)), "QuakeML 1.2 schema validation failed"
    cat = read_events(io.BytesIO(xml), format="QUAKEML")
    assert len(cat) == 1
    ev = cat[0]
    assert str(ev.resource_id).endswith(msg.event_id) and ev.creation_info.version == str(msg.version)
    assert len(ev.picks) == len(msg.stations) and {p.phase_hint for p in ev.picks} == {"P"}
    assert ev.event_type == ("not existing" if msg.type == pb.ALERT_TYPE_CANCEL else "earthquake")
    if msg.has_location:
        o = ev.preferred_origin()
        assert o.latitude == pytest.approx(35.0) and o.depth == pytest.approx(8000.0)
        assert o.origin_uncertainty.horizontal_uncertainty == pytest.approx(4500.0)
        assert len(o.arrivals) == len(msg.stations)
        m = ev.preferred_magnitude()
        assert m.mag == pytest.approx(5.4) and m.magnitude_type == "Mpd"
        assert m.mag_errors.uncertainty == pytest.approx(0.4)
    else:
        assert not ev.origins and not ev.magnitudes
