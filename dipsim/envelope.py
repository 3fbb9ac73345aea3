"""Envelope checks of one submitted message, DIP style: a message code and a help text.

These cover the common blocks of the envelope subset (S0, S1, A0, and the MPAN block M0 or M1
where the interface's schema has one) without the per-interface payload schemas; full
validation (``gateway.schema``) is an optional second pass. ``A0`` is optional, as in every
payload schema of the published document; an MPAN block is required exactly where the
interface's schema requires it and refused where the schema has none (it forbids extra
blocks). The only message codes the published DIP document shows are ``MSG0000 - Success``
and ``MSG1001 - Schema Failure``; envelope faults are schema faults, so they answer MSG1001.
"""

from __future__ import annotations

import re
from typing import Any, Final

import jsonschema_rs

from gateway.dip.vocabulary import DIP_ID_PATTERN, Environment

MSG_SUCCESS: Final = "MSG0000 - Success"
MSG_SCHEMA_FAILURE: Final = "MSG1001 - Schema Failure"
#: Not in the published document (which shows no duplicate code): the simulator's choice.
MSG_DUPLICATE: Final = "MSG1002 - Duplicate Sender Unique Reference"

SUR_PATTERN: Final = re.compile(
    r"^S-((IF|REP)-)?\d{3}[A-B]?-[0-9a-fA-F]{10}-[A-Z]{3,5}-\d{8}-[a-zA-Z0-9]+$"
)
_MPAN = re.compile(r"^\d{13}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
#: Interfaces whose CommonBlock carries M1 (principal MPAN) instead of M0.
_M1_INTERFACES: Final = frozenset({"IF-019", "IF-020"})
#: Interfaces whose CommonBlock has no MPAN block at all.
_NO_MPAN_INTERFACES: Final = frozenset(
    {"IF-022", "IF-023", "IF-047"}
    | {
        f"REP-{n}"
        for n in (
            *("002", "002A", "002B", "003", "003A", "004"),
            *("006", "007", "008", "009", "900", "901"),
        )
    }
)
#: Every interface of the published document (DT-000-InterfaceID) and the MPAN block its
#: CommonBlock requires: "M0", "M1" or None (``tests/test_dipsim_conformance.py`` checks
#: this table against the document).
MPAN_BLOCK: Final[dict[str, str | None]] = {
    iface: (None if iface in _NO_MPAN_INTERFACES else "M1" if iface in _M1_INTERFACES else "M0")
    for iface in (
        *(
            f"IF-{n:03d}"
            for n in (
                *(1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24),
                *(25, 26, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 43, 44, 45, 47),
                *(50, 51, 61, 62, 63, 64, 65),
            )
        ),
        *sorted(_NO_MPAN_INTERFACES),
    )
}
_MPAN_KEY: Final = {"M0": "MPANCore", "M1": "principalMPAN"}
_A0_KEYS: Final = ("primaryRecipients", "secondaryRecipients", "always")
ENVIRONMENT_TAGS: Final = frozenset(tag.value for tag in Environment)
GSP_GROUPS: Final = frozenset(
    f"_{c}" for c in ("A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P")
)
_S1_KEYS: Final = (
    "environmentTag",
    "subText",
    "senderUniqueReference",
    "senderTimestamp",
    "senderDIPID",
    "senderRoleID",
    "senderCorrelationID",
    "DIPConnectionProviderID",
)
_S1_ALLOWED: Final = frozenset(_S1_KEYS)


def mpan_of(common: dict[str, Any]) -> str | None:
    """The MPAN of an envelope-checked CommonBlock: M0's core, M1's principal MPAN, or None."""
    for name, key in _MPAN_KEY.items():
        block = common.get(name)
        if isinstance(block, dict):
            mpan = block.get(key)
            return mpan if isinstance(mpan, str) else None
    return None


def _nullable_str(value: Any, lo: int, hi: int) -> bool:
    return value is None or (isinstance(value, str) and lo <= len(value) <= hi)


def check_message(item: Any, interface_id: str) -> list[str]:
    """Problems with one array item ``{"payload": {...}}``; ``[]`` when the envelope is fine."""
    if not isinstance(item, dict) or not isinstance(item.get("payload"), dict):
        return ['$: each item must be an object {"payload": {...}}']
    payload = item["payload"]
    common = payload.get("CommonBlock")
    if not isinstance(common, dict):
        return ["$.payload.CommonBlock: missing or not an object"]
    problems: list[str] = []
    if "CustomBlock" in payload and not isinstance(payload["CustomBlock"], dict):
        problems.append("$.payload.CustomBlock: not an object")

    s0 = common.get("S0")
    if not isinstance(s0, dict):
        problems.append("$.payload.CommonBlock.S0: missing or not an object")
    else:
        iface = s0.get("interfaceID")
        if iface != interface_id:
            problems.append(
                f"$.payload.CommonBlock.S0.interfaceID: {iface!r} does not match the channel "
                f"{interface_id}"
            )
        if not isinstance(s0.get("schemaVersion"), str) or not s0["schemaVersion"]:
            problems.append("$.payload.CommonBlock.S0.schemaVersion: missing")
        if not isinstance(s0.get("eventCode"), str) or not s0["eventCode"]:
            problems.append("$.payload.CommonBlock.S0.eventCode: missing")

    s1 = common.get("S1")
    if not isinstance(s1, dict):
        problems.append("$.payload.CommonBlock.S1: missing or not an object")
    else:
        problems.extend(_check_s1(s1))

    a0 = common.get("A0")
    if "A0" in common and not isinstance(a0, dict):
        problems.append("$.payload.CommonBlock.A0: not an object")
    elif isinstance(a0, dict):
        for key in _A0_KEYS:
            ids = a0.get(key)
            if not isinstance(ids, list):
                problems.append(f"$.payload.CommonBlock.A0.{key}: missing or not an array")
            elif any(
                i is not None and not (isinstance(i, str) and DIP_ID_PATTERN.match(i)) for i in ids
            ):
                problems.append(f"$.payload.CommonBlock.A0.{key}: DIP IDs are 10 digits")
        extra = set(a0) - set(_A0_KEYS)
        if extra:
            problems.append(f"$.payload.CommonBlock.A0: unexpected {sorted(extra)}")

    wanted = MPAN_BLOCK.get(interface_id, "M0")
    for block in ("M0", "M1"):
        if block != wanted and block in common:
            problems.append(f"$.payload.CommonBlock.{block}: {interface_id} has no {block} block")
    if wanted is not None:
        problems.extend(_check_mpan_block(common.get(wanted), wanted))
    return problems


def _check_mpan_block(block: Any, name: str) -> list[str]:
    p = f"$.payload.CommonBlock.{name}"
    if not isinstance(block, dict):
        return [f"{p}: missing or not an object"]
    problems: list[str] = []
    key = _MPAN_KEY[name]
    mpan = block.get(key)
    if not (isinstance(mpan, str) and _MPAN.match(mpan)):
        problems.append(f"{p}.{key}: {mpan!r} is not 13 digits")
    dist = block.get("distributorDIPID")
    if not (isinstance(dist, str) and DIP_ID_PATTERN.match(dist)):
        problems.append(f"{p}.distributorDIPID: {dist!r} is not 10 digits")
    group = block.get("GSPGroupID")
    if not (isinstance(group, str) and group in GSP_GROUPS):
        problems.append(f"{p}.GSPGroupID: {group!r} is not _A.._P")
    return problems


def _check_s1(s1: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    p = "$.payload.CommonBlock.S1"
    missing = [k for k in _S1_KEYS if k not in s1]
    if missing:
        problems.append(f"{p}: missing {missing}")
    extra = set(s1) - _S1_ALLOWED
    if extra:
        problems.append(f"{p}: unexpected {sorted(extra)}")
    tag = s1.get("environmentTag")
    if "environmentTag" in s1 and not (isinstance(tag, str) and tag in ENVIRONMENT_TAGS):
        problems.append(
            f"{p}.environmentTag: {s1['environmentTag']!r} is not one of PRD/SITB/SIT/UIT/DEV"
        )
    if "subText" in s1 and not _nullable_str(s1["subText"], 1, 500):
        problems.append(f"{p}.subText: null or 1..500 characters")
    sur = s1.get("senderUniqueReference")
    if "senderUniqueReference" in s1 and not (
        isinstance(sur, str) and len(sur) <= 200 and SUR_PATTERN.match(sur)
    ):
        problems.append(
            f"{p}.senderUniqueReference: {sur!r} does not match "
            "S-<interface>-<10 hex>-<role>-<yyyymmdd>-<reference>"
        )
    ts = s1.get("senderTimestamp")
    if "senderTimestamp" in s1 and not (
        isinstance(ts, str) and len(ts) == 25 and _TIMESTAMP.match(ts)
    ):
        problems.append(f"{p}.senderTimestamp: {ts!r} is not like 2026-03-01T09:30:00+00:00")
    sender = s1.get("senderDIPID")
    if "senderDIPID" in s1 and not (isinstance(sender, str) and DIP_ID_PATTERN.match(sender)):
        problems.append(f"{p}.senderDIPID: {sender!r} is not 10 digits")
    role = s1.get("senderRoleID")
    if "senderRoleID" in s1 and not (isinstance(role, str) and 3 <= len(role) <= 5):
        problems.append(f"{p}.senderRoleID: {role!r} is not 3..5 characters")
    if "senderCorrelationID" in s1 and not _nullable_str(s1["senderCorrelationID"], 1, 60):
        problems.append(f"{p}.senderCorrelationID: null or 1..60 characters")
    dcp = s1.get("DIPConnectionProviderID")
    if dcp is not None and not (isinstance(dcp, str) and DIP_ID_PATTERN.match(dcp)):
        problems.append(f"{p}.DIPConnectionProviderID: {dcp!r} is not null or 10 digits")
    return problems


def help_text(problems: list[str], limit: int = 500) -> str:
    text = f"{len(problems)} envelope problem{'s' if len(problems) != 1 else ''}: " + "; ".join(
        problems
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def publication_id(interface_id: str) -> str:
    """``IF-043`` -> ``PUB-043``; ``REP-002A`` -> ``PUB-002A``."""
    return "PUB-" + interface_id.split("-", 1)[1]


# --------------------------------------------------------------------- fast path (whole array)

_D10: Final = {"type": "string", "pattern": "^[0-9]{10}$"}
_NULL_OR_D10: Final = {"anyOf": [{"type": "null"}, _D10]}


def _array_schema(interface_id: str) -> dict[str, Any]:
    """A JSON schema for a submit array that :func:`check_message` accepts item by item.

    It may be stricter than the Python checks (ASCII digits only, no trailing newline before
    ``$``), never looser: an array it rejects goes through :func:`check_message`, which stays
    the authority for which messages fail and how.
    """
    s1_keys = list(_S1_KEYS)
    recipients = {"type": "array", "items": _NULL_OR_D10}
    wanted = MPAN_BLOCK.get(interface_id, "M0")
    required = ["S0", "S1", "A0"] + ([wanted] if wanted else [])
    # An MPAN block the interface has no place for fails (``False`` matches nothing).
    mpan_blocks: dict[str, Any] = {"M0": False, "M1": False}
    if wanted is not None:
        key = _MPAN_KEY[wanted]
        mpan_blocks[wanted] = {
            "type": "object",
            "required": [key, "distributorDIPID", "GSPGroupID"],
            "properties": {
                key: {"type": "string", "pattern": "^[0-9]{13}$"},
                "distributorDIPID": _D10,
                "GSPGroupID": {"enum": sorted(GSP_GROUPS)},
            },
        }
    return {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["payload"],
            "properties": {
                "payload": {
                    "type": "object",
                    "required": ["CommonBlock"],
                    "properties": {
                        "CustomBlock": {"type": "object"},
                        "CommonBlock": {
                            "type": "object",
                            "required": required,
                            "properties": {
                                "S0": {
                                    "type": "object",
                                    "required": ["interfaceID", "schemaVersion", "eventCode"],
                                    "properties": {
                                        "interfaceID": {"const": interface_id},
                                        "schemaVersion": {"type": "string", "minLength": 1},
                                        "eventCode": {"type": "string", "minLength": 1},
                                    },
                                },
                                "S1": {
                                    "type": "object",
                                    "required": s1_keys,
                                    "additionalProperties": False,
                                    "properties": {
                                        "environmentTag": {"enum": sorted(ENVIRONMENT_TAGS)},
                                        "subText": {
                                            "type": ["string", "null"],
                                            "minLength": 1,
                                            "maxLength": 500,
                                        },
                                        "senderUniqueReference": {
                                            "type": "string",
                                            "maxLength": 200,
                                            "pattern": (
                                                r"^S-((IF|REP)-)?[0-9]{3}[A-B]?-[0-9a-fA-F]{10}"
                                                r"-[A-Z]{3,5}-[0-9]{8}-[a-zA-Z0-9]+$"
                                            ),
                                        },
                                        "senderTimestamp": {
                                            "type": "string",
                                            "pattern": (
                                                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"
                                                r":[0-9]{2}[+-][0-9]{2}:[0-9]{2}$"
                                            ),
                                        },
                                        "senderDIPID": _D10,
                                        "senderRoleID": {
                                            "type": "string",
                                            "minLength": 3,
                                            "maxLength": 5,
                                        },
                                        "senderCorrelationID": {
                                            "type": ["string", "null"],
                                            "minLength": 1,
                                            "maxLength": 60,
                                        },
                                        "DIPConnectionProviderID": _NULL_OR_D10,
                                    },
                                },
                                "A0": {
                                    "type": "object",
                                    "required": list(_A0_KEYS),
                                    "additionalProperties": False,
                                    "properties": {k: recipients for k in _A0_KEYS},
                                },
                                **mpan_blocks,
                            },
                        },
                    },
                }
            },
        },
    }


_VALIDATORS: dict[str, Any] = {}


def envelope_array_ok(items: list[Any], interface_id: str) -> bool:
    """True when every item of ``items`` passes :func:`check_message` (one native pass).

    False means "check each item with :func:`check_message`": some item may still be fine.
    """
    validator = _VALIDATORS.get(interface_id)
    if validator is None:
        if len(_VALIDATORS) > 4096:
            _VALIDATORS.clear()
        validator = _VALIDATORS[interface_id] = jsonschema_rs.validator_for(
            _array_schema(interface_id)
        )
    return bool(validator.is_valid(items))
