"""Opening credential files in worker processes, off the caller's interpreter.

Opening an RSA-4096 private key costs ~0.25 s of CPU, nearly all of it OpenSSL checking the
key (its factors' primality), and ``cryptography`` holds the GIL throughout. In the gateway's
process that stalls the event loop for each key a rotation reloads (a thread does not help: the
loop waits for the GIL), and at start-up the clients' keys open one after another (~26 s for
100). So a worker process opens each file with every check :func:`load_credential` makes, and
hands back the key and certificates as DER. The caller rebuilds them without repeating the key
check, which the worker has just made on the same key (``unsafe_skip_rsa_key_validation``:
microseconds). Keys open in parallel, one worker per CPU. The unencrypted key crosses a pipe
between the gateway and its own child; it is never written anywhere.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway._cpus import available_cpus
from gateway.signing.credentials import CredentialError, SigningCredential, load_credential

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CredentialFiles:
    """What :func:`load_credential` takes: a PFX, or a PEM key with its certificate."""

    key_path: Path
    cert_path: Path | None = None
    password: bytes | None = None


Loaded = SigningCredential | CredentialError
"""A credential, or why its files cannot be used."""


@dataclass(frozen=True)
class _Opened:
    key: bytes  # PKCS#8 DER, checked by the worker
    certificate: bytes
    chain: tuple[bytes, ...]
    source: str


def load_here(files: Sequence[CredentialFiles]) -> list[Loaded]:
    """Open each in this process (the caller's thread holds the GIL for each key check)."""
    return [_open(f) for f in files]


def load_in_workers(files: Sequence[CredentialFiles], workers: int | None = None) -> list[Loaded]:
    """Open each in a worker process, up to ``workers`` at a time (default: one per CPU this
    process may use, under a container's CPU limit); results in the order of ``files``.
    Spawned, not forked: the caller has threads."""
    if not files:
        return []
    count = min(len(files), workers or available_cpus())
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(count, mp_context=context) as pool:
            opened = list(pool.map(_open_for_transfer, files))
    except (BrokenProcessPool, OSError) as exc:  # no process could start, or one was killed
        _log.warning("credential_workers_failed", error=repr(exc), fallback="in process")
        return load_here(files)
    return [o if isinstance(o, CredentialError) else _rebuilt(o) for o in opened]


def _open(files: CredentialFiles) -> Loaded:
    try:
        return load_credential(files.key_path, files.cert_path, files.password)
    except CredentialError as exc:  # (an unreadable file too: the loaders say which)
        return exc


def _open_for_transfer(files: CredentialFiles) -> _Opened | CredentialError:
    """In the worker: every check, then the parts as bytes (key objects do not pickle)."""
    loaded = _open(files)
    if isinstance(loaded, CredentialError):
        return loaded
    der = serialization.Encoding.DER
    return _Opened(
        loaded.private_key.private_bytes(
            der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        loaded.certificate.public_bytes(der),
        tuple(c.public_bytes(der) for c in loaded.chain),
        loaded.source,
    )


def _rebuilt(opened: _Opened) -> SigningCredential:
    key = serialization.load_der_private_key(opened.key, None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)  # the worker's load_credential made sure
    return SigningCredential(
        private_key=key,
        certificate=x509.load_der_x509_certificate(opened.certificate),
        source=opened.source,
        chain=tuple(x509.load_der_x509_certificate(c) for c in opened.chain),
    )


__all__ = ["CredentialFiles", "Loaded", "load_here", "load_in_workers"]
