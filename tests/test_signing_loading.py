"""Credentials opened in worker processes (gateway/signing/loading.py) are the credentials
opened here: same key (a PKCS#1 v1.5 signature is deterministic, so both sign byte for byte
alike), same certificate and chain, and the same refusal, in the same order, for files that
cannot be used. The key store opens several at start-up, and every reload, in workers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gateway.signing import keystore as keystore_module
from gateway.signing import loading
from gateway.signing.credentials import CredentialError, SigningCredential
from gateway.signing.keystore import DipIdSpec, KeyStore, SignerSpec
from gateway.signing.loading import CredentialFiles, Loaded, load_here, load_in_workers
from gateway.signing.pki import cert_pem, key_pem, pfx_bytes
from tests import pki_fixtures
from tests.pki_fixtures import Pki

pki = pki_fixtures.pki  # the session fixture, used by name below

_DATA = b"what the DIP's signature covers"


def _signature(credential: SigningCredential) -> bytes:
    return credential.private_key.sign(_DATA, padding.PKCS1v15(), hashes.SHA256())


def _files(pki: Pki, folder: Path) -> list[CredentialFiles]:
    """Good and bad files: a PFX with its chain, a password-protected PFX, PEM key + cert,
    then a PFX with the wrong password, a missing file, and a file that is no PFX."""
    chained = folder / "chained.pfx"
    chained.write_bytes(pfx_bytes(pki.chained.key, pki.chained.cert, [pki.intermediate.cert]))
    locked = folder / "locked.pfx"
    locked.write_bytes(pfx_bytes(pki.signer_b.key, pki.signer_b.cert, password=b"s3cret"))
    key, cert = folder / "signer.key", folder / "signer.pem"
    key.write_bytes(key_pem(pki.signer.key))
    cert.write_bytes(cert_pem(pki.signer.cert))
    broken = folder / "broken.pfx"
    broken.write_bytes(b"not a PFX")
    return [
        CredentialFiles(chained),
        CredentialFiles(locked, password=b"s3cret"),
        CredentialFiles(key, cert),
        CredentialFiles(locked, password=b"wrong"),
        CredentialFiles(folder / "missing.pfx"),
        CredentialFiles(broken),
    ]


def _described(results: list[Loaded]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for result in results:
        if isinstance(result, CredentialError):
            out.append(("refused", str(result)))
        else:
            out.append(
                (
                    result.source,
                    result.certificate,
                    result.chain,
                    result.private_key.private_numbers(),
                    _signature(result),
                )
            )
    return out


def test_workers_open_what_this_process_opens(pki: Pki, tmp_path: Path) -> None:
    files = _files(pki, tmp_path)
    here, there = load_here(files), load_in_workers(files, workers=2)
    assert _described(there) == _described(here)
    assert [isinstance(r, CredentialError) for r in there] == [False] * 3 + [True] * 3
    chained = there[0]
    assert isinstance(chained, SigningCredential)
    assert chained.chain == (pki.intermediate.cert,)
    public = pki.chained.cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(_signature(chained), _DATA, padding.PKCS1v15(), hashes.SHA256())


def test_no_worker_process_means_opening_here(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_processes(*args: Any, **kwargs: Any) -> Any:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(loading, "ProcessPoolExecutor", no_processes)
    files = _files(pki, tmp_path)
    assert _described(load_in_workers(files)) == _described(load_here(files))


def test_the_key_store_opens_several_and_every_reload_in_workers(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []

    def spy(name: str, opener: Any) -> Any:
        def opened(files: list[CredentialFiles]) -> list[Loaded]:
            calls.append((name, len(files)))
            return opener(files)  # type: ignore[no-any-return]

        return opened

    monkeypatch.setattr(keystore_module, "load_here", spy("here", load_here))
    monkeypatch.setattr(keystore_module, "load_in_workers", spy("workers", load_in_workers))
    api_key = tmp_path / "api-key"
    api_key.write_text("key\n")
    paths = []
    for name, issued in (("a", pki.signer), ("b", pki.signer_b)):
        paths.append(tmp_path / f"{name}.pfx")
        paths[-1].write_bytes(pfx_bytes(issued.key, issued.cert))
    KeyStore([SignerSpec("a", paths[0])], [DipIdSpec("1400010001", "a", api_key)])
    store = KeyStore(
        [SignerSpec("a", paths[0]), SignerSpec("b", paths[1])],
        [DipIdSpec("1400010001", "a", api_key), DipIdSpec("1400010002", "b", api_key)],
    )
    assert calls == [("here", 1), ("workers", 2)]
    rotated = tmp_path / "rotated.pfx"
    rotated.write_bytes(pfx_bytes(pki.signer.key, pki.signer.cert))
    os.replace(rotated, paths[1])  # how Kubernetes and deploy tools replace a file
    [event] = store.reload_if_changed()
    assert event.ok and calls[-1] == ("workers", 1)
    assert store.signer_for("1400010002").certificate == pki.signer.cert
