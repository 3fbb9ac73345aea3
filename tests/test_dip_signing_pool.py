"""The signing pool: signatures computed on its threads reach the awaiting task; failures,
cancellation and shutdown behave as an executor's would."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.dip.signing_pool import SigningPool
from gateway.signing.credentials import SigningCredential
from gateway.signing.verify import verify_request
from tests import pki_fixtures
from tests.pki_fixtures import Pki

pki = pki_fixtures.pki


async def test_signatures_are_made_on_the_pool_threads_and_verify(pki: Pki) -> None:
    credential = SigningCredential(pki.signer.key, pki.signer.cert, "test")
    pool = SigningPool(2)
    seen: set[str] = set()

    def sign(body: bytes) -> dict[str, str]:
        seen.add(threading.current_thread().name)
        return credential.sign("POST", "https://dip.example/dip-channel/IF-043", body, now)

    now = datetime.now(UTC)
    try:
        bodies = [f'[{{"n": {i}}}]'.encode() for i in range(8)]
        signed = await asyncio.gather(*(pool.run(sign, body) for body in bodies))
    finally:
        pool.shutdown()
    assert seen and all(name.startswith("dip-sign_") for name in seen)
    for body, headers in zip(bodies, signed, strict=True):
        signer = verify_request(
            "POST", "https://dip.example/dip-channel/IF-043", body, headers, None, now
        )
        assert signer.certificate == pki.signer.cert


async def test_an_error_reaches_the_caller_and_the_pool_keeps_working() -> None:
    pool = SigningPool(1)

    def fail() -> None:
        raise ValueError("bad key")

    try:
        with pytest.raises(ValueError, match="bad key"):
            await pool.run(fail)
        assert await pool.run(lambda: 42) == 42
    finally:
        pool.shutdown()


async def _pool_with_a_running_job(
    name: str = "dip-sign",
) -> tuple[SigningPool, threading.Event, asyncio.Future[bool]]:
    """A one-thread pool whose thread is busy with a job (already started) until the returned
    event is set; the future is that job's result."""
    pool = SigningPool(1, name=name)
    started, release = threading.Event(), threading.Event()

    def job() -> bool:
        started.set()
        return release.wait(5)

    running = asyncio.ensure_future(pool.run(job))
    assert await asyncio.to_thread(started.wait, 5)
    return pool, release, running


def _loop_errors() -> list[dict[str, Any]]:
    """Errors the loop would only log (e.g. a callback setting a cancelled future)."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    return errors


async def test_a_cancelled_wait_drops_the_result_and_the_next_job_runs() -> None:
    errors = _loop_errors()
    pool, release, held = await _pool_with_a_running_job()
    try:
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        release.set()  # the worker finishes the job; its result has nowhere to go
        assert await asyncio.wait_for(pool.run(lambda: "next"), 5) == "next"
    finally:
        pool.shutdown()
    assert errors == []


async def test_a_job_cancelled_before_it_starts_is_skipped() -> None:
    pool, release, first = await _pool_with_a_running_job()
    ran: list[str] = []
    try:
        assert pool.queued == 0  # the one job is running, nothing waits behind it
        queued = asyncio.ensure_future(pool.run(ran.append, "queued"))
        await asyncio.sleep(0)  # queued behind the running job
        assert pool.queued == 1
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        assert await asyncio.wait_for(first, 5) is True
        assert await asyncio.wait_for(pool.run(lambda: "after"), 5) == "after"
    finally:
        pool.shutdown()
    assert ran == []


@pytest.mark.parametrize("cancel_futures", [False, True])
async def test_shutdown_finishes_or_drops_queued_jobs(cancel_futures: bool) -> None:
    name = f"shutdown-test-{cancel_futures}"
    pool, release, first = await _pool_with_a_running_job(name)
    queued = asyncio.ensure_future(pool.run(lambda: "queued"))
    await asyncio.sleep(0)
    pool.shutdown(wait=False, cancel_futures=cancel_futures)
    release.set()
    assert await asyncio.wait_for(first, 5) is True  # already running: it finishes
    if cancel_futures:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 5)
    else:
        assert await asyncio.wait_for(queued, 5) == "queued"  # queued before shutdown: done
    with pytest.raises(RuntimeError, match="shut down"):
        await pool.run(lambda: None)
    await asyncio.to_thread(pool.shutdown, True)
    assert not [t for t in threading.enumerate() if t.name.startswith(name)]  # all ended


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        SigningPool(0)
