"""Fetch flow control: slices, hold at the limit (buffers kept), pause only after a long hold."""

from __future__ import annotations

import pytest

from gateway.egress.flow import Decision, FlowControl, Step


def _flow(limit: int = 400, slice_records: int = 20, hold: float = 5.0) -> FlowControl:
    return FlowControl(limit, slice_records=slice_records, hold_seconds=hold)


def test_fetches_in_slices_bounded_by_the_room_left() -> None:
    flow = _flow()
    assert flow.decide(0, 0.0) == Decision(Step.FETCH, 20)
    assert flow.decide(395, 0.0) == Decision(Step.FETCH, 5)
    assert flow.decide(399, 0.0) == Decision(Step.FETCH, 1)
    assert not flow.stopped


def test_holds_at_the_limit_and_takes_records_again_at_the_low_water_mark() -> None:
    flow = _flow()
    assert flow.low_water == 390  # a fortieth of the window free
    assert flow.decide(400, 0.0) == Decision(Step.HOLD)
    assert flow.stopped and not flow.paused
    # one record finished is not enough room: no getmany for a single record
    assert flow.decide(399, 1.0) == Decision(Step.HOLD)
    assert flow.decide(391, 2.0) == Decision(Step.HOLD)
    assert flow.decide(390, 3.0) == Decision(Step.FETCH, 10)
    assert not flow.stopped


def test_the_refill_is_at_most_a_slice() -> None:
    flow = _flow(limit=40_000, slice_records=500)
    assert flow.low_water == 39_500
    flow = _flow(limit=20_000, slice_records=5_000)
    assert flow.low_water == 19_500


def test_a_long_hold_becomes_a_pause_that_keeps_polling_then_resumes() -> None:
    flow = _flow(hold=5.0)
    assert flow.decide(400, 10.0).step is Step.HOLD
    assert flow.decide(400, 14.9).step is Step.HOLD
    assert flow.decide(400, 15.0) == Decision(Step.PAUSE)
    assert flow.paused and flow.stopped
    # paused: getmany keeps being called (group membership), nothing is taken
    assert flow.decide(395, 16.0) == Decision(Step.POLL)
    assert flow.decide(350, 17.0) == Decision(Step.RESUME, 20)
    assert not flow.paused and not flow.stopped
    assert flow.decide(350, 17.1) == Decision(Step.FETCH, 20)


def test_a_hold_that_ends_in_time_restarts_the_clock() -> None:
    flow = _flow(hold=5.0)
    assert flow.decide(400, 0.0).step is Step.HOLD
    assert flow.decide(380, 4.0).step is Step.FETCH
    assert flow.decide(400, 4.5).step is Step.HOLD
    assert flow.decide(400, 9.0).step is Step.HOLD  # 4.5 s into this hold, not 9
    assert flow.decide(400, 9.5).step is Step.PAUSE


def test_reset_forgets_hold_and_pause() -> None:
    flow = _flow(hold=0.0)
    flow.decide(400, 0.0)
    assert flow.decide(400, 0.0).step is Step.PAUSE
    flow.reset()
    assert not flow.stopped
    assert flow.decide(0, 1.0) == Decision(Step.FETCH, 20)


def test_tiny_limits_still_make_progress() -> None:
    flow = _flow(limit=1, slice_records=1000)
    assert flow.low_water == 0
    assert flow.decide(0, 0.0) == Decision(Step.FETCH, 1)
    assert flow.decide(1, 0.0).step is Step.HOLD
    assert flow.decide(0, 0.1) == Decision(Step.FETCH, 1)
    flow = _flow(limit=4, slice_records=1000)
    assert flow.low_water == 3  # at least one record of room


@pytest.mark.parametrize(("limit", "slice_records"), [(0, 1), (1, 0)])
def test_rejects_nonsense_bounds(limit: int, slice_records: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FlowControl(limit, slice_records=slice_records, hold_seconds=1.0)
