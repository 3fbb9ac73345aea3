"""``dcp-gateway pki ...``: the onboarding and debugging chores around DIP certificates.

The DIP onboarding guides assume OpenSSL fluency (make a 4096-bit key and a CSR with the
portal's subject name, merge the issued ``.cer`` into a password-less PFX, find out why a
signature is refused). These commands do each step with the same library code the gateway
runs, so what the CLI accepts the gateway accepts, and what it signs verifies byte for byte.

Sub-commands: ``csr``, ``pfx``, ``inspect``, ``dev-init``, ``sign``, ``verify``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.cli import CliError
from gateway.cli.certinfo import (
    CertFile,
    CertFileError,
    describe,
    key_matches,
    read_cert_file,
    read_private_key,
)
from gateway.signing.credentials import (
    MIN_KEY_BITS,
    RECOMMENDED_KEY_BITS,
    CredentialError,
    Severity,
    check_credential,
    load_credential,
    load_pfx,
)
from gateway.signing.errors import SignatureRejected
from gateway.signing.keystore import read_secret_file
from gateway.signing.pki import (
    DevPkiOptions,
    build_csr,
    check_host_domain,
    create_dev_pki,
    key_pem,
    new_rsa_key,
    pfx_bytes,
)
from gateway.signing.scheme import SIGNATURE_HEADERS
from gateway.signing.trust import TrustPolicy
from gateway.signing.verify import verify_request

__all__ = ["register"]

#: X.509 upper bound for a commonName (RFC 5280 ub-common-name).
MAX_COMMON_NAME_CHARS = 64

_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(sub: _SubParsers) -> None:
    parser = sub.add_parser(
        "pki",
        help="DIP certificates: CSR, PFX, inspect, dev PKI, sign and verify requests",
        description="Certificate and signature chores for DIP onboarding and debugging.",
    )
    actions = parser.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    _register_csr(actions)
    _register_pfx(actions)
    _register_inspect(actions)
    _register_dev_init(actions)
    _register_sign(actions)
    _register_verify(actions)


# -- shared helpers ----------------------------------------------------------------------


def _password(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return read_secret_file(path).encode()
    except CredentialError as exc:
        raise CliError(str(exc)) from None


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CliError(f"{', '.join(existing)} already exist(s): use --force to overwrite")


def _write_file(path: Path, data: bytes, secret: bool) -> None:
    """Write ``data``; secrets are created 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing file (--force) keeps its old mode otherwise
        os.write(fd, data)
    finally:
        os.close(fd)


