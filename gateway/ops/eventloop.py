"""Which asyncio event loop the gateway runs on: uvloop when it is there, else the standard one.

The gateway's event-loop thread does the per-request work that signing cannot hide (Kafka
fetches and produces, the HTTPS exchange, timers); uvloop does the loop's own part of that in C.
``load-tests/bench_egress.py --loop`` measures the difference on the machine at hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from gateway.config import ConfigError, EventLoopChoice

T = TypeVar("T")


def loop_factory(choice: EventLoopChoice = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """The event-loop constructor for ``choice`` (``auto``: uvloop if importable)."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "ops.event_loop: 'uvloop' is not installed; install it (pip install uvloop) "
                "or set ops.event_loop to 'auto' or 'asyncio'"
            ) from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice = "auto") -> T:
    """``asyncio.run`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never awaited: no "coroutine was never awaited" warning on the way out
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
