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
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = frozenset({"api_key", "password", "secret", "private_key", "x-api-key", "body"})


def _drop_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


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


def log_limited(
    log: Any, limiter: LogLimiter, level: str, event: str, **fields: Any
) -> None:
    """Log ``event`` at ``level`` when ``limiter`` admits it, with ``suppressed`` when some
    were dropped before it."""
    dropped = limiter.admit(event)
    if dropped is None:
        return
    if dropped:
        fields["suppressed"] = dropped
    getattr(log, level)(event, **fields)
