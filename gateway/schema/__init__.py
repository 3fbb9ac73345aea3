"""Offline validation of DIP message payloads against the published DIP OpenAPI schemas.

``default_registry().validate(payload)`` returns ``[]`` for a schema-valid payload and a list
of :class:`SchemaViolation` otherwise; :func:`format_violations` turns them into the one-line
``MSG1001 - Schema Failure: ...`` reason used for dead-lettering.
"""

from gateway.schema.registry import (
    SCHEMA_FAILURE,
    SchemaRegistry,
    SchemaViolation,
    UnknownInterface,
    default_registry,
    dip_schema_failure,
    format_violations,
)

__all__ = [
    "SCHEMA_FAILURE",
    "SchemaRegistry",
    "SchemaViolation",
    "UnknownInterface",
    "default_registry",
    "dip_schema_failure",
    "format_violations",
]
