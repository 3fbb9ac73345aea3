"""Verify a DIP-signed request: headers + URL + body + trust policy -> signer, or a reason.

Checks run cheapest-first and each failure names exactly what is wrong, because "why does the
DIP (or my gateway) reject this signature?" is the first question every integrator asks.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.signing.errors import RejectReason, SignatureRejected
from gateway.signing.scheme import (
    HEADER_CERTIFICATE,
    HEADER_CONTENT_HASH,
    HEADER_DATE,
    HEADER_SIGNATURE,
    certificate_from_header,
    content_hash,
    parse_signature_date,
    string_to_sign,
)
from gateway.signing.trust import TrustPolicy, fingerprint_sha256


@dataclass(frozen=True)
class VerifiedSigner:
    certificate: x509.Certificate
    subject: str
    fingerprint_sha256: str
    signature_date: datetime


def verify_request(
    method: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    trust: TrustPolicy | None,
    now: datetime,
    max_skew: timedelta | None = timedelta(minutes=5),
) -> VerifiedSigner:
    """Return the verified signer or raise :class:`SignatureRejected`.

    ``trust=None`` skips the certificate trust check (used only when the caller checks the
    certificate itself, e.g. the simulator comparing it to the one registered for a sender).
    ``max_skew=None`` disables the signature-date window (known-answer tests, replays).
    """
    date_text = _header(headers, HEADER_DATE)
    hash_text = _header(headers, HEADER_CONTENT_HASH)
    signature_text = _header(headers, HEADER_SIGNATURE)
    cert_text = _header(headers, HEADER_CERTIFICATE)

    try:
        signature_date = parse_signature_date(date_text)
    except ValueError as exc:
        raise SignatureRejected(
            RejectReason.MALFORMED_HEADER, f"{HEADER_DATE} {date_text!r}: {exc}"
        ) from exc
    signature = _b64(signature_text, HEADER_SIGNATURE)
    _b64(hash_text, HEADER_CONTENT_HASH)
    signer = _certificate(cert_text)
    certificate = signer.certificate

    if max_skew is not None and abs(now - signature_date) > max_skew:
        raise SignatureRejected(
            RejectReason.DATE_OUT_OF_SKEW,
            f"{HEADER_DATE} {date_text} is {abs(now - signature_date).total_seconds():.0f}s "
            f"from now ({now.isoformat()}); at most {max_skew.total_seconds():.0f}s allowed",
        )

    actual_hash = content_hash(body)
    # constant time: how far a guessed hash matches must not show in the answer's timing
    if not hmac.compare_digest(actual_hash.encode(), hash_text.strip().encode("utf-8", "replace")):
        raise SignatureRejected(
            RejectReason.BAD_CONTENT_HASH,
            f"{HEADER_CONTENT_HASH} {hash_text!r} does not match SHA-256 of the body "
            f"({actual_hash}, {len(body)} bytes)",
        )

    try:
        public_key = certificate.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise SignatureRejected(
            RejectReason.MALFORMED_HEADER,
            f"{HEADER_CERTIFICATE}: the certificate's public key cannot be read: {exc}",
        ) from None
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureRejected(
            RejectReason.MALFORMED_HEADER, "signer certificate does not hold an RSA key"
        )
    data = string_to_sign(method, url, date_text, hash_text.strip())
    try:
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise SignatureRejected(
            RejectReason.BAD_SIGNATURE,
            f"signature does not verify over {data.decode('utf-8', 'replace')!r} "
            "with the certificate's key",
        ) from exc

    _check_key_usage(certificate)
    if trust is not None:
        trust.check(certificate, now, fingerprint=signer.fingerprint_sha256)
    return VerifiedSigner(
        certificate=certificate,
        subject=signer.subject,
        fingerprint_sha256=signer.fingerprint_sha256,
        signature_date=signature_date,
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None or not value.strip():
        raise SignatureRejected(RejectReason.MISSING_HEADER, f"{name} is missing")
    return value


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureRejected(
            RejectReason.MALFORMED_HEADER, f"{name} is not standard base64"
        ) from exc


@dataclass(frozen=True, slots=True)
class _Signer:
    """A certificate header parsed, with what every request it signs reports of it."""

    certificate: x509.Certificate
    subject: str
    fingerprint_sha256: str


@lru_cache(maxsize=256)
def _parse_certificate(value: str) -> _Signer:
    certificate = certificate_from_header(value)
    return _Signer(
        certificate, certificate.subject.rfc4514_string(), fingerprint_sha256(certificate)
    )


def _certificate(value: str) -> _Signer:
    """Parse the certificate header; cached because a signer sends the same one every time
    (and so are its subject and fingerprint: a SHA-256 of the certificate per request)."""
    try:
        return _parse_certificate(value.strip())
    except ValueError as exc:
        raise SignatureRejected(
            RejectReason.MALFORMED_HEADER, f"{HEADER_CERTIFICATE}: {exc}"
        ) from exc


def _check_key_usage(certificate: x509.Certificate) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    except (ValueError, x509.DuplicateExtension) as exc:  # duplicate or malformed extensions
        raise SignatureRejected(
            RejectReason.MALFORMED_HEADER,
            f"{HEADER_CERTIFICATE}: the certificate's extensions do not parse: {exc}",
        ) from None
    if not usage.digital_signature:
        raise SignatureRejected(
            RejectReason.CERTIFICATE_NOT_FOR_SIGNING,
            f"{certificate.subject.rfc4514_string()} has no digitalSignature key usage",
        )
