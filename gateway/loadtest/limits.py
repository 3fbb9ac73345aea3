"""This machine's limits, measured in the same run as the gateway: raw RSA signing with
the clients' own keys, and a naive consume-sign-POST-commit loop (``load-tests/``)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.config import GatewayConfig
from gateway.keys import build_keystore

#: The naive baseline, kept with the benchmarks (it is not part of the product).
BASELINE_SCRIPT = Path(__file__).resolve().parents[2] / "load-tests" / "naive_baseline.py"


@dataclass(frozen=True)
class RawSigning:
    bits: int  # the RSA key size of the clients' keys (the dev PKI's --bits)
    threads: int
    signatures_per_second_1: float
    cpu_ms_per_signature_1: float
    signatures_per_second_n: float
    cpu_ms_per_signature_n: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def raw_signing(config: GatewayConfig, seconds: float, threads: int = 0) -> RawSigning:
    """``SigningCredential.sign`` of a 1 KB body with the first client's key: on one thread,
    then on ``threads`` (default: every CPU) at once. OpenSSL releases the GIL while it signs."""
    credential = build_keystore(config).signer_for(config.clients[0].dip_ids[0].dip_id)
    url = str(config.dip.base_url).rstrip("/") + "/dip-channel/IF-043"
    body = b"[" + b"x" * 1022 + b"]"
    now = datetime.now(UTC)
    credential.sign("POST", url, body, now)  # warm up (blinding, lazy OpenSSL state)

    def loop(deadline: float) -> int:
        count = 0
        while time.perf_counter() < deadline:
            credential.sign("POST", url, body, now)
            count += 1
        return count

    n = threads or os.cpu_count() or 1
    figures: list[tuple[float, float]] = []
    for width in (1, n):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(width) as pool:
            done = sum(pool.map(loop, [wall0 + seconds] * width))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        figures.append((done / wall, cpu / done * 1000))
    (rate1, cpu1), (rate_n, cpu_n) = figures
    return RawSigning(credential.key_bits, n, rate1, cpu1, rate_n, cpu_n)


@dataclass(frozen=True)
class Baseline:
    messages: int
    seconds: float
    cpu_seconds: float
    statuses: dict[str, int]

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "messages_per_second": self.messages_per_second}


async def naive_baseline(config_path: Path, count: int, script: Path = BASELINE_SCRIPT) -> Baseline:
    """Run the naive loop over ``count`` records already in the config's outbound topic."""
    if not await asyncio.to_thread(script.is_file):
        raise FileNotFoundError(f"{script} (the naive baseline lives in a source checkout)")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "--config",
        str(config_path),
        "--count",
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"naive baseline failed ({proc.returncode}): {err.decode()[-1500:]}")
    doc = orjson.loads(out.decode().strip().splitlines()[-1])
    return Baseline(doc["messages"], doc["seconds"], doc["cpu_seconds"], doc["statuses"])
