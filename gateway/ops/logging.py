"""structlog configuration, in one place. Events are key-value pairs; JSON in production.

Secrets never reach a log: the gateway logs file paths, DIP IDs and reasons, never API keys,
key material or message bodies. A processor drops any key that looks like a secret anyway.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
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
    """Configure structlog and the stdlib root logger (aiokafka, uvicorn) to match."""
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
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_drop_secrets_from_record)
