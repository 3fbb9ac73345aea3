"""promtool (Prometheus's checker) for the tests of metrics, alert rules and the dashboard.

Found as ``$PROMTOOL``, on ``PATH`` or at Debian's ``/usr/bin/promtool``; when missing and the
tests run as root on Debian/Ubuntu, installed once with ``apt-get install prometheus`` (the
package that ships it). Only when none of that works are the tests skipped, saying why.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

APT_COMMAND = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]


@functools.cache
def _locate() -> tuple[str | None, str]:
    """(path, why not) of a working promtool."""
    for candidate in (os.environ.get("PROMTOOL"), shutil.which("promtool"), "/usr/bin/promtool"):
        if candidate and Path(candidate).is_file():
            return candidate, ""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None, (
            "promtool not found (set PROMTOOL, or as root: apt-get update && "
            f"{' '.join(APT_COMMAND)}); cannot install it here (needs root and apt-get)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], APT_COMMAND):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"promtool not found and `{' '.join(command)}` failed: {done.stderr}"
    found = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(found).is_file():
        return None, "apt-get installed prometheus but promtool is not on PATH"
    return found, ""


def promtool() -> str:
    """The promtool executable, or skip the calling test with the reason."""
    path, why = _locate()
    if path is None:
        pytest.skip(why)
    return path


def run_promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run ``promtool args``; fail the test with its output when it finds problems."""
    done = subprocess.run(
        [promtool(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output
