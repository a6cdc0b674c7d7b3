"""Subscribers: input validation, thresholds and follow-ups, site forecasts, SSRF target checks,
API token parsing and the per-token rate limiter."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from services.alerting.association.intensity import predict_site
from services.alerting.dispatch.api import TokenBucket, parse_tokens
from services.alerting.dispatch.subscribers import (
    Subscriber,
    SubscriberPatch,
    SubscriberSpec,
    address_refused,
    check_target,
    forecasts,
    static_subscribers,
)
from services.alerting.exceptions import TargetRefused
from services.common.exceptions import ConfigError
from services.common.pb.eew.v1 import messages_pb2 as pb
from tests.unit.test_alerting_cap import S, alert_msg

SECRET = "0123456789abcdef-secret"


def spec(**kw: object) -> SubscriberSpec:
    base: dict = {
        "name": "school",
        "latitude": 35.3,
        "longitude": -118.0,
        "channels": {"webhook": {"url": "https://hooks.example.org/eew", "secret": SECRET}},
    }
    base.update(kw)
    return SubscriberSpec.model_validate(base)


def sub(**kw: object) -> Subscriber:
    return Subscriber(id="sub-0123456789abcdef", owner="ops", spec=spec(**kw))


@pytest.mark.parametrize(
    "change",
    [
        {"latitude": 91},
        {"longitude": float("nan")},
        {"min_probability": 1.5},
        {"min_intensity": 0.5},
        {"channels": {}},
        {"channels": {"webhook": {"url": "ftp://x.org/", "secret": SECRET}}},
        {"channels": {"webhook": {"url": "https://u:p@x.org/", "secret": SECRET}}},
        {"channels": {"webhook": {"url": "https://x.org/", "secret": "short"}}},
        {"channels": {"webhook": {"url": "https://x.org/", "secret": SECRET, "format": "xml"}}},
        {"channels": {"mqtt": {"topic": "alerts/#"}}},
        {"channels": {"mqtt": {"topic": "$SYS/x"}}},
        {"unknown_field": 1},
    ],
)
def test_invalid_specs_are_refused(change: dict) -> None:
    with pytest.raises(ValidationError):
        spec(**change)


def test_secret_is_write_only_and_patch_replaces_given_fields() -> None:
    s = spec(min_magnitude=4.0)
    pub = s.public()
    assert "secret" not in pub["channels"]["webhook"] and pub["channels"]["webhook"]["has_secret"] is True
    assert SECRET not in str(pub) and SECRET not in repr(s)
    assert s.stored()["channels"]["webhook"]["secret"] == SECRET
    p = SubscriberPatch.model_validate({"min_probability": 0.9, "min_magnitude": None})
    s2 = p.apply(s)
    assert s2.min_probability == 0.9 and s2.min_magnitude is None and s2.name == "school"
    assert s2.channels.webhook.secret.get_secret_value() == SECRET  # untouched channels keep the secret
    s3 = SubscriberPatch.model_validate({"channels": {"sse": True}}).apply(s)
    assert s3.channels.names() == ["sse"]
    with pytest.raises(ValidationError):
        SubscriberPatch.model_validate({"channels": None}).apply(s)


def test_thresholds_and_follow_ups() -> None:
    """Probability, magnitude and intensity thresholds gate the first message of an event; once
    sent, every later version (including CANCEL) follows; a CANCEL of an unsent event is not sent."""
    a = alert_msg(probability=0.8, magnitude=5.4)
    fc = forecasts(a, [sub()])["sub-0123456789abcdef"]
    assert sub(min_probability=0.7).decide(a, fc, False) == (True, "thresholds_met")
    assert sub(min_probability=0.9).decide(a, fc, False) == (False, "below_probability")
    assert sub(min_magnitude=5.0).decide(a, fc, False)[0]
    assert sub(min_magnitude=6.0).decide(a, fc, False) == (False, "below_magnitude")
    assert sub(min_magnitude=5.0).decide(alert_msg(magnitude=None), None, False) == (False, "no_magnitude")
    assert fc.mmi is not None
    assert sub(min_intensity=fc.mmi - 0.1).decide(a, fc, False)[0]
    assert sub(min_intensity=fc.mmi + 0.1).decide(a, fc, False) == (False, "below_intensity")
    assert sub(min_intensity=3).decide(a, None, False) == (False, "no_intensity_forecast")
    weak = alert_msg(2, pb.ALERT_TYPE_UPDATE, probability=0.3)
    assert sub(min_probability=0.9).decide(weak, fc, True) == (True, "follow_up")
    cancel = alert_msg(3, pb.ALERT_TYPE_CANCEL)
    assert sub().decide(cancel, None, False) == (False, "cancel_never_sent")
    assert sub().decide(cancel, None, True) == (True, "follow_up")
    static = static_subscribers("http://127.0.0.1:9/hook")[0]
    assert static.decide(weak, None, False) == (True, "static")


def test_forecast_matches_intensity_module_and_warning_time() -> None:
    """The per-subscriber S arrival, warning time and MMI are intensity.predict_site's, with the
    warning time counted from the alert's created time."""
    a = alert_msg(magnitude=6.0)
    subs = [sub(), Subscriber("sub-ffffffffffffffff", "ops", spec(latitude=36.0, vs30_m_s=300.0))]
    fc = forecasts(a, subs)
    for s in subs:
        want = predict_site(
            35.0,
            -118.0,
            8.0,
            6.0,
            a.origin_time_ns,
            s.spec.latitude,
            s.spec.longitude,
            vs30=s.spec.vs30_m_s or 760,
        )
        got = fc[s.id]
        assert got.s_arrival_ns == want.s_arrival_ns and got.mmi == pytest.approx(want.mmi)
        assert got.warning_time_s == pytest.approx(want.warning_s_at(a.created_time_ns))
        doc = got.as_dict(s.id)
        assert doc["s_arrival_time"].endswith("Z") and doc["subscriber_id"] == s.id
    near, far = fc[subs[0].id], fc[subs[1].id]
    assert far.epicentral_km > near.epicentral_km and far.warning_time_s > near.warning_time_s
    # ~33 km: S after ~9.8 s, alert made 6.1 s after origin -> ~3.7 s of warning.
    assert 3.0 < near.warning_time_s < 4.5 and near.s_arrival_ns - a.origin_time_ns == pytest.approx(
        9.8 * S, rel=0.05
    )
    assert forecasts(alert_msg(located=False), subs) == {}
    no_mag = forecasts(alert_msg(magnitude=None), subs)[subs[0].id]
    assert no_mag.mmi is None and no_mag.s_arrival_ns == near.s_arrival_ns


