"""Batching bounds (messages, bytes, linger), grouping key, body building, splitting."""

from __future__ import annotations

from datetime import date

import orjson

from gateway.egress.batching import Batcher, body_size, build_body
from gateway.egress.ordering import KeyGate
from gateway.egress.routing import Prepared, Router
from tests.test_egress_support import ALICE_ID, BOB_ID, make_config, message

_ROUTER = Router(make_config())


def _prep(
    sender: str = ALICE_ID, seq: int = 1, interface: str = "IF-043", partition: int = 0
) -> Prepared:
    out = _ROUTER.prepare(message(sender, seq, interface, partition=partition), date(2026, 11, 23))
    assert isinstance(out, Prepared)
    return out


def test_batch_size_one_closes_every_message() -> None:
    batcher = Batcher(1, 1_000_000, 10.0)
    closed = batcher.add(_prep(seq=1), 0.0)
    assert [len(b.items) for b in closed] == [1]
    assert len(batcher) == 0
    assert orjson.loads(closed[0].body()) == [orjson.loads(closed[0].items[0].message.item)]


def test_max_messages_bound() -> None:
    batcher = Batcher(3, 1_000_000, 10.0)
    closed = [b for i in range(7) for b in batcher.add(_prep(seq=i), 0.0)]
    assert [len(b.items) for b in closed] == [3, 3]
    assert len(batcher) == 1


def test_grouped_by_sender_and_interface() -> None:
    batcher = Batcher(100, 1_000_000, 10.0)
    for i, (sender, iface) in enumerate(
        [(ALICE_ID, "IF-043"), (BOB_ID, "IF-043"), (ALICE_ID, "IF-044"), (ALICE_ID, "IF-043")]
    ):
        assert batcher.add(_prep(sender, i, iface), 0.0) == []
    batches = {b.key: [p.message.sender_dip_id for p in b.items] for b in batcher.flush()}
    assert batches == {
        (ALICE_ID, "IF-043", False): [ALICE_ID, ALICE_ID],
        (BOB_ID, "IF-043", False): [BOB_ID],
        (ALICE_ID, "IF-044", False): [ALICE_ID],
    }


def test_max_bytes_bound_and_body_size() -> None:
    one = _prep(seq=1)
    size = len(one.message.item)
    batcher = Batcher(100, 2 + 2 * size + 1, 10.0)  # exactly two items fit
    assert batcher.add(one, 0.0) == []
    closed = batcher.add(_prep(seq=2), 0.0)
    assert [len(b.items) for b in closed] == [2]
    assert closed[0].nbytes == len(closed[0].body()) == body_size(closed[0].items)
    assert closed[0].nbytes <= 2 + 2 * size + 1
    # A third message that would overflow starts a new batch rather than exceeding the bound.
    batcher = Batcher(100, 2 + 2 * size, 10.0)
    batcher.add(_prep(seq=1), 0.0)
    overflow = batcher.add(_prep(seq=2), 0.0)
    assert [len(b.items) for b in overflow] == [1]
    assert len(batcher) == 1


def test_oversized_single_message_goes_alone() -> None:
    batcher = Batcher(100, 1_024, 10.0)
    big = _prep(seq=1, interface="IF-021")
    assert len(big.message.item) > 1_024
    assert [len(b.items) for b in batcher.add(big, 0.0)] == [1]


def test_linger_and_deadline() -> None:
    batcher = Batcher(100, 1_000_000, 0.5)
    assert batcher.next_deadline() is None
    batcher.add(_prep(seq=1), 10.0)
    batcher.add(_prep(BOB_ID, seq=2), 10.2)
    assert batcher.next_deadline() == 10.5
    assert batcher.due(10.4) == []
    assert [b.key[0] for b in batcher.due(10.5)] == [ALICE_ID]
    assert [b.key[0] for b in batcher.due(10.7)] == [BOB_ID]


def test_congested_batches_keep_filling_up_to_max_linger() -> None:
    batcher = Batcher(3, 1_000_000, 0.5, max_linger_seconds=2.0)
    batcher.add(_prep(seq=1), 10.0)
    assert batcher.next_deadline(congested=True) == 12.0
    assert batcher.due(11.0, congested=True) == []  # past linger, but signatures are scarce
    batcher.add(_prep(seq=2), 11.5)
    assert [len(b.items) for b in batcher.add(_prep(seq=3), 11.6)] == [3]  # full: goes anyway
    batcher.add(_prep(seq=4), 12.0)
    assert batcher.due(13.9, congested=True) == []
    assert [len(b.items) for b in batcher.due(14.0, congested=True)] == [1]  # the cap
    batcher.add(_prep(seq=5), 20.0)
    assert [len(b.items) for b in batcher.due(20.5)] == [1]  # congestion cleared: linger


def test_max_linger_below_linger_is_linger() -> None:
    batcher = Batcher(100, 1_000_000, 0.5, max_linger_seconds=0.1)
    batcher.add(_prep(seq=1), 10.0)
    assert batcher.next_deadline(congested=True) == 10.5


def test_zero_linger_is_due_at_once() -> None:
    batcher = Batcher(100, 1_000_000, 0.0)
    batcher.add(_prep(seq=1), 5.0)
    batcher.add(_prep(seq=2), 5.0)
    assert [len(b.items) for b in batcher.due(5.0)] == [2]


