"""Standard Webhooks signatures: what a receiver accepts and what it must refuse (tampering of
body, id or timestamp, replays, by default), cross-checked with the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
import standardwebhooks

from services.alerting.exceptions import SignatureError
from services.alerting.formats.signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayCache,
    secret_key,
    sign,
    signature,
    verify,
)

SECRET = "s3cret-s3cret-s3cret"
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BODY = b'{"event_id":"eew-1","version":1}'
MSG_ID = "eew-1:1"
NOW = 1_700_000_000


def test_signature_is_the_standard_webhooks_construction() -> None:
    """v1,base64(HMAC-SHA256(key, id.timestamp.body)), checked against an independent HMAC."""
    mac = hmac.new(SECRET.encode(), f"{MSG_ID}.1700000000.".encode() + BODY, hashlib.sha256).digest()
    want = "v1," + base64.b64encode(mac).decode()
    assert signature(SECRET, MSG_ID, NOW, BODY) == want
    headers = sign(SECRET, MSG_ID, BODY, timestamp=NOW)
    assert headers == {ID_HEADER: MSG_ID, TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: want}
    assert secret_key(WHSEC) == b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("secret", [SECRET, WHSEC])
def test_standardwebhooks_library_verifies_our_signatures_and_we_verify_its(secret: str) -> None:
    """Interoperability both ways: an off-the-shelf verifier accepts what ``sign`` makes (whsec_
    secrets as they are, other secrets as their UTF-8 bytes), and ``verify`` accepts its signatures."""
    now = int(datetime.now(UTC).timestamp())
    headers = sign(secret, MSG_ID, BODY, timestamp=now)
    lib = standardwebhooks.Webhook(secret if secret.startswith("whsec_") else secret.encode())
    assert lib.verify(BODY, headers) == {"event_id": "eew-1", "version": 1}
    theirs = lib.sign(MSG_ID, datetime.fromtimestamp(now, UTC), BODY)
    lib_headers = {ID_HEADER: MSG_ID, TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: theirs}
    assert verify(secret, BODY, lib_headers, replay_cache=ReplayCache()) == MSG_ID
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        lib.verify(BODY, {**headers, ID_HEADER: "eew-1:2"})  # the id is signed too


def test_verify_accepts_fresh_signed_request_with_any_header_case() -> None:
    headers = {k.upper(): v for k, v in sign(SECRET, MSG_ID, BODY, timestamp=NOW).items()}
    assert verify(SECRET, BODY, headers, now=NOW + 10, replay_cache=ReplayCache()) == MSG_ID


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda h, b: (h, b + b" "), "signature_mismatch"),  # body changed
        (lambda h, b: ({**h, TIMESTAMP_HEADER: str(NOW + 1)}, b), "signature_mismatch"),  # timestamp changed
        (lambda h, b: ({**h, ID_HEADER: "eew-1:9"}, b), "signature_mismatch"),  # idempotency key changed
        (lambda h, b: ({k: v for k, v in h.items() if k != SIGNATURE_HEADER}, b), "missing_signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, b), "missing_timestamp"),
        (lambda h, b: ({k: v for k, v in h.items() if k != ID_HEADER}, b), "missing_id"),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: "soon"}, b), "bad_timestamp"),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "sha256=abc"}, b), "bad_signature_format"),
    ],
)
def test_verify_refuses_tampered_requests(mutate, reason: str) -> None:  # noqa: ANN001
    headers, body = mutate(sign(SECRET, MSG_ID, BODY, timestamp=NOW), BODY)
    with pytest.raises(SignatureError) as ei:
        verify(SECRET, body, headers, now=NOW, replay_cache=ReplayCache())
    assert ei.value.reason == reason


def test_wrong_secret_and_stale_or_future_timestamps_are_refused() -> None:
    headers = sign(SECRET, MSG_ID, BODY, timestamp=NOW)
    with pytest.raises(SignatureError, match="signature_mismatch"):
        verify("another-secret-value", BODY, headers, now=NOW)
    with pytest.raises(SignatureError, match="stale_timestamp"):
        verify(SECRET, BODY, headers, tolerance_s=300, now=NOW + 301)  # a replay of an old capture
    with pytest.raises(SignatureError, match="future_timestamp"):
        verify(SECRET, BODY, headers, tolerance_s=300, now=NOW - 301)


def test_replays_are_refused_by_default() -> None:
    """No cache passed: the process-wide one refuses the second identical request; a retry
    (signed afresh: new timestamp, same webhook-id) is not a replay."""
    body = b'{"event_id":"eew-default-cache","version":1}'
    headers = sign(SECRET, "eew-default-cache:1", body, timestamp=NOW)
    verify(SECRET, body, headers, now=NOW)
    with pytest.raises(SignatureError, match="replayed"):
        verify(SECRET, body, headers, now=NOW + 1)
    verify(SECRET, body, sign(SECRET, "eew-default-cache:1", body, timestamp=NOW + 2), now=NOW + 2)
    verify(SECRET, body, headers, now=NOW + 3, allow_replays=True)  # explicitly off


def test_replay_cache_stays_bounded() -> None:
    cache = ReplayCache(tolerance_s=10, max_entries=50)
    for i in range(500):
        assert cache.check_and_add(f"sig{i}", NOW + i, now=NOW + i)
    assert len(cache) <= 50


def test_secret_rotation_two_signatures() -> None:
    """The sender signs with old and new secret; receivers with either one accept."""
    headers = sign(["old-secret-old-secret", "new-secret-new-secret"], MSG_ID, BODY, timestamp=NOW)
    assert headers[SIGNATURE_HEADER].count("v1,") == 2 and " " in headers[SIGNATURE_HEADER]
    assert verify("old-secret-old-secret", BODY, headers, now=NOW, allow_replays=True) == MSG_ID
    assert verify(["new-secret-new-secret"], BODY, headers, now=NOW, allow_replays=True) == MSG_ID
    with pytest.raises(ValueError):
        sign("", MSG_ID, BODY)
    with pytest.raises(ValueError):
        sign(SECRET, "two words", BODY)
