"""Offline validation of DIP message payloads against the published DIP OpenAPI document.

Why offline: the DIP rejects a schema-invalid message with ``MSG1001 - Schema Failure`` only
after it has been signed, sent and counted against our rate limits; finding the problem locally
lets the gateway dead-letter it with the same reason, without a request.

How the schema is chosen: the DIP document has one ``/validate/{interface}/{event}`` endpoint
per (interface, event code) pair and each endpoint's request body names the component schema of
the payload (``IF-001-InitialRegistration``, ``IF-021-Payload``, ...). We read that table from
the document itself and select by ``CommonBlock.S0.interfaceID`` / ``eventCode``. The 58-way
``DIPMessage`` oneOf is never used: it is slow and its errors say nothing useful.

Schemas that have no validate endpoint but whose ``S0`` pins interface and event (IF-016's
per-event schemas, IF-047, the REP-xxx reports) are selectable too, so that everything the DIP
can deliver to us can be checked.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jsonschema_rs

from gateway.schema.openapi import build_root_schema, convert_components

__all__ = [
    "DOCUMENT_RESOURCE",
    "SCHEMA_FAILURE",
    "SchemaRegistry",
    "SchemaViolation",
    "UnknownInterface",
    "default_registry",
    "dip_schema_failure",
    "format_violations",
]

DOCUMENT_RESOURCE: Final = "data/dip-openapi-2.2.1.json"
SCHEMA_FAILURE: Final = "MSG1001 - Schema Failure"

_VALIDATE_PREFIX: Final = "/validate/"
_COMPONENT_PREFIX: Final = "#/components/schemas/"
# An invalid message can have thousands of errors (one per half-hour period...); the first
# ones are what a human needs, and building the rest would cost CPU on the hot path's slow side.
_MAX_VIOLATIONS: Final = 50
_MAX_VALUE_CHARS: Final = 80
_MAX_MESSAGE_CHARS: Final = 200
_MAX_REASON_CHARS: Final = 1000
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SchemaViolation:
    """One reason a payload is not schema-valid.

    ``path`` is a JSONPath-like location (``$.CommonBlock.S1.senderDIPID``, ``$.a[0]``); for
    ``required`` and ``additionalProperties`` it names the missing / unexpected property itself,
    which is what a sender needs to fix. ``rule`` is the JSON Schema keyword that failed.
    ``message`` is short and shows at most ~80 characters of the offending value.
    """

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.message}"


class UnknownInterface(LookupError):
    """No schema exists for the payload's interface (and event): it cannot be validated.

    Distinct from a schema failure on purpose: the caller decides whether "cannot check" means
    reject (dead-letter) or pass through.
    """

    def __init__(self, interface_id: object, event_code: object, reason: str) -> None:
        super().__init__(reason)
        self.interface_id = interface_id
        self.event_code = event_code
        self.reason = reason


@dataclass(frozen=True)
class _Route:
    """Which component schema validates one (interface, event) pair."""

    schema_name: str
    has_endpoint: bool


class SchemaRegistry:
    """Per-(interface, event) validators built from one DIP OpenAPI document.

    Conversion of the document happens once in the constructor; each validator is
    compiled on first use and cached, so a process pays only for the interfaces it sees.
    Instances are safe to share between threads.
    """

    def __init__(self, document: Mapping[str, Any] | None = None) -> None:
        doc = _load_packaged_document() if document is None else document
        components = doc.get("components", {}).get("schemas", {})
        self._defs: dict[str, Any] = convert_components(components)
        self._routes: dict[tuple[str, str], _Route] = {}
        self._events_by_interface: dict[str, list[str]] = {}
        self._build_routes(doc.get("paths", {}), components)
        self._compiled: dict[str, jsonschema_rs.Validator] = {}
        # Hot-path cache keyed exactly as the payload spells S0: (interfaceID, "[EventCode]").
        self._fast: dict[tuple[Any, Any], jsonschema_rs.Validator] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------- public API

    def validate(self, payload: Mapping[str, Any]) -> list[SchemaViolation]:
        """Validate ``{"CommonBlock":..., "CustomBlock":...}``; ``[]`` means valid.

        The schema is selected from ``CommonBlock.S0.interfaceID`` and ``eventCode``.
        Raises :class:`UnknownInterface` when no schema exists for them.
        """
        try:
            s0 = payload["CommonBlock"]["S0"]
            validator = self._fast[(s0["interfaceID"], s0["eventCode"])]
        except (KeyError, TypeError):
            return self._validate_selecting(payload)
        if validator.is_valid(payload):
            return []
        return _violations(validator.iter_errors(payload))

    def validate_for(
        self, interface_id: str, event_code: str | None, payload: Mapping[str, Any]
    ) -> list[SchemaViolation]:
        """Validate ``payload`` against the schema of ``interface_id`` / ``event_code``.

        ``event_code`` may be bare (``InitialRegistration``) or as in S0
        (``[InitialRegistration]``). ``None`` is accepted for interfaces that have one schema
        for all their events. A known interface with an unknown event is reported as an
        ``enum`` violation at ``$.CommonBlock.S0.eventCode`` (that is what the DIP answers);
        an unknown interface raises :class:`UnknownInterface`.
        """
        selected = self._select(interface_id, event_code)
        if isinstance(selected, list):
            return selected
        if selected.is_valid(payload):
            return []
        return _violations(selected.iter_errors(payload))

    def interfaces(self, *, include_unlisted: bool = False) -> list[tuple[str, str | None]]:
        """Every (interface, event) pair that has a ``/validate/{interface}/{event}`` endpoint.

        With ``include_unlisted=True`` also the pairs validated from schemas that have no
        endpoint (IF-016 events, IF-047, REP-xxx). Events are bare (no brackets).
        """
        return [
            (iface, event)
            for (iface, event), route in self._routes.items()
            if include_unlisted or route.has_endpoint
        ]

    def schema_name(self, interface_id: str, event: str) -> str:
        """The component schema name used for a pair (e.g. ``IF-021-Payload``)."""
        route = self._routes.get((interface_id, _bare_event(event)))
        if route is None:
            raise UnknownInterface(interface_id, event, _unknown_reason(self, interface_id, event))
        return route.schema_name

    def endpoint_schema(self, interface_id: str, event: str) -> dict[str, Any]:
        """Self-contained JSON Schema (2020-12) of one validate endpoint's ``payload``.

        This is the schema behind ``POST /validate/{interface_id}/{event}`` (the request body is
        an array of ``{"payload": <this>}``), for the DIP simulator. A fresh copy each call.
        Raises :class:`UnknownInterface` when the document has no such endpoint.
        """
        route = self._routes.get((interface_id, _bare_event(event)))
        if route is None or not route.has_endpoint:
            raise UnknownInterface(
                interface_id, event, f"no /validate/{interface_id}/{_bare_event(event)} endpoint"
            )
        root = build_root_schema(self._defs, route.schema_name)
        copied: dict[str, Any] = json.loads(json.dumps(root))
        return copied

    def compile_all(self, *, include_unlisted: bool = False) -> int:
        """Compile every validator now (start-up warm-up); returns how many distinct schemas."""
        names = {
            route.schema_name
            for route in self._routes.values()
            if include_unlisted or route.has_endpoint
        }
        for name in sorted(names):
            self._validator(name)
        return len(names)

    # ----------------------------------------------------------------------------- internals

    def _build_routes(self, paths: Mapping[str, Any], components: Mapping[str, Any]) -> None:
        """Fill the (interface, event) -> schema table from the document, endpoints first."""
        for path, item in paths.items():
            if not path.startswith(_VALIDATE_PREFIX):
                continue
            parts = path[len(_VALIDATE_PREFIX) :].split("/")
            name = _request_payload_schema(item)
            if len(parts) != 2 or name is None or name not in components:
                continue  # not a shape we understand; such an endpoint stays unknown
            self._add_route(parts[0], parts[1], _Route(name, has_endpoint=True))
        # Then schemas without an endpoint whose S0 pins interface and event. Specific schemas
        # before the "-Payload" umbrellas, so the most precise one wins.
        ordered = sorted(components, key=lambda n: (n.endswith("-Payload"), n))
        for name in ordered:
            for iface, event in _pinned_pairs(components[name]):
                if (iface, event) not in self._routes:
                    self._add_route(iface, event, _Route(name, has_endpoint=False))

    def _add_route(self, iface: str, event: str, route: _Route) -> None:
        self._routes[(iface, event)] = route
        self._events_by_interface.setdefault(iface, []).append(event)

    def _validator(self, schema_name: str) -> jsonschema_rs.Validator:
        validator = self._compiled.get(schema_name)
        if validator is None:
            with self._lock:
                validator = self._compiled.get(schema_name)
                if validator is None:
                    root = build_root_schema(self._defs, schema_name)
                    # Format assertion off: the DIP document's formats are annotations only.
                    validator = jsonschema_rs.validator_for(root, validate_formats=False)
                    self._compiled[schema_name] = validator
        return validator

    def _select(
        self, interface_id: Any, event_code: Any
    ) -> jsonschema_rs.Validator | list[SchemaViolation]:
        """The validator for a pair, or the violation that makes any schema choice moot."""
        if not isinstance(interface_id, str) or interface_id not in self._events_by_interface:
            raise UnknownInterface(
                interface_id, event_code, _unknown_reason(self, interface_id, event_code)
            )
        events = self._events_by_interface[interface_id]
        if event_code is None:
            names = {self._routes[(interface_id, e)].schema_name for e in events}
            if len(names) == 1:
                return self._validator(names.pop())
            return [
                SchemaViolation(
                    "$.CommonBlock.S0.eventCode",
                    "required",
                    f"'eventCode' is required to select among {interface_id}'s events",
                )
            ]
        if not isinstance(event_code, str):
            return [
                SchemaViolation(
                    "$.CommonBlock.S0.eventCode",
                    "type",
                    f"{_show(event_code)} is not of type string",
                )
            ]
        route = self._routes.get((interface_id, _bare_event(event_code)))
        if route is None:
            names = {self._routes[(interface_id, e)].schema_name for e in events}
            if len(names) == 1:
                # One schema for the whole interface: let it report the event code and
                # everything else that is wrong, which says more than the event alone.
                return self._validator(names.pop())
            allowed = ", ".join(f"[{e}]" for e in events)
            return [
                SchemaViolation(
                    "$.CommonBlock.S0.eventCode",
                    "enum",
                    _clip(f"{_show(event_code)} is not an {interface_id} event ({allowed})"),
                )
            ]
        return self._validator(route.schema_name)

    def _validate_selecting(self, payload: Mapping[str, Any]) -> list[SchemaViolation]:
        """Slow path: first message of a pair, or a malformed S0.

        S0 keys are looked up case-insensitively *for selection only* (published examples use
        ``InterfaceID``/``interfaceId``) so that the schema itself reports the wrong key,
        instead of the message being treated as of an unknown interface.
        """
        s0 = _get(_get(payload, "CommonBlock"), "S0")
        interface_id = _get_ci(s0, "interfaceID")
        event_code = _get_ci(s0, "eventCode")
        if interface_id is None:
            raise UnknownInterface(
                None, event_code, "payload has no CommonBlock.S0.interfaceID to select a schema"
            )
        selected = self._select(interface_id, event_code)
        if isinstance(selected, list):
            return selected
        raw_event = s0.get("eventCode") if isinstance(s0, Mapping) else None
        if (
            isinstance(raw_event, str)
            and s0.get("interfaceID") == interface_id
            and (interface_id, _bare_event(raw_event)) in self._routes
        ):
            # Only pairs from the document: junk event codes must not grow the cache.
            self._fast[(interface_id, raw_event)] = selected
        if selected.is_valid(payload):
            return []
        return _violations(selected.iter_errors(payload))


# --------------------------------------------------------------------------- document helpers


def _load_packaged_document() -> dict[str, Any]:
    try:
        text = resources.files("gateway").joinpath(DOCUMENT_RESOURCE).read_bytes()
    except (OSError, TypeError):
        # A setuptools editable install can expose `gateway` as a namespace package whose
        # search path holds a non-directory hook entry, which importlib.resources rejects
        # (NotADirectoryError when run outside the checkout). The data sits beside us anyway.
        text = (Path(__file__).resolve().parents[1] / DOCUMENT_RESOURCE).read_bytes()
    document: dict[str, Any] = json.loads(text)
    return document


def _request_payload_schema(path_item: Any) -> str | None:
    """Component name of ``payload`` in a validate endpoint's JSON request body.

    Published shape: ``{"type": "array", "items": {"properties": {"payload": {"$ref": ...}}}}``;
    a bare ``$ref`` or an object with ``payload`` are accepted as well.
    """
    try:
        schema = path_item["post"]["requestBody"]["content"]["application/json"]["schema"]
    except (KeyError, TypeError):
        return None
    if isinstance(schema, Mapping) and schema.get("type") == "array":
        schema = schema.get("items")
    if isinstance(schema, Mapping) and "properties" in schema:
        schema = schema["properties"].get("payload")
    ref = schema.get("$ref") if isinstance(schema, Mapping) else None
    if isinstance(ref, str) and ref.startswith(_COMPONENT_PREFIX):
        return ref[len(_COMPONENT_PREFIX) :]
    return None


def _pinned_pairs(schema: Any) -> Iterator[tuple[str, str]]:
    """(interface, bare event) pairs a payload schema admits via its S0 ``enum``s."""
    try:
        s0_props = schema["properties"]["CommonBlock"]["properties"]["S0"]["properties"]
        interfaces = s0_props["interfaceID"]["enum"]
        events = s0_props["eventCode"]["enum"]
    except (KeyError, TypeError):
        return
    for iface in interfaces:
        for event in events:
            if isinstance(iface, str) and isinstance(event, str):
                yield iface, _bare_event(event)


def _bare_event(event: str) -> str:
    """``[InitialRegistration]`` (as in S0) -> ``InitialRegistration`` (as in endpoint paths)."""
    if len(event) >= 2 and event[0] == "[" and event[-1] == "]":
        return event[1:-1]
    return event


def _unknown_reason(registry: SchemaRegistry, interface_id: object, event: object) -> str:
    if not isinstance(interface_id, str):
        return f"interfaceID {_show(interface_id)} is not a string"
    if interface_id not in registry._events_by_interface:
        return f"no DIP schema for interface {interface_id!r}"
    return f"no DIP schema for interface {interface_id!r} event {_show(event)}"


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _get_ci(mapping: Any, key: str) -> Any:
    """``mapping[key]``, falling back to a case-insensitive key match."""
    if not isinstance(mapping, Mapping):
        return None
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


# --------------------------------------------------------------------------- error rendering


def _violations(errors: Iterable[jsonschema_rs.ValidationError]) -> list[SchemaViolation]:
    out: list[SchemaViolation] = []
    for error in errors:
        out.extend(_from_error(error))
        if len(out) >= _MAX_VIOLATIONS:
            return out[:_MAX_VIOLATIONS]
    return out


def _from_error(error: jsonschema_rs.ValidationError) -> list[SchemaViolation]:
    """Translate one jsonschema-rs error into our short, path-precise violations."""
    kind = error.kind
    path = list(error.instance_path)
    value = error.instance
    K = jsonschema_rs.ValidationErrorKind
    if isinstance(kind, K.Required):
        prop = str(kind.property)
        return [SchemaViolation(_json_path([*path, prop]), "required", f"{prop!r} is missing")]
    if isinstance(kind, K.AdditionalProperties):
        return [
            SchemaViolation(
                _json_path([*path, str(name)]), "additionalProperties", "property not allowed"
            )
            for name in kind.unexpected
        ]
    if isinstance(kind, K.AnyOf | K.OneOfNotValid):
        branch = _only_meaningful_branch(kind.context)
        if branch is not None:
            return [v for sub in branch for v in _from_error(sub)]
        return [SchemaViolation(_json_path(path), kind.name, f"{_show(value)} matches no option")]
    return [SchemaViolation(_json_path(path), kind.name, _describe(kind, value, error.message))]


def _only_meaningful_branch(
    context: list[list[jsonschema_rs.ValidationError]],
) -> list[jsonschema_rs.ValidationError] | None:
    """For ``anyOf: [X, {type: null}]`` (a converted nullable) report X's errors directly."""
    K = jsonschema_rs.ValidationErrorKind
    remaining = [
        branch
        for branch in context
        if not (
            len(branch) == 1
            and isinstance(branch[0].kind, K.Type)
            and list(branch[0].kind.types) == ["null"]
        )
    ]
    return remaining[0] if len(remaining) == 1 and remaining[0] else None


