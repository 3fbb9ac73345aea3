"""Opening the clients' signing keys: at start-up, and while the event loop runs (a rotation).

Each RSA-4096 PFX costs ~0.25 s of CPU to open (OpenSSL checks the key) with the GIL held. This
prints, in one run: the wall time to open ``--files`` PFX files in this process and in worker
processes (``gateway.signing.loading``), and the event loop's longest stall while one file is
reopened through ``asyncio.to_thread`` in this process, then in a worker (what a rotation did
before, and does now).

    .venv/bin/python load-tests/bench_key_loading.py [--files 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.signing.loading import (  # noqa: E402
    CredentialFiles,
    Loaded,
    load_here,
    load_in_workers,
)
from gateway.signing.pki import Purpose, create_ca, issue, pfx_bytes  # noqa: E402

Opener = Callable[[Sequence[CredentialFiles]], list[Loaded]]


def _pfx_files(folder: Path, count: int, distinct: int = 4) -> list[CredentialFiles]:
    """``count`` files over ``distinct`` RSA-4096 keys (the check costs the same for each)."""
    ca = create_ca("bench CA", bits=2048)
    keys = [issue(ca, f"signer-{i}.example", Purpose.SIGNING, bits=4096) for i in range(distinct)]
    files = []
    for i in range(count):
        path = folder / f"signer-{i}.pfx"
        path.write_bytes(pfx_bytes(keys[i % distinct].key, keys[i % distinct].cert))
        files.append(CredentialFiles(path))
    return files


def _wall(open_: Opener, files: Sequence[CredentialFiles]) -> float:
    started = time.perf_counter()
    results = open_(files)
    assert not any(isinstance(r, Exception) for r in results), results
    return time.perf_counter() - started


async def _longest_stall(open_: Opener, files: Sequence[CredentialFiles]) -> float:
    """The loop's longest late wake-up (1 ms timers) while ``open_`` runs in a thread."""
    worst = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - before - 0.001)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    await asyncio.to_thread(open_, files)
    done.set()
    await ticker
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16, help="PFX files opened at start-up")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        files = _pfx_files(Path(folder), args.files)
        print(f"{args.files} RSA-4096 PFX files, {os.cpu_count()} CPUs")
        for round_ in range(1, args.rounds + 1):
            here, workers = _wall(load_here, files), _wall(load_in_workers, files)
            stall_here = asyncio.run(_longest_stall(load_here, files[:1]))
            stall_workers = asyncio.run(_longest_stall(load_in_workers, files[:1]))
            print(
                f"round {round_}: start-up {here:.2f} s here, {workers:.2f} s in workers "
                f"({here / workers:.2f}x); one reload stalls the loop {1000 * stall_here:.0f} ms "
                f"here, {1000 * stall_workers:.1f} ms in a worker"
            )


if __name__ == "__main__":
    main()
