"""Process-wide garbage-collector tuning for streaming (egress, the ingress webhook), restored
when the last streaming service ends.

Everything alive when streaming starts (modules, configuration, schemas, TLS and Kafka clients)
lives as long as the service, so it is frozen out of the collector's walks; and the young
generation is sized above the objects the in-flight messages keep alive, or every young
collection walks and promotes live messages and finds nothing to free. What each step gained
is in ``load-tests/README.md`` (GC per message).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_YOUNG_MIN = 20_000
_YOUNG_MAX = 500_000
"""Cyclic garbage waits for the young collection: at most this many objects (tens of MB)."""
_YOUNG_PER_IN_FLIGHT = 5
"""Young-generation threshold per in-flight record: each in-flight message keeps about four
tracked objects alive (record reference, parsed message, route, batch slot)."""


def young_threshold(max_in_flight: int) -> int:
    """The young generation's collection threshold while streaming (CPython's default: 700).

    It must exceed the tracked objects that in-flight messages keep alive: net allocations
    (allocations minus frees) start a young collection, and one that starts below the in-flight
    working set walks and promotes live messages, which the older generations then walk again.
    Cyclic garbage (tracebacks, closed tasks) still waits for the threshold, hence the ceiling
    (windows above 100,000 in flight get young collections that walk live messages again)."""
    return min(_YOUNG_MAX, max(_YOUNG_MIN, _YOUNG_PER_IN_FLIGHT * max_in_flight))


#: young thresholds of the services streaming now; the first saves the process's settings
_streaming: list[int] = []
_saved: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def tuned_for_streaming(max_in_flight: int) -> Iterator[None]:
    """Freeze what is alive and size the young generation for ``max_in_flight`` messages;
    the previous thresholds come back on exit. Process-wide and shared: egress and ingress may
    stream in one process at once, so the largest young generation asked for applies, and the
    settings come back (and what was frozen is unfrozen) when the last one ends."""
    global _saved
    if not _streaming:
        _saved = gc.get_threshold()
        gc.freeze()
    threshold = young_threshold(max_in_flight)
    _streaming.append(threshold)
    gc.set_threshold(max(_streaming), 10, 10)
    try:
        yield
    finally:
        _streaming.remove(threshold)
        if _streaming:
            gc.set_threshold(max(_streaming), 10, 10)
        else:
            gc.set_threshold(*_saved)
            gc.unfreeze()
