"""Threads that sign requests off the event loop, with the least event-loop work per signature.

``loop.run_in_executor`` on a ``ThreadPoolExecutor`` costs the event loop about twice as much
per call (a ``concurrent.futures.Future`` with its condition lock, a work item, the executor's
thread-count check, and ``wrap_future`` chaining two futures both ways) as a job on a queue
whose worker settles an asyncio future through ``call_soon_threadsafe``, most of whose cost is
waking the loop. At batch size 1 there is one signature per message, so the difference shows in
the event loop's CPU per message (``load-tests/bench_handoff.py``; figures in
``load-tests/README.md``).

``cryptography`` releases the GIL while it computes the RSA signature, so the threads sign in
parallel with each other and with the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = None


class SigningPool:
    """``await pool.run(fn, *args)`` runs ``fn(*args)`` on one of ``threads`` worker threads.

    A job whose caller was cancelled before a worker took it is skipped; one already running
    finishes and its result is dropped. ``shutdown`` lets queued jobs finish, then stops the
    threads. Use it from the event loop's thread (as the gateway does)."""

    def __init__(self, threads: int, *, name: str = "dip-sign") -> None:
        if threads < 1:
            raise ValueError("a signing pool needs at least one thread")
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued(self) -> int:
        """Jobs no thread has taken yet (approximate, as ``queue.SimpleQueue.qsize``): above
        zero, every thread is busy."""
        return self._jobs.qsize()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("signing pool is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return await future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; the threads finish what is queued (or, with ``cancel_futures``,
        the queued jobs are dropped and their futures cancelled), then end (joined if
        ``wait``): ``Executor.shutdown``'s contract."""
        if not self._closed:
            self._closed = True
            while cancel_futures:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    loop, future = job[0], job[1]
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(future.cancel)
            for _ in self._threads:
                self._jobs.put(_STOP)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _work(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not _STOP:
            _run(*job)
            job = None  # hold no body or future while waiting for the next job


def _run(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[..., Any], args: Any
) -> None:
    if future.cancelled():  # its caller stopped waiting before the job started
        return
    try:
        result, error = fn(*args), None
    except BaseException as exc:  # handed to the awaiting task, as an executor does
        result, error = None, exc
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
