"""Parsing record values: both accepted shapes, status messages, and every refusal."""

from __future__ import annotations

import orjson
import pytest

from gateway.egress import envelope
from gateway.egress.envelope import (
    STATUS_INTERFACE,
    MessageKind,
    OutboundMessage,
    RecordRef,
    Refusal,
    new_record_ref,
    parse_record,
)
from tests.test_egress_support import ALICE_ID, payload, ref


def test_bare_payload_is_wrapped_reusing_its_bytes() -> None:
    raw = orjson.dumps(payload())
    parsed = parse_record(ref(raw, key=b"k"))
    assert isinstance(parsed, OutboundMessage)
    assert parsed.kind is MessageKind.DIP
    assert parsed.interface_id == "IF-043"
    assert parsed.sender_dip_id == ALICE_ID
    assert parsed.sender_unique_reference == payload()["CommonBlock"]["S1"]["senderUniqueReference"]
    assert parsed.item == b'{"payload":' + raw + b"}"
    assert orjson.loads(parsed.item) == {"payload": payload()}


def test_wrapper_is_used_verbatim() -> None:
    raw = b'{"payload": ' + orjson.dumps(payload()) + b"}\n"
    parsed = parse_record(ref(raw))
    assert isinstance(parsed, OutboundMessage)
    assert parsed.item is raw
    assert parsed.payload == payload()


def test_replace_payload_rebuilds_the_item() -> None:
    parsed = parse_record(ref(orjson.dumps(payload())))
    assert isinstance(parsed, OutboundMessage)
    parsed.payload["CommonBlock"]["S1"]["subText"] = "changed"
    parsed.replace_payload()
    assert orjson.loads(parsed.item)["payload"]["CommonBlock"]["S1"]["subText"] == "changed"


def test_status_message_bare_and_wrapped() -> None:
    status = {"senderID": ALICE_ID, "senderUniqueReference": "S-1", "message": "MSG0000 - Success"}
    raw = orjson.dumps(status)
    bare = parse_record(ref(raw), status=True)
    assert isinstance(bare, OutboundMessage)
    assert bare.kind is MessageKind.STATUS
    assert bare.interface_id == STATUS_INTERFACE
    assert bare.item is raw
    wrapped = parse_record(ref(orjson.dumps({"payload": status})), status=True)
    assert isinstance(wrapped, OutboundMessage)
    assert orjson.loads(wrapped.item) == status
    assert wrapped.sender_unique_reference == "S-1"


def test_a_shared_topic_tells_the_kinds_apart_by_shape() -> None:
    status = {"senderID": ALICE_ID, "senderUniqueReference": "S-1", "message": "MSG0000 - Success"}
    for doc, kind in [
        (payload(), MessageKind.DIP),
        ({"payload": payload()}, MessageKind.DIP),
        (status, MessageKind.STATUS),
        ({"payload": status}, MessageKind.STATUS),
    ]:
        parsed = parse_record(ref(orjson.dumps(doc)), status=None)
        assert isinstance(parsed, OutboundMessage), (doc, parsed)
        assert parsed.kind is kind
    # A DIP wrapper with an extra key is refused for that, not as a malformed status message.
    extra = parse_record(ref(orjson.dumps({"payload": payload(), "x": 1})), status=None)
    assert isinstance(extra, Refusal)
    assert extra.reason.startswith("wrapper has keys besides 'payload' (x)")
    # Neither shape: refused as a status message would be (it names what is missing).
    refused = parse_record(ref(b'{"something": 1}'), status=None)
    assert isinstance(refused, Refusal)
    assert "status message senderID None" in refused.reason


