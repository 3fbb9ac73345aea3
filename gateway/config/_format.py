"""Pydantic's validation errors, told in the project's words: one line per field, each naming
the field by its full path and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from gateway.config._errors import FieldProblems


def format_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel] | None = None
) -> str:
    """One line per problem, under its full field path. ``model``, the model validated, lets a
    message about an empty section or list say whether removing the line is a fix."""
    errors = exc.errors()
    item_locs = [tuple(e.get("loc", ())) for e in errors]

    def follow_on(err: Any) -> bool:
        # pydantic also reports "at least 1 item" for a list whose only items failed: noise
        # that points at the wrong field, so it is dropped when an item error is listed.
        loc = tuple(err.get("loc", ()))
        return err.get("type") == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in item_locs
        )

    problems: list[tuple[str, str]] = []
    for err in errors:
        if follow_on(err):
            continue
        loc = _location(err.get("loc", ()))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblems):
            problems += [(_join(loc, path), msg) for path, msg in cause.problems]
            continue
        optional = model is not None and _has_default(model, err.get("loc", ()))
        problems.append((loc, _in_our_words(err, optional)))
    lines = [f"{source}: {len(problems)} problem(s) in the configuration:"]
    lines += [f"  - {loc or '(top level)'}: {msg}" for loc, msg in problems]
    return "\n".join(lines)


_SECTION_TYPES = frozenset({"model_type", "model_attributes_type", "dict_type"})
_LIST_TYPES = frozenset({"tuple_type", "list_type"})
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}
_KINDS = {
    "string_type": "text (quote it in YAML)",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "date_type": "a date like 2026-01-31",
    "date_parsing": "a date like 2026-01-31",
    "date_from_datetime_parsing": "a date like 2026-01-31",
    "path_type": "a file path",
}


def _in_our_words(err: Any, optional: bool) -> str:
    """pydantic's message for ``err`` told as what the field must be and what was given (its
    own wording names the Python type, e.g. "a valid dictionary or instance of IngressSettings",
    which tells an operator neither the field's shape nor the fix)."""
    kind = err.get("type")
    ctx = err.get("ctx") or {}
    given = _shown(err.get("input"))
    or_remove = ", or remove the line to use the defaults" if optional else ""
    if kind == "missing":
        return "required field is missing: add it"
    if kind == "extra_forbidden":
        return "unknown field: remove it or check its spelling"
    if kind in _SECTION_TYPES:
        if err.get("input") is None:
            return f"the section is empty: put its settings under it, indented{or_remove}"
        return f"must be a section of settings (name: value lines indented under it), not {given}"
    if kind in _LIST_TYPES:
        if err.get("input") is None:
            return f"the list is empty: add its items under it ('- item' lines){or_remove}"
        return f"must be a list ('- item' lines under it, or [a, b]), not {given}"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, not {given}"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {ctx.get(key)}, not {given}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected')}, not {given}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s): add one"
    return str(err.get("msg", "")).removeprefix("Value error, ")


def _has_default(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    """Whether the field at ``loc`` may be left out (list indexes step into the item model)."""
    current: Any = model
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False
        field = current.model_fields.get(part)
        if field is None:
            return False
        current = _model_in(field.annotation)
    return field is not None and not field.is_required()


def _model_in(annotation: Any) -> Any:
    """The model in ``X``, ``X | None`` or ``tuple[X, ...]``, else the annotation itself."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _shown(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a section"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(base: str, path: str) -> str:
    if not base or not path:
        return base or path
    return base + path if path.startswith("[") else f"{base}.{path}"


def _location(loc: tuple[int | str, ...] | list[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
