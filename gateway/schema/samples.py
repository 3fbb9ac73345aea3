"""Schema-valid DIP payloads for load generators, simulator tests and examples.

The published examples in the DIP document are stale (wrong key casing, old block names), so
they cannot be used to drive the gateway; these builders produce payloads that pass
:mod:`gateway.schema.registry` for the interfaces a load test exercises:

* ``IF-021`` UTC settlement period consumption (``[ActivePower]``/``[ReactivePower]``): the
  high-volume data-service message, one settlement day of 48 half-hour periods;
* ``IF-043`` connection type change (``[ConnectionTypeChange]``);
* ``IF-044`` market segment change (``[MarketSegmentChange]``).

Every value is derived from the arguments, so the same arguments give the same payload
(given the same ``now``), which keeps load-test runs reproducible and replayable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["SAMPLE_INTERFACES", "mpan_core", "sample_payload", "sender_unique_reference"]

_SCHEMA_VERSION: Final = "011"
_DEFAULT_DISTRIBUTOR_DIP_ID: Final = "1000000010"
_ROLE: Final = re.compile(r"^[A-Z]{3,5}$")
_HEX10: Final = re.compile(r"^[0-9a-fA-F]{10}$")
_DIP_ID: Final = re.compile(r"^[0-9]{10}$")
_INTERFACE: Final = re.compile(r"^((IF|REP)-)?\d{3}[A-B]?$")
# MPAN core check digit weights (first 12 digits), per the MRA definition.
_MPAN_PRIMES: Final = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)
_GSP_GROUPS: Final = tuple(f"_{c}" for c in "ABCDEFGHJKLMNP")
_PERIODS_PER_DAY: Final = 48


def mpan_core(number: int) -> str:
    """A 13-digit MPAN core with a correct check digit, derived from ``number``.

    The schema only checks ``^\\d{13}$``, but a real check digit keeps samples usable by
    anything downstream that checks more (the simulator, market-participant stubs).
    """
    base = f"{20 + (number // 10**10) % 80:02d}{number % 10**10:010d}"
    check = sum(int(d) * p for d, p in zip(base, _MPAN_PRIMES, strict=True)) % 11 % 10
    return base + str(check)


def sender_unique_reference(
    interface_id: str, sender_dip_id: str, sender_role: str, when: datetime, seq: int
) -> str:
    """``S-IF-021-<10 hex>-<ROLE>-<YYYYMMDD>-<seq>`` as the DIP's DT-995 pattern requires.

    The 10-hex part is the sender's DIP ID when that is 10 hex digits (it usually is: DIP IDs
    are 10 decimal digits), else a stable hash of it.
    """
    if not _INTERFACE.match(interface_id):
        raise ValueError(f"interface id {interface_id!r} cannot appear in a sender reference")
    if not _ROLE.match(sender_role):
        raise ValueError(f"sender role {sender_role!r} must be 3-5 capital letters")
    if seq < 0:
        raise ValueError("seq must be >= 0")
    hex10 = sender_dip_id if _HEX10.match(sender_dip_id) else _hex10(sender_dip_id)
    return f"S-{interface_id}-{hex10}-{sender_role}-{when:%Y%m%d}-{seq}"


def _hex10(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _timestamp(when: datetime) -> str:
    """The DIP's 25-character DT-003 form: ``2026-03-01T09:30:00+00:00``."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