def _parse_time(value: str) -> datetime:
    """ISO time for ``--date`` / ``--at``; ``Z`` accepted, naive taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO time such as 2026-03-01T09:30:01.123Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _parse_skew(value: str) -> float | None:
    """Seconds, or ``none``/``off`` to disable the window (replays, known-answer vectors)."""
    if value.strip().lower() in ("none", "off"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give seconds, or 'none'") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("--max-skew must not be negative")
    return seconds


def _now() -> datetime:
    return datetime.now(UTC)


# -- csr ---------------------------------------------------------------------------------


def _register_csr(actions: _SubParsers) -> None:
    p = actions.add_parser(
        "csr",
        help="new RSA key + CSR for the DIP portal",
        description=(
            "Create an RSA key (4096 bits, as the DIP requires) and a CSR whose CN is the "
            "portal's subject name and whose subjectAltName lists <host>.<domain> and the "
            "subject name. Host plus domain may use at most 35 characters."
        ),
    )
    p.add_argument("--host", required=True, help="host name, e.g. energypip-nonprod")
    p.add_argument("--domain", required=True, help="verified domain, e.g. 2059.example.co.uk")
    p.add_argument("--subject-name", help="subject name from the portal (default host.domain)")
    p.add_argument("--out-key", type=Path, required=True, help="private key to write (PEM)")
    p.add_argument("--out-csr", type=Path, required=True, help="CSR to write (PEM)")
    p.add_argument("--bits", type=int, default=RECOMMENDED_KEY_BITS, help="RSA key size")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(handler=_run_csr)


def _run_csr(args: argparse.Namespace) -> int:
    host: str = args.host.strip().strip(".")
    domain: str = args.domain.strip().strip(".")
    try:
        check_host_domain(host, domain)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    subject_name: str = args.subject_name or f"{host}.{domain}"
    if len(subject_name) > MAX_COMMON_NAME_CHARS:
        raise CliError(
            f"subject name {subject_name!r} has {len(subject_name)} characters; a CN holds "
            f"at most {MAX_COMMON_NAME_CHARS}"
        )
    if args.bits < MIN_KEY_BITS:
        raise CliError(f"--bits {args.bits}: at least {MIN_KEY_BITS} (the DIP requires 4096)")
    _refuse_existing([args.out_key, args.out_csr], args.force)
    if args.bits < RECOMMENDED_KEY_BITS:
        print(
            f"warning: {args.bits}-bit key: the DIP requires {RECOMMENDED_KEY_BITS} bits",
            file=sys.stderr,
        )
    key = new_rsa_key(args.bits)
    csr = build_csr(key, subject_name, host, domain)
    _write_file(args.out_key, key_pem(key), secret=True)
    _write_file(args.out_csr, csr.public_bytes(serialization.Encoding.PEM), secret=False)
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    print(f"wrote key  {args.out_key} ({args.bits}-bit RSA, mode 0600: keep it secret)")
    print(f"wrote CSR  {args.out_csr}")
    print(f"  subject  {csr.subject.rfc4514_string()}")
    print(f"  SANs     {', '.join(f'DNS:{n}' for n in sans.get_values_for_type(x509.DNSName))}")
    print(
        "next: upload the CSR in the DIP portal, then merge the issued certificate with "
        f"`dcp-gateway pki pfx --key {args.out_key} --cert ISSUED.cer --out FILE.pfx`"
    )
    return 0


# -- pfx ---------------------------------------------------------------------------------


def _register_pfx(actions: _SubParsers) -> None:
    p = actions.add_parser(
        "pfx",
        help="merge the issued certificate with its key into a PFX (no password)",
        description=(
            "Merge the certificate the DIP issued (PEM or DER .cer) with the private key from "
            "`pki csr` into a PKCS#12 file. The DIP and the gateway expect no password; "
            "--password-file protects the PFX when your own tooling needs one."
        ),
    )
    p.add_argument("--key", type=Path, required=True, help="PEM private key")
    p.add_argument("--key-password-file", type=Path, help="password of an encrypted key")
    p.add_argument("--cert", type=Path, required=True, help="issued certificate (PEM or DER)")
    p.add_argument("--chain", type=Path, help="PEM bundle of CA certificates to include")
    p.add_argument("--out", type=Path, required=True, help="PFX file to write")
    p.add_argument("--password-file", type=Path, help="password for the PFX (default: none)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=_run_pfx)


def _run_pfx(args: argparse.Namespace) -> int:
    try:
        key = read_private_key(args.key, _password(args.key_password_file))
        cert_file = read_cert_file(args.cert)
        chain = list(cert_file.certificates[1:])
        if args.chain is not None:
            chain += list(read_cert_file(args.chain).certificates)
    except CertFileError as exc:
        raise CliError(str(exc)) from None
    cert = cert_file.leaf
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CliError(f"{args.key}: the DIP uses RSA keys; this is {type(key).__name__}")
    if not key_matches(key, cert):
        raise CliError(
            f"{args.key} does not match the certificate in {args.cert} "
            f"({cert.subject.rfc4514_string()}): use the key the CSR was made from"
        )
    _refuse_existing([args.out], args.force)
    password = _password(args.password_file)
    name = cert.subject.rfc4514_string()
    _write_file(args.out, pfx_bytes(key, cert, chain, password, name), secret=True)
    credential = load_pfx(args.out, password)  # prove it reads back as the gateway reads it
    print(f"wrote PFX  {args.out} ({'with' if password else 'no'} password, mode 0600)")
    print(f"  subject  {credential.subject}")
    print(f"  chain    {len(credential.chain)} CA certificate(s)")
    for finding in check_credential(credential, _now()):
        if finding.severity is not Severity.OK:
            print(f"  {finding.severity.value}: {finding.message}")
    return 0


# -- inspect -----------------------------------------------------------------------------


def _register_inspect(actions: _SubParsers) -> None:
    p = actions.add_parser(
        "inspect",
        help="describe a PFX, PEM or DER certificate",
        description=(
            "Subject, SANs, issuer, serial, validity, key size, DIP purpose, key match and "
            "SHA-256 fingerprint of a certificate file (PFX, PEM or DER)."
        ),
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--key", type=Path, help="PEM private key to check against the certificate")
    p.add_argument("--password-file", type=Path, help="password of the PFX or key")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    password = _password(args.password_file)
    try:
        cert_file: CertFile = read_cert_file(args.file, password)
        key = (
            read_private_key(args.key, password) if args.key is not None else cert_file.private_key
        )
    except CertFileError as exc:
        raise CliError(str(exc)) from None
    info: dict[str, Any] = {"file": str(args.file), "format": cert_file.format}
    info.update(describe(cert_file.leaf, _now(), key))
    info["chain"] = [c.subject.rfc4514_string() for c in cert_file.certificates[1:]]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_inspect(info)
    return 0


def _print_inspect(info: dict[str, Any]) -> None:
    match = {None: "no key given", True: "yes", False: "NO: key and certificate differ"}
    validity = f"{info['not_before']} .. {info['not_after']} ({info['days_left']} days left)"
    if not info["valid_now"]:
        validity += " NOT VALID NOW"
    rows = [
        ("file", f"{info['file']} ({info['format']})"),
        ("subject", info["subject"]),
        ("SANs", ", ".join(info["subject_alt_names"]) or "-"),
        ("issuer", info["issuer"]),
        ("serial", info["serial"]),
        ("validity", validity),
        ("key", f"{info['key_type']} {info['key_bits']} bits"),
        ("purpose", info["purpose"]),
        ("key usage", ", ".join(info["key_usage"] or []) or "-"),
        ("ext. key usage", ", ".join(info["extended_key_usage"] or []) or "-"),
        ("key match", match[info["key_match"]]),
        ("SHA-256", info["fingerprint_sha256"]),
    ]
    if info["chain"]:
        rows.append(("chain", "; ".join(info["chain"])))
    for label, value in rows:
        print(f"{label + ':':<16}{value}")


# -- dev-init ----------------------------------------------------------------------------


def _register_dev_init(actions: _SubParsers) -> None:
    defaults = DevPkiOptions()
    p = actions.add_parser(
        "dev-init",
        help="write a complete development PKI and gateway config",
        description=(
            "Test CA, DIP signing and server certificates, the DCP mTLS certificate, the "
            "webhook server certificate, client signing certificates and API keys, and a "
            "gateway.yaml using them. Test keys only."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write into")
    p.add_argument("--clients", type=int, default=defaults.clients)
    p.add_argument("--dip-ids-per-client", type=int, default=defaults.dip_ids_per_client)
    p.add_argument("--bits", type=int, default=defaults.bits, help="RSA key size of the certs")
    p.add_argument("--environment", default=defaults.environment)
    p.add_argument("--dcp-id", default=defaults.dcp_id)
    p.add_argument("--dip-url", default=defaults.dip_base_url, help="DIP (simulator) base URL")
    p.add_argument("--webhook-url", default=defaults.webhook_base_url, help="webhook base URL")
    p.add_argument("--kafka", default=defaults.kafka_bootstrap, help="Kafka bootstrap servers")
    p.add_argument("--force", action="store_true", help="replace an existing dev PKI")
    p.set_defaults(handler=_run_dev_init)


def _run_dev_init(args: argparse.Namespace) -> int:
    if args.clients < 1 or args.dip_ids_per_client < 1:
        raise CliError("--clients and --dip-ids-per-client must be at least 1")
    if args.clients > 9999 or args.dip_ids_per_client > 9999:
        raise CliError("dev DIP IDs hold 4 digits per client and DIP ID: at most 9999 each")
    if args.bits < MIN_KEY_BITS:
        raise CliError(f"--bits {args.bits}: at least {MIN_KEY_BITS}")
    _refuse_existing([args.out / "dev-pki.json", args.out / "gateway.yaml"], args.force)
    options = DevPkiOptions(
        clients=args.clients,
        dip_ids_per_client=args.dip_ids_per_client,
        bits=args.bits,
        environment=args.environment,
        dcp_id=args.dcp_id,
        dip_base_url=args.dip_url,
        webhook_base_url=args.webhook_url,
        kafka_bootstrap=args.kafka,
    )
    manifest = create_dev_pki(args.out, options)
    out: Path = args.out
    print(f"wrote a development PKI in {out} (test keys only)")
    for label in ("ca", "dip_signing", "dip_server", "dcp_mtls", "webhook_server"):
        files = ", ".join(manifest[label].values())
        print(f"  {label:<15} {files}")
    for client in manifest["clients"]:
        ids = ", ".join(d["dip_id"] for d in client["dip_ids"])
        print(f"  {client['name']:<15} {client['signing_pfx']}; DIP IDs {ids} (+ API key files)")
    print(f"  config          {manifest['config']}")
    print("  manifest        dev-pki.json")
    print(f"next: dcp-gateway check --config {out / manifest['config']}")
    return 0


# -- sign --------------------------------------------------------------------------------


def _register_sign(actions: _SubParsers) -> None:
    p = actions.add_parser(
        "sign",
        help="print the four X-DIP-* signature headers for a request",
        description="Sign a request as the gateway (or the DIP) would; prints JSON headers.",
    )
    p.add_argument("--key", type=Path, required=True, help="PFX, or PEM key (with --cert)")
    p.add_argument("--cert", type=Path, help="PEM certificate when --key is a PEM key")
    p.add_argument("--password-file", type=Path, help="password of the PFX or key")
    p.add_argument("--method", default="POST")
    p.add_argument("--url", required=True, help="full URL exactly as it will be sent")
    p.add_argument("--body-file", type=Path, required=True, help="body bytes as sent")
    p.add_argument("--date", type=_parse_time, help="signature date (default: now)")
    p.set_defaults(handler=_run_sign)


def _read_body(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read body: {exc.strerror}") from None


def _run_sign(args: argparse.Namespace) -> int:
    try:
        credential = load_credential(args.key, args.cert, _password(args.password_file))
    except CredentialError as exc:
        raise CliError(str(exc)) from None
    body = _read_body(args.body_file)
    when: datetime = args.date or _now()
    for finding in check_credential(credential, _now()):
        if "does not match" in finding.message:
            raise CliError(f"{credential.source}: {finding.message}")
        if finding.severity is not Severity.OK:
            # Still sign: negative tests need signatures from expired or weak certificates.
            print(f"warning: {credential.source}: {finding.message}", file=sys.stderr)
    headers = credential.sign(args.method, args.url, body, when)
    print(json.dumps(headers, sort_keys=True, indent=2))
    return 0


# -- verify ------------------------------------------------------------------------------


def _register_verify(actions: _SubParsers) -> None:
    p = actions.add_parser(
        "verify",
        help="verify a signed request; prints a JSON verdict (exit 0 valid, 1 invalid)",
        description=(
            "Verify the X-DIP-* headers of a request against its URL and body and a trust "
            "anchor (CA bundle) or pinned certificate fingerprints. The headers file is a JSON "
            'object of headers, or an object with a "headers" key (a vector file).'
        ),
    )
    p.add_argument("--headers", type=Path, required=True, help="JSON file with the headers")
    p.add_argument("--url", required=True, help="full URL as called")
    p.add_argument("--body-file", type=Path, required=True)
    p.add_argument("--trust", type=Path, action="append", default=[], help="CA bundle (PEM)")
    p.add_argument(
        "--pin", action="append", default=[], help="SHA-256 fingerprint of a trusted signer"
    )
    p.add_argument("--method", default="POST")
    p.add_argument("--at", type=_parse_time, help="evaluate validity and skew at this time")
    p.add_argument(
        "--max-skew",
        type=_parse_skew,
        default=300.0,
        help="allowed signature-date skew in seconds, or 'none' (default 300)",
    )
    p.set_defaults(handler=_run_verify)


def _read_headers(path: Path) -> dict[str, str]:
    """Headers from JSON: flat, or under ``"headers"``; names matched case-insensitively."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{path}: cannot read headers: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{path}: not JSON: {exc}") from None
    if isinstance(document, dict) and isinstance(document.get("headers"), dict):
        document = document["headers"]
    if not isinstance(document, dict):
        raise CliError(f"{path}: expected a JSON object of headers")
    canonical = {name.lower(): name for name in SIGNATURE_HEADERS}
    headers: dict[str, str] = {}
    for name, value in document.items():
        if isinstance(value, str):
            headers[canonical.get(str(name).lower(), str(name))] = value
    return headers


def _run_verify(args: argparse.Namespace) -> int:
    if not args.trust and not args.pin:
        raise CliError("give a trust anchor (--trust CA.pem) or a pinned fingerprint (--pin)")
    try:
        trust = TrustPolicy.from_files(args.trust, args.pin)
    except (OSError, ValueError) as exc:
        raise CliError(f"trust: {exc}") from None
    headers = _read_headers(args.headers)
    body = _read_body(args.body_file)
    at: datetime = args.at or _now()
    skew = None if args.max_skew is None else timedelta(seconds=args.max_skew)
    verdict: dict[str, Any]
    try:
        signer = verify_request(args.method, args.url, body, headers, trust, at, skew)
    except SignatureRejected as exc:
        verdict = {"valid": False, "reason": exc.reason.value, "detail": exc.detail}
        verdict["signer"] = None
        print(json.dumps(verdict, indent=2))
        return 1
    verdict = {"valid": True, "reason": None, "detail": None, "signer": signer.subject}
    print(json.dumps(verdict, indent=2))
    return 0
