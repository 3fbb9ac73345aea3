"""PKI chores as library functions: keys, CSRs, certificates, PFX files, a development PKI.

The CLI (``dcp-gateway pki ...``) is a thin shell over these, so a DCP operator needs no
OpenSSL knowledge for the onboarding steps the DIP guides describe, and tests build real
certificates with the same code.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Host name plus domain may use at most this many characters (DIP portal rule, keeps the CN
#: within X.509 limits).
MAX_HOST_DOMAIN_CHARS = 35


class Purpose(StrEnum):
    """Certificate purposes the DIP issues, plus the two a development PKI also needs."""

    SIGNING = "signing"  # an MP that uses a DCP
    MTLS = "mtls"  # a DCP
    MTLS_SIGNING = "mtls-signing"  # an active MP connecting itself
    SERVER = "server"  # the simulator's / webhook's HTTPS server (dev only)
    CA = "ca"


def new_rsa_key(bits: int = 4096) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pfx_bytes(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    password: bytes | None = None,
    friendly_name: str | None = None,
) -> bytes:
    """PKCS#12 with key, certificate and optional chain; no password unless one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    name = friendly_name.encode() if friendly_name else None
    return pkcs12.serialize_key_and_certificates(name, key, cert, list(chain) or None, encryption)


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attrs)


def check_host_domain(host: str, domain: str) -> None:
    """Raise ``ValueError`` when host + domain break the DIP's 35-character rule."""
    total = len(host) + len(domain)
    if total > MAX_HOST_DOMAIN_CHARS:
        raise ValueError(
            f"host {host!r} plus domain {domain!r} use {total} characters; the DIP allows at most "
            f"{MAX_HOST_DOMAIN_CHARS}: choose a shorter host name"
        )
    if not host or not domain or "." not in domain:
        raise ValueError("give a host name and a verified domain such as example.co.uk")


def build_csr(
    key: rsa.RSAPrivateKey, subject_name: str, host: str, domain: str
) -> x509.CertificateSigningRequest:
    """CSR with CN = the portal's subject name and SANs ``<host>.<domain>`` and that name."""
    check_host_domain(host, domain)
    sans = [x509.DNSName(f"{host}.{domain}")]
    if subject_name != f"{host}.{domain}":
        sans.append(x509.DNSName(subject_name))
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(subject_name))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )


def _usage(purpose: Purpose) -> tuple[x509.KeyUsage, list[x509.ObjectIdentifier]]:
    ca = purpose is Purpose.CA
    sign_only = purpose is Purpose.SIGNING
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca and not sign_only,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    eku: list[x509.ObjectIdentifier] = {
        Purpose.SIGNING: [ExtendedKeyUsageOID.CLIENT_AUTH],
        Purpose.MTLS: [ExtendedKeyUsageOID.CLIENT_AUTH],
        Purpose.MTLS_SIGNING: [ExtendedKeyUsageOID.CLIENT_AUTH],
        Purpose.SERVER: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        Purpose.CA: [],
    }[purpose]
    return usage, eku