def _resolver(table: dict[str, list[str]]):  # noqa: ANN202
    def resolve(host: str, port: int, type: int = 0) -> list[tuple]:  # noqa: A002
        if host not in table:
            raise socket.gaierror(f"unknown host {host}")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, type, 6, "", (a, port)) for a in table[host]
        ]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10:8080/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT: not global
        "http://evil.example/hook",  # resolves to loopback
        "http://mixed.example/hook",  # one public, one private address
    ],
)
def test_private_targets_are_refused(url: str) -> None:
    resolve = _resolver({"evil.example": ["127.0.0.1"], "mixed.example": ["93.184.215.14", "10.0.0.7"]})

    def resolve_literals(host: str, port: int, type: int = 0) -> list[tuple]:  # noqa: A002
        try:
            return socket.getaddrinfo(host, port, type=type)
        except socket.gaierror:
            return resolve(host, port, type)

    with pytest.raises(TargetRefused) as ei:
        check_target(url, resolve=resolve_literals)
    assert ei.value.reason == "private_target"
    assert check_target(url, allow_private=True, resolve=resolve_literals)


def test_public_and_unresolvable_targets() -> None:
    resolve = _resolver({"hooks.example.org": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    assert check_target("https://hooks.example.org/x", resolve=resolve) == [  # the resolver's order
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]
    with pytest.raises(TargetRefused) as ei:
        check_target("https://nowhere.invalid/x", resolve=resolve)
    assert ei.value.reason == "unresolvable"
    with pytest.raises(TargetRefused):
        check_target("file:///etc/passwd")
    assert address_refused("8.8.8.8") is None and "loopback" in (address_refused("127.0.0.2") or "")


def test_localhost_name_is_refused_with_the_real_resolver() -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        check_target("http://localhost:8080/hook")


def test_static_subscribers_names() -> None:
    subs = static_subscribers(
        "http://127.0.0.1:8080/hook, https://user:pw@example.org/a?token=x,http://127.0.0.1:8080/hook",
        "k" * 20,
    )
    assert [s.label for s in subs] == ["127.0.0.1:8080/hook", "example.org:443/a", "127.0.0.1:8080/hook#2"]
    assert all("pw" not in s.id and "token" not in s.id for s in subs)
    assert subs[0].webhook() == ("http://127.0.0.1:8080/hook", "k" * 20, "json") and subs[0].channels == [
        "webhook"
    ]
    with pytest.raises(ConfigError):
        static_subscribers("ftp://x/")
    assert static_subscribers("") == []


def test_tokens_and_rate_limit() -> None:
    toks = parse_tokens("ops:" + "a" * 16 + ",dash:" + "b" * 16 + ":read, root:" + "c" * 20 + ":admin")
    assert [(t.name, t.role) for t in toks] == [("ops", "write"), ("dash", "read"), ("root", "admin")]
    assert "aaaa" not in repr(toks[0])
    for bad in ("ops", "ops:short", "ops:" + "a" * 16 + ":god", "a:" + "x" * 16 + ",a:" + "y" * 16):
        with pytest.raises(ConfigError):
            parse_tokens(bad)
    bucket = TokenBucket(rate_per_s=2.0, burst=3)
    assert [bucket.take("k", now=100.0)[0] for _ in range(4)] == [True, True, True, False]
    ok, wait = bucket.take("k", now=100.0)
    assert not ok and wait == pytest.approx(0.5)
    assert bucket.take("other", now=100.0)[0]  # buckets are per key
    assert bucket.take("k", now=100.5)[0] and not bucket.take("k", now=100.5)[0]  # 0.5 s refills one


def test_warning_time_range_follows_the_location_uncertainty() -> None:
    """An uncertain location widens the subscriber's warning-time range around the median one; a
    well-located one keeps it narrow (issue: sparse networks publish uncertain locations)."""
    subs = [sub()]
    tight = alert_msg(magnitude=6.0)
    tight.location_uncertainty_km = 2.0
    loose = alert_msg(magnitude=6.0)
    loose.location_uncertainty_km = 80.0
    t = forecasts(tight, subs)[subs[0].id]
    w = forecasts(loose, subs)[subs[0].id]
    assert t.warning_time_min_s <= t.warning_time_s <= t.warning_time_max_s
    assert w.warning_time_min_s <= w.warning_time_s <= w.warning_time_max_s
    assert (w.warning_time_max_s - w.warning_time_min_s) > 5 * (t.warning_time_max_s - t.warning_time_min_s)
    doc = w.as_dict(subs[0].id)
    assert doc["warning_time_min_s"] < doc["warning_time_s"] < doc["warning_time_max_s"]
