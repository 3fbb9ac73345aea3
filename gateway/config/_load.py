"""Reading the configuration: YAML file, ``DCP_GATEWAY__...`` environment overrides,
validation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config._errors import ConfigError
from gateway.config._format import format_validation_error
from gateway.config._gateway import GatewayConfig

ENV_PREFIX = "DCP_GATEWAY__"


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``DCP_GATEWAY__A__B=value`` onto ``data['a']['b']`` (value parsed as YAML)."""
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node: dict[str, Any] = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    return data


def parse_config(
    data: Mapping[str, Any],
    *,
    base_dir: Path,
    source: str = "config",
    check_files: bool = True,
) -> GatewayConfig:
    """Validate already-loaded data; raises :class:`ConfigError` with every problem listed."""
    try:
        return GatewayConfig.model_validate(
            data, context={"base_dir": base_dir, "check_files": check_files}
        )
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, GatewayConfig)) from None


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, check_files: bool = True
) -> GatewayConfig:
    """Read YAML, apply environment overrides, validate. Raises :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (pass --config PATH)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    data = apply_env_overrides(loaded, os.environ if environ is None else environ)
    return parse_config(
        data, base_dir=path.resolve().parent, source=str(path), check_files=check_files
    )