def issue_certificate(
    subject_key: rsa.RSAPublicKey,
    subject: x509.Name,
    issuer_cert: x509.Certificate | None,
    issuer_key: rsa.RSAPrivateKey,
    purpose: Purpose,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> x509.Certificate:
    """Issue (or self-sign, when ``issuer_cert`` is None) a certificate for ``purpose``."""
    import ipaddress

    start = not_before or (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    issuer_name = issuer_cert.subject if issuer_cert is not None else subject
    usage, eku = _usage(purpose)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(subject_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(
            x509.BasicConstraints(ca=purpose is Purpose.CA, path_length=None), critical=True
        )
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def issue_from_csr(
    csr: x509.CertificateSigningRequest,
    issuer_cert: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    purpose: Purpose,
    days: int = 365,
) -> x509.Certificate:
    """What the DIP's CA does with a CSR (for tests and the dev PKI)."""
    public = csr.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("the DIP issues certificates for RSA keys only")
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    return issue_certificate(
        public, csr.subject, issuer_cert, issuer_key, purpose, dns_names=dns, days=days
    )


@dataclass(frozen=True)
class Issued:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate


def create_ca(common_name: str = "Dev DIP CA", bits: int = 4096, days: int = 3650) -> Issued:
    key = new_rsa_key(bits)
    cert = issue_certificate(
        key.public_key(),
        _name(common_name, "dcp-gateway dev PKI"),
        None,
        key,
        Purpose.CA,
        days=days,
    )
    return Issued(key, cert)


def issue(
    ca: Issued,
    common_name: str,
    purpose: Purpose,
    *,
    bits: int = 4096,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = 365,
    not_before: dt.datetime | None = None,
) -> Issued:
    """New key + certificate issued by ``ca``."""
    key = new_rsa_key(bits)
    cert = issue_certificate(
        key.public_key(),
        _name(common_name),
        ca.cert,
        ca.key,
        purpose,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        days=days,
        not_before=not_before,
    )
    return Issued(key, cert)


# -- the development PKI -----------------------------------------------------------------

#: Role codes handed out round-robin to dev clients.
_DEV_ROLES = ("SUP", "SDS", "MSA", "ADS", "MDS", "LDSO")
_DEV_PUBLICATIONS = ("IF-043", "IF-021")


#: CN of the dev PKI's DIP publication signing certificate (``trust.signer_names``).
DEV_DIP_SIGNER_NAME = "dip-signing.dev.test"


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    """Write ``data``; a secret is created 0600 from the start (never readable by others,
    not even between the write and a later chmod), and an existing file is narrowed too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not secret:
        path.write_bytes(data)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write(data)


def _write_issued(folder: Path, stem: str, issued: Issued, pfx: bool = True) -> dict[str, str]:
    _write(folder / f"{stem}.key", key_pem(issued.key), secret=True)
    _write(folder / f"{stem}.pem", cert_pem(issued.cert))
    out = {"key": f"{stem}.key", "cert": f"{stem}.pem"}
    if pfx:
        _write(folder / f"{stem}.pfx", pfx_bytes(issued.key, issued.cert), secret=True)
        out["pfx"] = f"{stem}.pfx"
    return out


def _rel(folder: Path, base: Path, names: dict[str, str]) -> dict[str, str]:
    return {k: str((folder / v).relative_to(base)) for k, v in names.items()}


def _dev_dip_id(client_index: int, dip_index: int) -> str:
    """Deterministic 10-digit dev DIP IDs: 14<client:04d><dip:04d>."""
    return f"14{client_index:04d}{dip_index:04d}"


@dataclass
class DevPkiOptions:
    clients: int = 3
    dip_ids_per_client: int = 1
    bits: int = 4096
    environment: str = "DEV"
    dcp_id: str = "9000000001"
    dip_base_url: str = "https://127.0.0.1:8444"
    webhook_base_url: str = "https://127.0.0.1:8443"
    kafka_bootstrap: str = "127.0.0.1:9092"
    server_names: Sequence[str] = ("localhost",)
    server_ips: Sequence[str] = ("127.0.0.1",)
    extra: dict[str, Any] = field(default_factory=dict)


def create_dev_pki(out: Path, options: DevPkiOptions | None = None) -> dict[str, Any]:
    """Write a complete development PKI and a matching gateway config into ``out``.

    Layout (all paths in the manifest are relative to ``out``)::

        ca/dip-ca.pem, .key          test DIP CA: issues everything below; the trust anchor
        dip/signing.pem, .key, .pfx  the DIP's signing certificate (signs publications; its
                                     CN is trust.signer_names, as MP certs share the CA)
        dip/server.pem, .key         the DIP simulator's HTTPS server certificate
        dcp/mtls.pem, .key, .pfx     the DCP's mTLS client certificate
        webhook/server.pem, .key     the gateway webhook's HTTPS server certificate
        clients/<name>/signing.*     each client MP's signing certificate
        clients/<name>/<dip-id>.api-key, <dip-id>.api-key.secondary
        gateway.yaml                 gateway configuration using all of the above
        dev-pki.json                 this manifest (the simulator reads it)

    Returns the manifest. Keys are fresh each time; nothing here is fit for production.
    """
    opts = options or DevPkiOptions()
    out.mkdir(parents=True, exist_ok=True)
    ca = create_ca("Dev DIP CA (dcp-gateway dev PKI)", bits=opts.bits)
    ca_names = _rel(out / "ca", out, _write_issued(out / "ca", "dip-ca", ca, pfx=False))

    dip_signing = issue(ca, DEV_DIP_SIGNER_NAME, Purpose.SIGNING, bits=opts.bits)
    dip_sign_names = _rel(out / "dip", out, _write_issued(out / "dip", "signing", dip_signing))
    server_kw: dict[str, Any] = {
        "dns_names": list(opts.server_names),
        "ip_addresses": list(opts.server_ips),
    }
    dip_server = issue(ca, "dip-sim.dev.test", Purpose.SERVER, bits=2048, **server_kw)
    dip_server_names = _rel(
        out / "dip", out, _write_issued(out / "dip", "server", dip_server, pfx=False)
    )
    dcp = issue(ca, f"dcp-{opts.dcp_id}.dev.test", Purpose.MTLS, bits=opts.bits)
    dcp_names = _rel(out / "dcp", out, _write_issued(out / "dcp", "mtls", dcp))
    webhook = issue(ca, "dcp-gateway-webhook.dev.test", Purpose.SERVER, bits=2048, **server_kw)
    webhook_names = _rel(
        out / "webhook", out, _write_issued(out / "webhook", "server", webhook, pfx=False)
    )

    clients: list[dict[str, Any]] = []
    for ci in range(1, opts.clients + 1):
        name = f"client-{ci}"
        folder = out / "clients" / name
        signer = issue(
            ca, f"energypip-dev.{ci:04d}.client{ci}.test", Purpose.SIGNING, bits=opts.bits
        )
        names = _rel(folder, out, _write_issued(folder, "signing", signer))
        dip_ids = []
        for di in range(1, opts.dip_ids_per_client + 1):
            dip_id = _dev_dip_id(ci, di)
            primary = folder / f"{dip_id}.api-key"
            secondary = folder / f"{dip_id}.api-key.secondary"
            _write(primary, secrets.token_urlsafe(32).encode() + b"\n", secret=True)
            _write(secondary, secrets.token_urlsafe(32).encode() + b"\n", secret=True)
            dip_ids.append(
                {
                    "dip_id": dip_id,
                    "role": _DEV_ROLES[(ci - 1) % len(_DEV_ROLES)],
                    "mpid": f"CL{ci:02d}"[:4],
                    "api_key_file": str(primary.relative_to(out)),
                    "secondary_api_key_file": str(secondary.relative_to(out)),
                    "publications": list(_DEV_PUBLICATIONS),
                }
            )
        clients.append(
            {
                "name": name,
                "signing_pfx": names["pfx"],
                "signing_cert": names["cert"],
                "dip_ids": dip_ids,
            }
        )

    manifest: dict[str, Any] = {
        "environment": opts.environment,
        "dcp_id": opts.dcp_id,
        "ca": ca_names,
        "dip_signing": dip_sign_names,
        "dip_signer_name": DEV_DIP_SIGNER_NAME,
        "dip_server": dip_server_names,
        "dcp_mtls": dcp_names,
        "webhook_server": webhook_names,
        "dip_base_url": opts.dip_base_url,
        "webhook_base_url": opts.webhook_base_url,
        "clients": clients,
        "config": "gateway.yaml",
    }
    _write(out / "gateway.yaml", _render_dev_config(manifest, opts).encode())
    _write(out / "dev-pki.json", json.dumps(manifest, indent=2).encode() + b"\n")
    return manifest


def _render_dev_config(manifest: dict[str, Any], opts: DevPkiOptions) -> str:
    """A gateway config for the dev PKI (YAML text, paths relative to the PKI folder)."""
    import yaml

    clients = []
    for c in manifest["clients"]:
        topic = c["name"]
        clients.append(
            {
                "name": c["name"],
                "signing_pfx": c["signing_pfx"],
                "set_dcp_id": True,
                "topics": {
                    "inbound": f"{topic}.dip.inbound",
                    "results": f"{topic}.dip.results",
                    "dead_letter": f"{topic}.dip.dead-letter",
                    "status": f"{topic}.dip.status",
                },
                "dip_ids": [{k: v for k, v in d.items()} for d in c["dip_ids"]],
            }
        )
    config: dict[str, Any] = {
        "environment": manifest["environment"],
        "dip": {"base_url": manifest["dip_base_url"], "ca_bundle": manifest["ca"]["cert"]},
        "dcp": {"dcp_id": manifest["dcp_id"], "mtls_pfx": manifest["dcp_mtls"]["pfx"]},
        "trust": {
            "ca_bundle": manifest["ca"]["cert"],
            "signer_names": [manifest["dip_signer_name"]],
            "max_skew_seconds": 300,
        },
        "kafka": {
            "bootstrap_servers": opts.kafka_bootstrap,
            "create_topics": True,
        },
        "ingress": {
            "listen_host": "127.0.0.1",
            "listen_port": int(opts.webhook_base_url.rsplit(":", 1)[-1].split("/")[0]),
            "public_base_url": manifest["webhook_base_url"],
            "tls_cert": manifest["webhook_server"]["cert"],
            "tls_key": manifest["webhook_server"]["key"],
        },
        "ops": {"log_format": "console"},
        "clients": clients,
    }
    config.update(opts.extra)
    header = (
        "# Development configuration written by `dcp-gateway pki dev-init`.\n"
        "# Test keys only: never use them anywhere else.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)