def _with(path: list[str], value: object) -> bytes:
    doc = payload()
    node = doc
    for part in path[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return orjson.dumps(doc)


_DELETE = object()
_FULLWIDTH_ID = "\uff12\uff13" + "\uff10" * 8  # "2300000000" in fullwidth digits


@pytest.mark.parametrize(
    ("value", "reason", "sender"),
    [
        (None, "empty record value", None),
        (b"  ", "empty record value", None),
        (b"", "empty record value", None),
        (b"\t\r\n\x0c", "empty record value", None),
        (b"{not json", "malformed JSON", None),
        (b"[1,2]", "expected a JSON object, got an array", None),
        (b'"text"', "expected a JSON object, got a string", None),
        (b'{"payload": 3}', "'payload' must be an object, got a number", None),
        (b'{"payload": {}, "extra": 1}', "keys besides 'payload' (extra)", None),
        (b'{"CustomBlock": {}}', "CommonBlock is missing", None),
        (_with(["CommonBlock", "S0"], _DELETE), "CommonBlock.S0 is missing", None),
        (_with(["CommonBlock", "S1"], []), "CommonBlock.S1 is missing or not an object", None),
        (_with(["CommonBlock", "S0", "interfaceID"], "XX-1"), "interfaceID 'XX-1'", ALICE_ID),
        (_with(["CommonBlock", "S1", "senderDIPID"], "12"), "senderDIPID '12'", None),
        # digits of other scripts are digits to str.isdigit, not to the DIP
        (_with(["CommonBlock", "S1", "senderDIPID"], _FULLWIDTH_ID), "senderDIPID", None),
        (_with(["CommonBlock", "S1", "senderDIPID"], 2300000001), "senderDIPID 2300000001", None),
        (_with(["CommonBlock", "S0", "interfaceID"], "IF-0211"), "interfaceID 'IF-0211'", ALICE_ID),
        (_with(["CommonBlock", "S0", "interfaceID"], None), "interfaceID None", ALICE_ID),
        (
            _with(["CommonBlock", "S0", "interfaceID"], "IF-021\n"),
            "interfaceID 'IF-021\\n'",
            ALICE_ID,
        ),
    ],
)
def test_refusals_name_the_problem(value: bytes | None, reason: str, sender: str | None) -> None:
    parsed = parse_record(ref(value))
    assert isinstance(parsed, Refusal)
    assert reason in parsed.reason
    assert parsed.sender_dip_id == sender


def test_status_refusals() -> None:
    no_sender = parse_record(ref(b'{"message": "x"}'), status=True)
    assert isinstance(no_sender, Refusal)
    assert "senderID None" in no_sender.reason
    bad_wrapper = parse_record(ref(b'{"payload": [], "x": 1}'), status=True)
    assert isinstance(bad_wrapper, Refusal)
    assert "status wrapper" in bad_wrapper.reason


def test_the_fast_record_ref_constructor_makes_a_whole_record_ref() -> None:
    """``new_record_ref`` skips the named tuple's ``__new__``: it must still give a RecordRef
    with every field (a field added to RecordRef must be added where it is called too)."""
    fast = new_record_ref(("out", 2, 41, b"k", b"v", 7, 1_700_000_000_000, ()))
    assert type(fast) is RecordRef
    assert fast == RecordRef("out", 2, 41, b"k", b"v", 7, 1_700_000_000_000, ())
    assert len(fast) == len(RecordRef._fields)
    assert (fast.partition, fast.generation) == (2, 7)


def test_sender_ids_seen_are_remembered_within_a_bound() -> None:
    """Valid sender IDs skip the regex the next time; the memory of them stays bounded, and a
    near miss of a remembered ID is still refused."""
    envelope._dip_ids_seen.clear()
    for i in range(envelope._DIP_IDS_SEEN_MAX + 10):
        parsed = parse_record(ref(_with(["CommonBlock", "S1", "senderDIPID"], f"{i:010d}")))
        assert isinstance(parsed, OutboundMessage)
        assert len(envelope._dip_ids_seen) <= envelope._DIP_IDS_SEEN_MAX
    alice = parse_record(ref(_with(["CommonBlock", "S1", "senderDIPID"], ALICE_ID)))
    assert isinstance(alice, OutboundMessage) and alice.sender_dip_id == ALICE_ID
    assert ALICE_ID in envelope._dip_ids_seen
    near = parse_record(ref(_with(["CommonBlock", "S1", "senderDIPID"], ALICE_ID + "\n")))
    assert isinstance(near, Refusal) and "senderDIPID" in near.reason


def test_a_key_twice_in_one_object_is_refused_however_the_json_is_spelled() -> None:
    good = payload()
    compact = orjson.dumps(good)
    pretty = orjson.dumps(good, option=orjson.OPT_INDENT_2)
    sender = b'"senderDIPID": "' + ALICE_ID.encode() + b'"'
    twice = pretty.replace(sender, sender + b',\n  "senderDIPID": "1999999999"')
    assert twice != pretty
    assert isinstance(parse_record(ref(compact)), OutboundMessage)
    assert isinstance(parse_record(ref(pretty)), OutboundMessage)  # the slow path, no duplicate
    refused = parse_record(ref(twice))
    assert isinstance(refused, Refusal)
    assert refused.reason.startswith("duplicate key 'senderDIPID' in one JSON object")
    wrapped = b'{"payload":' + compact[:-1] + b',"CustomBlock":{}}}'
    refused = parse_record(ref(wrapped))
    assert isinstance(refused, Refusal) and "duplicate key 'CustomBlock'" in refused.reason


def test_reasons_quote_only_a_prefix_of_a_bad_value() -> None:
    huge = payload()
    huge["CommonBlock"]["S1"]["senderDIPID"] = "7" * 100_000
    refused = parse_record(ref(orjson.dumps(huge)))
    assert isinstance(refused, Refusal)
    assert len(refused.reason) < 200
    assert "(100002 characters)" in refused.reason
    assert envelope.shown("IF-043") == "'IF-043'"
