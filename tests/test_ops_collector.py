"""The garbage-collector tuning egress streams under: sized to the in-flight window, and the
process's own settings back afterwards, also when streaming fails."""

from __future__ import annotations

import gc

import pytest

from gateway.ops.collector import tuned_for_streaming, young_threshold


def test_the_young_generation_outgrows_the_in_flight_working_set() -> None:
    """About four tracked objects per in-flight message stay alive; a young generation smaller
    than that is collected over and over while finding nothing to free."""
    assert young_threshold(20_000) == 100_000
    assert young_threshold(100_000) > 4 * 100_000
    assert young_threshold(10_000_000) == 500_000  # cyclic garbage waits for it: bounded
    assert young_threshold(6) == 20_000  # small windows keep a floor well above CPython's 700


def test_streaming_freezes_and_sizes_the_collector_then_restores_it() -> None:
    before = gc.get_threshold()
    with tuned_for_streaming(30_000):
        assert gc.get_threshold() == (150_000, 10, 10)
        assert gc.get_freeze_count() > 0  # what was alive at the start is not walked again
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_settings_come_back_when_streaming_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), tuned_for_streaming(1):
        raise RuntimeError("consumer failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_two_streaming_services_share_the_tuning_until_the_last_one_ends() -> None:
    """Egress and ingress stream in one process: the larger young generation applies while
    both run, and the process's settings come back only when both have ended (in any order)."""
    before = gc.get_threshold()
    egress, ingress = tuned_for_streaming(20_000), tuned_for_streaming(40_000)
    egress.__enter__()
    ingress.__enter__()
    assert gc.get_threshold() == (200_000, 10, 10)
    egress.__exit__(None, None, None)  # the first to start ends first
    assert gc.get_threshold() == (200_000, 10, 10)
    assert gc.get_freeze_count() > 0
    ingress.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
