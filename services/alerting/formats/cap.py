"""CAP 1.2 (OASIS Common Alerting Protocol) messages for alerts (pure; built with lxml).

Mapping (namespace ``urn:oasis:names:tc:emergency:cap:1.2``, schema in
``tests/support/cap/CAP-v1.2.xsd``, checked by the tests with a validating parser):

=============  ==================================================================================
identifier     ``<event_id>-v<version>`` (unique per message; no spaces, commas, ``<`` or ``&``)
sender         ``CapConfig.sender``; ``sent``: the alert's created time, ``YYYY-MM-DDThh:mm:ss+00:00``
msgType        NEW -> ``Alert``, UPDATE -> ``Update``, CANCEL -> ``Cancel``
references     Update/Cancel: every earlier version of the event known to the caller, as
               ``sender,identifier,sent`` separated by spaces (CAP 1.2, 3.2.1)
incidents      the event id (groups every message of one earthquake)
info           category ``Geo``, event ``Earthquake``; responseType ``Shelter`` (drop, cover, hold
               on), ``AllClear`` on Cancel; urgency ``Immediate`` (``Past`` on Cancel)
certainty      from the event probability p: ``Observed`` p >= 0.95, ``Likely`` p > 0.5,
               ``Possible`` p > 0.05, else ``Unlikely`` (CAP: Likely = p > ~50 %, Possible =
               p <= ~50 %); ``Unlikely`` on Cancel
severity       at a subscriber's site from the expected MMI: >= 8 ``Extreme``, >= 6 ``Severe``,
               >= 4 ``Moderate``, else ``Minor``; without a site forecast from the magnitude:
               >= 7 ``Extreme``, >= 6 ``Severe``, >= 5 ``Moderate``, else ``Minor``; ``Unknown``
               without a magnitude
expires        sent + ``CapConfig.expires_s``
parameter      EventID, EventVersion, EventProbability, OriginTime, FirstPTime, StationCount,
               Latitude, Longitude, DepthKm, LocationUncertaintyKm, Magnitude,
               MagnitudeUncertainty, MagnitudeType (those known); for a subscriber also
               SiteLatitude, SiteLongitude, EpicentralDistanceKm, SArrivalTime,
               WarningTimeSeconds, ExpectedIntensityMMI
Signature      with a signing key and certificate (``CapConfig.signing_key_pem`` /
               ``signing_cert_pem``), an enveloped XML-DSig ``<Signature>`` (RSA-SHA256 or
               ECDSA-SHA256, canonical XML 1.1, SHA-256 digest, the X.509 certificate in ``KeyInfo``) as the
               last child of ``<alert>``, CAP 1.2 section 3.3.2.1 (signxml): the message keeps its
               proof of origin when a hub relays it onward
area           a ``circle`` "lat,lon radius_km" around the epicentre, radius
               ``area_radius_km`` + the 95 % location uncertainty; an event not yet located gets
               a circle around the centroid of its triggered stations (radius: farthest station
               + ``area_radius_km``) described as such; no coordinates at all: no area
=============  ==================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from lxml import etree
from pydantic import Field, model_validator

from services.alerting.association.intensity import SiteForecast
from services.common.domain import haversine_km
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.settings import CoreModel, not_a_setting
from services.common.timeutil import NS_PER_S, ns_to_iso

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_MIME = "application/cap+xml"
STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")

_MSG_TYPE = {pb.ALERT_TYPE_NEW: "Alert", pb.ALERT_TYPE_UPDATE: "Update", pb.ALERT_TYPE_CANCEL: "Cancel"}


class CapConfig(CoreModel):
    """Knobs of the CAP 1.2 rendering; the service exposes them as ``--cap-*`` (group ``cap``)."""

    sender: str = Field("eew-alerting@localhost", description="CAP <sender> (no spaces or commas).")
    sender_name: str = not_a_setting("Earthquake early warning (eew alert)", "CAP <senderName>.")
    status: str = Field("Actual", description="CAP <status>: Actual, Exercise, System, Test or Draft.")
    area_radius_km: float = Field(
        100.0, description="CAP <area> circle radius around the epicentre (plus the location uncertainty)."
    )
    expires_s: float = Field(600.0, description="CAP <expires> after <sent>.")
    language: str = not_a_setting("en-US", "CAP <language>.")
    web: str = not_a_setting("", "CAP <web>.")
    signing_key_pem: bytes = not_a_setting(b"", "PEM private key (RSA or EC), read from --cap-signing-key.", repr=False)
    signing_cert_pem: bytes = not_a_setting(b"", "PEM X.509 certificate of that key (--cap-signing-cert).")

    @model_validator(mode="after")
    def _check(self) -> CapConfig:
        if bool(self.signing_key_pem) != bool(self.signing_cert_pem):
            raise ValueError("CAP signing needs both a private key and its certificate")
        if self.status not in STATUSES:
            raise ValueError(f"CAP status must be one of {STATUSES}, got {self.status!r}")
        if any(c in self.sender for c in " ,<&"):
            raise ValueError("CAP sender may not contain spaces, commas, '<' or '&'")
        return self


def identifier(event_id: str, version: int) -> str:
    return f"{event_id}-v{version}"


def cap_time(ns: int) -> str:
    """CAP 1.2 date-time: whole seconds with an explicit ``+00:00`` offset (no ``Z``, no fraction)."""
    return datetime.fromtimestamp(ns // NS_PER_S, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def certainty(probability: float) -> str:
    if probability >= 0.95:
        return "Observed"
    if probability > 0.5:
        return "Likely"
    if probability > 0.05:
        return "Possible"
    return "Unlikely"


def severity(magnitude: float | None, mmi: float | None = None) -> str:
    if mmi is not None and math.isfinite(mmi):
        return "Extreme" if mmi >= 8 else "Severe" if mmi >= 6 else "Moderate" if mmi >= 4 else "Minor"
    if magnitude is None or not math.isfinite(magnitude):
        return "Unknown"
    return (
        "Extreme"
        if magnitude >= 7
        else "Severe"
        if magnitude >= 6
        else "Moderate"
        if magnitude >= 5
        else "Minor"
    )


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def _param(info: etree._Element, name: str, value: str) -> None:
    p = _sub(info, "parameter")
    _sub(p, "valueName", name)
    _sub(p, "value", value)


def _f(x: float, nd: int) -> str:
    return f"{x:.{nd}f}"


def area_circle(msg: pb.Alert, radius_km: float) -> tuple[str, str] | None:
    """(areaDesc, circle) for the alert (see the module docstring), or None without coordinates."""
    if msg.has_location and math.isfinite(msg.latitude) and math.isfinite(msg.longitude):
        r = radius_km + (msg.location_uncertainty_km if math.isfinite(msg.location_uncertainty_km) else 0.0)
        return (
            f"Within {r:.0f} km of the estimated epicentre",
            f"{msg.latitude:.4f},{msg.longitude:.4f} {r:.1f}",
        )
    pts = [
        (s.latitude, s.longitude)
        for s in msg.stations
        if math.isfinite(s.latitude) and math.isfinite(s.longitude)
    ]
    if not pts:
        return None
    lat = sum(p[0] for p in pts) / len(pts)
    lon = sum(p[1] for p in pts) / len(pts)
    far = max(haversine_km(lat, lon, p[0], p[1]) for p in pts)
    r = far + radius_km
    return (
        f"Within {r:.0f} km of the triggered stations (epicentre not located yet)",
        f"{lat:.4f},{lon:.4f} {r:.1f}",
    )


def alert_to_cap(
    msg: pb.Alert,
    cfg: CapConfig | None = None,
    references: Sequence[tuple[int, int]] = (),
    site: SiteForecast | None = None,
) -> bytes:
    """The CAP 1.2 XML document (UTF-8 bytes) for one alert version.

    ``references``: (version, created_time_ns) of the earlier versions of this event that were
    issued; ``site``: the subscriber's forecast, which personalises severity, headline and parameters."""
    cfg = cfg or CapConfig()
    sent_ns = msg.created_time_ns
    kind = _MSG_TYPE.get(msg.type, "Update")
    cancel = msg.type == pb.ALERT_TYPE_CANCEL
    root = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(root, "identifier", identifier(msg.event_id, msg.version))
    _sub(root, "sender", cfg.sender)
    _sub(root, "sent", cap_time(sent_ns))
    _sub(root, "status", cfg.status)
    _sub(root, "msgType", kind)
    _sub(root, "scope", "Public")
    refs = sorted({(v, t) for v, t in references if v < msg.version})
    if kind != "Alert" and refs:
        _sub(
            root,
            "references",
            " ".join(f"{cfg.sender},{identifier(msg.event_id, v)},{cap_time(t)}" for v, t in refs),
        )
    _sub(root, "incidents", msg.event_id)

    info = _sub(root, "info")
    _sub(info, "language", cfg.language)
    _sub(info, "category", "Geo")
    _sub(info, "event", "Earthquake")
    _sub(info, "responseType", "AllClear" if cancel else "Shelter")
    _sub(info, "urgency", "Past" if cancel else "Immediate")
    mag = float(msg.magnitude) if msg.has_magnitude and math.isfinite(msg.magnitude) else None
    mmi = site.mmi if site is not None else None
    _sub(info, "severity", "Minor" if cancel else severity(mag, mmi))
    _sub(info, "certainty", "Unlikely" if cancel else certainty(float(msg.probability)))
    ec = _sub(info, "eventCode")
    _sub(ec, "valueName", "EEW_EVENT_ID")
    _sub(ec, "value", msg.event_id)
    _sub(info, "effective", cap_time(sent_ns))
    _sub(info, "onset", cap_time(msg.origin_time_ns))
    _sub(info, "expires", cap_time(sent_ns + int(cfg.expires_s * NS_PER_S)))
    _sub(info, "senderName", cfg.sender_name)
    mag_text = f"M{mag:.1f} " if mag is not None else ""
    if cancel:
        headline = "Earthquake early warning CANCELLED"
        description = f"Event {msg.event_id} is cancelled. {msg.reason}".strip()
        instruction = "No action needed."
    else:
        where = ""
        if site is not None:
            if site.warning_time_s > 0:
                where = f", strong shaking may arrive in {site.warning_time_s:.0f} s"
            else:
                where = ", shaking may already be under way"
            if site.mmi is not None:
                where += f" (expected intensity {site.mmi:.1f})"
        headline = f"Earthquake early warning: {mag_text}earthquake detected{where}"
        loc = (
            f" near {msg.latitude:.2f},{msg.longitude:.2f}, depth {msg.depth_km:.0f} km"
            if msg.has_location
            else ""
        )
        description = (
            f"An earthquake{loc} was detected by {len(msg.stations)} stations "
            f"(probability {msg.probability:.2f}, version {msg.version})."
        )
        instruction = (
            "Drop, cover and hold on. Stay away from windows and heavy objects until the shaking stops."
        )
    _sub(info, "headline", headline[:160])
    _sub(info, "description", description)
    _sub(info, "instruction", instruction)
    if cfg.web:
        _sub(info, "web", cfg.web)
    params: list[tuple[str, str]] = [
        ("EventID", msg.event_id),
        ("EventVersion", str(msg.version)),
        ("EventProbability", _f(float(msg.probability), 3)),
        ("OriginTime", ns_to_iso(msg.origin_time_ns)),
        ("FirstPTime", ns_to_iso(msg.first_p_time_ns)),
        ("StationCount", str(len(msg.stations))),
    ]
    if msg.has_location:
        params += [
            ("Latitude", _f(msg.latitude, 4)),
            ("Longitude", _f(msg.longitude, 4)),
            ("DepthKm", _f(msg.depth_km, 1)),
            ("LocationUncertaintyKm", _f(msg.location_uncertainty_km, 1)),
        ]
    if mag is not None:
        params += [("Magnitude", _f(mag, 1)), ("MagnitudeType", msg.magnitude_type or "M")]
        if math.isfinite(msg.magnitude_uncertainty):
            params.append(("MagnitudeUncertainty", _f(msg.magnitude_uncertainty, 1)))
    if site is not None:
        params += [
            ("SiteLatitude", _f(site.latitude, 4)),
            ("SiteLongitude", _f(site.longitude, 4)),
            ("EpicentralDistanceKm", _f(site.epicentral_km, 1)),
            ("SArrivalTime", ns_to_iso(site.s_arrival_ns)),
            ("WarningTimeSeconds", _f(site.warning_time_s, 1)),
        ]
        if site.mmi is not None:
            params.append(("ExpectedIntensityMMI", _f(site.mmi, 1)))
    for name, value in params:
        _param(info, name, value)
    circle = area_circle(msg, cfg.area_radius_km)
    if circle is not None:
        area = _sub(info, "area")
        _sub(area, "areaDesc", circle[0])
        _sub(area, "circle", circle[1])
    if cfg.signing_key_pem:
        root = sign_cap(root, cfg)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def sign_cap(root: etree._Element, cfg: CapConfig) -> etree._Element:
    """``root`` with an enveloped XML signature appended (CAP 1.2, 3.3.2.1)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from signxml import XMLSigner, methods

    key = load_pem_private_key(cfg.signing_key_pem, password=None)
    algorithm = "ecdsa-sha256" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa-sha256"
    signer = XMLSigner(method=methods.enveloped, signature_algorithm=algorithm, digest_algorithm="sha256")
    return signer.sign(root, key=key, cert=cfg.signing_cert_pem.decode())


def verify_cap(document: bytes, cert_pem: bytes) -> etree._Element:
    """The signed ``<alert>`` of ``document`` if its signature verifies with ``cert_pem``
    (``signxml.exceptions.InvalidSignature`` otherwise): what a relaying hub or receiver checks."""
    from signxml import XMLVerifier

    return XMLVerifier().verify(document, x509_cert=cert_pem.decode()).signed_xml
