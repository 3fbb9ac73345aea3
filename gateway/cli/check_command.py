"""``dcp-gateway check --config FILE``: everything start-up would trip over, in one report.

A gateway that refuses to start because one client's PFX expired last night is an outage; this
command finds that (and every other file or certificate problem) before a deploy, in a form an
operator can act on: one line per item, ``OK`` / ``WARN`` / ``FAIL``, with the config field
path. It loads credentials with the same functions the key store uses, so a clean report means
the key store will load. Secrets are read to check them, never printed.

Exit codes: 0 no FAIL, 1 at least one FAIL, 2 the configuration itself does not load.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509

from gateway.cli.certinfo import (
    CertFileError,
    can_sign,
    can_tls_client,
    is_ca,
    purpose,
    read_cert_file,
)
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.signing.credentials import (
    CredentialError,
    Finding,
    Severity,
    SigningCredential,
    check_credential,
    load_credential,
)
from gateway.signing.keystore import read_secret_file
from gateway.signing.trust import fingerprint_sha256

__all__ = ["Line", "Report", "Status", "check_config", "register", "run"]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_CONFIG = 2


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


_FROM_SEVERITY = {
    Severity.OK: Status.OK,
    Severity.WARNING: Status.WARN,
    Severity.ERROR: Status.FAIL,
}


@dataclass(frozen=True)
class Line:
    status: Status
    field: str
    message: str

    def render(self) -> str:
        return f"{self.status.value:<4}  {self.field}: {self.message}"


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)

    def add(self, status: Status, where: str, message: str) -> None:
        self.lines.append(Line(status, where, message))

    def count(self, status: Status) -> int:
        return sum(1 for line in self.lines if line.status is status)

    @property
    def failed(self) -> bool:
        return self.count(Status.FAIL) > 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="validate the configuration, every file and every certificate",
        description=(
            "Load the configuration and check every file it names: client signing "
            "credentials (key match, key size, validity, purpose), the DCP mTLS certificate, "
            "CA bundles, the DIP trust anchor, API key files. Exit 0 when nothing FAILs, "
            "1 otherwise, 2 when the configuration does not load."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="gateway YAML file")
    parser.add_argument(
        "--connect",
        action="store_true",
        help="also connect to Kafka as the gateway will: TLS, SASL login, idempotent producer",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"FAIL  config: {exc}")
        return EXIT_CONFIG
    print(f"OK    config: {args.config} loads ({len(config.clients)} client(s))")
    report = check_config(config, datetime.now(UTC))
    if args.connect:
        check_kafka(config, report)
    for line in report.lines:
        print(line.render())
    print(
        f"{report.count(Status.OK)} OK, {report.count(Status.WARN)} WARN, "
        f"{report.count(Status.FAIL)} FAIL"
    )
    return EXIT_FAIL if report.failed else EXIT_OK


def check_kafka(config: GatewayConfig, report: Report) -> None:
    """The start-up check of the Kafka settings, against the real brokers (``--connect``)."""
    from gateway.kafka.preflight import check_kafka_connection

    try:
        broker = asyncio.run(check_kafka_connection(config.kafka))
    except ConfigError as exc:
        report.add(Status.FAIL, "kafka", str(exc))
        return
    if broker is None:
        report.add(
            Status.FAIL,
            "kafka.bootstrap_servers",
            f"no broker of {config.kafka.bootstrap_servers} answered: check the addresses, "
            "kafka.security_protocol and the network path",
        )
        return
    granted = ", idempotent producer granted" if config.kafka.enable_idempotence else ""
    report.add(Status.OK, "kafka", f"{broker} accepts this client's TLS and login{granted}")


def check_config(config: GatewayConfig, now: datetime) -> Report:
    """Check every file and certificate the configuration names; never raises on bad files."""
    report = Report()
    _check_dcp(config, now, report)
    _check_bundle(report, "dip.ca_bundle", config.dip.ca_bundle, now, "system trust store")
    _check_trust(config, now, report)
    _check_ingress(config, now, report)
    _check_kafka(config, now, report)
    fingerprints: dict[str, str] = {}
    for ci, client in enumerate(config.clients):
        where = f"clients[{ci}]"
        _check_client_signer(config, ci, now, report, fingerprints)
        for di, dip in enumerate(client.dip_ids):
            dwhere = f"{where}.dip_ids[{di}]"
            keys = [_check_secret(report, f"{dwhere}.api_key_file", dip.api_key_file)]
            if dip.secondary_api_key_file is not None:
                keys.append(
                    _check_secret(
                        report, f"{dwhere}.secondary_api_key_file", dip.secondary_api_key_file
                    )
                )
            if len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]:
                report.add(
                    Status.WARN,
                    f"{dwhere}.secondary_api_key_file",
                    "same key as the primary: rotation would not be seamless",
                )
            today = now.date()
            if dip.effective_to is not None and dip.effective_to < today:
                report.add(
                    Status.WARN,
                    f"{dwhere}.effective_to",
                    f"DIP ID {dip.dip_id} stopped being effective on {dip.effective_to}",
                )
            if dip.effective_from is not None and dip.effective_from > today:
                report.add(
                    Status.WARN,
                    f"{dwhere}.effective_from",
                    f"DIP ID {dip.dip_id} becomes effective only on {dip.effective_from}",
                )
    return report


# -- items -------------------------------------------------------------------------------


def _password(report: Report, where: str, path: Path | None) -> tuple[bool, bytes | None]:
    if path is None:
        return True, None
    try:
        return True, read_secret_file(path).encode()
    except CredentialError as exc:
        report.add(Status.FAIL, where, str(exc))
        return False, None


def _load(
    report: Report, where: str, key: Path, cert: Path | None, password: bytes | None
) -> SigningCredential | None:
    try:
        return load_credential(key, cert, password)
    except CredentialError as exc:
        report.add(Status.FAIL, where, str(exc))
        return None


def _report_findings(
    report: Report, where: str, credential: SigningCredential, findings: list[Finding]
) -> None:
    label = f"{credential.source} ({credential.subject}, {purpose(credential.certificate)})"
    for finding in findings:
        report.add(_FROM_SEVERITY[finding.severity], where, f"{label}: {finding.message}")


def _check_client_signer(
    config: GatewayConfig,
    ci: int,
    now: datetime,
    report: Report,
    fingerprints: dict[str, str],
) -> None:
    client = config.clients[ci]
    where = f"clients[{ci}]"
    if not client.signs:  # the configuration allows it only with egress disabled
        report.add(
            Status.OK,
            f"{where}.signing_pfx",
            "not set, and not needed: egress is disabled (the `dip` commands still need it)",
        )
        return
    ok, password = _password(report, f"{where}.signing_password_file", client.signing_password_file)
    if not ok:
        return
    if client.signing_pfx is not None:
        field_path, key, cert = f"{where}.signing_pfx", client.signing_pfx, None
    else:
        assert client.signing_key is not None  # the config model guarantees one source
        field_path, key, cert = f"{where}.signing_key", client.signing_key, client.signing_cert
    credential = _load(report, field_path, key, cert, password)
    if credential is None:
        return
    _report_findings(report, field_path, credential, check_credential(credential, now))
    fingerprint = fingerprint_sha256(credential.certificate)
    other = fingerprints.get(fingerprint)
    if other is not None:
        report.add(
            Status.WARN,
            field_path,
            f"same signing certificate as {other}: each MP signs with its own certificate",
        )
    fingerprints.setdefault(fingerprint, f"clients[{ci}] ({client.name})")


def _check_dcp(config: GatewayConfig, now: datetime, report: Report) -> None:
    dcp = config.dcp
    if dcp.mtls_pfx is None and dcp.mtls_key is None and not config.egress.enabled:
        report.add(
            Status.OK,
            "dcp.mtls_pfx",
            "not set, and not needed: egress is disabled (the `dip` commands still need it)",
        )
        return
    if dcp.mtls_pfx is None and dcp.mtls_key is None:
        report.add(
            Status.FAIL,
            "dcp.mtls_pfx",
            "no mTLS client certificate configured: the DIP connection needs the DCP's mTLS "
            "certificate, and `run` refuses to start without it: set dcp.mtls_pfx (or "
            "dcp.mtls_key + dcp.mtls_cert)",
        )
        return
    ok, password = _password(report, "dcp.mtls_password_file", dcp.mtls_password_file)
    if not ok:
        return
    if dcp.mtls_pfx is not None:
        where, key, cert = "dcp.mtls_pfx", dcp.mtls_pfx, None
    else:
        assert dcp.mtls_key is not None
        where, key, cert = "dcp.mtls_key", dcp.mtls_key, dcp.mtls_cert
    credential = _load(report, where, key, cert, password)
    if credential is None:
        return
    findings = [
        f
        for f in check_credential(credential, now)
        if "digitalSignature" not in f.message  # judged below, for TLS rather than signing
    ]
    if not can_tls_client(credential.certificate):
        findings.insert(
            0, Finding(Severity.ERROR, "extended key usage does not allow TLS client auth")
        )
    elif not can_sign(credential.certificate):
        findings.insert(
            0, Finding(Severity.ERROR, "key usage lacks digitalSignature: TLS 1.3 needs it")
        )
    if any(f.severity is Severity.ERROR for f in findings):
        findings = [f for f in findings if f.severity is not Severity.OK]
    _report_findings(report, where, credential, findings)


def _check_bundle(
    report: Report,
    where: str,
    path: Path | None,
    now: datetime,
    absent: str | None,
    *,
    need_ca: bool = False,
) -> list[x509.Certificate]:
    """A PEM (or DER) CA bundle: readable, holds certificates, each valid now."""
    if path is None:
        if absent is not None:
            report.add(Status.OK, where, f"not set: {absent}")
        return []
    try:
        certs = list(read_cert_file(path).certificates)
    except CertFileError as exc:
        report.add(Status.FAIL, where, str(exc))
        return []
    problems = False
    for cert in certs:
        name = cert.subject.rfc4514_string()
        if now > cert.not_valid_after_utc:
            report.add(Status.FAIL, where, f"{path}: {name} expired {cert.not_valid_after_utc}")
            problems = True
        elif now < cert.not_valid_before_utc:
            report.add(
                Status.FAIL, where, f"{path}: {name} not valid before {cert.not_valid_before_utc}"
            )
            problems = True
        elif (cert.not_valid_after_utc - now).days < 30:
            report.add(Status.WARN, where, f"{path}: {name} expires {cert.not_valid_after_utc}")
            problems = True
    if need_ca and not any(is_ca(c) for c in certs):
        report.add(
            Status.WARN,
            where,
            f"{path}: no CA certificate in the bundle (it only works as a direct issuer)",
        )
        problems = True
    if not problems:
        first = certs[0].subject.rfc4514_string()
        until = min(c.not_valid_after_utc for c in certs)
        report.add(
            Status.OK, where, f"{path}: {len(certs)} certificate(s) ({first}), valid until {until}"
        )
    return certs


def _check_trust(config: GatewayConfig, now: datetime, report: Report) -> None:
    trust = config.trust
    if trust.ca_bundle is None and not trust.pinned_sha256:
        report.add(Status.OK, "trust", "no DIP trust anchor: fine while ingress is disabled")
        return
    _check_bundle(report, "trust.ca_bundle", trust.ca_bundle, now, None, need_ca=True)
    if trust.signer_names:
        report.add(
            Status.OK,
            "trust.signer_names",
            "publications signed by a CA-issued certificate are accepted only from "
            + ", ".join(trust.signer_names),
        )
    if trust.pinned_sha256:
        report.add(
            Status.OK,
            "trust.pinned_sha256",
            f"{len(trust.pinned_sha256)} pinned DIP signing certificate(s)",
        )


def _check_ingress(config: GatewayConfig, now: datetime, report: Report) -> None:
    ingress = config.ingress
    if not ingress.enabled:
        return
    if ingress.tls_cert is not None and ingress.tls_key is not None:
        credential = _load(report, "ingress.tls_cert", ingress.tls_key, ingress.tls_cert, None)
        if credential is not None:
            findings = [
                f
                for f in check_credential(credential, now)
                if "4096" not in f.message  # the DIP's 4096 rule is for DIP certificates only
            ] or [Finding(Severity.OK, f"valid until {credential.not_after}")]
            _report_findings(report, "ingress.tls_cert", credential, findings)
    _check_bundle(report, "ingress.tls_client_ca", ingress.tls_client_ca, now, None)


def _check_kafka(config: GatewayConfig, now: datetime, report: Report) -> None:
    kafka = config.kafka
    _check_bundle(report, "kafka.ssl_ca_file", kafka.ssl_ca_file, now, None)
    if kafka.ssl_cert_file is not None and kafka.ssl_key_file is not None:
        credential = _load(
            report, "kafka.ssl_cert_file", kafka.ssl_key_file, kafka.ssl_cert_file, None
        )
        if credential is not None:
            findings = [f for f in check_credential(credential, now) if "4096" not in f.message]
            _report_findings(
                report,
                "kafka.ssl_cert_file",
                credential,
                findings or [Finding(Severity.OK, f"valid until {credential.not_after}")],
            )
    if kafka.sasl_password_file is not None:
        _check_secret(report, "kafka.sasl_password_file", kafka.sasl_password_file)


def _check_secret(report: Report, where: str, path: Path) -> str | None:
    """Readable and non-empty; the value is returned for comparisons, never printed."""
    try:
        value = read_secret_file(path)
    except CredentialError as exc:
        report.add(Status.FAIL, where, str(exc))
        return None
    report.add(Status.OK, where, f"{path}: readable, not empty")
    return value
