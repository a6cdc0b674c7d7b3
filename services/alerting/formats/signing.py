"""Webhook signatures, Standard Webhooks (https://www.standardwebhooks.com/): ``sign`` and ``verify``.

Every signed webhook request carries::

    webhook-id: <event_id>:<version>           (= Idempotency-Key: the same on every retry)
    webhook-timestamp: 1700000000              (Unix seconds when this attempt was signed)
    webhook-signature: v1,<base64 HMAC-SHA256> (over "<id>.<timestamp>.<body>"; several values
                                                separated by spaces while a secret is rotated)

The id, the timestamp and the raw body are all inside the signed text, so none of them can be
changed or re-sent later with a fresh timestamp; the body also carries ``event_id`` and
``version`` (JSON fields; the CAP identifier, the QuakeML public id). Receivers can verify with
any Standard Webhooks library (Python ``standardwebhooks``, JavaScript, Go, Java, ...):

* a secret written ``whsec_<base64>`` (what the spec recommends: 24-64 random bytes) is used as
  is by those libraries and here (the key is the decoded bytes);
* any other secret string is used as its UTF-8 bytes: pass those bytes to the library
  (``standardwebhooks.Webhook(secret.encode())``) or ``"whsec_" + base64(secret)``.

``verify`` refuses timestamps more than ``tolerance_s`` from the receiver's clock and, by default,
exact replays within that window (a process-wide ``ReplayCache`` that forgets entries once they
are stale). Retries are signed afresh (new timestamp, same ``webhook-id``): deduplicate on
``webhook-id``, not on the signature.

Receiver example (any framework; ``body`` are the raw request bytes, not re-serialised JSON)::

    from services.alerting.formats.signing import verify, SignatureError
    try:
        verify(secret, body, request.headers)
    except SignatureError as exc:
        return 401, exc.reason
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Iterable, Mapping

from services.alerting.exceptions import SignatureError

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
VERSION = "v1"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300.0

Secret = str | bytes


def secret_key(secret: Secret) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded, other strings as UTF-8, bytes as is."""
    if isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    elif secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :] + "==", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"a {SECRET_PREFIX} secret must be base64: {exc}") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def signature(secret: Secret, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, f"{msg_id}.{timestamp}." + body)>``."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{int(timestamp)}.".encode() + body, hashlib.sha256)
    return f"{VERSION},{base64.b64encode(mac.digest()).decode()}"


def _keys(secrets: Secret | Iterable[Secret]) -> list[Secret]:
    keys = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    if not keys or any(not k for k in keys):
        raise ValueError("signing needs a non-empty secret")
    return keys


def sign(
    secrets: Secret | Iterable[Secret], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (one signature per secret: rotation)."""
    if not msg_id or any(c in msg_id for c in " \r\n"):
        raise ValueError("webhook-id must be non-empty without spaces or newlines")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    value = " ".join(signature(k, msg_id, ts, body) for k in _keys(secrets))
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: value}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for k, v in headers.items():
            if k.lower() == name:
                return v
    return value


class ReplayCache:
    """Accepted signatures, each forgotten once older than the tolerance (TTL; bounded size)."""

    def __init__(self, tolerance_s: float = DEFAULT_TOLERANCE_S, max_entries: int = 100_000) -> None:
        self.tolerance_s = tolerance_s
        self.max_entries = max_entries
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def check_and_add(self, sig: str, timestamp: int, now: float) -> bool:
        """True if ``sig`` was not seen before (and remember it); False for a replay."""
        with self._lock:
            if len(self._seen) >= self.max_entries:
                horizon = now - 2 * self.tolerance_s  # older ones are refused as stale anyway
                self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
                if len(self._seen) >= self.max_entries:  # still full: forget the oldest half
                    keep = sorted(self._seen.items(), key=lambda kv: kv[1])[len(self._seen) // 2 :]
                    self._seen = dict(keep)
            if sig in self._seen:
                return False
            self._seen[sig] = timestamp
            return True


DEFAULT_REPLAY_CACHE = ReplayCache()


def verify(
    secrets: Secret | Iterable[Secret],
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
    replay_cache: ReplayCache | None = None,
    allow_replays: bool = False,
) -> str:
    """Check a signed request; return its ``webhook-id`` or raise ``SignatureError(reason)``.

    Replays are refused through ``replay_cache`` (default: the process-wide one) unless
    ``allow_replays``. Reasons: ``missing_id``, ``missing_timestamp``, ``bad_timestamp``,
    ``stale_timestamp``, ``future_timestamp``, ``missing_signature``, ``bad_signature_format``,
    ``signature_mismatch``, ``replayed``.
    """
    keys = _keys(secrets)
    now = time.time() if now is None else now
    msg_id = _header(headers, ID_HEADER)
    if not msg_id:
        raise SignatureError("missing_id")
    ts_text = _header(headers, TIMESTAMP_HEADER)
    if not ts_text:
        raise SignatureError("missing_timestamp")
    try:
        ts = int(ts_text.strip())
    except ValueError:
        raise SignatureError("bad_timestamp", ts_text[:40]) from None
    if ts < now - tolerance_s:
        raise SignatureError("stale_timestamp", f"{now - ts:.0f} s old, tolerance {tolerance_s:.0f} s")
    if ts > now + tolerance_s:
        raise SignatureError("future_timestamp", f"{ts - now:.0f} s ahead, tolerance {tolerance_s:.0f} s")
    sig_text = _header(headers, SIGNATURE_HEADER)
    if not sig_text:
        raise SignatureError("missing_signature")
    given = [p for p in sig_text.split() if p.startswith(f"{VERSION},")]
    if not given:
        raise SignatureError("bad_signature_format", sig_text[:80])
    expected = [signature(k, msg_id, ts, body) for k in keys]
    match = None
    for g in given:
        for e in expected:
            if hmac.compare_digest(g.encode(), e.encode()):
                match = e
    if match is None:
        raise SignatureError("signature_mismatch")
    if not allow_replays:
        cache = replay_cache if replay_cache is not None else DEFAULT_REPLAY_CACHE
        if not cache.check_and_add(match, ts, now):
            raise SignatureError("replayed", "this signature was accepted before")
    return msg_id
