"""Trust in a signer's certificate: a CA bundle to chain to, and/or pinned fingerprints.

A certificate carried in ``X-DIP-Signature-Certificate`` proves nothing by itself; it must be
issued (possibly through intermediates held in the bundle) by a configured anchor, or be one
of the pinned certificates, and every certificate on the way must be valid at the time asked.
Chain decisions are cached per certificate because the DIP signs with the same certificate for
months; validity dates are re-checked on every call because time moves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from gateway.signing.errors import RejectReason, SignatureRejected

_MAX_CHAIN_DEPTH = 6


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate (what operators pin)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def normalise_fingerprint(value: str) -> str:
    """Accept ``AB:CD:...`` or ``abcd...`` forms; return lower-case hex without separators."""
    cleaned = value.replace(":", "").replace(" ", "").strip().lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError(f"{value!r} is not a SHA-256 fingerprint (64 hex digits)")
    return cleaned


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; raises ``ValueError`` when there is none."""
    data = path.read_bytes()
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError(f"{path} holds no PEM certificate")
    return certs


@dataclass(frozen=True)
class TrustPolicy:
    """Anchors (CA certificates) and pinned signer fingerprints. Either may be empty, not both."""

    anchors: tuple[x509.Certificate, ...] = ()
    pinned_sha256: frozenset[str] = frozenset()
    _chain_cache: dict[str, tuple[x509.Certificate, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.anchors and not self.pinned_sha256:
            raise ValueError(
                "a trust policy needs at least one CA certificate or pinned fingerprint"
            )

    @classmethod
    def from_files(
        cls, ca_bundles: Iterable[Path] = (), pinned_sha256: Iterable[str] = ()
    ) -> TrustPolicy:
        anchors: list[x509.Certificate] = []
        for path in ca_bundles:
            anchors.extend(load_certificates(path))
        pins = frozenset(normalise_fingerprint(p) for p in pinned_sha256)
        return cls(anchors=tuple(anchors), pinned_sha256=pins)

    def check(self, certificate: x509.Certificate, at: datetime) -> None:
        """Raise :class:`SignatureRejected` unless ``certificate`` is trusted and valid ``at``."""
        _check_validity(certificate, at, "signer certificate")
        fingerprint = fingerprint_sha256(certificate)
        if fingerprint in self.pinned_sha256:
            return
        chain = self._chain(certificate, fingerprint)
        for issuer in chain:
            _check_validity(issuer, at, f"issuer {issuer.subject.rfc4514_string()}")

    def _chain(
        self, certificate: x509.Certificate, fingerprint: str
    ) -> tuple[x509.Certificate, ...]:
        with self._lock:
            cached = self._chain_cache.get(fingerprint)
        if cached is not None:
            return cached
        chain = self._build_chain(certificate)
        with self._lock:
            self._chain_cache[fingerprint] = chain
        return chain

    def _build_chain(self, certificate: x509.Certificate) -> tuple[x509.Certificate, ...]:
        if not self.anchors:
            raise SignatureRejected(
                RejectReason.UNTRUSTED_CERTIFICATE,
                f"{certificate.subject.rfc4514_string()} is not a pinned certificate",
            )
        chain: list[x509.Certificate] = []
        current = certificate
        for _ in range(_MAX_CHAIN_DEPTH):
            issuer = self._find_issuer(current)
            if issuer is None:
                break
            chain.append(issuer)
            if issuer.issuer == issuer.subject or issuer is current:
                return tuple(chain)
            current = issuer
        if chain:
            # Ended on a bundle certificate that is not self-signed: the operator trusted an
            # intermediate directly, which is a legitimate anchor.
            return tuple(chain)
        raise SignatureRejected(
            RejectReason.UNTRUSTED_CERTIFICATE,
            f"{certificate.subject.rfc4514_string()} (issuer "
            f"{certificate.issuer.rfc4514_string()}) does not chain to a trusted DIP CA",
        )

    def _find_issuer(self, certificate: x509.Certificate) -> x509.Certificate | None:
        for anchor in self.anchors:
            if anchor.subject != certificate.issuer:
                continue
            try:
                certificate.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return anchor
        return None


def _check_validity(certificate: x509.Certificate, at: datetime, what: str) -> None:
    if at < certificate.not_valid_before_utc:
        raise SignatureRejected(
            RejectReason.CERTIFICATE_NOT_YET_VALID,
            f"{what} is valid from {certificate.not_valid_before_utc.isoformat()}, "
            f"checked at {at.isoformat()}",
        )
    if at > certificate.not_valid_after_utc:
        raise SignatureRejected(
            RejectReason.CERTIFICATE_EXPIRED,
            f"{what} expired {certificate.not_valid_after_utc.isoformat()}, "
            f"checked at {at.isoformat()}",
        )
