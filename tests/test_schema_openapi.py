"""OpenAPI 3.0 -> JSON Schema 2020-12 conversion (pure functions, no document needed)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from gateway.schema.openapi import (
    DEFS_REF_PREFIX,
    build_root_schema,
    convert_components,
    convert_schema,
    referenced_names,
)


def test_nullable_type_becomes_type_list() -> None:
    out = convert_schema({"type": "string", "nullable": True, "maxLength": 3})
    assert out == {"type": ["string", "null"], "maxLength": 3}


def test_nullable_enum_admits_null() -> None:
    out = convert_schema({"type": "string", "nullable": True, "enum": ["A", "B"]})
    assert out["enum"] == ["A", "B", None]
    assert jsonschema_rs.is_valid(out, None)
    assert not jsonschema_rs.is_valid(out, "C")


def test_nullable_false_is_dropped_and_null_rejected() -> None:
    out = convert_schema({"type": "boolean", "nullable": False})
    assert out == {"type": "boolean"}
    assert not jsonschema_rs.is_valid(out, None)


@pytest.mark.parametrize("composition", ["oneOf", "anyOf", "allOf"])
def test_nullable_composition_is_wrapped(composition: str) -> None:
    schema = {composition: [{"type": "integer"}], "nullable": True}
    out = convert_schema(schema)
    assert out == {"anyOf": [{composition: [{"type": "integer"}]}, {"type": "null"}]}


def test_nullable_ref_is_wrapped_and_rewritten() -> None:
    out = convert_schema({"$ref": "#/components/schemas/X", "nullable": True})
    assert out == {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]}


def test_ref_siblings_are_ignored_as_in_openapi_30() -> None:
    out = convert_schema({"$ref": "#/components/schemas/X", "description": "d", "maxLength": 1})
    assert out == {"$ref": "#/$defs/X"}


def test_documentation_keywords_and_openapi_formats_are_dropped() -> None:
    schema = {
        "type": "integer",
        "format": "int32",
        "example": 5,
        "xml": {"name": "n"},
        "externalDocs": {"url": "u"},
        "discriminator": {"propertyName": "p"},
        "x-vendor": True,
    }
    assert convert_schema(schema) == {"type": "integer"}
    assert convert_schema({"type": "string", "format": "uuid"}) == {
        "type": "string",
        "format": "uuid",
    }


def test_exclusive_bounds_openapi_30_style() -> None:
    out = convert_schema({"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 9})
    assert out == {"type": "number", "exclusiveMinimum": 0, "maximum": 9}
    assert not jsonschema_rs.is_valid(out, 0)
    assert jsonschema_rs.is_valid(out, 0.5)


def test_nested_properties_items_and_additional_properties_convert() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "list": {"type": "array", "items": {"type": "string", "nullable": True}},
            "map": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Y"}},
        },
    }
    out = convert_schema(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["list"]["items"]["type"] == ["string", "null"]
    assert out["properties"]["map"]["additionalProperties"] == {"$ref": "#/$defs/Y"}


def test_root_schema_embeds_only_reachable_definitions() -> None:
    components: dict[str, Any] = {
        "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}},
        "B": {"type": "string", "nullable": True},
        "Unrelated": {"type": "integer"},
    }
    defs = convert_components(components)
    assert referenced_names(defs["A"]) == {"B"}
    root = build_root_schema(defs, "A")
    assert set(root["$defs"]) == {"A", "B"}
    assert root["$ref"] == DEFS_REF_PREFIX + "A"
    validator = jsonschema_rs.validator_for(root)
    assert validator.is_valid({"b": None})
    assert not validator.is_valid({"b": 1})


def test_missing_reference_is_reported() -> None:
    defs = convert_components({"A": {"$ref": "#/components/schemas/Gone"}})
    with pytest.raises(KeyError, match="Gone"):
        build_root_schema(defs, "A")
