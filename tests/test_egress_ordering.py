"""The key ordering gate and the offset tracker (out-of-order completion)."""

from __future__ import annotations

from gateway.egress.offsets import OffsetTracker
from gateway.egress.ordering import KeyGate

TP = ("dip.outbound", 0)


def test_gate_holds_later_batches_with_a_shared_key() -> None:
    gate = KeyGate()
    assert gate.register(1, ["a", "b"]) is True
    assert gate.register(2, ["b"]) is False  # waits for 1
    assert gate.register(3, ["c"]) is True  # no shared key: free to go
    assert gate.register(4, ["a", "b"]) is False  # waits for 1 and 2
    assert gate.release(1) == [2]
    assert not gate.is_ready(4)
    assert gate.release(2) == [4]
    assert gate.is_ready(4)
    assert gate.release(3) == []
    assert gate.release(4) == []
    assert len(gate) == 0


def test_gate_batches_without_keys_never_wait() -> None:
    gate = KeyGate()
    assert gate.register(1, []) is True
    assert gate.register(2, []) is True


def test_gate_duplicate_keys_in_one_batch_count_once() -> None:
    gate = KeyGate()
    gate.register(1, ["k"])
    assert gate.register(2, ["k", "k"]) is False
    assert gate.release(1) == [2]


def test_gate_abandoning_a_waiting_batch_unblocks_nobody_wrongly() -> None:
    gate = KeyGate()
    gate.register(1, ["k"])
    gate.register(2, ["k"])
    gate.register(3, ["k"])
    assert gate.release(2) == []  # abandoned while waiting
    assert gate.release(1) == [3]


def test_tracker_commits_only_contiguous_final_offsets() -> None:
    tracker = OffsetTracker()
    gens = {tracker.track(TP, o) for o in range(5)}
    assert len(gens) == 1
    gen = gens.pop()
    tracker.finish(TP, 2, gen)
    tracker.finish(TP, 1, gen)
    assert tracker.committable() == {}
    tracker.finish(TP, 0, gen)
    assert tracker.committable() == {TP: 3}
    tracker.mark_committed({TP: 3})
    assert tracker.committable() == {}
    assert tracker.in_flight() == 2
    tracker.finish(TP, 4, gen)
    assert tracker.committable() == {}
    tracker.finish(TP, 3, gen)
    assert tracker.committable() == {TP: 5}
    assert tracker.in_flight(TP) == 0


def test_tracker_handles_offset_gaps() -> None:
    tracker = OffsetTracker()
    gen = tracker.track(TP, 10)
    tracker.track(TP, 13)  # compaction / transaction markers leave gaps
    tracker.finish(TP, 13, gen)
    tracker.finish(TP, 10, gen)
    assert tracker.committable() == {TP: 14}


def test_tracker_ignores_finishes_from_a_revoked_generation() -> None:
    tracker = OffsetTracker()
    old = tracker.track(TP, 0)
    tracker.forget({TP})
    new = tracker.track(TP, 0)
    assert new != old
    tracker.finish(TP, 0, old)
    assert tracker.committable() == {}
    tracker.finish(TP, 0, new)
    assert tracker.committable() == {TP: 1}


def test_tracker_committable_filtered_by_partition() -> None:
    tracker = OffsetTracker()
    other = ("dip.outbound", 1)
    g0, g1 = tracker.track(TP, 0), tracker.track(other, 7)
    tracker.finish(TP, 0, g0)
    tracker.finish(other, 7, g1)
    assert tracker.committable({other}) == {other: 8}
