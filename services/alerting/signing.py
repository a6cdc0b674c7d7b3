"""HMAC-SHA256 webhook signatures: the sender's ``sign`` and the receiver's ``verify``.

Every webhook request carries::

    X-EEW-Timestamp: 1700000000                 (Unix seconds when this attempt was signed)
    X-EEW-Signature: sha256=<hex digest>        (HMAC-SHA256(secret, timestamp + "." + body))

The timestamp is inside the signed text, so a captured request cannot be re-sent later with a
fresh timestamp; ``verify`` refuses timestamps more than ``tolerance_s`` away from the receiver's
clock (a stale request is a replay, or a retry too old to matter for early warning). Within the
tolerance an exact replay can be refused too with a ``ReplayCache`` (it remembers the signatures
it accepted until they go stale). Retries are signed afresh, so each attempt has its own
signature; deduplicate deliveries on ``Idempotency-Key`` (``<event_id>:<version>``), not on the
signature. Several ``sha256=`` values separated by commas are accepted (secret rotation: the
sender signs with the old and the new secret while receivers switch over).

Receiver example (any framework; ``body`` are the raw request bytes, not re-serialised JSON)::

    from services.alerting.signing import verify, SignatureError
    try:
        verify(secret, body, request.headers)
    except SignatureError as exc:
        return 401, exc.reason
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterable, Mapping

from services.alerting.exceptions import SignatureError

TIMESTAMP_HEADER = "X-EEW-Timestamp"
SIGNATURE_HEADER = "X-EEW-Signature"
SCHEME = "sha256"
DEFAULT_TOLERANCE_S = 300.0


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}." + body`` under ``secret``."""
    return hmac.new(_key(secret), f"{int(timestamp)}.".encode() + body, hashlib.sha256).hexdigest()


def sign(
    secrets: str | bytes | Iterable[str | bytes], body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The two signature headers for ``body`` (one ``sha256=`` value per secret)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    keys = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    if not keys or any(not k for k in keys):
        raise ValueError("signing needs a non-empty secret")
    value = ",".join(f"{SCHEME}={signature(k, ts, body)}" for k in keys)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: value}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        for k, v in headers.items():
            if k.lower() == lower:
                return v
    return value


class ReplayCache:
    """Remembers accepted signatures until they are older than the tolerance (bounded size)."""

    def __init__(self, tolerance_s: float = DEFAULT_TOLERANCE_S, max_entries: int = 100_000) -> None:
        self.tolerance_s = tolerance_s
        self.max_entries = max_entries
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def check_and_add(self, sig: str, timestamp: int, now: float) -> bool:
        """True if ``sig`` was not seen before (and remember it); False for a replay."""
        with self._lock:
            if len(self._seen) >= self.max_entries:
                horizon = now - 2 * self.tolerance_s
                self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
                if len(self._seen) >= self.max_entries:  # still full: forget the oldest half
                    keep = sorted(self._seen.items(), key=lambda kv: kv[1])[len(self._seen) // 2 :]
                    self._seen = dict(keep)
            if sig in self._seen:
                return False
            self._seen[sig] = timestamp
            return True


def verify(
    secrets: str | bytes | Iterable[str | bytes],
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
    replay_cache: ReplayCache | None = None,
) -> int:
    """Check a signed request; return its timestamp or raise ``SignatureError(reason)``.

    Reasons: ``missing_timestamp``, ``bad_timestamp``, ``stale_timestamp``, ``future_timestamp``,
    ``missing_signature``, ``bad_signature_format``, ``signature_mismatch``, ``replayed``.
    """
    keys = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    if not keys or any(not k for k in keys):
        raise ValueError("verifying needs a non-empty secret")
    now = time.time() if now is None else now
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
    given: list[str] = []
    for part in sig_text.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME and len(value) == 64:
            given.append(value.lower())
    if not given:
        raise SignatureError("bad_signature_format", sig_text[:80])
    expected = [signature(k, ts, body) for k in keys]
    match = None
    for g in given:
        for e in expected:
            if hmac.compare_digest(g, e):
                match = g
    if match is None:
        raise SignatureError("signature_mismatch")
    if replay_cache is not None and not replay_cache.check_and_add(match, ts, now):
        raise SignatureError("replayed", "this signature was accepted before")
    return ts
