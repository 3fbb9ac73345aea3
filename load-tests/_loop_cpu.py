"""The event loop's CPU per awaited call, shared by the hand-off and HTTP-client benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def loop_cpu_per_call(
    call: Callable[[], Awaitable[object]], calls: int, concurrency: int, *, warm_up: int = 0
) -> float:
    """Seconds of this thread's CPU per ``call()``, ``concurrency`` awaiting at once; each
    worker first makes ``warm_up`` calls, not measured (connections opened, threads started)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    if warm_up:
        await asyncio.gather(*(worker(warm_up) for _ in range(concurrency)))
    start = time.thread_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.thread_time() - start) / (calls // concurrency * concurrency)
