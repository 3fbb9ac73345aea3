"""Known-answer vectors (computed with OpenSSL): reproduced byte for byte and verified, through
the library and through ``dcp-gateway pki sign`` / ``pki verify``.

PKCS#1 v1.5 is deterministic, so any drift in hashing, date formatting, URL lower-casing or
certificate encoding shows up here as a changed header.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.signing.credentials import SigningCredential, load_pem, load_pfx
from gateway.signing.scheme import (
    HEADER_CONTENT_HASH,
    HEADER_DATE,
    SIGNATURE_HEADERS,
    content_hash,
    parse_signature_date,
    string_to_sign,
)
from gateway.signing.trust import TrustPolicy
from gateway.signing.verify import verify_request
from tests.pki_fixtures import VECTOR_NOW, VECTORS, load_vector

OUTBOUND = "outbound-if021.json"
INBOUND = "inbound-if043.json"


def _credential(name: str) -> SigningCredential:
    if name == OUTBOUND:
        return load_pfx(VECTORS / "mp-signing.pfx")
    return load_pem(VECTORS / "dip-signing.key", VECTORS / "dip-signing.pem")


def _cli_key_args(name: str) -> list[str]:
    if name == OUTBOUND:
        return ["--key", str(VECTORS / "mp-signing.pfx")]
    return ["--key", str(VECTORS / "dip-signing.key"), "--cert", str(VECTORS / "dip-signing.pem")]


@pytest.mark.parametrize("name", [OUTBOUND, INBOUND])
def test_vector_reproduced_byte_for_byte(name: str) -> None:
    vector, body = load_vector(name)
    expected = vector["headers"]
    date = expected[HEADER_DATE]

    assert content_hash(body) == expected[HEADER_CONTENT_HASH]
    sts = string_to_sign(vector["method"], vector["url"], date, content_hash(body))
    assert sts == vector["string_to_sign"].encode("utf-8")

    headers = _credential(name).sign(
        vector["method"], vector["url"], body, parse_signature_date(date)
    )
    assert headers == expected
    assert list(headers) == list(SIGNATURE_HEADERS)


@pytest.mark.parametrize("name", [OUTBOUND, INBOUND])
def test_vector_verifies(name: str) -> None:
    vector, body = load_vector(name)
    trust = TrustPolicy.from_files([VECTORS / "test-ca.pem"])
    signer = verify_request(
        vector["method"], vector["url"], body, vector["headers"], trust, VECTOR_NOW, max_skew=None
    )
    expected_subject = _credential(name).subject
    assert signer.subject == expected_subject
    assert signer.signature_date == parse_signature_date(vector["headers"][HEADER_DATE])


def test_outbound_url_is_signed_lower_case() -> None:
    """The vector's URL is mixed case; the DIP signs its lower-case form."""
    vector, _ = load_vector(OUTBOUND)
    assert vector["url"] != vector["url"].lower()
    assert vector["url"].lower() in vector["string_to_sign"]


@pytest.mark.parametrize("name", [OUTBOUND, INBOUND])
def test_cli_sign_reproduces_vector(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    vector, _ = load_vector(name)
    code = main(
        [
            "pki",
            "sign",
            *_cli_key_args(name),
            "--method",
            vector["method"],
            "--url",
            vector["url"],
            "--body-file",
            str(VECTORS / vector["body_file"]),
            "--date",
            vector["headers"][HEADER_DATE],
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out) == vector["headers"]
    assert out == json.dumps(vector["headers"], sort_keys=True, indent=2) + "\n"


def _verify_args(vector_file: Path, vector: dict[str, str], *extra: str) -> list[str]:
    return [
        "pki",
        "verify",
        "--headers",
        str(vector_file),
        "--url",
        vector["url"],
        "--body-file",
        str(VECTORS / vector["body_file"]),
        "--trust",
        str(VECTORS / "test-ca.pem"),
        *extra,
    ]


@pytest.mark.parametrize("name", [OUTBOUND, INBOUND])
def test_cli_verify_accepts_vector_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    vector, _ = load_vector(name)
    code = main(
        _verify_args(VECTORS / name, vector, "--at", "2027-01-01T00:00:00Z", "--max-skew", "none")
    )
    verdict = json.loads(capsys.readouterr().out)
    assert code == 0
    assert verdict == {
        "valid": True,
        "reason": None,
        "detail": None,
        "signer": _credential(name).subject,
    }


def test_cli_verify_accepts_flat_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `pki sign` prints is what `pki verify` reads (header names in any case)."""
    vector, _ = load_vector(INBOUND)
    flat = tmp_path / "headers.json"
    flat.write_text(json.dumps({k.lower(): v for k, v in vector["headers"].items()}))
    code = main(_verify_args(flat, vector, "--at", "2027-01-01T00:00:00Z", "--max-skew", "none"))
    assert code == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_cli_verify_rejects_tampered_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vector, body = load_vector(OUTBOUND)
    tampered = tmp_path / "body.json"
    tampered.write_bytes(body.replace(b"1900012374324", b"1900012374325"))
    args = _verify_args(
        VECTORS / OUTBOUND, vector, "--at", "2027-01-01T00:00:00Z", "--max-skew", "none"
    )
    args[args.index("--body-file") + 1] = str(tampered)
    code = main(args)
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1
    assert verdict["valid"] is False
    assert verdict["reason"] == "bad_content_hash"
    assert verdict["signer"] is None


def test_cli_verify_at_applies_skew_and_validity(capsys: pytest.CaptureFixture[str]) -> None:
    """--at moves "now": 29 s after the signature date is within skew, but the vector
    certificate (issued later) is not yet valid then."""
    vector, _ = load_vector(OUTBOUND)
    code = main(
        _verify_args(VECTORS / OUTBOUND, vector, "--at", "2026-03-01T09:30:30Z", "--max-skew", "60")
    )
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1
    assert verdict["reason"] == "certificate_not_yet_valid"

    code = main(
        _verify_args(VECTORS / OUTBOUND, vector, "--at", "2027-01-01T00:00:00Z", "--max-skew", "60")
    )
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1
    assert verdict["reason"] == "date_out_of_skew"


def test_cli_verify_needs_a_trust_anchor(capsys: pytest.CaptureFixture[str]) -> None:
    vector, _ = load_vector(OUTBOUND)
    args = _verify_args(VECTORS / OUTBOUND, vector)
    i = args.index("--trust")
    del args[i : i + 2]
    assert main(args) == 2
    assert "--trust" in capsys.readouterr().err


def test_cli_sign_refuses_mismatched_key(capsys: pytest.CaptureFixture[str]) -> None:
    vector, _ = load_vector(OUTBOUND)
    code = main(
        [
            "pki",
            "sign",
            "--key",
            str(VECTORS / "mp-signing.key"),
            "--cert",
            str(VECTORS / "dip-signing.pem"),
            "--url",
            vector["url"],
            "--body-file",
            str(VECTORS / vector["body_file"]),
        ]
    )
    assert code == 2
    assert "does not match" in capsys.readouterr().err
