"""Build the key store from the configuration (the one place config meets signing)."""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.signing.keystore import DipIdSpec, KeyStore, SignerSpec


def signer_specs(config: GatewayConfig) -> list[SignerSpec]:
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


def dip_id_specs(config: GatewayConfig) -> list[DipIdSpec]:
    return [
        DipIdSpec(d.dip_id, client.name, d.api_key_file, d.secondary_api_key_file)
        for client in config.clients
        for d in client.dip_ids
    ]


def build_keystore(config: GatewayConfig) -> KeyStore:
    """Load every client's signing credential and API keys; raises ``CredentialError``."""
    return KeyStore(signer_specs(config), dip_id_specs(config))
