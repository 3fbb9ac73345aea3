"""Envelope-valid sample messages for tests, the demo and ``POST /_sim/publish``.

They pass the simulator's envelope checks; their CustomBlock is a placeholder, so they do not
pass full schema validation (``schema_validation: true``) unless a real CustomBlock is given.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from dipsim.envelope import MPAN_BLOCK

_counter = itertools.count(1)

_EVENTS = {"IF-043": "[ConnectionTypeChange]", "IF-021": "[MeterReading]"}


def sender_unique_reference(
    interface: str, sender: str, role: str = "SUP", ref: str | None = None
) -> str:
    """``S-IF-043-1400010001-SUP-20260301-<ref>`` (matches the DIP pattern)."""
    day = datetime.now(UTC).strftime("%Y%m%d")
    tail = ref or f"{uuid.uuid4().hex[:12]}{next(_counter)}"
    return f"S-{interface}-{sender}-{role}-{day}-{tail}"


def sample_payload(
    interface: str = "IF-043",
    recipient: str | None = "2300000900",
    *,
    sender: str = "1009012345",
    role: str = "SUP",
    seq: int = 0,
    event_code: str | None = None,
    schema_version: str = "011",
    mpan: str = "2000056535971",
    sur: str | None = None,
    dcp_id: str | None = None,
    recipients: list[str] | None = None,
    custom: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``{"CommonBlock": ..., "CustomBlock": ...}`` payload with a fresh senderUniqueReference
    and the MPAN block the interface's schema has (M0, M1 or none)."""
    common: dict[str, Any] = {
        "S0": {
            "interfaceID": interface,
            "schemaVersion": schema_version,
            "eventCode": event_code or _EVENTS.get(interface, "[Sample]"),
        },
        "S1": {
            "environmentTag": "DEV",
            "subText": f"dipsim sample {seq}",
            "senderUniqueReference": sur or sender_unique_reference(interface, sender, role),
            "senderTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "senderDIPID": sender,
            "senderRoleID": role,
            "senderCorrelationID": None,
            "DIPConnectionProviderID": dcp_id,
        },
        "A0": {
            "primaryRecipients": recipients
            if recipients is not None
            else ([recipient] if recipient else []),
            "secondaryRecipients": [],
            "always": [],
        },
    }
    block = MPAN_BLOCK.get(interface, "M0")
    if block is not None:
        key = "MPANCore" if block == "M0" else "principalMPAN"
        common[block] = {key: mpan, "distributorDIPID": "1009012345", "GSPGroupID": "_K"}
    return {
        "CommonBlock": common,
        "CustomBlock": custom
        if custom is not None
        else {
            "B023": {
                "connectionTypeIndicator": "L",
                "connectionTypeEffectiveFromDate": "2022-05-28T19:00:00+00:00",
                "energyDirection": "E",
                "meteredIndicator": True,
            }
        },
    }


def sample_message(interface: str = "IF-043", **kwargs: Any) -> dict[str, Any]:
    """One submit array item: ``{"payload": sample_payload(...)}``."""
    return {"payload": sample_payload(interface, **kwargs)}
