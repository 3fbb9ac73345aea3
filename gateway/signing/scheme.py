"""The DIP request-signing scheme as pure functions: bytes in, headers out.

Both directions use it: the gateway signs submissions with a client MP's key, and the DIP signs
the publications it pushes to our webhook with its own key. The scheme (DIP README):

1. ``X-DIP-Content-Hash``        base64(SHA-256(body bytes as sent))
2. ``X-DIP-Signature-Date``      UTC with milliseconds, ``2026-03-01T09:30:01.123Z``
3. string to sign                ``METHOD;lowercase(URL);date;content-hash`` (UTF-8)
4. ``X-DIP-Signature``           base64(RSASSA-PKCS1-v1_5 / SHA-256 over that string)
5. ``X-DIP-Signature-Certificate`` base64 of the signer's certificate as PEM text

Nothing here touches files, clocks or the network, so every step is a known-answer test.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HEADER_DATE = "X-DIP-Signature-Date"
HEADER_CONTENT_HASH = "X-DIP-Content-Hash"
HEADER_SIGNATURE = "X-DIP-Signature"
HEADER_CERTIFICATE = "X-DIP-Signature-Certificate"
SIGNATURE_HEADERS = (HEADER_DATE, HEADER_CONTENT_HASH, HEADER_SIGNATURE, HEADER_CERTIFICATE)

_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def content_hash(body: bytes) -> str:
    """Standard base64 of SHA-256 over the exact bytes on the wire."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def format_signature_date(when: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix. Naive datetimes are taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return f"{when.strftime(_DATE_FORMAT)}.{when.microsecond // 1000:03d}Z"


def parse_signature_date(value: str) -> datetime:
    """Parse ``X-DIP-Signature-Date``; raises ``ValueError`` on anything but an ISO UTC time."""
    text = value.strip()
    if not text.endswith("Z") and not text.endswith("+00:00"):
        raise ValueError(f"signature date {value!r} is not UTC (expected a trailing 'Z')")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(UTC)


def string_to_sign(method: str, url: str, signature_date: str, body_hash: str) -> bytes:
    """``METHOD;lowercase(URL);date;hash`` as UTF-8: the exact bytes that are signed."""
    return f"{method.upper()};{url.lower()};{signature_date};{body_hash}".encode()


def certificate_header(certificate: x509.Certificate) -> str:
    """Base64 of the certificate's PEM text, as carried in ``X-DIP-Signature-Certificate``."""
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    return base64.b64encode(pem).decode("ascii")


def certificate_from_header(value: str) -> x509.Certificate:
    """Inverse of :func:`certificate_header`; raises ``ValueError`` when it is not one."""
    try:
        pem = base64.b64decode(value.strip(), validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError("certificate header is not valid base64") from exc
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("certificate header does not hold a PEM certificate")
    return x509.load_pem_x509_certificate(pem)


def _sign_bytes(private_key: rsa.RSAPrivateKey, data: bytes) -> str:
    """RSASSA-PKCS1-v1_5 with SHA-256, standard base64. Deterministic for a given key."""
    signature = private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def sign_request(
    method: str,
    url: str,
    body: bytes,
    when: datetime,
    private_key: rsa.RSAPrivateKey,
    cert_header: str,
) -> dict[str, str]:
    """Return the four ``X-DIP-*`` headers for one request.

    ``cert_header`` is the precomputed :func:`certificate_header` of the signer: it never
    changes per request, so callers compute it once when they load the key.
    """
    body_hash = content_hash(body)
    date = format_signature_date(when)
    signature = _sign_bytes(private_key, string_to_sign(method, url, date, body_hash))
    return {
        HEADER_DATE: date,
        HEADER_CONTENT_HASH: body_hash,
        HEADER_SIGNATURE: signature,
        HEADER_CERTIFICATE: cert_header,
    }
