"""Task hygiene for the one event loop all async tests share.

Every async test and fixture runs on one session-wide loop (``asyncio_default_test_loop_scope =
"session"``). A task a test leaves behind (a gateway a failed test never stopped, a consumer loop
nobody cancelled) keeps running through the following tests, and is only cancelled when the loop
closes at the very end of the session: after the Kafka broker has been stopped, so that every
aiokafka ``stop()`` in its ``finally`` blocks waits out its 40 s request timeout, all of it
billed to the teardown of whichever test happens to run last.

``_cancel_leaked_tasks`` (autouse) cancels such tasks at the end of the test that started them,
while the broker and everything else is still up, and names them in a :class:`LeakedTaskWarning`
so the leak is seen and fixed where it is made.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

SWEEP_SECONDS = 15.0
_ROOT = Path(__file__).resolve().parent.parent
_OUR_CODE = ("tests", "gateway", "dipsim", "load-tests")


class LeakedTaskWarning(UserWarning):
    """A test returned while tasks it started were still running."""


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    return f"{task.get_name()} ({name})"


def _ours(task: asyncio.Task[Any]) -> bool:
    """Started by project code (not a library's internal task, e.g. an aiokafka heartbeat)."""
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:
        return False
    try:
        parts = Path(code.co_filename).resolve().relative_to(_ROOT).parts
    except ValueError:
        return False
    return bool(parts) and parts[0] in _OUR_CODE


async def _cancel(tasks: list[asyncio.Task[Any]]) -> int:
    """Cancel and wait (bounded); return how many did not finish."""
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=SWEEP_SECONDS)
    for task in done:  # retrieve outcomes, so nothing logs "exception was never retrieved"
        if not task.cancelled():
            task.exception()
    return len(pending)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _cancel_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()

    def leaked() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]

    found = leaked()
    if not found:
        return
    # Project tasks first: cancelling them runs their finally blocks, which stop the clients
    # they own (and so those clients' own tasks). Only then whatever library tasks remain.
    ours = [t for t in found if _ours(t)]
    names = ", ".join(sorted(_describe(t) for t in ours)) or "none of the project's own"
    stuck = await _cancel(ours) if ours else 0
    rest = leaked()
    if rest:
        stuck += await _cancel(rest)
    message = (
        f"{request.node.nodeid} left {len(found)} task(s) running, now cancelled; started by "
        f"project code: {names}; library tasks still running after those: {len(rest)}"
    )
    if stuck:
        message += f"; {stuck} not finished after {SWEEP_SECONDS:.0f}s"
    warnings.warn(LeakedTaskWarning(message), stacklevel=1)
