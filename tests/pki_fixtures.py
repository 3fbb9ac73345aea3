"""Real PKI material for the signing, key store, config and CLI tests.

Everything is generated with the production code (``gateway.signing.pki``) so the tests exercise
the certificates the gateway will actually see. Keys are 2048-bit (fast) unless a test is about
4096; material that tests only read is session-scoped. Import the fixtures a test module uses
from here (``conftest.py`` belongs to another family).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.signing.pki import (
    DevPkiOptions,
    Issued,
    Purpose,
    cert_pem,
    create_ca,
    create_dev_pki,
    issue,
    key_pem,
    new_rsa_key,
    pfx_bytes,
)

VECTORS = Path(__file__).parent / "vectors"
#: Inside the vector certificates' validity (2026-11-23 .. 2036-11-20).
VECTOR_NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
TEST_BITS = 2048


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_vector(name: str) -> tuple[dict[str, Any], bytes]:
    """A known-answer vector and its body bytes."""
    vector: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return vector, (VECTORS / vector["body_file"]).read_bytes()


def write_pem(folder: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / f"{stem}.key", folder / f"{stem}.pem"
    key_path.write_bytes(key_pem(issued.key))
    cert_path.write_bytes(cert_pem(issued.cert))
    return key_path, cert_path


def write_pfx(path: Path, issued: Issued, password: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pfx_bytes(issued.key, issued.cert, password=password))
    return path


def custom_cert(
    ca: Issued,
    common_name: str,
    *,
    key: rsa.RSAPrivateKey | None = None,
    bits: int = TEST_BITS,
    not_before: dt.datetime | None = None,
    days: int = 365,
    digital_signature: bool = True,
) -> Issued:
    """A leaf certificate with knobs the production issuer does not expose (key usage)."""
    key = key or new_rsa_key(bits)
    start = not_before or (now() - dt.timedelta(minutes=5))
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=not digital_signature,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, cert)


@dataclass(frozen=True)
class Pki:
    """A test CA with a spread of signer certificates, good and bad."""

    ca: Issued
    other_ca: Issued
    signer: Issued
    signer_b: Issued
    foreign: Issued  # issued by other_ca
    expired: Issued
    not_yet_valid: Issued
    no_signing: Issued  # keyUsage without digitalSignature
    weak: Issued  # 1024-bit key
    root: Issued  # root -> intermediate -> chained
    intermediate: Issued
    chained: Issued


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = create_ca("Test DIP CA", bits=TEST_BITS)
    other_ca = create_ca("Some Other CA", bits=TEST_BITS)
    root = create_ca("Test Root CA", bits=TEST_BITS)
    intermediate = issue(root, "Test Intermediate CA", Purpose.CA, bits=TEST_BITS)
    long_ago = now() - dt.timedelta(days=400)
    return Pki(
        ca=ca,
        other_ca=other_ca,
        signer=issue(ca, "energypip-test.0001.example.test", Purpose.SIGNING, bits=TEST_BITS),
        signer_b=issue(ca, "energypip-test.0002.example.test", Purpose.SIGNING, bits=TEST_BITS),
        foreign=issue(other_ca, "imposter.example.test", Purpose.SIGNING, bits=TEST_BITS),
        expired=issue(
            ca, "expired.example.test", Purpose.SIGNING, bits=TEST_BITS, not_before=long_ago
        ),
        not_yet_valid=issue(
            ca,
            "future.example.test",
            Purpose.SIGNING,
            bits=TEST_BITS,
            not_before=now() + dt.timedelta(days=10),
        ),
        no_signing=custom_cert(ca, "encipher-only.example.test", digital_signature=False),
        weak=custom_cert(ca, "weak.example.test", bits=1024),
        root=root,
        intermediate=intermediate,
        chained=issue(intermediate, "chained.example.test", Purpose.SIGNING, bits=TEST_BITS),
    )


@pytest.fixture(scope="session")
def dev_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete dev PKI (2 clients) written by ``create_dev_pki``; treat as read-only."""
    out = tmp_path_factory.mktemp("dev-pki")
    create_dev_pki(out, DevPkiOptions(clients=2, bits=TEST_BITS))
    return out


@pytest.fixture()
def dev_pki_copy(dev_pki_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the dev PKI that a test may modify."""
    target = tmp_path / "pki"
    shutil.copytree(dev_pki_dir, target)
    yield target
