"""Trust in a signer's certificate: a CA bundle to chain to, and/or pinned fingerprints.

A certificate carried in ``X-DIP-Signature-Certificate`` proves nothing by itself; it must be
issued (possibly through intermediates held in the bundle) by a configured anchor, or be one
of the pinned certificates, and every certificate on the way must be valid at the time asked.
Chain and signer-name decisions are cached per certificate because the DIP signs with the same
certificate for months; validity dates are re-checked on every call because time moves.

Only CA certificates act as issuers: ``BasicConstraints`` ``ca=True``, ``keyCertSign`` when the
certificate has a ``KeyUsage``, and a ``pathLen`` no smaller than the number of CAs below it. A
leaf that happens to be in the bundle (or whose key signed something) issues nothing.

Chaining to the anchor is not enough for a DIP signer: the DIP's CA also issues every Market
Participant's signing certificate, and an MP must not be able to sign "publications". So a
policy built with ``signer_names`` accepts a chained certificate only when its subject CN or
one of its DNS subjectAltNames is one of those names (``trust.signer_names``); a pinned
certificate is accepted by its fingerprint alone. A policy without ``signer_names`` accepts any
chained certificate: that is for callers that judge the signer otherwise (the simulator, which
compares an MP's certificate with the one registered for its DIP ID; ``pki verify``).
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
from gateway.signing.fingerprint import normalise_fingerprint

_MAX_CHAIN_DEPTH = 6


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate (what operators pin)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def certificate_names(certificate: x509.Certificate) -> frozenset[str]:
    """Lower-case subject CN(s) and DNS subjectAltNames; ``ValueError`` (or
    ``x509.DuplicateExtension``) when the certificate's extensions do not parse."""
    names = {
        str(a.value).lower()
        for a in certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    }
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return frozenset(names)
    names.update(n.lower() for n in sans.value.get_values_for_type(x509.DNSName))
    return frozenset(names)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; raises ``ValueError`` when there is none."""
    data = path.read_bytes()
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError(f"{path} holds no PEM certificate")
    return certs


@dataclass(frozen=True)
class TrustPolicy:
    """Anchors (CA certificates) and pinned signer fingerprints. Either may be empty, not both.

    ``signer_names``: when not empty, a certificate trusted through the anchors must carry one
    of these names (subject CN or DNS subjectAltName, case-insensitive); see the module text.
    """

    anchors: tuple[x509.Certificate, ...] = ()
    pinned_sha256: frozenset[str] = frozenset()
    signer_names: frozenset[str] = frozenset()
    _chain_cache: dict[str, tuple[x509.Certificate, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.anchors and not self.pinned_sha256:
            raise ValueError(
                "a trust policy needs at least one CA certificate or pinned fingerprint"
            )
        object.__setattr__(
            self, "signer_names", frozenset(n.strip().lower() for n in self.signer_names)
        )

    @classmethod
    def from_files(
        cls,
        ca_bundles: Iterable[Path] = (),
        pinned_sha256: Iterable[str] = (),
        signer_names: Iterable[str] = (),
    ) -> TrustPolicy:
        anchors: list[x509.Certificate] = []
        for path in ca_bundles:
            anchors.extend(load_certificates(path))
        pins = frozenset(normalise_fingerprint(p) for p in pinned_sha256)
        return cls(anchors=tuple(anchors), pinned_sha256=pins, signer_names=frozenset(signer_names))

    def check(
        self, certificate: x509.Certificate, at: datetime, *, fingerprint: str | None = None
    ) -> None:
        """Raise :class:`SignatureRejected` unless ``certificate`` is trusted and valid ``at``
        (``fingerprint``: its :func:`fingerprint_sha256`, when the caller has it already)."""
        _check_validity(certificate, at, "signer certificate")
        if fingerprint is None:
            fingerprint = fingerprint_sha256(certificate)
        if fingerprint in self.pinned_sha256:
            return
        chain = self._chain(certificate, fingerprint)
        for issuer in chain:
            _check_validity(issuer, at, f"issuer {issuer.subject.rfc4514_string()}")

    def _check_name(self, certificate: x509.Certificate) -> None:
        try:
            names = certificate_names(certificate)
        except (ValueError, x509.DuplicateExtension) as exc:
            raise SignatureRejected(
                RejectReason.MALFORMED_HEADER, f"signer certificate names do not parse: {exc}"
            ) from None
        if names & self.signer_names:
            return
        raise SignatureRejected(
            RejectReason.SIGNER_NOT_ALLOWED,
            f"{certificate.subject.rfc4514_string()} chains to the DIP CA but is not a DIP "
            f"signer: its names ({', '.join(sorted(names)) or 'none'}) are not in "
            f"trust.signer_names ({', '.join(sorted(self.signer_names))})",
        )

    def _chain(
        self, certificate: x509.Certificate, fingerprint: str
    ) -> tuple[x509.Certificate, ...]:
        with self._lock:
            cached = self._chain_cache.get(fingerprint)
        if cached is not None:
            return cached
        chain = self._build_chain(certificate)
        if self.signer_names:
            # Like the chain, a property of the certificate: judged once, then cached with it.
            self._check_name(certificate)
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
            # CAs already on the chain below the next issuer (the leaf does not count).
            issuer = self._find_issuer(current, cas_below=len(chain))
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

    def _find_issuer(
        self, certificate: x509.Certificate, cas_below: int
    ) -> x509.Certificate | None:
        """The bundle CA that issued ``certificate``, or None when the bundle has none.

        Raises when the only certificates in the bundle that did issue it may not issue
        (not a CA, no keyCertSign, pathLen exceeded): that is a broken or forged chain, not
        the end of a chain at an intermediate the operator trusts directly."""
        refused: list[str] = []
        for anchor in self.anchors:
            if anchor.subject != certificate.issuer:
                continue
            try:
                certificate.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            why = _may_not_issue(anchor, cas_below)
            if why is None:
                return anchor
            refused.append(f"{anchor.subject.rfc4514_string()} {why}")
        if refused:
            raise SignatureRejected(
                RejectReason.UNTRUSTED_CERTIFICATE,
                f"{certificate.subject.rfc4514_string()} was signed by a bundle certificate "
                f"that may not issue certificates: {'; '.join(refused)}",
            )
        return None


def _may_not_issue(candidate: x509.Certificate, cas_below: int) -> str | None:
    """Why ``candidate`` may not issue a certificate with ``cas_below`` intermediate CAs
    under it, or None when it may: a CA (basicConstraints ca=True), allowed to sign
    certificates (keyCertSign when it has a keyUsage), whose pathLen leaves room."""
    try:
        extensions = candidate.extensions
        basic = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "is not a CA (no basicConstraints)"
    except (ValueError, x509.DuplicateExtension) as exc:
        return f"has extensions that do not parse ({exc})"
    if not basic.ca:
        return "is not a CA (basicConstraints ca=False)"
    if basic.path_length is not None and cas_below > basic.path_length:
        return f"allows {basic.path_length} CA(s) below it (pathLen), the chain has {cas_below}"
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return None if usage.key_cert_sign else "has a keyUsage without keyCertSign"


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
