"""Loading PFX and PEM credentials, and the checks that refuse unusable ones.

A credential the DIP would reject (wrong key, expired, not for signing, weak key) must be
refused when the key store loads it, not discovered after the first submission fails.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.signing.credentials import (
    CredentialError,
    Severity,
    SigningCredential,
    check_credential,
    load_credential,
    load_pem,
    load_pfx,
)
from gateway.signing.keystore import DipIdSpec, KeyStore, SignerSpec
from gateway.signing.pki import Issued, cert_pem, key_pem
from tests import pki_fixtures
from tests.pki_fixtures import VECTOR_NOW, VECTORS, Pki, now, write_pem, write_pfx

pki = pki_fixtures.pki  # the session fixture, used by name below


def _store(tmp_path: Path, key: Path, cert: Path | None = None) -> KeyStore:
    api_key = tmp_path / "api-key"
    api_key.write_text("secret-api-key\n")
    return KeyStore([SignerSpec("mp", key, cert)], [DipIdSpec("1400010001", "mp", api_key)])


def _severities(issued: Issued) -> dict[Severity, list[str]]:
    findings = check_credential(SigningCredential(issued.key, issued.cert, "test"), now())
    out: dict[Severity, list[str]] = {}
    for finding in findings:
        out.setdefault(finding.severity, []).append(finding.message)
    return out


def test_vector_pfx_without_password() -> None:
    credential = load_pfx(VECTORS / "mp-signing.pfx")
    assert credential.key_bits == 4096
    findings = check_credential(credential, VECTOR_NOW)
    assert [f.severity for f in findings] == [Severity.OK]


def test_pfx_with_password(pki: Pki, tmp_path: Path) -> None:
    path = write_pfx(tmp_path / "p.pfx", pki.signer, password=b"s3cret")
    assert load_pfx(path, b"s3cret").subject == pki.signer.cert.subject.rfc4514_string()


def test_pfx_wrong_password(pki: Pki, tmp_path: Path) -> None:
    path = write_pfx(tmp_path / "p.pfx", pki.signer, password=b"s3cret")
    with pytest.raises(CredentialError, match="password is wrong"):
        load_pfx(path, b"guess")


def test_pfx_missing_password(pki: Pki, tmp_path: Path) -> None:
    path = write_pfx(tmp_path / "p.pfx", pki.signer, password=b"s3cret")
    with pytest.raises(CredentialError, match="needs a password"):
        load_pfx(path)


def test_pfx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="file not found"):
        load_pfx(tmp_path / "absent.pfx")


def test_pem_key_and_cert(pki: Pki, tmp_path: Path) -> None:
    key, cert = write_pem(tmp_path, "mp", pki.signer)
    credential = load_credential(key, cert)
    assert credential.certificate == pki.signer.cert


def test_pem_combined_file(pki: Pki, tmp_path: Path) -> None:
    combined = tmp_path / "both.pem"
    combined.write_bytes(key_pem(pki.signer.key) + cert_pem(pki.signer.cert))
    assert load_credential(combined).certificate == pki.signer.cert


def test_pem_key_alone_refused(pki: Pki, tmp_path: Path) -> None:
    key, _ = write_pem(tmp_path, "mp", pki.signer)
    with pytest.raises(CredentialError, match="needs its certificate"):
        load_credential(key)


def _encrypted_key(issued: Issued, path: Path, password: bytes) -> Path:
    path.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )
    return path


def test_encrypted_pem_with_password(pki: Pki, tmp_path: Path) -> None:
    key = _encrypted_key(pki.signer, tmp_path / "k.pem", b"pw")
    _, cert = write_pem(tmp_path, "mp", pki.signer)
    assert load_pem(key, cert, b"pw").certificate == pki.signer.cert


def test_encrypted_pem_missing_password(pki: Pki, tmp_path: Path) -> None:
    key = _encrypted_key(pki.signer, tmp_path / "k.pem", b"pw")
    _, cert = write_pem(tmp_path, "mp", pki.signer)
    with pytest.raises(CredentialError, match="encrypted"):
        load_pem(key, cert)


def test_encrypted_pem_wrong_password(pki: Pki, tmp_path: Path) -> None:
    key = _encrypted_key(pki.signer, tmp_path / "k.pem", b"pw")
    _, cert = write_pem(tmp_path, "mp", pki.signer)
    with pytest.raises(CredentialError, match="wrong password"):
        load_pem(key, cert, b"nope")


def test_mismatched_key_refused_by_key_store(pki: Pki, tmp_path: Path) -> None:
    key, _ = write_pem(tmp_path, "a", pki.signer)
    _, cert = write_pem(tmp_path, "b", pki.signer_b)
    assert load_pem(key, cert).certificate == pki.signer_b.cert  # loading alone does not judge
    with pytest.raises(CredentialError, match="does not match"):
        _store(tmp_path, key, cert)


def test_key_below_2048_refused(pki: Pki, tmp_path: Path) -> None:
    assert any("1024 bits" in m for m in _severities(pki.weak)[Severity.ERROR])
    with pytest.raises(CredentialError, match="at least 2048"):
        _store(tmp_path, write_pfx(tmp_path / "weak.pfx", pki.weak))


def test_key_of_2048_warns(pki: Pki, tmp_path: Path) -> None:
    by_severity = _severities(pki.signer)
    assert Severity.ERROR not in by_severity
    assert by_severity[Severity.WARNING] == [
        "RSA key is 2048 bits; the DIP requires 4096 in production"
    ]
    store = _store(tmp_path, write_pfx(tmp_path / "ok.pfx", pki.signer))
    assert store.findings()["mp"][0].severity is Severity.WARNING


def test_expired_certificate_refused(pki: Pki, tmp_path: Path) -> None:
    assert any("expired" in m for m in _severities(pki.expired)[Severity.ERROR])
    with pytest.raises(CredentialError, match="expired"):
        _store(tmp_path, write_pfx(tmp_path / "old.pfx", pki.expired))


def test_not_yet_valid_certificate_refused(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="not valid before"):
        _store(tmp_path, write_pfx(tmp_path / "future.pfx", pki.not_yet_valid))


def test_certificate_without_digital_signature_refused(pki: Pki, tmp_path: Path) -> None:
    assert any("digitalSignature" in m for m in _severities(pki.no_signing)[Severity.ERROR])
    with pytest.raises(CredentialError, match="digitalSignature"):
        _store(tmp_path, write_pfx(tmp_path / "enc.pfx", pki.no_signing))


def test_expiry_soon_warns(pki: Pki) -> None:
    credential = SigningCredential(pki.signer.key, pki.signer.cert, "test")
    later = credential.not_after - dt.timedelta(days=10)
    messages = [f.message for f in check_credential(credential, later)]
    assert any("expires in 10.0 days" in m for m in messages)
