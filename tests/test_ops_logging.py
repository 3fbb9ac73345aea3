"""Logging: every line JSON (the standard library's loggers too), correlation fields from
contextvars, secrets redacted at any depth (and the objects logged left as they were), and the
rate limiter that keeps a flood from drowning the pod."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import orjson
import pytest
import structlog
from multidict import CIMultiDict

from gateway.ops.logging import LogLimiter, configure_logging

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


API_KEY = "api-key-5f1d0c9e"
SIGNATURE = "c2lnbmF0dXJlLXZhbHVl"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Logging configured as in production, writing to a buffer instead of stderr."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("debug", "json")
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def _events(err: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_secrets_are_redacted_at_any_depth(configured: io.StringIO) -> None:
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    request = {
        "url": "https://dip.test/x",
        "headers": headers,
        "nested": [{"Authorization": f"Bearer {API_KEY}"}, ("X-DIP-Signature", SIGNATURE)],
        "raw": [(b"x-api-key", API_KEY.encode())],
    }
    log = structlog.get_logger("test")
    log.warning(
        "sent",
        request=request,
        multi=CIMultiDict({"x-api-key": API_KEY}),
        httpx_headers=httpx.Headers({"X-Dip-Signature": SIGNATURE}),
        key_material=f"loaded {PEM}",
        body=b'{"CommonBlock": {}}',
        api_key=API_KEY,
    )
    out = configured.getvalue()
    assert API_KEY not in out and SIGNATURE not in out and "MIIEvQ" not in out
    assert "CommonBlock" not in out
    [event] = _events(out)
    assert event["request"]["url"] == "https://dip.test/x"  # type: ignore[index]
    assert event["request"]["headers"] == {  # type: ignore[index]
        "X-API-Key": "[redacted]",
        "Content-Type": "application/json",
    }
    assert event["multi"] == {"x-api-key": "[redacted]"}
    # what was logged is not changed: the same headers may still go out with a request
    assert headers["X-API-Key"] == API_KEY


def test_stdlib_log_records_are_redacted(configured: io.StringIO) -> None:
    logging.getLogger("aiokafka").warning("connecting with %s", {"password": API_KEY})
    logging.getLogger("uvicorn.error").error("headers %s key %s", [("Authorization", "x")], PEM)
    out = configured.getvalue()
    assert "connecting with {'password': '[redacted]'}" in out
    assert "[('Authorization', '[redacted]')]" in out
    assert API_KEY not in out and "MIIEvQ" not in out


def test_exceptions_are_still_rendered(configured: io.StringIO) -> None:
    log = structlog.get_logger("test")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", headers={"X-API-Key": API_KEY})
    err = RuntimeError("bang")
    log.error("failed again", exc_info=(RuntimeError, err, None))
    out = configured.getvalue()
    first, second = _events(out)
    assert "RuntimeError: boom" in first["exception"]  # type: ignore[operator]
    assert "RuntimeError: bang" in second["exception"]  # type: ignore[operator]
    assert API_KEY not in out
