"""Signed CAP: every kind of message (new, update, cancel, unlocated, personalised) passes the
independent ``capvalidator`` package in strict mode (OASIS schema + XML signature), and a relayed
message whose content was changed no longer verifies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import capvalidator
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from signxml.exceptions import InvalidSignature

from services.alerting.association.intensity import SiteForecast
from services.alerting.formats.cap import CapConfig, alert_to_cap, verify_cap
from services.common.pb.eew.v1 import messages_pb2 as pb
from tests.unit.test_alerting_cap import alert_msg


def key_and_cert(kind: str = "rsa") -> tuple[bytes, bytes]:
    """A fresh private key and self-signed certificate (PEM), as an operator would configure."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else (
        ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eew-alerting test signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def signing() -> CapConfig:
    key, cert = key_and_cert()
    return CapConfig(signing_key_pem=key, signing_cert_pem=cert)


SITE = SiteForecast(35.3, -118.0, 20.0, 22.0, 10**18, 10**18 + 5 * 10**9, 4.2, 5.1, 0.05, 4.0)


def messages(cfg: CapConfig) -> dict[str, bytes]:
    return {
        "new": alert_to_cap(alert_msg(1, pb.ALERT_TYPE_NEW), cfg),
        "update": alert_to_cap(alert_msg(2, pb.ALERT_TYPE_UPDATE), cfg, [(1, 10**18)]),
        "cancel": alert_to_cap(alert_msg(3, pb.ALERT_TYPE_CANCEL), cfg, [(1, 10**18), (2, 10**18 + 1)]),
        "unlocated": alert_to_cap(alert_msg(1, pb.ALERT_TYPE_NEW, located=False), cfg),
        "personalised": alert_to_cap(alert_msg(2, pb.ALERT_TYPE_UPDATE), cfg, [(1, 10**18)], SITE),
    }


def test_every_signed_message_passes_capvalidator_strict(signing: CapConfig) -> None:
    for kind, doc in messages(signing).items():
        result = capvalidator.validate_cap_message(doc, strict=True)
        assert result.passed, (kind, result.message)
        assert verify_cap(doc, signing.signing_cert_pem).tag.endswith("alert")


def test_unsigned_messages_fail_strict_mode_as_reported() -> None:
    """Without a key the documents are unchanged (schema-valid, unsigned): the probe's finding."""
    for doc in messages(CapConfig()).values():
        assert capvalidator.check_schema(doc).passed
        assert capvalidator.validate_cap_message(doc, strict=True).message == "CAP alert has not been signed."


def test_ec_keys_sign_too(tmp_path: Path) -> None:
    key, cert = key_and_cert("ec")
    doc = alert_to_cap(alert_msg(1, pb.ALERT_TYPE_NEW), CapConfig(signing_key_pem=key, signing_cert_pem=cert))
    assert capvalidator.validate_cap_message(doc, strict=True).passed


def test_a_relayed_message_changed_on_the_way_does_not_verify(signing: CapConfig) -> None:
    doc = messages(signing)["new"]
    tampered = doc.replace(b"<msgType>Alert</msgType>", b"<msgType>Cancel</msgType>")
    assert tampered != doc
    assert not capvalidator.validate_cap_message(tampered, strict=True).passed
    with pytest.raises(InvalidSignature):
        verify_cap(tampered, signing.signing_cert_pem)
    other_key, other_cert = key_and_cert()
    with pytest.raises(InvalidSignature):  # signed, but not by the certificate the hub trusts
        verify_cap(doc, other_cert)


def test_key_without_certificate_is_a_config_error() -> None:
    key, _ = key_and_cert()
    with pytest.raises(ValueError, match="both"):
        CapConfig(signing_key_pem=key)
