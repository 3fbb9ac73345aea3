"""Shared builders for the egress tests (no tests here: imported by the test_egress_* modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gateway.config import GatewayConfig, parse_config
from gateway.egress.envelope import OutboundMessage, RecordRef, parse_record
from gateway.schema.samples import sample_payload

DCP_ID = "9000000001"
ALICE_ID = "1000000001"  # client "alice", role SUP
ALICE_OLD_ID = "1000000002"  # alice, effective until 2020
BOB_ID = "2000000001"  # client "bob", role SUP, set_dcp_id
RECIPIENT = "2300000900"


def config_data(**egress: Any) -> dict[str, Any]:
    def client(name: str, dip_ids: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "signing_key": f"{name}.key",
            "signing_cert": f"{name}.pem",
            "topics": {
                "inbound": f"{name}.inbound",
                "results": f"{name}.results",
                "dead_letter": f"{name}.dead-letter",
            },
            "dip_ids": dip_ids,
            **extra,
        }

    return {
        "environment": "DEV",
        "dip": {"base_url": "https://dip.example"},
        "dcp": {"dcp_id": DCP_ID},
        "ingress": {"enabled": False},
        "egress": egress,
        "clients": [
            client(
                "alice",
                [
                    {"dip_id": ALICE_ID, "role": "SUP", "mpid": "ALIC", "api_key_file": "a.key"},
                    {
                        "dip_id": ALICE_OLD_ID,
                        "role": "SUP",
                        "mpid": "ALIC",
                        "api_key_file": "a.key",
                        "effective_to": "2020-01-01",
                    },
                ],
            ),
            client(
                "bob",
                [{"dip_id": BOB_ID, "role": "SUP", "mpid": "BOBB", "api_key_file": "b.key"}],
                set_dcp_id=True,
                schema_validation_exempt=["IF-044"],
            ),
        ],
    }


def make_config(**egress: Any) -> GatewayConfig:
    return parse_config(config_data(**egress), base_dir=Path("/nonexistent"), check_files=False)


def payload(
    sender: str = ALICE_ID,
    seq: int = 1,
    interface: str = "IF-043",
    env: str = "DEV",
    dcp_id: str | None = None,
) -> dict[str, Any]:
    return sample_payload(
        interface,
        sender_dip_id=sender,
        sender_role="SUP",
        recipients=[RECIPIENT],
        seq=seq,
        environment_tag=env,
        dcp_id=dcp_id,
    )


def ref(
    value: bytes | None, offset: int = 0, key: bytes | None = None, partition: int = 0
) -> RecordRef:
    return RecordRef("dip.outbound", partition, offset, key, value)


def message(
    sender: str = ALICE_ID,
    seq: int = 1,
    interface: str = "IF-043",
    *,
    offset: int = 0,
    key: bytes | None = None,
    partition: int = 0,
    **kw: Any,
) -> OutboundMessage:
    parsed = parse_record(
        ref(orjson.dumps(payload(sender, seq, interface, **kw)), offset, key, partition)
    )
    assert isinstance(parsed, OutboundMessage)
    return parsed
