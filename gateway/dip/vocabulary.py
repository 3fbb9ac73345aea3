"""The DIP's own vocabulary: the shapes of its identifiers and its fixed code lists.

One home for what the DIP defines (its IDs, interface IDs, environments and market roles), so
the configuration, egress and ingress check against the same definitions.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import orjson

#: A DIP ID (a DCP ID too): exactly 10 digits.
DIP_ID_PATTERN = re.compile(r"^[0-9]{10}$")
#: A Market Participant ID: 4 upper-case letters or digits.
MPID_PATTERN = re.compile(r"^[A-Z0-9]{4}$")
#: An interface ID, e.g. ``IF-043``, ``REP-002A``.
INTERFACE_PATTERN = re.compile(r"^(IF|REP)-[0-9]{3}[A-B]?$")


class Environment(StrEnum):
    """The DIP environments a gateway can be connected to."""

    PRD = "PRD"
    SITB = "SITB"
    SIT = "SIT"
    UIT = "UIT"
    DEV = "DEV"


class RoleCode(StrEnum):
    """Market roles a DIP ID can hold."""

    SUP = "SUP"
    SDS = "SDS"
    MSA = "MSA"
    ADS = "ADS"
    MSS = "MSS"
    REGS = "REGS"
    LDSO = "LDSO"
    UMSO = "UMSO"
    UMSDS = "UMSDS"
    SMSO = "SMSO"
    MDR = "MDR"
    MAP = "MAP"
    MDS = "MDS"
    LSS = "LSS"
    ISD = "ISD"
    VAS = "VAS"
    EES = "EES"


def response_entries(body: bytes) -> list[dict[str, Any]]:
    """The entries of a DIP ``StandardResponse`` (its ``messageArray``, or a bare array), or []
    when the body is anything else (empty, a proxy's page): egress decides on them, the ledger
    records them."""
    if not body:
        return []
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    array = doc.get("messageArray") if isinstance(doc, dict) else doc
    if not isinstance(array, list):
        return []
    return [e for e in array if isinstance(e, dict)]
