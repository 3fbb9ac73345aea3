"""Minimal payloads that are valid per the published DIP document, for the interfaces whose
CommonBlock differs from the usual S0/S1/M0 one: M1 instead of M0 (IF-019, IF-020), no MPAN
block at all (IF-022, IF-023, IF-047, the REP-* reports). Without ``A0`` unless asked for:
every payload schema makes it optional.

Tests check each against ``gateway.schema`` before relying on it.
"""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime
from typing import Any

_seq = itertools.count(1)

#: interface -> (schema version, event code, extra CommonBlock blocks, CustomBlock)
_SHAPES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "IF-019": ("011", "[LinkedImportExportCreate]", {}, {"B090List": []}),
    "IF-020": (
        "011",
        "[LinkedImportExportCreate]",
        {"R0": {"responseCode": "A", "responseMessages": []}},
        {"B090List": []},
    ),
    "IF-022": ("011", "[LSSPeriodData]", {}, {"B903List": []}),
    "IF-023": ("011", "[LSSTotalsData]", {}, {"B912List": []}),
    "IF-047": ("011", "[ISD]", {}, {}),
    "REP-002": (
        "008",
        "[DUOSSupplierAggData]",
        {},
        {"P03": {"compressedReport": base64.b64encode(b"report").decode()}},
    ),
}
INTERFACES = tuple(_SHAPES)
M1_INTERFACES = frozenset({"IF-019", "IF-020"})
PRINCIPAL_MPAN = "2000056535971"


def payload(
    interface: str, sender: str, *, recipient: str | None = None, role: str = "SUP"
) -> dict[str, Any]:
    """``{"CommonBlock": ..., "CustomBlock": ...}``; with ``A0`` only when ``recipient``."""
    version, event, extra, custom = _SHAPES[interface]
    now = datetime.now(UTC)
    common: dict[str, Any] = {
        "S0": {"interfaceID": interface, "schemaVersion": version, "eventCode": event},
        "S1": {
            "environmentTag": "DEV",
            "subText": None,
            "senderUniqueReference": (
                f"S-{interface}-{sender}-{role}-{now:%Y%m%d}-doc{next(_seq)}{now:%H%M%S%f}"
            ),
            "senderTimestamp": now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "senderDIPID": sender,
            "senderRoleID": role,
            "senderCorrelationID": None,
            "DIPConnectionProviderID": None,
        },
        **extra,
    }
    if interface in M1_INTERFACES:
        common["M1"] = {
            "principalMPAN": PRINCIPAL_MPAN,
            "distributorDIPID": "1009012345",
            "GSPGroupID": "_K",
        }
    if recipient is not None:
        common["A0"] = {"primaryRecipients": [recipient], "secondaryRecipients": [], "always": []}
    return {"CommonBlock": common, "CustomBlock": custom}
