"""Instruction counts for the ``*_core`` benchmarks: the calling script re-run under callgrind.

Only what runs inside ``functools.reduce`` is collected (``--toggle-collect``), so a script
wraps its measured call in ``functools.reduce`` and everything else (imports, set-up) is left
out. The hash seed is fixed: with a random one, set and dict layouts (and so the count) move by
a few per cent between runs of the same code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def instructions(script: str, args: list[str], tag: str) -> int:
    """Instructions collected while ``python script *args`` ran under callgrind."""
    out = Path(f"/tmp/{tag}-{os.getpid()}.callgrind")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--toggle-collect=functools_reduce*",
        f"--callgrind-out-file={out}",
        sys.executable,
        script,
        *args,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    out.unlink(missing_ok=True)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))
