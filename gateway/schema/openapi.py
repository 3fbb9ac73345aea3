"""Pure conversion of OpenAPI 3.0 schema objects into JSON Schema (draft 2020-12).

The DIP publishes its message schemas only as OpenAPI 3.0 components. OpenAPI 3.0 is a
*dialect* of an old JSON Schema draft: it has ``nullable`` instead of ``type: [.., "null"]``,
boolean ``exclusiveMinimum``, ignores siblings of ``$ref``, and carries documentation-only
keywords (``example``, ``xml``, ``discriminator``...). A standard validator (jsonschema-rs)
would silently mis-handle those, most importantly rejecting ``null`` where the DIP accepts it.
So we rewrite each schema once, up front, into plain draft 2020-12 and let the fast validator
do the rest.

Nothing here does I/O or knows about interfaces; :mod:`gateway.schema.registry` does that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "COMPONENT_REF_PREFIX",
    "DEFS_REF_PREFIX",
    "DRAFT_2020_12",
    "build_root_schema",
    "convert_components",
    "convert_schema",
    "referenced_names",
]

DRAFT_2020_12: Final = "https://json-schema.org/draft/2020-12/schema"
COMPONENT_REF_PREFIX: Final = "#/components/schemas/"
DEFS_REF_PREFIX: Final = "#/$defs/"

# Keywords whose meaning is identical in OpenAPI 3.0 and JSON Schema 2020-12 and whose value
# is not itself a schema: copied verbatim.
_PLAIN_KEYWORDS: Final = frozenset(
    {
        "type",
        "enum",
        "required",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "description",
        "title",
        "default",
        "readOnly",
        "writeOnly",
        "deprecated",
    }
)

# Formats that JSON Schema itself defines. OpenAPI-only formats (int32, int64, float, double,
# byte, binary, password) are dropped: they are type hints for code generators, and leaving
# them would only invite "unknown format" handling differences between validators.
_JSON_SCHEMA_FORMATS: Final = frozenset(
    {
        "date-time",
        "date",
        "time",
        "duration",
        "email",
        "idn-email",
        "hostname",
        "idn-hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "iri",
        "iri-reference",
        "uuid",
        "uri-template",
        "json-pointer",
        "relative-json-pointer",
        "regex",
    }
)

# Keywords holding one sub-schema / a list of sub-schemas.
_SCHEMA_KEYWORDS: Final = frozenset({"items", "not", "additionalProperties"})
_SCHEMA_LIST_KEYWORDS: Final = frozenset({"allOf", "oneOf", "anyOf"})
# Documentation / code-generation only; never affects validity. Listed to make the drop explicit
# (anything not recognised is dropped as well, including ``x-`` extensions).
_DROPPED_KEYWORDS: Final = frozenset(
    {"example", "examples", "xml", "externalDocs", "discriminator", "nullable"}
)
_NULL_SCHEMA: Final[Mapping[str, Any]] = {"type": "null"}


def convert_schema(schema: Any, ref_prefix: str = DEFS_REF_PREFIX) -> Any:
    """Convert one OpenAPI 3.0 schema object (recursively) into a JSON Schema 2020-12 one.

    ``$ref: "#/components/schemas/X"`` becomes ``$ref: ref_prefix + X`` so that the result
    resolves inside a root document built by :func:`build_root_schema`. Booleans and other
    non-mapping values are returned unchanged (``additionalProperties: false`` stays false).
    """
    if not isinstance(schema, Mapping):
        return schema
    nullable = schema.get("nullable") is True

    if "$ref" in schema:
        # OpenAPI 3.0: siblings of $ref are ignored. Draft 2020-12 would apply them, so drop them.
        converted: dict[str, Any] = {"$ref": _rewrite_ref(schema["$ref"], ref_prefix)}
        return _wrap_nullable(converted) if nullable else converted

    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _PLAIN_KEYWORDS:
            out[key] = list(value) if isinstance(value, list) else value
        elif key in _SCHEMA_KEYWORDS:
            out[key] = convert_schema(value, ref_prefix)
        elif key in _SCHEMA_LIST_KEYWORDS:
            out[key] = [convert_schema(sub, ref_prefix) for sub in value]
        elif key in ("properties", "patternProperties"):
            out[key] = {name: convert_schema(sub, ref_prefix) for name, sub in value.items()}
        elif key == "format":
            if value in _JSON_SCHEMA_FORMATS:
                out[key] = value
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            _convert_exclusive_bound(schema, key, value, out)
        # everything else (example, xml, discriminator, x-*, nullable) is dropped on purpose

    # OpenAPI 3.0 exclusive bounds replace the inclusive keyword they qualify.
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if schema.get(exclusive) is True and inclusive in schema:
            out.pop(inclusive, None)

    if nullable:
        if any(k in out for k in _SCHEMA_LIST_KEYWORDS):
            return _wrap_nullable(out)
        _allow_null_inline(out)
    return out


def _convert_exclusive_bound(
    schema: Mapping[str, Any], key: str, value: Any, out: dict[str, Any]
) -> None:
    """OpenAPI 3.0 uses ``exclusiveMinimum: true`` + ``minimum: n``; 2020-12 uses a number."""
    inclusive = "minimum" if key == "exclusiveMinimum" else "maximum"
    if value is True and inclusive in schema:
        out[key] = schema[inclusive]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[key] = value  # already 3.1 / JSON Schema style


def _allow_null_inline(out: dict[str, Any]) -> None:
    """Make a typed schema accept null: widen ``type`` and add ``None`` to ``enum``.

    A ``nullable`` schema without ``type`` accepts null already, except through its enum.
    String/number keywords (pattern, maxLength...) do not apply to null, so they may stay.
    """
    schema_type = out.get("type")
    if isinstance(schema_type, str):
        if schema_type != "null":
            out["type"] = [schema_type, "null"]
    elif isinstance(schema_type, list) and "null" not in schema_type:
        out["type"] = [*schema_type, "null"]
    enum = out.get("enum")
    if isinstance(enum, list) and None not in enum:
        out["enum"] = [*enum, None]


def _wrap_nullable(converted: dict[str, Any]) -> dict[str, Any]:
    """``$ref``/composition schemas cannot take null in place: offer null as an alternative."""
    return {"anyOf": [converted, dict(_NULL_SCHEMA)]}


def _rewrite_ref(ref: Any, ref_prefix: str) -> Any:
    if isinstance(ref, str) and ref.startswith(COMPONENT_REF_PREFIX):
        return ref_prefix + ref[len(COMPONENT_REF_PREFIX) :]
    return ref


def convert_components(
    schemas: Mapping[str, Any], ref_prefix: str = DEFS_REF_PREFIX
) -> dict[str, Any]:
    """Convert every entry of ``components.schemas`` (name -> converted schema)."""
    return {name: convert_schema(schema, ref_prefix) for name, schema in schemas.items()}


def referenced_names(schema: Any, ref_prefix: str = DEFS_REF_PREFIX) -> set[str]:
    """Names of the definitions directly referenced (``$ref: ref_prefix + name``) in ``schema``."""
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(ref_prefix):
                found.add(ref[len(ref_prefix) :])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _closure(defs: Mapping[str, Any], roots: Iterable[str], ref_prefix: str) -> list[str]:
    """Every definition reachable from ``roots`` (in discovery order); unknown names raise."""
    seen: dict[str, None] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in defs:
            raise KeyError(f"schema references missing component {name!r}")
        seen[name] = None
        pending.extend(sorted(referenced_names(defs[name], ref_prefix) - seen.keys()))
    return list(seen)


def build_root_schema(defs: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A self-contained draft 2020-12 document validating against component ``name``.

    ``defs`` are already-converted components (see :func:`convert_components`). Only the
    definitions reachable from ``name`` are embedded, so compiling one interface's validator
    does not have to index all 500+ components of the DIP document.
    """
    if name not in defs:
        raise KeyError(f"no component schema named {name!r}")
    embedded = {n: defs[n] for n in _closure(defs, [name], DEFS_REF_PREFIX)}
    return {"$schema": DRAFT_2020_12, "$ref": DEFS_REF_PREFIX + name, "$defs": embedded}
