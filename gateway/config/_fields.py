"""What every section model shares: strictness, file paths resolved and checked, ID and topic
checks with the project's messages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo

from gateway.dip.vocabulary import DIP_ID_PATTERN

TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
HTTP_URL_PATTERN = re.compile(r"^https?://[^/\s]+")


class ConfigModel(BaseModel):
    """Unknown fields are mistakes (a misspelt setting must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve(value: Path, info: ValidationInfo) -> Path:
    path = value.expanduser()
    if not path.is_absolute():
        path = _base_dir(info) / path
    return path


def must_exist(value: Path | None, info: ValidationInfo) -> Path | None:
    """Secrets are mounted files: a wrong path stops start-up, not the first request."""
    if value is None:
        return None
    path = _resolve(value, info)
    ctx = info.context or {}
    if ctx.get("check_files", True) and not path.is_file():
        raise ValueError(f"file {path} does not exist: create it or correct the path")
    return path


def dip_id(v: Any) -> str:
    # Runs before pydantic's str check, so an unquoted YAML number gets this message (the fix)
    # rather than "Input should be a valid string".
    if not isinstance(v, str) or not DIP_ID_PATTERN.fullmatch(v):
        raise ValueError(
            f'DIP ID {v!r} must be exactly 10 digits, quoted in YAML (e.g. "1494431682")'
        )
    return v


def topic_name(v: str) -> str:
    if not TOPIC_PATTERN.fullmatch(v):
        raise ValueError(f"topic {v!r} may use only letters, digits, '.', '_' and '-'")
    return v
