"""Micro benchmark: CPU microseconds per offline DIP schema validation.

Run: ``.venv/bin/python load-tests/bench_schema.py [iterations]``

Measures ``time.process_time`` (CPU, not wall clock, so a busy machine distorts it less) over
many validations of one typical payload per interface, best of several rounds, through the
public ``SchemaRegistry.validate`` (selection from S0 + cached compiled validator). For
comparison it also times the document's per-interface ``IF-xxx-Payload`` schema and, when
cheap enough to compile, the 58-way ``DIPMessage`` oneOf that the registry avoids.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import jsonschema_rs

from gateway.schema import default_registry
from gateway.schema.openapi import build_root_schema
from gateway.schema.samples import sample_payload

_ROUNDS = 5


def _cpu_us(fn: Callable[[], object], iterations: int) -> float:
    """Best-of-rounds CPU microseconds per call."""
    best = float("inf")
    for _ in range(_ROUNDS):
        start = time.process_time()
        for _ in range(iterations):
            fn()
        best = min(best, (time.process_time() - start) / iterations * 1e6)
    return best


def _payloads() -> dict[str, dict[str, Any]]:
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    return {
        "IF-021 (48 periods)": sample_payload(
            "IF-021",
            sender_dip_id="1109012345",
            sender_role="ADS",
            recipients=["2300000900"],
            seq=42,
            now=now,
        ),
        "IF-043": sample_payload(
            "IF-043",
            sender_dip_id="1009012345",
            sender_role="REGS",
            recipients=["2300000900"],
            seq=42,
            now=now,
        ),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "iterations", nargs="?", type=int, default=20_000, help="validations per round"
    )
    iterations = parser.parse_args(argv[1:]).iterations
    registry = default_registry()
    defs = registry._defs  # benchmark-only peek, to build the comparison validators
    print(f"CPU us per validation, best of {_ROUNDS} x {iterations}")
    for label, payload in _payloads().items():
        assert registry.validate(payload) == [], label
        us = _cpu_us(partial(registry.validate, payload), iterations)
        print(f"  {label:22} registry.validate        {us:8.2f} us")

        iface = payload["CommonBlock"]["S0"]["interfaceID"]
        umbrella = jsonschema_rs.validator_for(
            build_root_schema(defs, f"{iface}-Payload"), validate_formats=False
        )
        us = _cpu_us(partial(umbrella.is_valid, payload), iterations)
        print(f"  {label:22} {iface}-Payload is_valid  {us:8.2f} us")

    start = time.process_time()
    one_of = jsonschema_rs.validator_for(
        {**build_root_schema(defs, "DIPMessage"), "$ref": "#/$defs/DIPMessage"},
        validate_formats=False,
    )
    compile_ms = (time.process_time() - start) * 1e3
    print(f"  DIPMessage oneOf compile: {compile_ms:.0f} ms CPU")
    for label, payload in _payloads().items():
        wrapped = {"payload": payload}
        us = _cpu_us(partial(one_of.is_valid, wrapped), max(iterations // 10, 100))
        print(f"  {label:22} DIPMessage oneOf         {us:8.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
