"""The onboarding round trip as an operator runs it: ``pki csr`` -> the CA issues from the CSR
-> ``pki pfx`` -> the gateway loads the PFX. Every artefact is checked with the
``cryptography`` parsers, not with our own code, plus ``pki inspect`` and ``pki dev-init``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.cli import main
from gateway.signing.credentials import check_credential, load_pfx
from gateway.signing.pki import (
    MAX_HOST_DOMAIN_CHARS,
    Purpose,
    build_csr,
    cert_pem,
    issue,
    issue_from_csr,
    key_pem,
    new_rsa_key,
)
from tests import pki_fixtures
from tests.pki_fixtures import VECTORS, Pki, now, write_pem

pki = pki_fixtures.pki  # the session fixture, used by name below

HOST = "energypip-nonprod"
DOMAIN = "2059.example.co.uk"  # 17 + 18 = 35 characters: exactly the limit


def _csr(tmp_path: Path, *extra: str) -> tuple[int, Path, Path]:
    key, req = tmp_path / "mp.key", tmp_path / "mp.csr"
    code = main(
        [
            "pki",
            "csr",
            "--host",
            HOST,
            "--domain",
            DOMAIN,
            "--out-key",
            str(key),
            "--out-csr",
            str(req),
            *extra,
        ]
    )
    return code, key, req


def test_csr_is_what_the_dip_portal_expects(tmp_path: Path) -> None:
    """Default 4096 bits (the one test paying for a 4096-bit key: the default is the point)."""
    assert len(HOST) + len(DOMAIN) == MAX_HOST_DOMAIN_CHARS
    code, key_path, csr_path = _csr(tmp_path, "--subject-name", "energypip-nonprod.example.co.uk")
    assert code == 0
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=energypip-nonprod.example.co.uk"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        f"{HOST}.{DOMAIN}",
        "energypip-nonprod.example.co.uk",
    ]
    public = csr.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 4096
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.public_key().public_numbers() == public.public_numbers()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_csr_default_subject_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, csr_path = _csr(tmp_path, "--bits", "2048")
    assert code == 0
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.subject.rfc4514_string() == f"CN={HOST}.{DOMAIN}"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [f"{HOST}.{DOMAIN}"]
    assert "requires 4096" in capsys.readouterr().err


def test_csr_refuses_more_than_35_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, req = tmp_path / "k", tmp_path / "r"
    code = main(
        [
            "pki",
            "csr",
            "--host",
            HOST + "x",
            "--domain",
            DOMAIN,
            "--out-key",
            str(key),
            "--out-csr",
            str(req),
            "--bits",
            "2048",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "36 characters" in err
    assert "at most 35" in err
    assert not key.exists()
    assert not req.exists()


def test_build_csr_refuses_more_than_35_characters() -> None:
    with pytest.raises(ValueError, match="at most 35"):
        build_csr(new_rsa_key(2048), "x", "a" * 20, "b" * 12 + ".co.uk")


def test_csr_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mp.key").write_text("precious")
    code, key, _ = _csr(tmp_path, "--bits", "2048")
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert key.read_text() == "precious"
    code, key, _ = _csr(tmp_path, "--bits", "2048", "--force")
    assert code == 0
    assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_round_trip_csr_issue_pfx_load(
    pki: Pki, tmp_path: Path, encoding: serialization.Encoding
) -> None:
    code, key_path, csr_path = _csr(tmp_path, "--bits", "2048")
    assert code == 0
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    issued = issue_from_csr(csr, pki.ca.cert, pki.ca.key, Purpose.SIGNING)
    cer = tmp_path / "issued.cer"
    cer.write_bytes(issued.public_bytes(encoding))
    chain = tmp_path / "ca.pem"
    chain.write_bytes(cert_pem(pki.ca.cert))
    pfx = tmp_path / "mp.pfx"
    code = main(
        [
            "pki",
            "pfx",
            "--key",
            str(key_path),
            "--cert",
            str(cer),
            "--chain",
            str(chain),
            "--out",
            str(pfx),
        ]
    )
    assert code == 0
    assert stat.S_IMODE(pfx.stat().st_mode) == 0o600
    credential = load_pfx(pfx)  # no password, as the DIP issues them
    assert credential.certificate == issued
    assert credential.chain == (pki.ca.cert,)
    assert credential.subject == f"CN={HOST}.{DOMAIN}"
    assert not [f for f in check_credential(credential, now()) if f.severity == "error"]


def test_pfx_refuses_mismatched_key(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, _ = write_pem(tmp_path, "a", pki.signer)
    _, cert = write_pem(tmp_path, "b", pki.signer_b)
    out = tmp_path / "x.pfx"
    code = main(["pki", "pfx", "--key", str(key), "--cert", str(cert), "--out", str(out)])
    assert code == 2
    assert "does not match" in capsys.readouterr().err
    assert not out.exists()


def test_pfx_with_password_file(pki: Pki, tmp_path: Path) -> None:
    key, cert = write_pem(tmp_path, "a", pki.signer)
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    out = tmp_path / "x.pfx"
    args = ["pki", "pfx", "--key", str(key), "--cert", str(cert), "--out", str(out)]
    assert main([*args, "--password-file", str(password)]) == 0
    assert load_pfx(out, b"s3cret").certificate == pki.signer.cert


def _inspect(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["pki", "inspect", *args, "--json"]) == 0
    info: dict[str, object] = json.loads(capsys.readouterr().out)
    return info


def test_inspect_vector_pfx(capsys: pytest.CaptureFixture[str]) -> None:
    info = _inspect(capsys, str(VECTORS / "mp-signing.pfx"))
    assert info["format"] == "PFX"
    assert info["subject"] == "CN=energypip-nonprod.2059.example-supplier.co.uk"
    assert info["issuer"] == "O=Example Test PKI,CN=Test DIP CA"
    assert info["key_bits"] == 4096
    assert info["purpose"] == "Signing"
    assert info["key_match"] is True
    assert info["fingerprint_sha256"] == (
        "b861aa2b114c8d07ca7a137f031ae472475ba07a8c17c2b56f21618fbda5a122"
    )
    assert "DNS:energypip-nonprod.2059.example-supplier.co.uk" in info["subject_alt_names"]  # type: ignore[operator]
    assert info["not_after"] == "2036-11-20T11:19:19+00:00"


def test_inspect_pem_with_other_key(capsys: pytest.CaptureFixture[str]) -> None:
    info = _inspect(
        capsys, str(VECTORS / "dip-signing.pem"), "--key", str(VECTORS / "mp-signing.key")
    )
    assert info["format"] == "PEM"
    assert info["key_match"] is False


def test_inspect_der_and_mtls_purpose(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mtls = issue(pki.ca, "dcp.example.test", Purpose.MTLS, bits=2048)
    der = tmp_path / "dcp.cer"
    der.write_bytes(mtls.cert.public_bytes(serialization.Encoding.DER))
    key = tmp_path / "dcp.key"
    key.write_bytes(key_pem(mtls.key))
    info = _inspect(capsys, str(der), "--key", str(key))
    assert info["format"] == "DER"
    assert info["purpose"] == "mTLS & Signing"
    assert info["key_match"] is True
    assert info["key_usage"] == ["digital_signature", "key_encipherment"]


def test_inspect_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "inspect", str(VECTORS / "test-ca.pem")]) == 0
    out = capsys.readouterr().out
    assert "purpose:        CA" in out
    assert "key match:      no key given" in out
    assert "PRIVATE" not in out


def test_inspect_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 nothing")
    assert main(["pki", "inspect", str(junk)]) == 2
    assert "not a PEM or DER certificate" in capsys.readouterr().err


def test_dev_init_writes_a_working_pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dev"
    args = ["pki", "dev-init", "--out", str(out), "--clients", "2"]
    args += ["--dip-ids-per-client", "2", "--bits", "2048", "--kafka", "kafka:9092"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "gateway.yaml" in printed
    assert "1400020002" in printed
    manifest = json.loads((out / "dev-pki.json").read_text())
    assert [c["name"] for c in manifest["clients"]] == ["client-1", "client-2"]
    assert "kafka:9092" in (out / "gateway.yaml").read_text()
    credential = load_pfx(out / manifest["clients"][1]["signing_pfx"])
    assert credential.key_bits == 2048
    assert main(args) == 2  # refuses to replace without --force
    assert "--force" in capsys.readouterr().err


def test_sign_then_verify_round_trip(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, cert = write_pem(tmp_path, "mp", pki.signer)
    body = tmp_path / "body.json"
    body.write_bytes(b'[{"payload":{}}]')
    url = "https://dip.example.test/dip-channel/IF-021"
    assert (
        main(
            [
                "pki",
                "sign",
                "--key",
                str(key),
                "--cert",
                str(cert),
                "--url",
                url,
                "--body-file",
                str(body),
            ]
        )
        == 0
    )
    headers = tmp_path / "headers.json"
    headers.write_text(capsys.readouterr().out)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert_pem(pki.ca.cert))
    verify = ["pki", "verify", "--headers", str(headers), "--url", url]
    verify += ["--body-file", str(body), "--trust", str(ca)]
    assert main(verify) == 0
    assert json.loads(capsys.readouterr().out)["signer"] == "CN=energypip-test.0001.example.test"

    other_ca = tmp_path / "other.pem"
    other_ca.write_bytes(cert_pem(pki.other_ca.cert))
    verify[verify.index(str(ca))] = str(other_ca)
    assert main(verify) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "untrusted_certificate"


def test_sign_at_vector_time_with_vector_pfx(capsys: pytest.CaptureFixture[str]) -> None:
    """``--date`` naive ISO is UTC; output is the JSON object of the four headers."""
    vector, _ = pki_fixtures.load_vector("outbound-if021.json")
    code = main(
        [
            "pki",
            "sign",
            "--key",
            str(VECTORS / "mp-signing.pfx"),
            "--url",
            vector["url"],
            "--body-file",
            str(VECTORS / vector["body_file"]),
            "--date",
            "2026-03-01T09:30:01.123",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == vector["headers"]


def test_dev_pki_secrets_are_created_owner_only(tmp_path: Path) -> None:
    from gateway.signing.pki import _write

    old_umask = os.umask(0)  # nothing masked: the mode passed at creation is what counts
    try:
        _write(tmp_path / "k" / "fresh.key", b"secret", secret=True)
        loose = tmp_path / "k" / "existing.key"
        loose.write_bytes(b"old")
        loose.chmod(0o644)
        _write(loose, b"secret", secret=True)
        _write(tmp_path / "k" / "public.pem", b"cert")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "k" / "fresh.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert loose.read_bytes() == b"secret"
    assert stat.S_IMODE((tmp_path / "k" / "public.pem").stat().st_mode) == 0o666
