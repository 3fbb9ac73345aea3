"""Pydantic's validation errors, told in the project's words: one line per field, each naming
the field by its full path and the fix."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.config._errors import FieldProblems


def format_validation_error(exc: ValidationError, source: str) -> str:
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
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "required field is missing: add it"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        problems.append((loc, msg))
    lines = [f"{source}: {len(problems)} problem(s) in the configuration:"]
    lines += [f"  - {loc or '(top level)'}: {msg}" for loc, msg in problems]
    return "\n".join(lines)


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
