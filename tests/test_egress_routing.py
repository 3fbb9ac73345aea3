"""Routing rules: sender -> client, path, environment tag, effective dates, DCP ID, schema."""

from __future__ import annotations

from datetime import date

import orjson

from gateway.egress.envelope import OutboundMessage, Refusal, parse_record
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.routing import STATUS_PATH, Prepared, Rejected, Router
from gateway.schema import default_registry
from tests.test_egress_support import (
    ALICE_ID,
    ALICE_OLD_ID,
    BOB_ID,
    DCP_ID,
    make_config,
    message,
    payload,
    ref,
)

TODAY = date(2026, 11, 23)


def _router(validate: bool = True) -> Router:
    return Router(make_config(schema_validation=validate), default_registry())


def test_routes_to_the_sender_client_and_channel() -> None:
    msg = message(ALICE_ID)
    item = msg.item
    out = _router().prepare(msg, TODAY)
    assert isinstance(out, Prepared)
    assert out.route.client.name == "alice"
    assert out.route.dip_id.dip_id == ALICE_ID
    assert out.route.path == "/dip-channel/IF-043"
    assert out.message.item is item  # not modified, not re-serialised


def test_unknown_sender_goes_to_nobody() -> None:
    out = _router().prepare(message("5555555555"), TODAY)
    assert isinstance(out, Rejected)
    assert out.client is None
    assert "unknown sender DIP ID 5555555555" in out.refusal.reason
    assert out.refusal.reason_class is DeadLetterReason.ROUTING


def test_environment_tag_must_match() -> None:
    out = _router().prepare(message(ALICE_ID, env="UIT"), TODAY)
    assert isinstance(out, Rejected)
    assert out.client is not None and out.client.name == "alice"
    assert "environmentTag 'UIT'" in out.refusal.reason
    assert out.refusal.reason_class is DeadLetterReason.ENVIRONMENT


def test_dip_id_outside_effective_dates() -> None:
    out = _router().prepare(message(ALICE_OLD_ID), TODAY)
    assert isinstance(out, Rejected)
    assert "not effective on 2026-11-23" in out.refusal.reason
    assert out.refusal.reason_class is DeadLetterReason.NOT_EFFECTIVE
    assert isinstance(_router().prepare(message(ALICE_OLD_ID), date(2019, 6, 1)), Prepared)


def test_one_router_decides_the_effective_dates_again_on_another_day() -> None:
    """The plan remembers the last day's answer: a new day is asked afresh, either way."""
    router = _router()
    old_day = date(2019, 6, 1)
    assert isinstance(router.prepare(message(ALICE_OLD_ID), old_day), Prepared)
    assert isinstance(router.prepare(message(ALICE_OLD_ID), old_day), Prepared)
    assert isinstance(router.prepare(message(ALICE_OLD_ID), TODAY), Rejected)
    assert isinstance(router.prepare(message(ALICE_OLD_ID), TODAY), Rejected)
    assert isinstance(router.prepare(message(ALICE_OLD_ID), old_day), Prepared)


def test_dcp_id_filled_only_when_configured() -> None:
    bob = _router().prepare(message(BOB_ID), TODAY)
    assert isinstance(bob, Prepared)
    sent = orjson.loads(bob.message.item)["payload"]["CommonBlock"]["S1"]
    assert sent["DIPConnectionProviderID"] == DCP_ID
    alice = _router().prepare(message(ALICE_ID), TODAY)
    assert isinstance(alice, Prepared)
    sent = orjson.loads(alice.message.item)["payload"]["CommonBlock"]["S1"]
    assert sent["DIPConnectionProviderID"] is None


def test_a_client_that_fills_the_dcp_id_sends_a_message_already_carrying_it_unchanged() -> None:
    raw = orjson.dumps(payload(BOB_ID, dcp_id=DCP_ID))  # bob's client has set_dcp_id
    parsed = parse_record(ref(raw))
    assert isinstance(parsed, OutboundMessage)
    out = _router().prepare(parsed, TODAY)
    assert isinstance(out, Prepared)
    assert out.message.item == b'{"payload":' + raw + b"}"  # the record's own bytes


def test_matching_dcp_id_is_kept_and_a_different_one_refused() -> None:
    same = _router().prepare(message(ALICE_ID, dcp_id=DCP_ID), TODAY)
    assert isinstance(same, Prepared)
    for sender in (ALICE_ID, BOB_ID):
        other = _router().prepare(message(sender, dcp_id="9999999999"), TODAY)
        assert isinstance(other, Rejected)
        assert "does not overwrite" in other.refusal.reason
        assert other.refusal.reason_class is DeadLetterReason.ROUTING


def test_schema_violation_refused_with_reason() -> None:
    msg = message(ALICE_ID)
    msg.payload["CommonBlock"]["M0"]["MPANCore"] = "12"
    out = _router().prepare(msg, TODAY)
    assert isinstance(out, Rejected)
    assert out.refusal.reason.startswith("MSG1001 - Schema Failure")
    assert "MPANCore" in out.refusal.reason
    assert out.refusal.reason_class is DeadLetterReason.SCHEMA


def _unknown_interface() -> OutboundMessage:
    doc = payload(ALICE_ID)
    doc["CommonBlock"]["S0"]["interfaceID"] = "IF-999"
    parsed = parse_record(ref(orjson.dumps(doc)))
    assert isinstance(parsed, OutboundMessage)
    return parsed


def test_an_interface_without_a_schema_is_refused_when_validating() -> None:
    out = _router().prepare(_unknown_interface(), TODAY)
    assert isinstance(out, Rejected)
    assert out.refusal.reason.startswith("cannot validate: ")
    assert "IF-999" in out.refusal.reason
    assert out.refusal.reason_class is DeadLetterReason.SCHEMA
    assert isinstance(_router(validate=False).prepare(_unknown_interface(), TODAY), Prepared)


def test_schema_validation_off_and_exempt() -> None:
    off = message(ALICE_ID)
    off.payload["CommonBlock"]["M0"]["MPANCore"] = "12"
    assert isinstance(_router(validate=False).prepare(off, TODAY), Prepared)
    exempt = message(BOB_ID, interface="IF-044")
    exempt.payload["CommonBlock"]["M0"]["MPANCore"] = "12"
    assert isinstance(_router().prepare(exempt, TODAY), Prepared)


def test_status_message_route() -> None:
    parsed = parse_record(ref(orjson.dumps({"senderID": BOB_ID})), status=True)
    assert isinstance(parsed, OutboundMessage)
    out = _router().prepare(parsed, TODAY)
    assert isinstance(out, Prepared)
    assert out.route.path == STATUS_PATH
    assert orjson.loads(out.message.item)["DIPConnectionProviderID"] == DCP_ID


def test_parse_refusal_attached_to_owning_client() -> None:
    router = _router()
    assert router.reject(Refusal(ref(b"x"), "bad", ALICE_ID)).client is not None
    assert router.reject(Refusal(ref(b"x"), "bad", None)).client is None
