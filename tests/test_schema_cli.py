"""`dcp-gateway validate`: exit codes and output."""

from __future__ import annotations

import argparse
import importlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import validate_command
from gateway.schema.samples import sample_payload


def _run(argv: list[str]) -> int:
    """Run through a parser built exactly like gateway.cli.build_parser does for this command.

    Not via ``gateway.cli.main``: that imports every command module, and the test of this
    command should not depend on the others (``test_registered_in_main_cli`` covers wiring).
    """
    parser = argparse.ArgumentParser(prog="dcp-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    validate_command.register(sub)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def _payload(seq: int = 1) -> dict[str, Any]:
    return sample_payload(
        "IF-043", sender_dip_id="1009012345", sender_role="REGS", recipients=["2300000900"], seq=seq
    )


def _write(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "in.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_valid_payload_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["validate", _write(tmp_path, _payload())]) == 0
    assert capsys.readouterr().out == "1 of 1 valid\n"


def test_array_of_wrappers_with_one_invalid_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _payload(2)
    del bad["CommonBlock"]["S1"]["senderDIPID"]
    bad["CommonBlock"]["M0"]["MPANCore"] = "12"
    ref = bad["CommonBlock"]["S1"]["senderUniqueReference"]
    body = [{"payload": _payload(1)}, {"payload": bad}]
    assert _run(["validate", _write(tmp_path, body)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"[1] {ref}: $.CommonBlock.S1.senderDIPID: required: 'senderDIPID' is missing" in lines
    assert (
        f"[1] {ref}: $.CommonBlock.M0.MPANCore: minLength: '12' is shorter than 13 characters"
        in (lines)
    )
    assert not any(line.startswith("[0]") for line in lines)
    assert lines[-1] == "1 of 2 valid"


def test_unknown_interface_and_non_object_are_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = _payload()
    unknown["CommonBlock"]["S0"]["interfaceID"] = "IF-999"
    assert _run(["validate", _write(tmp_path, [unknown, 42])]) == 1
    out = capsys.readouterr().out
    assert "unknown-interface: no DIP schema for interface 'IF-999'" in out
    assert "[1]: $: type: message is not a JSON object" in out


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"payload": _payload()})))
    assert _run(["validate", "-"]) == 0
    assert "1 of 1 valid" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["{not json", "", "\udc80"])
def test_malformed_json_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "in.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert _run(["validate", str(path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["validate", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_registered_in_main_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = importlib.import_module("gateway.cli")
    assert "gateway.cli.validate_command" in cli._COMMAND_MODULES
    try:
        code = cli.main(["validate", _write(tmp_path, _payload())])
    except ModuleNotFoundError as exc:  # another team's command module not landed yet
        pytest.skip(f"gateway.cli cannot import all commands yet: {exc}")
    assert code == 0
    assert "1 of 1 valid" in capsys.readouterr().out
