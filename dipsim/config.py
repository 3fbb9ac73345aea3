"""Simulator configuration: a pydantic model, loadable from the dev PKI manifest.

``SimulatorConfig.from_dev_pki(dir)`` reads ``dev-pki.json`` written by
:func:`gateway.signing.pki.create_dev_pki` and registers every client DIP ID with its signing
certificate and both API keys; everything else has defaults fit for tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dipsim.faults import FaultConfig


class SenderConfig(BaseModel):
    """A DIP ID the simulator knows: its signing certificate and API keys."""

    model_config = ConfigDict(extra="forbid")

    signing_cert: Path
    extra_signing_certs: list[Path] = Field(
        default_factory=list,
        description="also accepted as the signer (a certificate being rotated in or out)",
    )
    api_keys: list[str] = Field(default_factory=list, description="primary, secondary, ...")
    role: str | None = None
    mpid: str | None = None


class SimulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    #: Host name used in ``base_url`` (must match the server certificate's SANs).
    public_host: str | None = None
    server_cert: Path
    server_key: Path
    client_ca: Path  # CA for client certificates (mTLS) and for the signer trust check
    dip_signing_pfx: Path  # the DIP's signing credential, signs publications
    #: CA bundle that webhook server certificates must chain to (default: ``client_ca``).
    webhook_ca: Path | None = None
    #: Present the server certificate as a client certificate when pushing to webhooks.
    push_client_cert: bool = True
    dip_id: str = "0000000000"  # the DIP's own participant id (senderID in responses)
    senders: dict[str, SenderConfig] = Field(default_factory=dict)
    #: Check the signer certificate chains to ``client_ca`` as well as the registered pin.
    trust_signers_via_ca: bool = True
    max_skew_seconds: float | None = 300.0

    max_body_bytes: int = 10 * 1024 * 1024
    max_messages_per_request: int = 1000
    replay_page_size: int = 100
    schema_validation: bool = False

    default_max_message_count: int = 100
    push_max_attempts: int = 5
    push_backoff_initial_seconds: float = 0.2
    push_backoff_max_seconds: float = 5.0
    push_timeout_seconds: float = 10.0

    faults: FaultConfig = Field(default_factory=lambda: FaultConfig())
    seed: int | None = None
    sqlite_path: Path | None = None

    @classmethod
    def from_dev_pki(cls, folder: Path | str, **overrides: Any) -> SimulatorConfig:
        """Build a config from ``<folder>/dev-pki.json`` (paths in it are relative to folder)."""
        base = Path(folder)
        manifest = json.loads((base / "dev-pki.json").read_text())
        senders: dict[str, SenderConfig] = {}
        for client in manifest["clients"]:
            cert = base / client["signing_cert"]
            for entry in client["dip_ids"]:
                keys = [
                    (base / entry[name]).read_text().strip()
                    for name in ("api_key_file", "secondary_api_key_file")
                    if entry.get(name)
                ]
                senders[entry["dip_id"]] = SenderConfig(
                    signing_cert=cert, api_keys=keys, role=entry.get("role"), mpid=entry.get("mpid")
                )
        values: dict[str, Any] = {
            "server_cert": base / manifest["dip_server"]["cert"],
            "server_key": base / manifest["dip_server"]["key"],
            "client_ca": base / manifest["ca"]["cert"],
            "dip_signing_pfx": base / manifest["dip_signing"]["pfx"],
            "senders": senders,
        }
        values.update(overrides)
        return cls(**values)