def sample_payload(
    interface_id: str,
    *,
    sender_dip_id: str,
    sender_role: str,
    recipients: Sequence[str],
    seq: int,
    environment_tag: str = "DEV",
    dcp_id: str | None = None,
    mpan: str | None = None,
    event_code: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A schema-valid ``{"CommonBlock":..., "CustomBlock":...}`` for ``interface_id``.

    ``seq`` makes the sender unique reference unique (and, without ``mpan``, picks the MPAN).
    ``event_code`` (bare or bracketed) selects among an interface's events; the default is the
    first in :data:`SAMPLE_INTERFACES`. ``now`` fixes the timestamps (default: current time).
    Raises ``ValueError`` for an interface without a builder or malformed identifiers.
    """
    spec = SAMPLE_INTERFACES.get(interface_id)
    if spec is None:
        raise ValueError(
            f"no sample builder for {interface_id!r}; have {', '.join(SAMPLE_INTERFACES)}"
        )
    events, build_custom = spec
    event = events[0] if event_code is None else event_code.strip("[]")
    if event not in events:
        raise ValueError(f"{interface_id} samples support events {events}, not {event!r}")
    for label, dip_id in (
        ("sender_dip_id", sender_dip_id),
        *(("recipient", r) for r in recipients),
    ):
        if not _DIP_ID.match(dip_id):
            raise ValueError(f"{label} {dip_id!r} is not a 10-digit DIP ID")
    if dcp_id is not None and not _DIP_ID.match(dcp_id):
        raise ValueError(f"dcp_id {dcp_id!r} is not a 10-digit DIP ID")
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    mpan_value = mpan if mpan is not None else mpan_core(seq)
    if not re.fullmatch(r"\d{13}", mpan_value):
        raise ValueError(f"MPAN {mpan_value!r} is not 13 digits")

    common: dict[str, Any] = {
        "S0": {
            "interfaceID": interface_id,
            "schemaVersion": _SCHEMA_VERSION,
            "eventCode": f"[{event}]",
        },
        "S1": {
            "environmentTag": environment_tag,
            "subText": None,
            "senderUniqueReference": sender_unique_reference(
                interface_id, sender_dip_id, sender_role, when, seq
            ),
            "senderTimestamp": _timestamp(when),
            "senderDIPID": sender_dip_id,
            "senderRoleID": sender_role,
            "senderCorrelationID": None,
            "DIPConnectionProviderID": dcp_id,
        },
        "A0": {"primaryRecipients": list(recipients), "secondaryRecipients": [], "always": []},
        "M0": {
            "MPANCore": mpan_value,
            "distributorDIPID": _DEFAULT_DISTRIBUTOR_DIP_ID,
            "GSPGroupID": _GSP_GROUPS[seq % len(_GSP_GROUPS)],
        },
    }
    return {"CommonBlock": common, "CustomBlock": build_custom(event, sender_dip_id, seq, when)}


def _if021_custom(event: str, sender_dip_id: str, seq: int, when: datetime) -> dict[str, Any]:
    """One settlement day (yesterday, UTC) of 48 actual half-hourly reads."""
    day = (when - timedelta(days=1)).replace(hour=0, minute=0, second=0)
    quantity = "AI" if event == "ActivePower" else "RI"
    periods = [
        {
            "sp": _timestamp(day + timedelta(minutes=30 * i)),
            "v": f"{(seq * 7 + i) % 1000}.{(seq + i * 37) % 1000:03d}",
            "q": "A",
            "e": None,
            "arc": None,
        }
        for i in range(_PERIODS_PER_DAY)
    ]
    return {
        "B044": {"issuingDataServiceDIPID": sender_dip_id},
        "B067": {
            "connectionTypeIndicator": "W",
            "connectionTypeEffectiveFromDate": _timestamp(day),
        },
        "B900": {
            "MQID": {"measurementQuantityID": quantity},
            "settlementDayConsumptionPeriods": [
                {
                    "settlementDay": {"settlementDayDate": _timestamp(day), "periodDuration": 30},
                    "consumptionPeriods": periods,
                }
            ],
        },
    }


def _connection(when: datetime, seq: int) -> dict[str, Any]:
    return {
        "connectionTypeIndicator": "WLHEU"[seq % 5],
        "connectionTypeEffectiveFromDate": _timestamp(when),
        "energyDirection": "IE"[seq % 2],
        "meteredIndicator": True,
    }


def _if043_custom(event: str, sender_dip_id: str, seq: int, when: datetime) -> dict[str, Any]:
    return {"B023": _connection(when, seq)}


def _if044_custom(event: str, sender_dip_id: str, seq: int, when: datetime) -> dict[str, Any]:
    return {
        "B023": _connection(when, seq),
        "B026": {
            "marketSegmentIndicator": "USA"[seq % 3],
            "marketSegmentIndicatorEffectiveFromDate": _timestamp(when),
        },
    }


_CustomBuilder = Callable[[str, str, int, datetime], dict[str, Any]]

#: interface -> (supported bare event codes, first is the default; CustomBlock builder)
SAMPLE_INTERFACES: Final[dict[str, tuple[tuple[str, ...], _CustomBuilder]]] = {
    "IF-021": (("ActivePower", "ReactivePower"), _if021_custom),
    "IF-043": (("ConnectionTypeChange",), _if043_custom),
    "IF-044": (("MarketSegmentChange",), _if044_custom),
}
