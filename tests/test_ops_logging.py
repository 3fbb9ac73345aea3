"""Logging: every line JSON (the standard library's loggers too), correlation fields from
contextvars, secrets redacted, and the rate limiter that keeps a flood from drowning the pod."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import orjson

from gateway.ops.logging import LogLimiter

_SCRIPT = textwrap.dedent(
    """
    import logging
    import structlog
    from gateway.ops.logging import configure_logging

    configure_logging("info", "json")
    log = structlog.get_logger("gateway.test")
    structlog.contextvars.bind_contextvars(batch=7, client="alice")
    log.info("batch_event", api_key="k-secret")
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed for group %s", "g1")
    logging.getLogger("aiokafka").info("chatty library info is not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    structlog.contextvars.clear_contextvars()
    log.warning("after_clear")
    """
)


def test_every_line_is_json_including_stdlib_loggers() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]  # each one JSON
    by_event = {line["event"]: line for line in lines}
    assert set(by_event) == {
        "batch_event",
        "Heartbeat failed for group g1",
        "Task exception was never retrieved",
        "after_clear",
    }
    ours = by_event["batch_event"]
    assert (ours["batch"], ours["client"], ours["level"]) == (7, "alice", "info")
    assert ours["api_key"] == "[redacted]"
    kafka = by_event["Heartbeat failed for group g1"]
    assert (kafka["logger"], kafka["level"]) == ("aiokafka.consumer", "warning")
    assert kafka["batch"] == 7 and "timestamp" in kafka  # same processors as our own events
    crash = by_event["Task exception was never retrieved"]
    assert crash["level"] == "error" and "ValueError: boom" in crash["exception"]
    assert "batch" not in by_event["after_clear"]


def test_the_limiter_admits_a_burst_then_counts_what_it_dropped() -> None:
    now = [0.0]
    limiter = LogLimiter(per_second=1.0, burst=3, clock=lambda: now[0])
    assert [limiter.admit("dead") for _ in range(5)] == [0, 0, 0, None, None]
    assert limiter.admit("other") == 0  # each event has its own bucket
    now[0] += 1.0  # one token back
    assert limiter.admit("dead") == 2  # logged, saying two were dropped before it
    assert limiter.admit("dead") is None
    now[0] += 10.0  # refills up to the burst, no further
    assert [limiter.admit("dead") for _ in range(4)] == [1, 0, 0, None]
