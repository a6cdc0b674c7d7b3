"""Subscribers: who gets which alert, where and how (pure: no I/O except DNS in ``check_target``).

A subscriber has a **site** (latitude, longitude, optional Vs30), **thresholds** and **channels**:

* ``min_probability`` (default 0.5): the event probability an alert must reach;
* ``min_magnitude`` (optional): the alert must carry a magnitude at least this large;
* ``min_intensity`` (optional, MMI): the intensity expected at the site (``association/intensity.py``:
  Boore & Atkinson 2008 + Worden et al. 2012) must reach this; it needs a located event with a
  magnitude, so an alert without them does not pass an intensity threshold;
* channels: ``webhook`` (URL, HMAC secret, format json|cap|quakeml), ``mqtt`` (topic, format,
  retain), ``sse`` (the subscriber's own stream on the HTTP API).

Decision for one alert version (``Subscriber.decide``): once a subscriber has been sent any version
of an event, every later version of it (UPDATE and CANCEL) is sent too, whatever the thresholds
say -- a subscriber told to take cover must hear that the event was downgraded or cancelled.
Before that, a NEW or UPDATE is sent when every threshold passes, and a CANCEL is never sent.

Personalisation (``SiteForecast``): for a located event, each subscriber's message carries the
expected S-wave arrival at their site, the warning time left when the alert version was made
(S arrival minus the alert's created time; negative: the S wave had already arrived, the site is
in the blind zone), the epicentral distance and, with a magnitude, the expected median PGA, PGV
and MMI there. In JSON it is the ``site`` object added to the documented alert body::

    "site": {"subscriber_id": "sub-...", "latitude": 34.1, "longitude": -118.2,
             "epicentral_km": 42.3, "hypocentral_km": 43.5,
             "p_arrival_time": "...Z", "s_arrival_time": "...Z",
             "warning_time_s": 8.4,                  # at the alert's created time
             "warning_time_min_s": 3.1, "warning_time_max_s": 13.9,  # over the location's
                                                     # uncertainty (an uncertain location: wide)
             "expected_intensity_mmi": 5.6 | null,   # median, about +-1 unit
             "expected_pga_g": 0.08 | null, "expected_pgv_cm_s": 6.1 | null}
             # "site" is null when the event is not located yet

Webhook targets given through the API are checked by ``check_target``: http(s) only, and every
address the host name resolves to must be public (no loopback, private, link-local, multicast,
reserved or unspecified addresses, IPv4-mapped IPv6 included) unless private targets are allowed.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from services.alerting.association.intensity import REFERENCE_VS30, SiteForecast, predict_sites
from services.alerting.exceptions import TargetRefused
from services.alerting.formats.signing import secret_key
from services.common.pb.eew.v1 import messages_pb2 as pb
from services.common.timeutil import NS_PER_S

Format = Literal["json", "cap", "quakeml"]
CHANNELS = ("webhook", "mqtt", "sse")
MQTT_TOPIC_RE = re.compile(r"^[^#+\x00]{1,200}$")


class WebhookChannel(BaseModel):
    """POST every alert to ``url``, signed with ``secret`` (see ``formats/signing.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    url: str = Field(..., max_length=2000, description="http(s) URL that receives the alerts.")
    secret: SecretStr = Field(
        ...,
        description="Standard Webhooks signing secret: whsec_<base64> (recommended) or any 16-256 "
        "characters; never returned.",
    )
    format: Format = Field("json", description="Body format: json (eew.alert.v1), cap (CAP 1.2) or quakeml.")
    previous_secret: SecretStr | None = Field(
        None,
        description="The secret being replaced: while set, every request carries a second signature "
        "made with it, so receivers can switch secrets without missing an alert; never returned.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s)://host[:port]/path URL")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not accepted: use the signing secret")
        return v

    @field_validator("secret", "previous_secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        if len(v.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        if len(v.get_secret_value()) > 256:
            raise ValueError("must be at most 256 characters")
        try:
            key = secret_key(v.get_secret_value())
        except ValueError:
            raise ValueError("a whsec_ secret must be base64") from None
        if len(key) < 16:
            raise ValueError("must give a key of at least 16 bytes")
        return v


class MqttChannel(BaseModel):
    """Publish every alert to an MQTT topic (QoS 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    topic: str = Field(
        ...,
        description="Topic suffix; the service publishes to <prefix><owner>/<subscriber id>/<topic> "
        "(each subscriber's own subtree); '{event_id}' is replaced by the event id. No wildcards.",
    )
    format: Format = Field("json", description="Payload format: json, cap or quakeml.")
    retain: bool = Field(False, description="Publish retained (the broker keeps the latest per topic).")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not MQTT_TOPIC_RE.match(v) or v.startswith("$"):
            raise ValueError("must be 1-200 characters without '+', '#', NUL or a leading '$'")
        return v


class Channels(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    webhook: WebhookChannel | None = None
    mqtt: MqttChannel | None = None
    sse: bool = Field(False, description="Keep this subscriber's alerts on its SSE stream.")

    @model_validator(mode="after")
    def _one(self) -> Channels:
        if self.webhook is None and self.mqtt is None and not self.sse:
            raise ValueError("at least one channel (webhook, mqtt or sse) is required")
        return self

    def names(self) -> list[str]:
        return [c for c in CHANNELS if (c == "sse" and self.sse) or (c != "sse" and getattr(self, c))]

    def stored(self) -> dict[str, Any]:
        """As JSON with the webhook secret in clear (for the database only)."""
        doc = self.model_dump(mode="json")
        if self.webhook is not None:
            doc["webhook"]["secret"] = self.webhook.secret.get_secret_value()
            prev = self.webhook.previous_secret
            doc["webhook"]["previous_secret"] = None if prev is None else prev.get_secret_value()
        return doc


class SubscriberSpec(BaseModel):
    """What a client sends to create (or fully replace) a subscriber."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(..., min_length=1, max_length=100, description="Free text shown in listings.")
    latitude: float = Field(..., ge=-90.0, le=90.0, description="Site latitude (degrees, WGS84).")
    longitude: float = Field(..., ge=-180.0, le=180.0, description="Site longitude (degrees, WGS84).")
    vs30_m_s: float | None = Field(
        None, gt=100.0, lt=3000.0, description="Site Vs30 (m/s) for the intensity; default 760 (rock)."
    )
    min_probability: float = Field(0.5, ge=0.0, le=1.0, description="Event probability needed.")
    min_magnitude: float | None = Field(None, ge=-2.0, le=10.0, description="Magnitude needed, if set.")
    min_intensity: float | None = Field(
        None, ge=1.0, le=10.0, description="Expected MMI at the site needed, if set."
    )
    channels: Channels

    @field_validator("latitude", "longitude", "min_probability")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    def public(self) -> dict[str, Any]:
        """The spec as JSON for API answers: secrets replaced by ``has_secret``."""
        doc = self.model_dump(mode="json")
        wh = doc["channels"].get("webhook")
        if wh is not None:
            wh.pop("secret", None)
            wh["has_secret"] = True
            if wh.pop("previous_secret", None) is not None:
                wh["has_previous_secret"] = True
        return doc

    def stored(self) -> dict[str, Any]:
        """The spec as JSON for the database (secrets included)."""
        return {**self.model_dump(mode="json"), "channels": self.channels.stored()}


class SubscriberPatch(BaseModel):
    """A partial update: the fields given replace the stored ones (``channels`` as a whole)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str | None = Field(None, min_length=1, max_length=100)
    latitude: float | None = Field(None, ge=-90.0, le=90.0)
    longitude: float | None = Field(None, ge=-180.0, le=180.0)
    vs30_m_s: float | None = Field(None, gt=100.0, lt=3000.0)
    min_probability: float | None = Field(None, ge=0.0, le=1.0)
    min_magnitude: float | None = Field(None, ge=-2.0, le=10.0)
    min_intensity: float | None = Field(None, ge=1.0, le=10.0)
    channels: Channels | None = None

    def apply(self, spec: SubscriberSpec) -> SubscriberSpec:
        given = self.model_dump(exclude_unset=True)
        base = spec.stored()
        for key in given:
            base[key] = self.channels.stored() if key == "channels" and self.channels else given[key]
        return SubscriberSpec.model_validate(base)


def new_subscriber_id() -> str:
    return f"sub-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Subscriber:
    """A stored subscriber (API-made, ``owner`` = token name) or a static one from the settings."""

    id: str
    owner: str
    spec: SubscriberSpec | None  # None: static webhook from --webhook-urls (every alert, no site)
    created_ns: int = 0
    updated_ns: int = 0
    revision: int = 1
    static_url: str | None = None
    static_secret: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The metrics label: the id (static webhooks: host:port/path, as before)."""
        return self.id.removeprefix("static:")

    @property
    def channels(self) -> list[str]:
        return ["webhook"] if self.spec is None else self.spec.channels.names()

    @property
    def has_site(self) -> bool:
        return self.spec is not None

    def webhook(self) -> tuple[str, str | None, str] | None:
        """(url, secret or None, format) of the webhook channel, if any."""
        if self.spec is None:
            return (self.static_url or "", self.static_secret or None, "json")
        wh = self.spec.channels.webhook
        return None if wh is None else (wh.url, wh.secret.get_secret_value(), wh.format)

    def signing_secrets(self) -> list[str]:
        """The webhook secrets to sign with: the current one, then the one being replaced."""
        if self.spec is None:
            return [self.static_secret] if self.static_secret else []
        wh = self.spec.channels.webhook
        if wh is None:
            return []
        prev = [] if wh.previous_secret is None else [wh.previous_secret.get_secret_value()]
        return [wh.secret.get_secret_value(), *prev]

    def mqtt(self) -> MqttChannel | None:
        return None if self.spec is None else self.spec.channels.mqtt

    def decide(self, alert: pb.Alert, forecast: SiteForecast | None, already_sent: bool) -> tuple[bool, str]:
        """(send?, reason code) for one alert version; see the module docstring. Reasons:
        follow_up, static, thresholds_met; not sent: cancel_never_sent, below_probability,
        no_magnitude, below_magnitude, no_intensity_forecast, below_intensity."""
        if already_sent:
            return True, "follow_up"
        if alert.type == pb.ALERT_TYPE_CANCEL:
            return False, "cancel_never_sent"
        spec = self.spec
        if spec is None:
            return True, "static"
        if alert.probability < spec.min_probability:
            return False, "below_probability"
        if spec.min_magnitude is not None:
            if not alert.has_magnitude or not math.isfinite(alert.magnitude):
                return False, "no_magnitude"
            if alert.magnitude < spec.min_magnitude:
                return False, "below_magnitude"
        if spec.min_intensity is not None:
            if forecast is None or forecast.mmi is None:
                return False, "no_intensity_forecast"
            if forecast.mmi < spec.min_intensity:
                return False, "below_intensity"
        return True, "thresholds_met"

    def public(self) -> dict[str, Any]:
        if self.spec is None:
            return {"id": self.id, "owner": self.owner, "static": True}
        return {
            "id": self.id,
            "owner": self.owner,
            "created_ns": self.created_ns,
            "updated_ns": self.updated_ns,
            "revision": self.revision,
            **self.spec.public(),
        }


def static_subscribers(urls: str | Iterable[str], secret: str = "") -> list[Subscriber]:
    """Subscribers for the operator's ``--webhook-urls`` (every alert, JSON, signed if a secret is set).

    The id is ``static:<host>:<port><path>`` (never credentials or the query), made unique."""
    items = [u.strip() for u in (urls.split(",") if isinstance(urls, str) else urls) if u and u.strip()]
    subs: list[Subscriber] = []
    names: set[str] = set()
    for url in items:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetRefused("bad_url", f"webhook URL must be http(s)://host[:port]/path, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        name = f"{parts.hostname}:{port}{parts.path or '/'}"
        base, i = name, 2
        while name in names:
            name, i = f"{base}#{i}", i + 1
        names.add(name)
        subs.append(
            Subscriber(id=f"static:{name}", owner="config", spec=None, static_url=url, static_secret=secret)
        )
    return subs


def forecasts(alert: pb.Alert, subs: Sequence[Subscriber]) -> dict[str, SiteForecast]:
    """Site forecasts of a located alert for every subscriber with a site (vectorised)."""
    sited = [s for s in subs if s.spec is not None]
    if not alert.has_location or not sited:
        return {}
    if not (
        math.isfinite(alert.latitude) and math.isfinite(alert.longitude) and math.isfinite(alert.depth_km)
    ):
        return {}
    mag = float(alert.magnitude) if alert.has_magnitude and math.isfinite(alert.magnitude) else None
    lat = [s.spec.latitude for s in sited]  # type: ignore[union-attr]
    lon = [s.spec.longitude for s in sited]  # type: ignore[union-attr]
    vs30 = [s.spec.vs30_m_s or REFERENCE_VS30 for s in sited]  # type: ignore[union-attr]
    unc_km = float(alert.location_uncertainty_km)
    unc_t = float(alert.origin_time_uncertainty_s)
    p = predict_sites(
        alert.latitude,
        alert.longitude,
        alert.depth_km,
        mag,
        alert.origin_time_ns,
        lat,
        lon,
        vs30=vs30,
        uncertainty_km=unc_km if math.isfinite(unc_km) and unc_km > 0 else 0.0,
        origin_time_uncertainty_s=unc_t if math.isfinite(unc_t) and unc_t > 0 else 0.0,
    )
    created = alert.created_time_ns
    w_min, w_max = p.warning_range_s_at(created)
    out: dict[str, SiteForecast] = {}
    for i, s in enumerate(sited):
        out[s.id] = SiteForecast(
            latitude=lat[i],
            longitude=lon[i],
            epicentral_km=float(p.epicentral_km[i]),
            hypocentral_km=float(p.hypocentral_km[i]),
            p_arrival_ns=int(p.p_arrival_ns[i]),
            s_arrival_ns=int(p.s_arrival_ns[i]),
            warning_time_s=(int(p.s_arrival_ns[i]) - created) / NS_PER_S,
            mmi=None if p.mmi is None else float(p.mmi[i]),
            pga_g=None if p.pga_g is None else float(p.pga_g[i]),
            pgv_cm_s=None if p.pgv_cm_s is None else float(p.pgv_cm_s[i]),
            warning_time_min_s=float(w_min[i]),
            warning_time_max_s=float(w_max[i]),
        )
    return out


# ---------------------------------------------------------------------------- SSRF checks

Resolver = Callable[..., list[tuple[Any, ...]]]
TARGET_REFUSED_MESSAGE = (
    "webhook target not allowed: the host must resolve, and only to public addresses"
)


def mqtt_topic(prefix: str, owner: str, subscriber_id: str, topic: str, event_id: str) -> str:
    """The MQTT topic a subscriber's alerts go to: ``<prefix><owner>/<subscriber id>/<topic>``.

    The owner (API token name) and the subscriber id come first, so no subscriber can choose a
    topic in another's subtree, and a broker ACL ``pattern read <prefix>%u/#`` lets each owner
    read its own topics only (README, ``deploy/mosquitto``)."""
    return f"{prefix}{owner}/{subscriber_id}/{topic.replace('{event_id}', event_id)}"


def address_refused(addr: str) -> str | None:
    """Why ``addr`` may not be a webhook target (None: a public unicast address)."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return "unparsable address"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
        elif ip.teredo is not None:
            ip = ip.teredo[1]
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address {ip}"
    return None


def check_target(url: str, allow_private: bool = False, resolve: Resolver | None = None) -> list[str]:
    """Refuse (``TargetRefused``) a webhook URL whose host is, or resolves to, a non-public
    address; return the resolved addresses (in the resolver's order). Every address is checked,
    so a name with one public and one private address is refused too. The caller connects to
    these very addresses (``delivery.pinned``), never resolving the name again (DNS rebinding).
    The exception's detail names the address: log it, but answer clients ``TARGET_REFUSED_MESSAGE``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("bad_url", "must be an http(s)://host[:port]/path URL")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("bad_url", "bad port") from None
    resolve = resolve or socket.getaddrinfo
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused("unresolvable", f"{host}: {exc}") from None
    addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))  # resolver order, once each
    if not addrs:
        raise TargetRefused("unresolvable", f"{host}: no addresses")
    if allow_private:
        return addrs
    for a in addrs:
        why = address_refused(a)
        if why is not None:
            raise TargetRefused("private_target", f"{host} -> {why} (allow with --allow-private-webhooks)")
    return addrs
