"""``dcp-gateway check``: clean on a fresh dev PKI, FAIL lines with field paths for broken
credentials, exit codes 0 / 1 / 2, and no secret ever printed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.signing.pki import cert_pem, key_pem, pfx_bytes
from tests import pki_fixtures
from tests.pki_fixtures import Pki

pki = pki_fixtures.pki  # session fixtures, used by name below
dev_pki_dir = pki_fixtures.dev_pki_dir
dev_pki_copy = pki_fixtures.dev_pki_copy


def _check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check", "--config", str(config)])
    return code, capsys.readouterr().out.splitlines()


def _lines(lines: list[str], status: str) -> list[str]:
    return [line for line in lines if line.startswith(status)]


def _edit(config: Path, change: Any) -> None:
    data = yaml.safe_load(config.read_text())
    change(data)
    config.write_text(yaml.safe_dump(data))


def test_fresh_dev_pki_is_ok(dev_pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _check(dev_pki_dir / "gateway.yaml", capsys)
    assert code == 0
    assert _lines(lines, "FAIL") == []
    fields = {line.split()[1].rstrip(":") for line in _lines(lines, "OK")}
    assert {
        "config",
        "dip.ca_bundle",
        "trust.ca_bundle",
        "trust.signer_names",
        "ingress.tls_cert",
        "clients[0].dip_ids[0].api_key_file",
        "clients[1].dip_ids[0].secondary_api_key_file",
    } <= fields
    # 2048-bit test keys: warned, not failed.
    warned = {line.split()[1].rstrip(":") for line in _lines(lines, "WARN")}
    assert warned == {"dcp.mtls_pfx", "clients[0].signing_pfx", "clients[1].signing_pfx"}
    assert lines[-1] == "8 OK, 3 WARN, 0 FAIL"
    (names,) = [line for line in _lines(lines, "OK") if "trust.signer_names" in line]
    assert names.endswith("dip-signing.dev.test")


def test_no_secret_is_printed(dev_pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lines = _check(dev_pki_dir / "gateway.yaml", capsys)
    output = "\n".join(lines)
    secrets = [p.read_text().strip() for p in dev_pki_dir.glob("clients/*/*.api-key*")]
    assert len(secrets) == 4
    for secret in secrets:
        assert secret not in output
    assert "PRIVATE KEY" not in output


def test_mismatched_key_fails(
    pki: Pki, dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = dev_pki_copy / "clients/client-2/other.key"
    key.write_bytes(key_pem(pki.signer_b.key))
    cert = dev_pki_copy / "clients/client-2/signing.pem"

    def change(data: dict[str, Any]) -> None:
        client = data["clients"][1]
        del client["signing_pfx"]
        client["signing_key"] = str(key)
        client["signing_cert"] = str(cert)

    _edit(dev_pki_copy / "gateway.yaml", change)
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 1
    fails = _lines(lines, "FAIL")
    assert len(fails) == 1
    assert fails[0].startswith("FAIL  clients[1].signing_key: ")
    assert "private key does not match the certificate's public key" in fails[0]


def test_expired_certificate_fails(
    pki: Pki, dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pfx = dev_pki_copy / "clients/client-1/signing.pfx"
    pfx.write_bytes(pfx_bytes(pki.expired.key, pki.expired.cert))
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 1
    fails = _lines(lines, "FAIL")
    assert len(fails) == 1
    assert fails[0].startswith("FAIL  clients[0].signing_pfx: ")
    assert "certificate expired" in fails[0]
    assert re.search(r"\d+ OK, \d+ WARN, 1 FAIL$", lines[-1])


def test_unreadable_pfx_and_empty_api_key_fail(
    dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dev_pki_copy / "dcp/mtls.pfx").write_bytes(b"garbage")
    (dev_pki_copy / "clients/client-2/1400020001.api-key").write_text("\n")
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 1
    fails = sorted(line.split()[1].rstrip(":") for line in _lines(lines, "FAIL"))
    assert fails == ["clients[1].dip_ids[0].api_key_file", "dcp.mtls_pfx"]


def test_signing_certificate_as_dcp_mtls_is_fine_but_no_client_auth_fails(
    pki: Pki, dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The no-digitalSignature test certificate has no EKU; the check judges TLS, not signing."""
    (dev_pki_copy / "dcp/mtls.pfx").write_bytes(pfx_bytes(pki.no_signing.key, pki.no_signing.cert))
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 1
    fails = _lines(lines, "FAIL")
    assert len(fails) == 1
    assert "dcp.mtls_pfx" in fails[0]
    assert "TLS 1.3 needs it" in fails[0]


