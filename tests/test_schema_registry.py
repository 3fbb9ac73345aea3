"""SchemaRegistry against the published DIP OpenAPI 2.2.1 document."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import pytest

from gateway.schema import (
    SCHEMA_FAILURE,
    SchemaRegistry,
    SchemaViolation,
    UnknownInterface,
    default_registry,
    dip_schema_failure,
    format_violations,
)
from gateway.schema.samples import sample_payload


def _document() -> dict[str, Any]:
    text = resources.files("gateway").joinpath("data/dip-openapi-2.2.1.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


DOCUMENT = _document()
VALIDATE_ENDPOINTS = [
    tuple(path.split("/")[2:4]) for path in DOCUMENT["paths"] if path.startswith("/validate/")
]


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return default_registry()


def _if043(seq: int = 7) -> dict[str, Any]:
    return sample_payload(
        "IF-043",
        sender_dip_id="1009012345",
        sender_role="REGS",
        recipients=["2300000900"],
        seq=seq,
        dcp_id="1009012346",
    )


def _if021(seq: int = 7) -> dict[str, Any]:
    return sample_payload(
        "IF-021",
        sender_dip_id="1109012345",
        sender_role="ADS",
        recipients=["2300000900"],
        seq=seq,
    )


# ----------------------------------------------------------------------------- the table


def test_document_has_127_validate_endpoints() -> None:
    assert len(VALIDATE_ENDPOINTS) == 127


def test_interfaces_lists_exactly_the_validate_endpoints(registry: SchemaRegistry) -> None:
    assert sorted(registry.interfaces()) == sorted(VALIDATE_ENDPOINTS)


def test_unlisted_schemas_are_selectable_too(registry: SchemaRegistry) -> None:
    extra = set(registry.interfaces(include_unlisted=True)) - set(VALIDATE_ENDPOINTS)
    assert ("IF-016", "ActivePower") in extra
    assert ("IF-047", "ISD") in extra
    assert ("REP-002", "DUOSSupplierAggData") in extra
    assert all(event is not None for _, event in extra)


@pytest.mark.parametrize(("interface_id", "event"), VALIDATE_ENDPOINTS)
def test_every_validate_endpoint_schema_compiles(
    registry: SchemaRegistry, interface_id: str, event: str
) -> None:
    endpoint = DOCUMENT["paths"][f"/validate/{interface_id}/{event}"]
    body = endpoint["post"]["requestBody"]["content"]["application/json"]["schema"]
    expected_name = body["items"]["properties"]["payload"]["$ref"].rsplit("/", 1)[1]
    assert registry.schema_name(interface_id, event) == expected_name
    schema = registry.endpoint_schema(interface_id, event)
    assert schema["$ref"] == f"#/$defs/{expected_name}"
    # Compiles, and an empty object is rejected for lacking the CommonBlock (a few messages,
    # e.g. IF-015 and the IF-038/039 removals, have no required CustomBlock).
    violations = registry.validate_for(interface_id, event, {})
    assert ("$.CommonBlock", "required") in {(v.path, v.rule) for v in violations}


def test_compile_all_covers_unlisted_schemas(registry: SchemaRegistry) -> None:
    assert registry.compile_all(include_unlisted=True) > registry.compile_all()


def test_endpoint_schema_is_a_private_copy(registry: SchemaRegistry) -> None:
    first = registry.endpoint_schema("IF-043", "ConnectionTypeChange")
    first["$defs"].clear()
    assert registry.endpoint_schema("IF-043", "ConnectionTypeChange")["$defs"]


def test_endpoint_schema_unknown_endpoint(registry: SchemaRegistry) -> None:
    with pytest.raises(UnknownInterface, match="/validate/IF-016/ActivePower"):
        registry.endpoint_schema("IF-016", "ActivePower")


def test_default_registry_is_a_singleton() -> None:
    assert default_registry() is default_registry()


# ----------------------------------------------------------------------------- selection


def test_valid_payload_gives_no_violations_twice(registry: SchemaRegistry) -> None:
    payload = _if043()
    assert registry.validate(payload) == []
    assert registry.validate(payload) == []  # second call takes the cached fast path


def test_validate_for_accepts_bare_and_bracketed_events(registry: SchemaRegistry) -> None:
    payload = _if043()
    assert registry.validate_for("IF-043", "ConnectionTypeChange", payload) == []
    assert registry.validate_for("IF-043", "[ConnectionTypeChange]", payload) == []
    assert registry.validate_for("IF-043", None, payload) == []  # one schema for the interface


def test_event_none_on_multi_schema_interface_needs_event(registry: SchemaRegistry) -> None:
    violations = registry.validate_for("IF-001", None, {})
    assert [(v.path, v.rule) for v in violations] == [("$.CommonBlock.S0.eventCode", "required")]


def test_unknown_interface_raises_with_reason(registry: SchemaRegistry) -> None:
    payload = _if043()
    payload["CommonBlock"]["S0"]["interfaceID"] = "IF-999"
    with pytest.raises(UnknownInterface, match="IF-999") as info:
        registry.validate(payload)
    assert info.value.interface_id == "IF-999"


def test_missing_s0_raises_unknown_interface(registry: SchemaRegistry) -> None:
    with pytest.raises(UnknownInterface, match=r"CommonBlock\.S0\.interfaceID"):
        registry.validate({"CommonBlock": {}, "CustomBlock": {}})


def test_unknown_event_of_multi_schema_interface_is_an_enum_violation(
    registry: SchemaRegistry,
) -> None:
    payload = {"CommonBlock": {"S0": {"interfaceID": "IF-003", "eventCode": "[Nope]"}}}
    (violation,) = registry.validate(payload)
    assert (violation.path, violation.rule) == ("$.CommonBlock.S0.eventCode", "enum")
    assert "[MSDeAppRM]" in violation.message


def test_unknown_event_of_single_schema_interface_uses_that_schema(
    registry: SchemaRegistry,
) -> None:
    payload = _if043()
    payload["CommonBlock"]["S0"]["eventCode"] = "[Nope]"
    violations = registry.validate(payload)
    assert [(v.path, v.rule) for v in violations] == [("$.CommonBlock.S0.eventCode", "enum")]


def test_wrong_s0_key_case_selects_schema_and_is_reported(registry: SchemaRegistry) -> None:
    payload = _if021()
    s0 = payload["CommonBlock"]["S0"]
    s0["InterfaceID"] = s0.pop("interfaceID")
    violations = registry.validate(payload)
    assert {(v.path, v.rule) for v in violations} == {
        ("$.CommonBlock.S0.interfaceID", "required"),
        ("$.CommonBlock.S0.InterfaceID", "additionalProperties"),
    }


# ----------------------------------------------------------------------------- mutations


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: list[str | int]) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


PERIOD: list[str | int] = [
    "CustomBlock",
    "B900",
    "settlementDayConsumptionPeriods",
    0,
    "consumptionPeriods",
    3,
]
PERIOD_PATH = "$.CustomBlock.B900.settlementDayConsumptionPeriods[0].consumptionPeriods[3]"

MUTATIONS: list[tuple[str, str, Callable[[dict[str, Any]], None], set[tuple[str, str]]]] = [
    (
        "missing required",
        "IF-043",
        _delete(["CommonBlock", "S1", "senderDIPID"]),
        {("$.CommonBlock.S1.senderDIPID", "required")},
    ),
    (
        "missing required block",
        "IF-043",
        _delete(["CustomBlock", "B023"]),
        {("$.CustomBlock.B023", "required")},
    ),
    (
        "wrong enum",
        "IF-043",
        _set(["CommonBlock", "S1", "environmentTag"], "PROD"),
        {("$.CommonBlock.S1.environmentTag", "enum")},
    ),
    (
        "wrong pattern",
        "IF-043",
        _set(["CommonBlock", "S1", "senderUniqueReference"], "S-IF-043-nothex-REGS-1-1"),
        {("$.CommonBlock.S1.senderUniqueReference", "pattern")},
    ),
    (
        "wrong MPAN pattern, right length",
        "IF-043",
        _set(["CommonBlock", "M0", "MPANCore"], "20000565359AB"),
        {("$.CommonBlock.M0.MPANCore", "pattern")},
    ),
    (
        "extra property where additionalProperties is false",
        "IF-043",
        _set(["CommonBlock", "S1", "senderDIPId"], "1009012345"),
        {("$.CommonBlock.S1.senderDIPId", "additionalProperties")},
    ),
    (
        "null where not nullable",
        "IF-043",
        _set(["CommonBlock", "S1", "senderDIPID"], None),
        {("$.CommonBlock.S1.senderDIPID", "type")},
    ),
    (
        "wrong type (boolean as string)",
        "IF-043",
        _set(["CustomBlock", "B023", "meteredIndicator"], "true"),
        {("$.CustomBlock.B023.meteredIndicator", "type")},
    ),
    (
        "too short",
        "IF-043",
        _set(["CommonBlock", "S1", "senderTimestamp"], "2026-03-01T09:30:00Z"),
        {("$.CommonBlock.S1.senderTimestamp", "minLength")},
    ),
    (
        "too long",
        "IF-043",
        _set(["CommonBlock", "S1", "senderRoleID"], "REGSXX"),
        {("$.CommonBlock.S1.senderRoleID", "maxLength")},
    ),
    (
        "deep enum in a period",
        "IF-021",
        _set([*PERIOD, "q"], "Z"),
        {(f"{PERIOD_PATH}.q", "enum")},
    ),
    (
        "deep pattern in a period",
        "IF-021",
        _set([*PERIOD, "v"], "1.5"),
        {(f"{PERIOD_PATH}.v", "pattern")},
    ),
    (
        "nullable enum given a value outside it",
        "IF-021",
        _set([*PERIOD, "e"], "99"),
        {(f"{PERIOD_PATH}.e", "enum")},
    ),
    (
        "maximum",
        "IF-021",
        _set(
            [*PERIOD[:4], "settlementDay", "periodDuration"],
            60,
        ),
        {
            (
                "$.CustomBlock.B900.settlementDayConsumptionPeriods[0].settlementDay"
                ".periodDuration",
                "maximum",
            )
        },
    ),
]


@pytest.mark.parametrize(
    ("interface_id", "mutate", "expected"),
    [pytest.param(i, m, e, id=name) for name, i, m, e in MUTATIONS],
)
def test_mutation_fails_with_path_and_rule(
    registry: SchemaRegistry,
    interface_id: str,
    mutate: Callable[[dict[str, Any]], None],
    expected: set[tuple[str, str]],
) -> None:
    payload = _if043() if interface_id == "IF-043" else _if021()
    assert registry.validate(payload) == []
    mutate(payload)
    violations = registry.validate(payload)
    assert {(v.path, v.rule) for v in violations} == expected


@pytest.mark.parametrize(
    "path",
    [
        ["CommonBlock", "S1", "senderCorrelationID"],
        ["CommonBlock", "S1", "DIPConnectionProviderID"],
        ["CommonBlock", "S1", "subText"],
        [*PERIOD, "arc"],
        [*PERIOD, "e"],
    ],
)
def test_null_where_nullable_is_accepted(registry: SchemaRegistry, path: list[str | int]) -> None:
    payload = _if021()
    _set(path, None)(payload)
    assert registry.validate(payload) == []


def test_messages_are_short_and_show_the_value(registry: SchemaRegistry) -> None:
    payload = _if043()
    payload["CommonBlock"]["S1"]["subText"] = "x" * 5000
    payload["CommonBlock"]["S1"]["senderDIPID"] = "12"
    violations = registry.validate(payload)
    by_path = {v.path: v for v in violations}
    long_text = by_path["$.CommonBlock.S1.subText"]
    assert long_text.rule == "maxLength"
    assert len(long_text.message) < 150
    assert "..." in long_text.message
    assert by_path["$.CommonBlock.S1.senderDIPID"].message == "'12' is shorter than 10 characters"


def test_violations_are_capped_for_huge_invalid_messages(registry: SchemaRegistry) -> None:
    payload = _if021()
    day = payload["CustomBlock"]["B900"]["settlementDayConsumptionPeriods"][0]
    for period in day["consumptionPeriods"]:
        period["q"] = "bad"
        period["v"] = "bad"
    violations = registry.validate(payload)
    assert 0 < len(violations) <= 50


def test_whole_body_never_in_a_message(registry: SchemaRegistry) -> None:
    payload = _if021()
    payload["CustomBlock"] = []  # an array where an object is required
    (violation,) = registry.validate(payload)
    assert (violation.path, violation.rule) == ("$.CustomBlock", "type")
    payload["CustomBlock"] = {"B900": "x" * 10_000}
    assert all(len(v.message) <= 200 for v in registry.validate(payload))


# ----------------------------------------------------------------------------- rendering


def test_format_violations_one_line_and_capped() -> None:
    violations = [
        SchemaViolation(f"$.CommonBlock.S1.f{i}", "pattern", f"'{i}' does not match '^x$'")
        for i in range(100)
    ]
    line = format_violations(violations, limit=300)
    assert line.startswith(f"{SCHEMA_FAILURE}: $.CommonBlock.S1.f0: pattern: '0' does not match")
    assert "\n" not in line
    assert len(line) <= 300
    assert re.search(r"\(\+\d+ more\)$", line)
    assert format_violations(violations[:1]) == (
        "MSG1001 - Schema Failure: $.CommonBlock.S1.f0: pattern: '0' does not match '^x$'"
    )


def test_dip_schema_failure_names_path_rule_value() -> None:
    status, help_text = dip_schema_failure(
        [SchemaViolation("$.CommonBlock.S1.senderDIPID", "minLength", "'12' is too short")]
    )
    assert status == "MSG1001 - Schema Failure"
    assert "$.CommonBlock.S1.senderDIPID" in help_text
    assert "minLength" in help_text
    assert "'12'" in help_text


# ----------------------------------------------------------------------------- the examples

# The document's 9 examples as they validate today. They are partly stale: S0 key casing
# (InterfaceID / interfaceId), IF-021's S1 keys and B900List/periodDuration, IF-001/IF-002/IF-037
# custom blocks (CSSRegistrationID, supplierEffectiveFromDate, 4-digit SSC, B035List/B037List),
# IF-003's event code, REP-002's schemaVersion 006 and an event code from REP-002B.
# An empty set means "valid". The recorded set is asserted exactly: a change either way (the
# document fixed, or our conversion drifting) shows up here.
S0_CASE = {("$.CommonBlock.S0.interfaceID", "required")}
S0_CASE_CLOSED = S0_CASE | {("$.CommonBlock.S0.InterfaceID", "additionalProperties")}
EXAMPLE_RECORD: dict[str, set[tuple[str, str]]] = {
    "IF-001-InitialRegistration": {
        ("$.CustomBlock.B013.CSSRegistrationID", "required"),
        ("$.CustomBlock.B002.supplierEffectiveFromDate", "required"),
        ("$.CustomBlock.B002.incomingSupplierEffectiveFromDate", "additionalProperties"),
        ("$.CustomBlock.B032.SSC", "minLength"),
        ("$.CustomBlock.B032.SSC", "pattern"),
        ("$.CustomBlock.B035List", "type"),
        ("$.CustomBlock.B037List", "type"),
    },
    "IF-001-ChangeOfSupplier": S0_CASE
    | {
        ("$.CustomBlock.B013.CSSRegistrationID", "required"),
        ("$.CustomBlock.B002.supplierEffectiveFromDate", "required"),
        ("$.CustomBlock.B002.incomingSupplierEffectiveFromDate", "additionalProperties"),
        ("$.CustomBlock.B003.supplierEffectiveToDate", "required"),
        ("$.CustomBlock.B003.outgoingSupplierEffectiveToDate", "additionalProperties"),
        ("$.CustomBlock.B032.SSC", "minLength"),
        ("$.CustomBlock.B032.SSC", "pattern"),
    },
    "IF-002": S0_CASE_CLOSED
    | {
        ("$.CustomBlock.B013.CSSRegistrationID", "required"),
        ("$.CustomBlock.B032.SSC", "minLength"),
        ("$.CustomBlock.B032.SSC", "pattern"),
        ("$.CustomBlock.B035List", "additionalProperties"),
        ("$.CustomBlock.B037List", "additionalProperties"),
    },
    # eventCode [MSDeApp] is IF-037's; IF-003 has three schemas, so no schema is chosen.
    "IF-003-MSDeAppRM": {("$.CommonBlock.S0.eventCode", "enum")},
    "IF-021": {
        ("$.CommonBlock.S0.interfaceID", "required"),
        ("$.CommonBlock.S0.interfaceId", "additionalProperties"),
        ("$.CommonBlock.S1.environmentTag", "required"),
        ("$.CommonBlock.S1.senderTimestamp", "required"),
        ("$.CommonBlock.S1.senderDIPID", "required"),
        ("$.CommonBlock.S1.senderCorrelationID", "required"),
        ("$.CommonBlock.S1.DIPConnectionProviderID", "required"),
        ("$.CommonBlock.S1.senderRoleID", "required"),
        ("$.CommonBlock.S1.environment", "additionalProperties"),
        ("$.CommonBlock.S1.sentTimestamp", "additionalProperties"),
        ("$.CommonBlock.S1.senderDIPId", "additionalProperties"),
        ("$.CommonBlock.S1.senderRole", "additionalProperties"),
        ("$.CommonBlock.S1.senderCorrelationId", "additionalProperties"),
        ("$.CommonBlock.S1.DIPConnectionProviderId", "additionalProperties"),
        ("$.CustomBlock.B900", "required"),
        ("$.CustomBlock.B900List", "additionalProperties"),
    },
    "IF-037-MSDeApp": S0_CASE_CLOSED
    | {
        ("$.CustomBlock.B013.CSSRegistrationID", "required"),
        ("$.CustomBlock.B002.supplierEffectiveFromDate", "required"),
        ("$.CustomBlock.B002.incomingSupplierEffectiveFromDate", "additionalProperties"),
    },
    # Only the S0 key casing is wrong (IF-043's S0 does not forbid extra keys).
    "IF-043": S0_CASE,
    "IF-044": S0_CASE_CLOSED,
    "REP-002": S0_CASE_CLOSED
    | {
        ("$.CommonBlock.S0.schemaVersion", "enum"),
        ("$.CommonBlock.S0.eventCode", "enum"),
        ("$.CustomBlock.schema['REP-002-CustomBlock']", "additionalProperties"),
    },
}
# With the S0 key casing normalised, exactly these validate.
VALID_ONCE_S0_CASE_FIXED = {"IF-043", "IF-044"}


def _example_payloads(name: str) -> Iterator[dict[str, Any]]:
    value = DOCUMENT["components"]["examples"][name]["value"]
    for item in value if isinstance(value, list) else [value]:
        yield copy.deepcopy(item["payload"])


def test_record_covers_all_nine_examples() -> None:
    assert set(DOCUMENT["components"]["examples"]) == set(EXAMPLE_RECORD)
    assert len(EXAMPLE_RECORD) == 9


@pytest.mark.parametrize("name", sorted(EXAMPLE_RECORD))
def test_published_example_outcome_matches_record(registry: SchemaRegistry, name: str) -> None:
    for payload in _example_payloads(name):
        found = {(v.path, v.rule) for v in registry.validate(payload)}
        assert found == EXAMPLE_RECORD[name]


@pytest.mark.parametrize("name", sorted(EXAMPLE_RECORD))
def test_example_with_s0_case_fixed(registry: SchemaRegistry, name: str) -> None:
    for payload in _example_payloads(name):
        s0 = payload["CommonBlock"]["S0"]
        for key in [k for k in s0 if k.lower() == "interfaceid"]:
            s0["interfaceID"] = s0.pop(key)
        assert (registry.validate(payload) == []) is (name in VALID_ONCE_S0_CASE_FIXED)


def test_junk_event_codes_do_not_grow_the_fast_path_cache() -> None:
    registry = SchemaRegistry()
    registry.validate(_if043())
    cached = len(registry._fast)
    for i in range(100):
        payload = _if043()
        payload["CommonBlock"]["S0"]["eventCode"] = f"[Junk{i}]"
        assert [v.rule for v in registry.validate(payload)] == ["enum"]
    assert len(registry._fast) == cached == 1
