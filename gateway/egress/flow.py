"""Fetch flow control: how many records to take now, or whether to hold, pause or resume.

Pure state machine (the caller passes the in-flight count and the clock), so every transition
has a unit test. Why it is more than "pause when full":

* aiokafka drops a partition's buffered fetch when the partition is paused, and fetches it
  again after ``resume``. Pausing at the in-flight limit and resuming one record below it
  re-fetched up to a full fetch (1 MB per partition) for every few hundred records let in:
  wasted broker reads and socket traffic exactly when the gateway is busiest.
* So at the limit the consumer first **holds**: it stops calling ``getmany`` but keeps its
  buffers, and takes records again once a fortieth of the window is free (500 of 20,000; at
  most a slice). A small refill keeps the pipeline evenly fed: refilling a quarter of the
  window at once made the event loop ingest thousands of records while DIP answers waited,
  slower end to end (``load-tests/README.md``).
* Holding must not last: the group coordinator removes a member that has not called
  ``getmany`` for ``max_poll_interval_ms``. After ``hold_seconds`` (a slow or unreachable DIP)
  the partitions are **paused** and ``getmany`` is called again (it returns nothing for paused
  partitions), which keeps the membership; they are resumed at the low-water mark.
* A turn takes at most ``slice`` records: ``getmany`` returns buffered records without
  suspending, so an unbounded turn parsed thousands of records while DIP answers, signatures,
  result acknowledgements and the webhook (same event loop) waited.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Step(Enum):
    FETCH = "fetch"  # getmany(max_records=room)
    HOLD = "hold"  # don't call getmany; wait a moment and look again
    PAUSE = "pause"  # pause the assignment, then getmany (nothing comes back)
    POLL = "poll"  # still paused: getmany to stay in the group
    RESUME = "resume"  # resume the assignment, then getmany(max_records=room)


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    room: int = 0  # records getmany may return (FETCH, RESUME)


class FlowControl:
    """Decides each consume-loop turn from the number of records in flight."""

    def __init__(self, limit: int, *, slice_records: int, hold_seconds: float) -> None:
        if limit < 1 or slice_records < 1:
            raise ValueError("limit and slice_records must be at least 1")
        self._limit = limit
        self._slice = slice_records
        self._low_water = limit - max(1, min(slice_records, limit // 40))
        self._hold_seconds = hold_seconds
        self._held_since: float | None = None
        self._paused = False

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def low_water(self) -> int:
        """In-flight count at or below which a held or paused consumer takes records again."""
        return self._low_water

    @property
    def stopped(self) -> bool:
        """True while records are not taken (held or paused): the ``fetch_paused`` gauge."""
        return self._held_since is not None or self._paused

    @property
    def paused(self) -> bool:
        return self._paused

    def decide(self, in_flight: int, now: float) -> Decision:
        if self._paused:
            if in_flight <= self._low_water:
                self._paused = False
                return Decision(Step.RESUME, self._room(in_flight))
            return Decision(Step.POLL)
        if self._held_since is not None:
            if in_flight <= self._low_water:
                self._held_since = None
                return Decision(Step.FETCH, self._room(in_flight))
            if now - self._held_since >= self._hold_seconds:
                self._held_since = None
                self._paused = True
                return Decision(Step.PAUSE)
            return Decision(Step.HOLD)
        if in_flight >= self._limit:
            self._held_since = now
            return Decision(Step.HOLD)
        return Decision(Step.FETCH, self._room(in_flight))

    def reset(self) -> None:
        """The assignment was revoked: aiokafka forgets pauses with it."""
        self._held_since = None
        self._paused = False

    def _room(self, in_flight: int) -> int:
        return max(min(self._limit - in_flight, self._slice), 1)
