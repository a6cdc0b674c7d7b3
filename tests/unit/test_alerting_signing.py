"""Webhook HMAC signatures: what a receiver accepts and what it must refuse (tampering, replays)."""

from __future__ import annotations

import pytest

from services.alerting.exceptions import SignatureError
from services.alerting.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayCache,
    sign,
    signature,
    verify,
)

SECRET = "s3cret-s3cret-s3cret"
BODY = b'{"event_id":"eew-1","version":1}'
NOW = 1_700_000_000


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """The documented construction, checked against an independent HMAC computation."""
    import hashlib
    import hmac

    want = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, NOW, BODY) == want
    headers = sign(SECRET, BODY, timestamp=NOW)
    assert headers == {TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: f"sha256={want}"}


def test_verify_accepts_fresh_signed_request_with_any_header_case() -> None:
    headers = {k.lower(): v for k, v in sign(SECRET, BODY, timestamp=NOW).items()}
    assert verify(SECRET, BODY, headers, now=NOW + 10) == NOW


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda h, b: (h, b + b" "), "signature_mismatch"),  # body changed
        (lambda h, b: ({**h, TIMESTAMP_HEADER: str(NOW + 1)}, b), "signature_mismatch"),  # timestamp changed
        (lambda h, b: ({k: v for k, v in h.items() if k != SIGNATURE_HEADER}, b), "missing_signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, b), "missing_timestamp"),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: "soon"}, b), "bad_timestamp"),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "md5=abc"}, b), "bad_signature_format"),
    ],
)
def test_verify_refuses_tampered_requests(mutate, reason: str) -> None:  # noqa: ANN001
    headers, body = mutate(sign(SECRET, BODY, timestamp=NOW), BODY)
    with pytest.raises(SignatureError) as ei:
        verify(SECRET, body, headers, now=NOW)
    assert ei.value.reason == reason


def test_wrong_secret_and_stale_or_future_timestamps_are_refused() -> None:
    headers = sign(SECRET, BODY, timestamp=NOW)
    with pytest.raises(SignatureError, match="signature_mismatch"):
        verify("another-secret-value", BODY, headers, now=NOW)
    with pytest.raises(SignatureError, match="stale_timestamp"):
        verify(SECRET, BODY, headers, tolerance_s=300, now=NOW + 301)  # a replay of an old capture
    with pytest.raises(SignatureError, match="future_timestamp"):
        verify(SECRET, BODY, headers, tolerance_s=300, now=NOW - 301)


def test_replay_cache_refuses_a_second_identical_request() -> None:
    cache = ReplayCache(tolerance_s=300)
    headers = sign(SECRET, BODY, timestamp=NOW)
    verify(SECRET, BODY, headers, now=NOW, replay_cache=cache)
    with pytest.raises(SignatureError, match="replayed"):
        verify(SECRET, BODY, headers, now=NOW + 1, replay_cache=cache)
    # A retry is signed afresh (new timestamp) and is not a replay.
    verify(SECRET, BODY, sign(SECRET, BODY, timestamp=NOW + 2), now=NOW + 2, replay_cache=cache)


def test_replay_cache_stays_bounded() -> None:
    cache = ReplayCache(tolerance_s=10, max_entries=50)
    for i in range(500):
        assert cache.check_and_add(f"sig{i}", NOW + i, now=NOW + i)
    assert len(cache._seen) <= 50


def test_secret_rotation_two_signatures() -> None:
    """The sender signs with old and new secret; receivers with either one accept."""
    headers = sign(["old-secret-old-secret", "new-secret-new-secret"], BODY, timestamp=NOW)
    assert headers[SIGNATURE_HEADER].count("sha256=") == 2
    assert verify("old-secret-old-secret", BODY, headers, now=NOW) == NOW
    assert verify(["new-secret-new-secret"], BODY, headers, now=NOW) == NOW
    with pytest.raises(ValueError):
        sign("", BODY)
