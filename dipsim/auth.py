"""Who is calling: the mTLS client certificate, the API key's DIP ID, the request signature."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from cryptography import x509

from dipsim.config import SimulatorConfig
from gateway.signing.errors import SignatureRejected
from gateway.signing.trust import TrustPolicy, fingerprint_sha256
from gateway.signing.verify import VerifiedSigner, verify_request

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class ClientCert:
    subject: str
    fingerprint_sha256: str


@dataclass(frozen=True)
class RegisteredSender:
    """A DIP ID's registration: ``certificate`` is the first one registered; requests signed
    by any certificate in ``accepted`` pass (several while one is rotated in or out, as the DIP
    accepts a participant's old and new certificate during a rotation)."""

    dip_id: str
    certificate: x509.Certificate
    fingerprint_sha256: str
    api_keys: tuple[str, ...]
    role: str | None
    accepted: frozenset[str] = frozenset()


class AuthError(Exception):
    """Refuse the request with ``status`` (401/403) and a short reason."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class Authenticator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.senders: dict[str, RegisteredSender] = {}
        self.key_owner: dict[str, str] = {}
        self._peer_cache: dict[bytes, ClientCert] = {}
        self.trust: TrustPolicy | None = (
            TrustPolicy.from_files([config.client_ca]) if config.trust_signers_via_ca else None
        )
        self.max_skew = (
            timedelta(seconds=config.max_skew_seconds)
            if config.max_skew_seconds is not None
            else None
        )
        for dip_id, sender in config.senders.items():
            self.register(
                dip_id,
                sender.signing_cert,
                sender.api_keys,
                sender.role,
                sender.extra_signing_certs,
            )

    def register(
        self,
        dip_id: str,
        cert_path: Path,
        api_keys: list[str],
        role: str | None = None,
        extra_cert_paths: Sequence[Path] = (),
    ) -> RegisteredSender:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        extra = [x509.load_pem_x509_certificate(Path(p).read_bytes()) for p in extra_cert_paths]
        fingerprint = fingerprint_sha256(cert)
        accepted = frozenset([fingerprint, *(fingerprint_sha256(c) for c in extra)])
        reg = RegisteredSender(dip_id, cert, fingerprint, tuple(api_keys), role, accepted)
        self._replace(reg)
        return reg

    def rotate(
        self,
        dip_id: str,
        certificates: Sequence[x509.Certificate] | None = None,
        api_keys: Sequence[str] | None = None,
    ) -> RegisteredSender:
        """Replace what ``dip_id`` is accepted with: its signing certificates and/or its API
        keys (``None``: unchanged). A rotation registers the new one beside the old, then
        retires the old. ``KeyError`` for an unknown DIP ID; ``ValueError`` for an empty list."""
        reg = self.senders[dip_id]
        if certificates is not None:
            if not certificates:
                raise ValueError("certificates: at least one")
            accepted = frozenset(fingerprint_sha256(c) for c in certificates)
            reg = replace(
                reg,
                certificate=certificates[0],
                fingerprint_sha256=fingerprint_sha256(certificates[0]),
                accepted=accepted,
            )
        if api_keys is not None:
            if not api_keys:
                raise ValueError("api_keys: at least one")
            reg = replace(reg, api_keys=tuple(api_keys))
        self._replace(reg)
        return reg

    def _replace(self, reg: RegisteredSender) -> None:
        old = self.senders.get(reg.dip_id)
        if old is not None:
            for key in old.api_keys:
                if self.key_owner.get(key) == reg.dip_id:
                    del self.key_owner[key]
        self.senders[reg.dip_id] = reg
        for key in reg.api_keys:
            self.key_owner[key] = reg.dip_id

    def peer(self, request: web.Request) -> ClientCert | None:
        transport = request.transport
        if transport is None:
            return None
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return None
        found = self._peer_cache.get(der)
        if found is None:
            cert = x509.load_der_x509_certificate(der)
            found = ClientCert(cert.subject.rfc4514_string(), hashlib.sha256(der).hexdigest())
            if len(self._peer_cache) > 1024:
                self._peer_cache.clear()
            self._peer_cache[der] = found
        return found

    def api_key_owner(self, headers: Mapping[str, str]) -> str:
        key = headers.get(API_KEY_HEADER)
        if not key:
            raise AuthError(401, "missing_api_key", f"{API_KEY_HEADER} header is missing")
        owner = self.key_owner.get(key)
        if owner is None:
            raise AuthError(401, "unknown_api_key", f"{API_KEY_HEADER} is not a registered key")
        return owner

    @staticmethod
    def url_as_received(request: web.Request) -> str:
        host = request.headers.get("Host") or request.host
        return f"https://{host}{request.raw_path}"

    def verify(self, request: web.Request, body: bytes, dip_id: str) -> VerifiedSigner:
        """Verify the X-DIP-* signature and that the signer is ``dip_id``'s registered cert."""
        try:
            signer = verify_request(
                request.method,
                self.url_as_received(request),
                body,
                request.headers,
                self.trust,
                datetime.now(UTC),
                self.max_skew,
            )
        except SignatureRejected as exc:
            raise AuthError(401, exc.reason.value, exc.detail) from exc
        registered = self.senders.get(dip_id)
        if registered is None:
            raise AuthError(403, "unknown_dip_id", f"DIP ID {dip_id} is not registered")
        if signer.fingerprint_sha256 not in registered.accepted:
            raise AuthError(
                401,
                "wrong_signing_certificate",
                f"signed by {signer.subject}, not by the certificate registered for {dip_id}",
            )
        return signer

    def authenticate_as(self, request: web.Request, body: bytes, dip_id: str) -> VerifiedSigner:
        """API key of ``dip_id`` (403 when it is another DIP ID's) plus its signature."""
        owner = self.api_key_owner(request.headers)
        if owner != dip_id:
            raise AuthError(
                403, "api_key_of_other_dip_id", f"the API key is not one of DIP ID {dip_id}"
            )
        return self.verify(request, body, dip_id)
