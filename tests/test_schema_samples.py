"""The sample generator produces schema-valid payloads other teams can rely on."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from gateway.schema import default_registry
from gateway.schema.samples import (
    SAMPLE_INTERFACES,
    mpan_core,
    sample_payload,
    sender_unique_reference,
)

SUR = re.compile(r"^S-((IF|REP)-)?\d{3}[A-B]?-[0-9a-fA-F]{10}-[A-Z]{3,5}-\d{8}-[a-zA-Z0-9]+$")
NOW = datetime(2026, 3, 1, 9, 30, 12, 999, tzinfo=UTC)
CASES = [(iface, event) for iface, (events, _) in SAMPLE_INTERFACES.items() for event in events]


def test_required_interfaces_have_builders() -> None:
    assert {"IF-021", "IF-043"} <= set(SAMPLE_INTERFACES)
    assert len(SAMPLE_INTERFACES) >= 3


@pytest.mark.parametrize(("interface_id", "event"), CASES)
@pytest.mark.parametrize("seq", [0, 1, 47, 123_456_789])
@pytest.mark.parametrize("dcp_id", [None, "1009012346"])
def test_sample_validates(interface_id: str, event: str, seq: int, dcp_id: str | None) -> None:
    payload = sample_payload(
        interface_id,
        sender_dip_id="1109012345",
        sender_role="ADS",
        recipients=["2300000900", "2300000901"],
        seq=seq,
        environment_tag="SIT",
        dcp_id=dcp_id,
        event_code=event,
        now=NOW,
    )
    assert default_registry().validate(payload) == []
    s0, s1 = payload["CommonBlock"]["S0"], payload["CommonBlock"]["S1"]
    assert (s0["interfaceID"], s0["eventCode"]) == (interface_id, f"[{event}]")
    assert SUR.match(s1["senderUniqueReference"])
    assert s1["senderTimestamp"] == "2026-03-01T09:30:12+00:00"
    assert s1["DIPConnectionProviderID"] == dcp_id
    assert s1["environmentTag"] == "SIT"
    assert payload["CommonBlock"]["A0"]["primaryRecipients"] == ["2300000900", "2300000901"]


def test_default_now_and_event_validate() -> None:
    payload = sample_payload(
        "IF-021", sender_dip_id="1109012345", sender_role="ADS", recipients=["2300000900"], seq=5
    )
    assert payload["CommonBlock"]["S0"]["eventCode"] == "[ActivePower]"
    assert len(payload["CommonBlock"]["S1"]["senderTimestamp"]) == 25
    assert default_registry().validate(payload) == []


def test_if021_is_a_full_settlement_day() -> None:
    payload = sample_payload(
        "IF-021", sender_dip_id="1109012345", sender_role="ADS", recipients=[], seq=5, now=NOW
    )
    (day,) = payload["CustomBlock"]["B900"]["settlementDayConsumptionPeriods"]
    assert day["settlementDay"]["settlementDayDate"] == "2026-02-28T00:00:00+00:00"
    assert len(day["consumptionPeriods"]) == 48
    assert day["consumptionPeriods"][-1]["sp"] == "2026-02-28T23:30:00+00:00"


def test_seq_makes_references_unique_and_mpan_overridable() -> None:
    refs = {
        sample_payload(
            "IF-043", sender_dip_id="1009012345", sender_role="REGS", recipients=[], seq=seq
        )["CommonBlock"]["S1"]["senderUniqueReference"]
        for seq in range(200)
    }
    assert len(refs) == 200
    payload = sample_payload(
        "IF-043",
        sender_dip_id="1009012345",
        sender_role="REGS",
        recipients=[],
        seq=1,
        mpan="2000056535971",
    )
    assert payload["CommonBlock"]["M0"]["MPANCore"] == "2000056535971"


def test_mpan_core_has_a_correct_check_digit() -> None:
    # 2000056535971 is the DIP document's example MPAN core.
    primes = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)
    for value in ("2000056535971", mpan_core(0), mpan_core(987_654_321_012)):
        assert len(value) == 13
        expected = sum(int(d) * p for d, p in zip(value[:12], primes, strict=True)) % 11 % 10
        assert int(value[12]) == expected


def test_sender_reference_hashes_non_hex_ids() -> None:
    ref = sender_unique_reference("REP-002A", "not-an-id", "SUP", NOW, 9)
    assert SUR.match(ref)
    assert ref.endswith("-SUP-20260301-9")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sender_role": "sup"}, "sender role"),
        ({"sender_dip_id": "123"}, "10-digit"),
        ({"recipients": ["x"]}, "10-digit"),
        ({"dcp_id": "1"}, "dcp_id"),
        ({"seq": -1}, "seq"),
        ({"event_code": "Nope"}, "events"),
        ({"mpan": "12"}, "13 digits"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "sender_dip_id": "1009012345",
        "sender_role": "REGS",
        "recipients": ["2300000900"],
        "seq": 1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sample_payload("IF-043", **args)  # type: ignore[arg-type]


def test_unknown_interface_raises() -> None:
    with pytest.raises(ValueError, match="no sample builder"):
        sample_payload(
            "IF-999", sender_dip_id="1009012345", sender_role="SUP", recipients=[], seq=1
        )
