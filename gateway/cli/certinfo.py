"""Read and describe certificate files for the ``pki`` and ``check`` commands.

Operators receive certificates in whatever form the portal hands out (PEM, DER ``.cer``, PFX),
so every command that takes a certificate accepts all three, and every report describes a
certificate the same way: who it is, who issued it, when it expires, what it may be used for,
and whether the key next to it belongs to it. Nothing here prints or returns key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.signing.trust import fingerprint_sha256

PrivateKey = Any  # whatever cryptography loaded; only RSA keys are compared


class CertFileError(Exception):
    """A file is not a certificate (or key) in a form we can read; the message says why."""


@dataclass(frozen=True)
class CertFile:
    """What one file held: its certificates (leaf first), and a private key when it had one."""

    path: Path
    format: str  # "PFX", "PEM" or "DER"
    certificates: tuple[x509.Certificate, ...]
    private_key: PrivateKey | None

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]


def read_cert_file(path: Path, password: bytes | None = None) -> CertFile:
    """Read a PEM bundle (possibly with a key), a DER certificate, or a PKCS#12 file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CertFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise CertFileError(f"{path}: cannot read: {exc.strerror}") from None
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            certs = []
        if not certs:
            raise CertFileError(f"{path}: PEM file holds no certificate")
        key = _pem_key(data, password) if b"PRIVATE KEY-----" in data else None
        return CertFile(path, "PEM", tuple(certs), key)
    try:
        return CertFile(path, "DER", (x509.load_der_x509_certificate(data),), None)
    except ValueError:
        pass
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        hint = "it may need a password (--password-file)" if password is None else str(exc)
        raise CertFileError(
            f"{path}: not a PEM or DER certificate, and not a readable PFX: {hint}"
        ) from None
    if cert is None:
        raise CertFileError(f"{path}: PFX holds no certificate")
    return CertFile(path, "PFX", (cert, *extra), key)


def read_private_key(path: Path, password: bytes | None = None) -> PrivateKey:
    """A PEM private key (PKCS#1 or PKCS#8); raises :class:`CertFileError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CertFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise CertFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return _pem_key(data, password)
    except CertFileError as exc:
        raise CertFileError(f"{path}: {exc}") from None


def _pem_key(data: bytes, password: bytes | None) -> PrivateKey:
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError:
        raise CertFileError(
            "the private key is encrypted: give its password file"
            if password is None
            else "the private key is not encrypted: drop the password"
        ) from None
    except ValueError:
        raise CertFileError("not a readable PEM private key (or the password is wrong)") from None


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True when ``key`` is the private half of the certificate's RSA public key."""
    public = cert.public_key()
    if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
        return False
    return key.public_key().public_numbers() == public.public_numbers()


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def can_sign(cert: x509.Certificate) -> bool:
    """Key usage allows digitalSignature (or is unrestricted): what DIP message signing needs."""
    usage = _key_usage(cert)
    return usage is None or usage.digital_signature


def can_tls_client(cert: x509.Certificate) -> bool:
    """EKU allows TLS client authentication (or is unrestricted)."""
    eku = _eku(cert)
    return eku is None or any(
        oid in (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
        for oid in eku
    )


def purpose(cert: x509.Certificate) -> str:
    """The DIP purpose a certificate fits: ``Signing``, ``mTLS`` or ``mTLS & Signing``.

    DIP signing-only certificates carry keyUsage digitalSignature alone; mTLS certificates also
    carry keyEncipherment (RSA TLS key exchange) and EKU clientAuth. A DIP mTLS certificate
    always has digitalSignature too, so the two mTLS purposes cannot be told apart from the
    certificate: both are reported as ``mTLS & Signing``, which is what the key allows.
    """
    if is_ca(cert):
        return "CA"
    eku = _eku(cert) or []
    usage = _key_usage(cert)
    if ExtendedKeyUsageOID.SERVER_AUTH in eku:
        return "TLS server"
    signing = can_sign(cert)
    mtls = can_tls_client(cert) and (usage is None or usage.key_encipherment)
    if mtls and signing:
        return "mTLS & Signing"
    if mtls:
        return "mTLS"
    if signing:
        return "Signing"
    return "none (no digitalSignature, no clientAuth)"


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = [f"DNS:{n}" for n in sans.get_values_for_type(x509.DNSName)]
    out += [f"IP:{a}" for a in sans.get_values_for_type(x509.IPAddress)]
    return out


def _key_description(cert: x509.Certificate) -> tuple[str, int | None]:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA", public.key_size
    return type(public).__name__.lstrip("_"), getattr(public, "key_size", None)


def describe(
    cert: x509.Certificate, now: datetime, key: PrivateKey | None = None
) -> dict[str, Any]:
    """A JSON-ready description of one certificate (and whether ``key`` matches it)."""
    key_type, key_bits = _key_description(cert)
    usage = _key_usage(cert)
    usage_names: list[str] = []
    if usage is not None:
        for name in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ):
            if getattr(usage, name):
                usage_names.append(name)
    eku = _eku(cert)
    days_left = (cert.not_valid_after_utc - now).total_seconds() / 86400.0
    return {
        "subject": cert.subject.rfc4514_string(),
        "subject_alt_names": subject_alt_names(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": round(days_left, 1),
        "valid_now": cert.not_valid_before_utc <= now <= cert.not_valid_after_utc,
        "key_type": key_type,
        "key_bits": key_bits,
        "purpose": purpose(cert),
        "key_usage": usage_names if usage is not None else None,
        "extended_key_usage": [oid._name for oid in eku] if eku is not None else None,
        "key_match": None if key is None else key_matches(key, cert),
        "fingerprint_sha256": fingerprint_sha256(cert),
    }
