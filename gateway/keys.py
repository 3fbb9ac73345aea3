"""Key material from the configuration: the client key store and the DCP's mTLS credential (the
one place config meets signing)."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ConfigError, DcpSettings, GatewayConfig
from gateway.signing.credentials import SigningCredential, load_credential
from gateway.signing.keystore import DipIdSpec, KeyStore, SignerSpec, read_secret_file


def _signer_specs(config: GatewayConfig) -> list[SignerSpec]:
    specs = []
    for client in config.clients:
        if client.signing_pfx is not None:
            specs.append(
                SignerSpec(client.name, client.signing_pfx, None, client.signing_password_file)
            )
        elif client.signing_key is not None:
            specs.append(
                SignerSpec(
                    client.name,
                    client.signing_key,
                    client.signing_cert,
                    client.signing_password_file,
                )
            )
    return specs


def _dip_id_specs(config: GatewayConfig) -> list[DipIdSpec]:
    return [
        DipIdSpec(d.dip_id, client.name, d.api_key_file, d.secondary_api_key_file)
        for client in config.clients
        if client.signs
        for d in client.dip_ids
    ]


def build_keystore(config: GatewayConfig) -> KeyStore:
    """Load the signing credential and API keys of every client that has a credential (all of
    them when egress is enabled; an ingress-only configuration may have none). Raises
    ``CredentialError``."""
    return KeyStore(_signer_specs(config), _dip_id_specs(config))


def load_dcp_credential(dcp: DcpSettings) -> SigningCredential:
    """The DCP's mTLS key and certificate, from PFX or PEM; :class:`ConfigError` when neither
    is configured (the settings model guarantees key and certificate come together)."""
    key: Path | None = dcp.mtls_pfx
    cert: Path | None = None
    if key is None:
        key, cert = dcp.mtls_key, dcp.mtls_cert
    if key is None:
        raise ConfigError(
            "dcp.mtls_pfx: the DIP connection needs the DCP's mTLS certificate: set "
            "dcp.mtls_pfx (or dcp.mtls_key + dcp.mtls_cert)"
        )
    password = (
        read_secret_file(dcp.mtls_password_file).encode()
        if dcp.mtls_password_file is not None
        else None
    )
    return load_credential(key, cert, password)