def test_no_dcp_mtls_certificate_fails_as_run_refuses_it(
    dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(dev_pki_copy / "gateway.yaml", lambda data: data["dcp"].pop("mtls_pfx"))
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 1
    (fail,) = _lines(lines, "FAIL")
    assert fail.startswith("FAIL  dcp.mtls_pfx: no mTLS client certificate configured")
    assert "set dcp.mtls_pfx (or dcp.mtls_key + dcp.mtls_cert)" in fail


def _ingress_only(config: Path, *, unsigned: int, mtls: bool) -> None:
    """Egress off, client ``unsigned`` without a signing credential, the DCP mTLS certificate
    kept or not."""

    def change(data: dict[str, Any]) -> None:
        data["egress"] = {"enabled": False}
        del data["clients"][unsigned]["signing_pfx"]
        if not mtls:
            del data["dcp"]["mtls_pfx"]

    _edit(config, change)


def test_an_ingress_only_config_needs_no_dcp_mtls_or_signing_credentials(
    dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only egress connects to the DIP and signs; an ingress Deployment's config has neither."""
    _ingress_only(dev_pki_copy / "gateway.yaml", unsigned=0, mtls=False)
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 0
    assert _lines(lines, "FAIL") == []
    oks = _lines(lines, "OK")
    for field in ("dcp.mtls_pfx", "clients[0].signing_pfx"):
        (line,) = [line for line in oks if line.startswith(f"OK    {field}:")]
        assert "not needed: egress is disabled" in line


def test_dip_commands_say_which_signing_credential_they_miss(
    dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ingress-only config is valid, but the admin commands sign for each DIP ID."""
    _ingress_only(dev_pki_copy / "gateway.yaml", unsigned=1, mtls=True)
    code = main(["dip", "webhooks", "sync", "--config", str(dev_pki_copy / "gateway.yaml")])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: clients[1].signing_pfx: not set, but the dip commands sign")
    assert "set signing_pfx (or signing_key + signing_cert)" in error


def test_expired_trust_anchor_fails(
    pki: Pki, dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = dev_pki_copy / "ca/old-anchor.pem"
    anchor.write_bytes(cert_pem(pki.expired.cert))
    _edit(
        dev_pki_copy / "gateway.yaml",
        lambda d: d["trust"].__setitem__("ca_bundle", str(anchor)),
    )
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 1
    fails = _lines(lines, "FAIL")
    assert [f.split()[1] for f in fails] == ["trust.ca_bundle:"]
    assert "expired" in fails[0]


def test_effective_to_in_the_past_warns(
    dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def change(data: dict[str, Any]) -> None:
        data["clients"][0]["dip_ids"][0]["effective_from"] = "2020-01-01"
        data["clients"][0]["dip_ids"][0]["effective_to"] = "2021-01-01"

    _edit(dev_pki_copy / "gateway.yaml", change)
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 0
    warns = [w for w in _lines(lines, "WARN") if w.split()[1].endswith("effective_to:")]
    assert warns == [
        "WARN  clients[0].dip_ids[0].effective_to: "
        "DIP ID 1400010001 stopped being effective on 2021-01-01"
    ]


def test_config_that_does_not_load_exits_2(
    dev_pki_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(
        dev_pki_copy / "gateway.yaml",
        lambda d: d["clients"][0]["dip_ids"][0].__setitem__("dip_id", "12345"),
    )
    code, lines = _check(dev_pki_copy / "gateway.yaml", capsys)
    assert code == 2
    assert lines[0].startswith("FAIL  config: ")
    assert any("clients[0].dip_ids[0].dip_id" in line for line in lines)


def test_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _check(tmp_path / "absent.yaml", capsys)
    assert code == 2
    assert "config file not found" in lines[0]
