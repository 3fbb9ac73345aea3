"""Diversions (pure): when a client may stop diverting."""

from __future__ import annotations

from gateway.egress.diversion import Diversions


def test_a_client_stops_only_with_no_write_begun_since_the_backlog_was_read() -> None:
    d = Diversions()
    assert d.start("a") and not d.start("a")
    d.writing("a")
    epoch = d.epoch("a")
    assert not d.stop("a", epoch)  # a diverted write is still on its way
    d.written("a")
    assert d.stop("a", epoch) and "a" not in d


def test_a_write_begun_while_the_backlog_was_read_keeps_the_client_diverting() -> None:
    d = Diversions()
    d.start("a")
    epoch = d.epoch("a")
    d.writing("a")
    d.written("a")
    assert not d.stop("a", epoch) and "a" in d


def test_a_rebalance_invalidates_every_check_begun_before_it() -> None:
    d = Diversions()
    d.start("a")
    d.start("b")
    epochs = {c: d.epoch(c) for c in ("a", "b")}
    d.invalidate()  # another replica may have diverted just before handing a partition over
    assert not d.stop("a", epochs["a"]) and not d.stop("b", epochs["b"])
    assert d.stop("a", d.epoch("a"))
