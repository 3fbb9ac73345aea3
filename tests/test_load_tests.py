"""The benchmarks under load-tests/ still run: every script parses its options, and the pure
ones run a tiny workload and print their figures (no timing is asserted: figures come from the
benchmarks themselves, on purpose not from tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

LOAD_TESTS = Path(__file__).resolve().parent.parent / "load-tests"
SCRIPTS = sorted(LOAD_TESTS.glob("bench_*.py"))


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=LOAD_TESTS.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_benchmark_is_found() -> None:
    names = {s.name for s in SCRIPTS}
    assert {"bench_egress.py", "bench_egress_core.py", "bench_signing.py"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_and_parses_its_options(script: Path) -> None:
    assert "usage:" in _run(str(script), "--help")


def test_the_apache_kafka_launcher_parses_its_options() -> None:
    assert "--bootstrap-file" in _run(str(LOAD_TESTS / "apache_kafka.py"), "--help")


def _figure(out: str, line: str) -> float:
    """The first number a line of ``out`` matching ``line`` (a regex, one group) prints."""
    match = re.search(line, out, re.MULTILINE)
    assert match is not None, out
    return float(match.group(1))


def test_egress_core_prints_cpu_per_message_for_every_stage() -> None:
    out = _run(str(LOAD_TESTS / "bench_egress_core.py"), "--messages", "50", "--rounds", "1")
    for stage in ("ingest", "outcome", "parking"):
        assert _figure(out, rf"^{stage}\s+([0-9.]+) us CPU/msg") > 0


def test_schema_benchmark_prints_a_figure_per_payload() -> None:
    out = _run(str(LOAD_TESTS / "bench_schema.py"), "20")
    assert len(re.findall(r"registry\.validate\s+[0-9.]+ us", out)) == 2, out


def test_handoff_benchmark_prints_both_hand_offs() -> None:
    out = _run(str(LOAD_TESTS / "bench_handoff.py"), "--jobs", "40", "--rounds", "1")
    for name in ("run_in_executor", "SigningPool.run"):
        assert _figure(out, rf"^{re.escape(name)}\s+([0-9.]+)\s+[0-9.]+$") > 0
    assert re.search(r"SigningPool / run_in_executor \(medians\): [0-9.]+$", out, re.MULTILINE)
