"""A pytest plugin: no secret of any test may show in any output of the whole suite.

What counts as output: everything a test's phases printed or logged (pytest's captured stdout,
stderr and log records, so structlog's output and every stdlib logger's records at the level
they were emitted), the logs of gateways run as their own processes
(:mod:`tests.gateway_process`), their last ``/metrics`` page, the in-process metrics registry at
the end, and the dead-letter headers the end-to-end helpers read (:func:`note_output`).

What counts as a secret is found at the end, in this session's temporary folder (every dev PKI
and every secret file the tests wrote lives there): API key files, password files, private key
PEM files (three base64 lines of their private half), PFX files (three pieces of their base64),
plus the message-body marker (:data:`SECRET_BODY_MARKER`) tests put in bodies. Inputs are never
scanned, so a test that feeds a secret in to check it is redacted does not trip the scan, but its
output does if the redaction fails.

Cheap: captured text is appended to a spool file while the tests run (nothing is kept in memory),
and scanned once at the end with ``str.__contains__`` per secret (C speed): a few seconds for
the whole suite. Leaks fail the session (exit status 1) and are listed by test and secret
(never the secret's value). Not covered: output of tests run with ``-s`` (nothing is captured),
and subprocess output other than the gateway processes' logs.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

SECRET_BODY_MARKER = "body-marker-3f9a61c2d8"
"""Put in a message body's free text by tests: no log, metric or header may ever show it."""

_SAMPLES = 3  # lines of a key / pieces of a PFX: a whole leak shows all of them
_MIN_SECRET = 12  # shorter file contents are test placeholders, not secrets
_SEPARATOR = "\0\0dcpgw-secrets-scan\0\0"


@dataclass
class _State:
    spool: Path | None = None
    logs: list[Path] = field(default_factory=list)
    latest: dict[str, str] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)
    summary: str = ""


_state = _State()


def note_output(where: str, text: str) -> None:
    """Scan ``text`` (output of the product that is not captured: dead-letter headers...)."""
    _spool(where, text)


def note_latest(key: str, where: str, text: str) -> None:
    """Scan the last ``text`` noted under ``key`` (a page polled often: only the latest)."""
    _state.latest[key] = f"{where}\n{text}"


def note_log_file(path: Path) -> None:
    """Scan this file at the end (a subprocess's log)."""
    _state.logs.append(path)


def _spool(where: str, text: str) -> None:
    if _state.spool is None or not text:
        return
    with _state.spool.open("a", encoding="utf-8", errors="replace") as out:
        out.write(f"{_SEPARATOR}{where}\n{text}")


def pytest_sessionstart(session: pytest.Session) -> None:
    fd, name = tempfile.mkstemp(prefix="dcpgw-secrets-scan-", suffix=".txt")
    os.close(fd)
    _state.spool = Path(name)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for title, text in report.sections:
        _spool(f"{report.nodeid} ({title})", text)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    spool = _state.spool
    if spool is None:
        return
    started = time.perf_counter()
    try:
        _spool("in-process metrics at the end", generate_latest(REGISTRY).decode())
        for key, text in _state.latest.items():
            _spool(key, text)
        for path in _state.logs:
            if path.is_file():
                _spool(str(path), path.read_text(encoding="utf-8", errors="replace"))
        secrets = dict(_known_secrets(_basetemp(session.config)))
        secrets["message body marker"] = SECRET_BODY_MARKER
        text = spool.read_text(encoding="utf-8", errors="replace")
        _state.leaks = _find_leaks(text, secrets)
        _state.summary = (
            f"secrets scan: {len(secrets)} secrets against {len(text) / 1e6:.1f} MB of output "
            f"({text.count(_SEPARATOR)} pieces) in {time.perf_counter() - started:.1f} s: "
            f"{len(_state.leaks)} leaks"
        )
    finally:
        spool.unlink(missing_ok=True)
        _state.spool = None
    if _state.leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _state.summary:
        terminalreporter.write_line(_state.summary)
    for leak in _state.leaks:
        terminalreporter.write_line(f"SECRET LEAKED: {leak}", red=True)


def _find_leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """``what in where`` for each secret found; ``where`` is the piece's heading."""
    found = []
    for what, value in secrets.items():
        start = text.find(value)
        if start < 0:
            continue
        heading = text.rfind(_SEPARATOR, 0, start)
        where = text[heading + len(_SEPARATOR) : text.find("\n", heading)] if heading >= 0 else "?"
        found.append(f"{what} in {where}")
    return found


def _basetemp(config: pytest.Config) -> Path | None:
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return None
    try:
        return Path(factory.getbasetemp())
    except OSError:
        return None


def _known_secrets(root: Path | None) -> Iterator[tuple[str, str]]:
    """(what, value) of every secret file under ``root``."""
    if root is None or not root.is_dir():
        return
    for path in root.rglob("*"):
        name = path.name
        try:
            if not path.is_file() or path.stat().st_size > 1_000_000:
                continue
            if ".api-key" in name or "password" in name:
                value = path.read_text(encoding="utf-8", errors="replace").strip()
                if len(value) >= _MIN_SECRET:
                    yield f"{path.relative_to(root)}", value
            elif name.endswith(".key"):
                yield from _pem_lines(path, root)
            elif name.endswith((".pfx", ".p12")):
                data = base64.b64encode(path.read_bytes()).decode()
                step = max(len(data) // (_SAMPLES + 1), 1)
                for start in range(step, len(data) - 48, step)[:_SAMPLES]:
                    yield f"{path.relative_to(root)} content at {start}", data[start : start + 48]
        except OSError:
            continue  # removed meanwhile


def _pem_lines(path: Path, root: Path) -> Iterator[tuple[str, str]]:
    text = path.read_text(encoding="ascii", errors="replace")
    if "PRIVATE KEY-----" not in text:
        return
    lines = [line for line in text.splitlines() if len(line) >= 40 and not line.startswith("-")]
    if not lines:
        return
    # From the middle on: the first lines are the ASN.1 header every key of a size shares,
    # then the modulus (public); the private exponent and primes follow.
    picks = sorted({len(lines) // 2, len(lines) * 3 // 4, max(len(lines) - 2, 0)})
    for number in picks:
        yield f"{path.relative_to(root)} line {number}", lines[number]
