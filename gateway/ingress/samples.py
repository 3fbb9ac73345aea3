"""Publication pushes as the DIP sends them, for tests, the benchmark and local experiments.

Builds ``{"payload": {CommonBlock S0/S1/A0/D0/M0, CustomBlock}}`` items and signs a body the way
the DIP signs a push (its signing certificate, over the callback URL). Nothing here is used on
the production path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.signing.credentials import SigningCredential


def publication(
    recipient: str,
    transaction_id: str,
    *,
    interface: str = "IF-043",
    mpan: str | None = "2000056535972",
    sender: str = "1009012345",
    recipients: Sequence[str] | None = None,
    replay: bool = False,
    event_code: str = "[ConnectionTypeChange]",
) -> dict[str, Any]:
    """One published message addressed (``A0.primaryRecipients``) to ``recipient``."""
    common: dict[str, Any] = {
        "S0": {"interfaceID": interface, "schemaVersion": "011", "eventCode": event_code},
        "S1": {
            "environmentTag": "DEV",
            "subText": None,
            "senderUniqueReference": f"S-{interface}-{sender}-REGS-20261123-{transaction_id[-8:]}",
            "senderTimestamp": "2026-11-23T10:00:00+00:00",
            "senderDIPID": sender,
            "senderRoleID": "REGS",
            "senderCorrelationID": None,
            "DIPConnectionProviderID": None,
        },
        "A0": {
            "primaryRecipients": list(recipients) if recipients is not None else [recipient],
            "secondaryRecipients": [],
            "always": [],
        },
        "D0": {
            "transactionID": transaction_id,
            "transactionTimestamp": "2026-11-23T10:00:02+00:00",
            "publicationID": "PUB-" + interface.split("-")[1],
            "initialCorrelationID": None,
            "replayIndicator": replay,
            "serviceTicketURL": None,
        },
    }
    if mpan is not None:
        common["M0"] = {"MPANCore": mpan, "distributorDIPID": sender, "GSPGroupID": "_K"}
    return {
        "payload": {
            "CommonBlock": common,
            "CustomBlock": {
                "B023": {
                    "connectionTypeIndicator": "L",
                    "connectionTypeEffectiveFromDate": "2026-11-23T00:00:00+00:00",
                    "energyDirection": "E",
                    "meteredIndicator": True,
                }
            },
        }
    }


def status_message(recipient: str, transaction_id: str, message: str) -> dict[str, Any]:
    """One ``StandardResponseBodyType`` as pushed to a status webhook."""
    return {
        "transactionID": transaction_id,
        "senderUniqueReference": f"S-IF-021-1400010001-SUP-20261123-{transaction_id[-8:]}",
        "correlationID": None,
        "sentTimestamp": "2026-11-23T10:00:00+00:00",
        "senderID": "0000000000",
        "recipientID": recipient,
        "DIPConnectionProviderID": None,
        "message": message,
        "help": None,
        "serviceTicketURL": None,
    }


def body_of(items: Sequence[dict[str, Any]]) -> bytes:
    return orjson.dumps(list(items))


def sign_push(
    signer: SigningCredential, url: str, body: bytes, when: datetime | None = None
) -> dict[str, str]:
    """The four ``X-DIP-*`` headers the DIP puts on a push to ``url``."""
    headers = signer.sign("POST", url, body, when or datetime.now(UTC))
    headers["Content-Type"] = "application/json"
    return headers
