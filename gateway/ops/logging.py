"""structlog configuration, in one place. Events are key-value pairs; JSON in production.

Every line is JSON, the standard library's loggers (aiokafka, aiohttp, asyncio) included: their
records go through the same processors by :class:`structlog.stdlib.ProcessorFormatter`, so a
Kafka client warning is not a line of plain text between JSON lines. The gateway's own events
take structlog's direct path (no ``logging`` record per event).

Correlation fields (batch, client, DIP ID, interface; webhook channel) are bound with
:mod:`structlog.contextvars` where a unit of work starts, and merged into each of its events.

Secrets never reach a log: the gateway logs file paths, DIP IDs and reasons, never API keys,
key material or message bodies. A processor drops any key that looks like a secret anyway.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = frozenset(
    {
        "api_key",
        "x_api_key",
        "password",
        "passphrase",
        "secret",
        "private_key",
        "pfx",
        "body",
        "authorization",
        "proxy_authorization",
        "x_dip_signature",
        "cookie",
        "set_cookie",
        "token",
    }
)
_REDACTED = "[redacted]"
_PRIVATE_KEY_MARK = "PRIVATE KEY-----"
_PRIVATE_KEY_MARK_BYTES = _PRIVATE_KEY_MARK.encode()
_DEPTH_MAX = 8


def _redacted(value: Any, depth: int = 0) -> Any:
    """``value`` with secrets replaced, looking into mappings (dicts, header maps) and
    sequences at any depth: a secret under a safe-looking key (``headers={"X-API-Key": …}``, or
    a list of ``(name, value)`` header pairs) is still found. Names compare case-insensitively
    with ``-`` as ``_``. Containers are copied, never changed: the caller may still be using
    them (request headers). A PEM private key is dropped wherever it appears."""
    if isinstance(value, str):
        return _REDACTED if _PRIVATE_KEY_MARK in value else value
    if isinstance(value, bytes):
        return _REDACTED if _PRIVATE_KEY_MARK_BYTES in value else value
    if depth >= _DEPTH_MAX:
        return value if isinstance(value, int | float | bool | None) else _REDACTED
    if isinstance(value, Mapping):
        return {
            k: _REDACTED if _is_secret_name(k) else _redacted(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, tuple):
        if len(value) == 2 and _is_secret_name(value[0]):
            return (value[0], _REDACTED)  # a (name, value) header pair
        return tuple(_redacted(v, depth + 1) for v in value)  # exc_info stays a tuple
    if isinstance(value, list | set | frozenset):
        return [_redacted(v, depth + 1) for v in value]
    return value


def _is_secret_name(name: object) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return isinstance(name, str) and name.lower().replace("-", "_") in _SECRET_KEYS


def _drop_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every value of the event, recursively, through :func:`_redacted`."""
    for key, value in _redacted(event_dict).items():
        event_dict[key] = value
    return event_dict


def _drop_secrets_from_record(record: logging.LogRecord) -> bool:
    """The same for the stdlib loggers (aiokafka, uvicorn, aiohttp): their arguments and message."""
    if record.args:
        record.args = _redacted(record.args)
    record.msg = _redacted(record.msg)
    return True


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog and the stdlib root logger (aiokafka, aiohttp) to match."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    # Arguments of stdlib records are redacted before formatting too (the message string
    # the formatter sees can no longer be taken apart).
    handler.addFilter(_drop_secrets_from_record)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries log chatty INFO (every aiokafka rebalance step): warnings and above only.
    root.setLevel(max(numeric, logging.WARNING))


class LogLimiter:
    """A token bucket per event name, so a flood of one event cannot drown the pod's log.

    ``admit(event)`` says whether to log this occurrence, and how many were dropped since the
    last one logged (log it as ``suppressed``, so the count is never lost)."""

    def __init__(
        self,
        per_second: float = 2.0,
        burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, int]] = {}  # tokens, when, suppressed

    def admit(self, event: str) -> int | None:
        """``None``: drop this one. Otherwise log it, with the number dropped before it."""
        now = self._clock()
        tokens, when, suppressed = self._buckets.get(event, (self._burst, now, 0))
        tokens = min(self._burst, tokens + (now - when) * self._rate)
        if tokens < 1.0:
            self._buckets[event] = (tokens, now, suppressed + 1)
            return None
        self._buckets[event] = (tokens - 1.0, now, 0)
        return suppressed


def log_limited(log: Any, limiter: LogLimiter, level: str, event: str, **fields: Any) -> None:
    """Log ``event`` at ``level`` when ``limiter`` admits it, with ``suppressed`` when some
    were dropped before it."""
    dropped = limiter.admit(event)
    if dropped is None:
        return
    if dropped:
        fields["suppressed"] = dropped
    getattr(log, level)(event, **fields)
