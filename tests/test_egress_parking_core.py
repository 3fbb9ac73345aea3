"""The pure parts of key parking: the parked set and its state records, which records a park
holds back, the parked record, and what `dlq release` re-drives in which order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from gateway.config import parse_config
from gateway.dlq.letters import Coordinates, DeadLetter
from gateway.dlq.plan import Action, LogEntry, RedriveLog
from gateway.dlq.release import find_head, parked_of, plan_release, release_target
from gateway.egress.diversion import retry_record
from gateway.egress.envelope import RecordRef
from gateway.egress.parking import (
    PARK_ID_HEADER,
    UNPARKED_HEADER,
    Park,
    ParkedKeys,
    holds,
    new_park,
    parked_record,
    release_record,
    split_state_key,
    state_key,
    state_record,
    unparked_id,
)
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.records import dead_letter
from gateway.kafka.topics import compacted_topic_uses, gateway_topic_uses

_T = datetime(2026, 12, 7, tzinfo=UTC)
HEAD = RecordRef("out", 1, 10, b"mpan-1", b'{"head": 1}')


def _park(park_id: str = "p1") -> Park:
    return Park(park_id, 1.5, "dip_rejection", "out", 1, 10, "client-1.dlq")


def test_a_state_record_round_trips_and_a_tombstone_releases() -> None:
    park = new_park(HEAD, "schema", "client-1.dlq")
    record = state_record("parked-keys", "client-1", b"mpan-1", park)
    assert record.topic == "parked-keys"
    assert record.key is not None and record.value is not None
    assert split_state_key(record.key) == ("client-1", b"mpan-1")
    assert Park.parse(record.value) == park
    assert state_record("parked-keys", "client-1", b"mpan-1", None).value is None
    assert Park.parse(b"{not json") is None
    assert split_state_key(b"no separator") is None
    assert state_key("a", b"k\x00x") == b"a\x00k\x00x"  # a key may hold a NUL: split once
    assert split_state_key(state_key("a", b"k\x00x")) == ("a", b"k\x00x")


def test_the_parked_set_follows_the_state_topic_in_log_order() -> None:
    parked = ParkedKeys()
    raw = state_key("client-1", b"mpan-1")
    assert parked.apply(raw, _park().value()) == ("client-1", True)
    assert parked.get("client-1", b"mpan-1") == _park()
    assert parked.get("client-2", b"mpan-1") is None  # per client
    assert parked.count("client-1") == 1 and len(parked) == 1
    assert parked.apply(raw, None) == ("client-1", True)
    assert parked.get("client-1", b"mpan-1") is None and not parked.any_for("client-1")
    assert parked.apply(None, b"x") is None
    assert parked.apply(state_key("client-1", b"k"), b"not a park") is None


def test_a_release_the_tail_has_not_reached_does_not_undo_a_newer_park() -> None:
    # Log: park p1, tombstone, park p2 (this replica's). The tail is behind: egress parks p2
    # before the tail reads the tombstone of p1.
    parked = ParkedKeys()
    raw = state_key("client-1", b"mpan-1")
    parked.apply(raw, _park("p1").value())
    assert not parked.park("client-1", b"mpan-1", _park("p2"))  # parked already: no new key
    parked.apply(raw, None)  # p1's release: p2 is not confirmed yet, so it stays
    assert parked.get("client-1", b"mpan-1") == _park("p2")
    parked.apply(raw, _park("p2").value())  # p2 read back: confirmed
    parked.apply(raw, None)  # p2's own release
    assert parked.get("client-1", b"mpan-1") is None


def test_a_release_naming_an_earlier_park_leaves_the_key_parked_again() -> None:
    """Log: park p1, park p2 (its re-driven head failed again), then the release the operator
    checked against p1: it names p1, so p2 stays; a release naming p2, or naming no park
    (written before releases named theirs), removes it."""
    parked = ParkedKeys()
    raw = state_key("client-1", b"mpan-1")
    parked.apply(raw, _park("p1").value())
    parked.apply(raw, _park("p2").value())
    release = release_record("parked-keys", "client-1", b"mpan-1", "p1")
    assert release.value is None and release.key == raw
    assert parked.apply(raw, None, release.headers) == ("client-1", False)
    assert parked.get("client-1", b"mpan-1") == _park("p2")
    p2 = release_record("parked-keys", "client-1", b"mpan-1", "p2")
    assert parked.apply(raw, None, p2.headers) == ("client-1", True)
    parked.apply(raw, _park("p3").value())
    assert parked.apply(raw, None) == ("client-1", True)


def test_a_park_holds_later_records_of_its_key_but_not_earlier_or_released_ones() -> None:
    park = _park()
    later = HEAD._replace(offset=11)
    assert holds(park, later, None)
    assert holds(park, HEAD, None)  # the head itself, read again after a crash
    assert not holds(park, HEAD._replace(offset=9), None)  # before the head, same partition
    assert holds(park, HEAD._replace(partition=2, offset=9), None)  # another partition
    assert holds(park, HEAD._replace(topic="retry", offset=3), None)
    assert not holds(park, later, "p1")  # re-driven by a release of this park
    assert holds(park, later, "p0")  # released from an older park: its head failed again
    assert not holds(None, later, None)


def test_the_release_header_is_read_and_a_parked_record_says_where_it_came_from() -> None:
    assert unparked_id([("a", b"1"), (UNPARKED_HEADER, b"p1")]) == "p1"
    assert unparked_id([("a", b"1")]) is None
    record = parked_record("client-1.parked", HEAD._replace(offset=12), _park())
    headers = dict(record.headers or ())
    assert (record.topic, record.key, record.value) == ("client-1.parked", b"mpan-1", HEAD.value)
    assert headers["dcpgw-source-offset"] == b"12"
    assert headers[PARK_ID_HEADER] == b"p1"
    assert b"out[1]@10" in headers["dcpgw-parked-reason"]


def _letter(topic: str, offset: int, key: bytes, headers: dict[str, bytes]) -> DeadLetter:
    return DeadLetter(
        Coordinates(topic, 0, offset), 0, key, b"v%d" % offset, tuple(headers.items())
    )


def test_a_release_sends_the_head_first_then_the_parked_records_not_sent_yet() -> None:
    park = _park()
    source = {"dcpgw-source-topic": b"out", "dcpgw-source-partition": b"1"}
    dead = [
        _letter("dlq", 0, b"mpan-1", {**source, "dcpgw-source-offset": b"3"}),
        _letter(
            "dlq",
            1,
            b"mpan-1",
            {**source, "dcpgw-source-offset": b"10", "dcpgw-reason-class": b"dip_rejection"},
        ),
    ]
    head = find_head(dead, park)
    assert head is dead[1]
    parked_topic = [
        _letter("parked", 0, b"mpan-1", {PARK_ID_HEADER: b"p1"}),
        _letter("parked", 1, b"mpan-2", {PARK_ID_HEADER: b"p9"}),
        _letter("parked", 2, b"mpan-1", {PARK_ID_HEADER: b"p1"}),
    ]
    mine = parked_of(parked_topic, b"mpan-1")
    assert [p.at.offset for p in mine] == [0, 2]
    log = RedriveLog()
    entry = LogEntry(mine[0].at, Coordinates("out", 1, 50), 1, "(none)", None, False, "r", _T, "me")
    log.add(entry.key(), entry.value())  # an earlier run re-drove the first one
    target = release_target(park, ["out", "out2"], None)
    assert target == "out"
    refused = plan_release(head, mine, log, target, park, force=False)
    assert [d.action for d in refused] == [Action.REFUSED, Action.ALREADY, Action.REDRIVE]
    decisions = plan_release(head, mine, log, target, park, force=True)
    assert [d.action for d in decisions] == [Action.REDRIVE, Action.ALREADY, Action.REDRIVE]
    sent = [d.record for d in decisions if d.record is not None]
    assert [r.value for r in sent] == [b"v1", b"v2"]
    assert {r.topic for r in sent} == {"out"}
    for record in sent:
        headers = dict(record.headers)
        assert headers[UNPARKED_HEADER] == b"p1"
        assert PARK_ID_HEADER not in headers  # the diagnostic headers are not carried
    assert not decisions[2].forced and decisions[2].why == "parked behind the head"
    # A head read back from a retry topic: the first outbound topic; --to wins.
    retry_park = Park("p1", 0, "schema", "group.client-1.retry", 0, 1, "dlq")
    assert release_target(retry_park, ["out", "out2"], None) == "out"
    assert release_target(park, ["out"], "elsewhere") == "elsewhere"
    # Not parked (released already): the records still go, without the header.
    plain = plan_release(None, mine[1:], RedriveLog(), "out", None, force=False)
    assert plain[0].record is not None
    assert UNPARKED_HEADER not in dict(plain[0].record.headers)


def test_parking_topics_default_from_the_group_and_only_parking_clients_get_one(
    dev_pki: Path,
) -> None:
    data = yaml.safe_load((dev_pki / "gateway.yaml").read_text())
    data["kafka"] = {**data.get("kafka", {}), "consumer_group": "grp"}
    data["clients"][0]["park_keys"] = True
    config = parse_config(data, base_dir=dev_pki)
    assert config.kafka.parked_keys_topic == "grp.parked-keys"
    first = config.clients[0]
    assert first.topics.parked == f"grp.{first.name}.parked"
    uses = {u.field: u for u in gateway_topic_uses(config)}
    assert uses["clients[0].topics.parked"].writes
    assert "clients[1].topics.parked" not in uses  # that client does not park keys
    assert [u.topic for u in compacted_topic_uses(config)] == ["grp.parked-keys"]
    data["clients"][0]["park_keys"] = False
    assert compacted_topic_uses(parse_config(data, base_dir=dev_pki)) == []


def test_a_head_read_back_from_a_retry_topic_is_parked_and_found_by_its_first_position() -> None:
    """Its dead letter names the position its producer wrote it at; so must the park, or
    `dlq release --with-head` finds no head."""
    diverted = retry_record("group.client-1.retry", HEAD, None)
    back = RecordRef(
        "group.client-1.retry", 0, 7, HEAD.key, HEAD.value, 0, -1, diverted.headers or []
    )
    park = new_park(back, "dip_rejection", "client-1.dlq")
    assert park.head == ("out", 1, 10)
    assert Park.parse(park.value()) == park
    # Records of the key read back before the head, from the same retry partition, are not
    # held (they were consumed before it); later ones are.
    assert not holds(park, back._replace(offset=6), None)
    assert holds(park, back._replace(offset=8), None)
    letter = dead_letter(
        "client-1.dlq", back, "refused", 1, 400, None, None, DeadLetterReason.DIP_REJECTION
    )
    head = _letter("client-1.dlq", 0, b"mpan-1", dict(letter.headers or ()))
    assert find_head([head], park) is head
    parked = dict(parked_record("client-1.parked", back._replace(offset=8), park).headers or ())
    assert parked["dcpgw-source-topic"] == b"out" and parked["dcpgw-source-offset"] == b"10"
