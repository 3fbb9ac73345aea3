"""Signing credentials: an MP's private key and certificate, loaded from PFX or PEM, checked.

The DIP issues PFX files without a password; PEM key + certificate is accepted as an
alternative because some operators keep keys in a secrets manager that hands out PEM.
Loading checks everything a DIP rejection would otherwise reveal only after a round trip:
key and certificate belong together, key size, validity dates, and the signing purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.signing.scheme import certificate_header, sign_request

MIN_KEY_BITS = 2048
RECOMMENDED_KEY_BITS = 4096


class CredentialError(Exception):
    """A credential file cannot be used; the message names the file and what to do."""


class Severity(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    message: str


@dataclass(frozen=True)
class SigningCredential:
    """A private key with its certificate; ``sign`` is the only thing the hot path calls."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    source: str
    chain: tuple[x509.Certificate, ...] = ()
    cert_header: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.cert_header:
            object.__setattr__(self, "cert_header", certificate_header(self.certificate))

    @property
    def key_bits(self) -> int:
        return self.private_key.key_size

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @cached_property
    def serial_hex(self) -> str:
        """The certificate's serial number as lower-case hex (computed once: the ledger
        records it for every request)."""
        return format(self.certificate.serial_number, "x")

    @cached_property
    def fingerprint_sha256(self) -> str:
        """Lower-case hex SHA-256 of the DER certificate, what operators pin (computed once)."""
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    def days_to_expiry(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400.0

    def sign(self, method: str, url: str, body: bytes, when: datetime) -> dict[str, str]:
        return sign_request(method, url, body, when, self.private_key, self.cert_header)


def load_pfx(path: Path, password: bytes | None = None) -> SigningCredential:
    """Load a PKCS#12 file (the DIP's PFX, normally without a password)."""
    data = _read(path)
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        hint = (
            "the file needs a password (set the password file)"
            if password is None
            else "the password is wrong or the file is not a PFX"
        )
        raise CredentialError(f"{path}: cannot open PFX: {hint} ({exc})") from exc
    if key is None or cert is None:
        raise CredentialError(f"{path}: PFX must hold both a private key and its certificate")
    return SigningCredential(
        private_key=_rsa(key, path), certificate=cert, source=str(path), chain=tuple(extra)
    )


def load_pem(key_path: Path, cert_path: Path, password: bytes | None = None) -> SigningCredential:
    """Load a PEM private key and a PEM certificate (the first in the file is the signer's)."""
    try:
        key = serialization.load_pem_private_key(_read(key_path), password)
    except TypeError as exc:
        raise CredentialError(
            f"{key_path}: the key is encrypted: set its password file"
            if password is None
            else f"{key_path}: the key is not encrypted: remove the password"
        ) from exc
    except ValueError as exc:
        raise CredentialError(
            f"{key_path}: cannot read the PEM private key (wrong password or not a key): {exc}"
        ) from exc
    try:
        certs = x509.load_pem_x509_certificates(_read(cert_path))
    except ValueError as exc:
        raise CredentialError(f"{cert_path}: not a PEM certificate: {exc}") from exc
    return SigningCredential(
        private_key=_rsa(key, key_path),
        certificate=certs[0],
        source=f"{key_path}+{cert_path}",
        chain=tuple(certs[1:]),
    )


def load_credential(
    path: Path, cert_path: Path | None = None, password: bytes | None = None
) -> SigningCredential:
    """PFX when ``cert_path`` is None and the file is not PEM; PEM key + certificate otherwise."""
    if cert_path is not None:
        return load_pem(path, cert_path, password)
    data = _read(path)
    if b"-----BEGIN" in data:
        if b"PRIVATE KEY-----" in data and b"CERTIFICATE-----" in data:
            return load_pem(path, path, password)
        raise CredentialError(f"{path}: a PEM key needs its certificate too (--cert / *_cert)")
    return load_pfx(path, password)


def check_credential(credential: SigningCredential, now: datetime) -> list[Finding]:
    """Everything wrong (or fine) with a credential, worst first. ERROR means refuse to use it."""
    findings: list[Finding] = []
    cert_key = credential.certificate.public_key()
    if not isinstance(cert_key, rsa.RSAPublicKey) or (
        cert_key.public_numbers() != credential.private_key.public_key().public_numbers()
    ):
        findings.append(
            Finding(Severity.ERROR, "private key does not match the certificate's public key")
        )
    bits = credential.key_bits
    if bits < MIN_KEY_BITS:
        findings.append(Finding(Severity.ERROR, f"RSA key is {bits} bits; at least 2048 needed"))
    elif bits < RECOMMENDED_KEY_BITS:
        findings.append(
            Finding(
                Severity.WARNING, f"RSA key is {bits} bits; the DIP requires 4096 in production"
            )
        )
    cert = credential.certificate
    if now < cert.not_valid_before_utc:
        findings.append(
            Finding(Severity.ERROR, f"certificate not valid before {cert.not_valid_before_utc}")
        )
    elif now > cert.not_valid_after_utc:
        findings.append(Finding(Severity.ERROR, f"certificate expired {cert.not_valid_after_utc}"))
    elif credential.days_to_expiry(now) < 30:
        findings.append(
            Finding(
                Severity.WARNING,
                f"certificate expires in {credential.days_to_expiry(now):.1f} days "
                f"({cert.not_valid_after_utc})",
            )
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            findings.append(
                Finding(Severity.ERROR, "certificate's key usage does not allow digitalSignature")
            )
    except x509.ExtensionNotFound:
        pass
    if not findings:
        findings.append(
            Finding(Severity.OK, f"{bits}-bit RSA, valid until {cert.not_valid_after_utc}")
        )
    findings.sort(key=lambda f: [Severity.ERROR, Severity.WARNING, Severity.OK].index(f.severity))
    return findings


def usable_findings(credential: SigningCredential, now: datetime, what: str = "") -> list[Finding]:
    """:func:`check_credential`'s findings for a credential about to be used; raises
    :class:`CredentialError` (``what`` + source + every ERROR) when any finding refuses it."""
    findings = check_credential(credential, now)
    errors = [f.message for f in findings if f.severity is Severity.ERROR]
    if errors:
        raise CredentialError(f"{what}{credential.source}: " + "; ".join(errors))
    return findings


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CredentialError(f"{path}: file not found") from exc
    except OSError as exc:
        raise CredentialError(f"{path}: cannot read: {exc.strerror}") from exc


def _rsa(key: object, path: Path) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialError(
            f"{path}: the DIP signs with RSA keys; this key is {type(key).__name__}"
        )
    return key
