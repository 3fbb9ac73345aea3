"""Log redaction: secrets are dropped from structlog events and stdlib log records, however
deeply they are nested, and the objects the caller logged are left as they were."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import httpx
import orjson
import pytest
import structlog
from multidict import CIMultiDict

from gateway.ops.logging import configure_logging

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