def test_body_is_json_array_of_payload_items() -> None:
    items = [_prep(seq=i) for i in range(3)]
    body = build_body(items)
    assert [
        m["payload"]["CommonBlock"]["S1"]["senderUniqueReference"] for m in orjson.loads(body)
    ] == [p.message.sender_unique_reference for p in items]


def test_split_keeps_order_and_id() -> None:
    batcher = Batcher(5, 1_000_000, 0.0)
    closed = [b for i in range(5) for b in batcher.add(_prep(seq=i), 0.0)]
    first, second = closed[0].split()
    assert [p.message.ref.offset for p in first.items + second.items] == [
        p.message.ref.offset for p in closed[0].items
    ]
    assert first.batch_id == second.batch_id == closed[0].batch_id
    assert first.nbytes == len(first.body())


def test_drop_removes_revoked_partitions_only() -> None:
    batcher = Batcher(100, 1_000_000, 10.0)
    batcher.add(_prep(seq=1, partition=0), 0.0)
    batcher.add(_prep(seq=2, partition=1), 0.0)
    dropped = batcher.drop([("dip.outbound", 1)])
    assert [p.message.ref.partition for p in dropped] == [1]
    assert [p.message.ref.partition for b in batcher.flush() for p in b.items] == [0]


def _keyed(sender: str, seq: int, key: bytes) -> Prepared:
    out = _ROUTER.prepare(message(sender, seq, offset=seq, key=key), date(2026, 11, 23))
    assert isinstance(out, Prepared)
    return out


def test_gate_keys_registered_on_join_keep_offset_order_without_deadlock() -> None:
    """Interleaved keys across two senders' open batches: the batcher must not let a message
    join an older batch behind a newer holder of its key (that would deadlock or reorder)."""
    gate = KeyGate()
    batcher = Batcher(100, 1_000_000, 10.0, gate, per_sender=False)  # ordering_scope: key
    plan = [(BOB_ID, b"k1"), (ALICE_ID, b"k1"), (ALICE_ID, b"k2"), (BOB_ID, b"k2"), (BOB_ID, b"k1")]
    closed = [b for seq, (s, k) in enumerate(plan) for b in batcher.add(_keyed(s, seq, k), 0.0)]
    closed += batcher.flush()
    sent: list[int] = []
    pending = {b.batch_id: b for b in closed}
    while pending:
        ready = [bid for bid in pending if gate.is_ready(bid)]
        assert ready, "deadlock: no batch may go"
        batch = pending.pop(min(ready))
        sent += [p.message.ref.offset for p in batch.items]
        gate.release(batch.batch_id)
    for key in (b"k1", b"k2"):
        offsets = [seq for seq, (_, k) in enumerate(plan) if k == key]
        assert [o for o in sent if o in offsets] == offsets


def test_batch_waits_for_an_earlier_open_batch_with_its_key() -> None:
    gate = KeyGate()
    batcher = Batcher(2, 1_000_000, 10.0, gate, per_sender=False)  # ordering_scope: key
    batcher.add(_keyed(BOB_ID, 0, b"k"), 0.0)  # bob's batch stays open
    closed = batcher.add(_keyed(ALICE_ID, 1, b"k"), 0.0) + batcher.add(
        _keyed(ALICE_ID, 2, b"x"), 0.0
    )
    assert [len(b.items) for b in closed] == [2]
    assert not gate.is_ready(closed[0].batch_id)  # bob's offset 0 must go first
    (bob,) = batcher.flush()
    assert gate.is_ready(bob.batch_id)
    assert gate.release(bob.batch_id) == [closed[0].batch_id]


def test_by_default_senders_do_not_wait_for_each_other_on_a_shared_key() -> None:
    """Different MPs are independent parties: alice's record with an MPAN that bob's open
    batch also holds may go first (ordering_scope: sender_key)."""
    gate = KeyGate()
    batcher = Batcher(2, 1_000_000, 10.0, gate)
    batcher.add(_keyed(BOB_ID, 0, b"k"), 0.0)  # bob's batch stays open
    closed = batcher.add(_keyed(ALICE_ID, 1, b"k"), 0.0) + batcher.add(
        _keyed(ALICE_ID, 2, b"k"), 0.0
    )
    assert [len(b.items) for b in closed] == [2]
    assert gate.is_ready(closed[0].batch_id)
    (bob,) = batcher.flush()
    assert gate.is_ready(bob.batch_id)


def test_records_read_back_from_a_retry_topic_never_share_a_batch_with_fresh_ones() -> None:
    batcher = Batcher(100, 1_000_000, 10.0, retry_topics=frozenset({"dcpgw.alice.retry"}))
    fresh = _keyed(ALICE_ID, 0, b"k")
    again = _keyed(ALICE_ID, 1, b"k")
    again.message.ref = again.message.ref._replace(topic="dcpgw.alice.retry")
    batcher.add(fresh, 0.0)
    batcher.add(again, 0.0)
    batches = {b.retried: b.items for b in batcher.flush()}
    assert batches == {False: [fresh], True: [again]}