def _describe(kind: jsonschema_rs.ValidationErrorKind, value: Any, fallback: str) -> str:
    K = jsonschema_rs.ValidationErrorKind
    shown = _show(value)
    if isinstance(kind, K.Pattern):
        return f"{shown} does not match {_show(kind.pattern)}"
    if isinstance(kind, K.Enum):
        return _clip(f"{shown} is not one of {_show(list(kind.options))}")
    if isinstance(kind, K.Type):
        return f"{shown} is not of type {' or '.join(str(t) for t in kind.types)}"
    if isinstance(kind, K.MaxLength):
        return f"{shown} is longer than {kind.limit} characters"
    if isinstance(kind, K.MinLength):
        return f"{shown} is shorter than {kind.limit} characters"
    if isinstance(kind, K.MaxItems):
        return f"array has more than {kind.limit} items"
    if isinstance(kind, K.MinItems):
        return f"array has fewer than {kind.limit} items"
    if isinstance(kind, K.Minimum | K.ExclusiveMinimum):
        return f"{shown} is below the {kind.name} {kind.limit}"
    if isinstance(kind, K.Maximum | K.ExclusiveMaximum):
        return f"{shown} is above the {kind.name} {kind.limit}"
    if isinstance(kind, K.Constant):
        return f"{shown} is not {_show(kind.expected_value)}"
    # Other keywords: jsonschema-rs' own text, clipped (it may embed the whole instance).
    return _clip(fallback)


