"""Request bodies checked against the published DIP document's own schemas.

The administration and status-message bodies (``WebhookConfig``, ``MessageRequest``,
``StatusMessageRequest``, ``StandardResponseBodyType``) are small; checking them against the
document, rather than by hand, makes every type, length and pattern the document states a
documented 400 and keeps malformed values (an object where an id belongs, an over-long id)
away from the handlers. The document is read and its schemas compiled once, on first use.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import orjson

from gateway.schema.openapi import build_root_schema, convert_components
from gateway.schema.registry import DOCUMENT_RESOURCE

_DOCUMENT: Final = DOCUMENT_RESOURCE
_MAX_PROBLEMS: Final = 5


@functools.cache
def _definitions() -> dict[str, Any]:
    try:
        text = resources.files("gateway").joinpath(_DOCUMENT).read_bytes()
    except (OSError, TypeError):  # an editable install may expose no resource directory
        text = (Path(__file__).resolve().parents[1] / "gateway" / _DOCUMENT).read_bytes()
    schemas: dict[str, Any] = orjson.loads(text)["components"]["schemas"]
    return convert_components(schemas)


@functools.cache
def _validator(component: str) -> jsonschema_rs.Validator:
    root = build_root_schema(_definitions(), component)
    return jsonschema_rs.validator_for(root, validate_formats=False)


def problems(component: str, instance: Any, where: str = "$") -> list[str]:
    """What makes ``instance`` fail the document's schema ``component`` (at most a few,
    each ``path: reason``); ``[]`` when it conforms."""
    validator = _validator(component)
    if validator.is_valid(instance):
        return []
    found: list[str] = []
    for error in validator.iter_errors(instance):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
        found.append(f"{where}{path}: {error.message[:200]}")
        if len(found) == _MAX_PROBLEMS:
            break
    return found