def _json_path(parts: Iterable[str | int]) -> str:
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


def _show(value: Any) -> str:
    """A value as shown in messages: strings quoted, JSON otherwise, at most ~80 characters."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


def _clip(text: str, limit: int = _MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_violations(violations: Iterable[SchemaViolation], limit: int = _MAX_REASON_CHARS) -> str:
    """One line for a dead-letter reason: ``MSG1001 - Schema Failure: $.a: rule: msg; ...``.

    At most ``limit`` characters; violations that do not fit are counted (``(+3 more)``).
    """
    items = list(violations)
    if not items:
        return SCHEMA_FAILURE
    reserve = len(f" (+{len(items)} more)")
    line = f"{SCHEMA_FAILURE}: " + _clip(str(items[0]), limit - len(SCHEMA_FAILURE) - 2 - reserve)
    shown = 1
    for violation in items[1:]:
        candidate = f"{line}; {violation}"
        if len(candidate) + reserve > limit:
            break
        line = candidate
        shown += 1
    if shown < len(items):
        line += f" (+{len(items) - shown} more)"
    return line


def dip_schema_failure(violations: Iterable[SchemaViolation]) -> tuple[str, str]:
    """The DIP-style rejection of a schema-invalid message: ``(status text, help text)``.

    Used by the DIP simulator to answer like the DIP does: the fixed ``MSG1001 - Schema
    Failure`` plus a help text naming each failing path, rule and (truncated) value.
    """
    items = list(violations)
    detail = "; ".join(str(v) for v in items) or "payload does not match the schema"
    count = f"{len(items)} schema violation{'s' if len(items) != 1 else ''}: "
    return SCHEMA_FAILURE, _clip(count + detail, _MAX_REASON_CHARS)


_default: SchemaRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> SchemaRegistry:
    """The process-wide registry over the packaged DIP 2.2.1 document (loaded once, lazily)."""
    global _default
    registry = _default
    if registry is None:
        with _default_lock:
            registry = _default
            if registry is None:
                registry = _default = SchemaRegistry()
    return registry
