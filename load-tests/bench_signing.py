"""RSA-4096 signing throughput: the gateway's signing module against raw ``cryptography``.

Every DIP request is signed with a 4096-bit key, so signing is the gateway's CPU floor. What
this benchmark answers is not the absolute rate (that is the machine's) but the overhead of our
wrapper (hashing the body, formatting the date, building the string to sign, base64) relative
to the bare RSA operation measured in the same run with the same key, single-threaded and over
all cores (OpenSSL releases the GIL while signing, so threads should scale with cores).

    .venv/bin/python load-tests/bench_signing.py --seconds 5
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from gateway.signing.credentials import SigningCredential
from gateway.signing.pki import Purpose, create_ca, issue
from gateway.signing.scheme import content_hash, format_signature_date, string_to_sign

URL = "https://api.uit.dip.example/dip-channel/IF-021"


@dataclass(frozen=True)
class Result:
    label: str
    threads: int
    signatures: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.signatures / self.wall_seconds

    @property
    def cpu_ms_per_signature(self) -> float:
        return 1000.0 * self.cpu_seconds / self.signatures


def _body(size: int = 1024) -> bytes:
    item = (
        b'{"payload":{"CommonBlock":{"S0":{"interfaceID":"IF-021","schemaVersion":"011",'
        b'"eventCode":"[UTCSettlementPeriodConsumptionData]"},"S1":{"environmentTag":"UIT",'
        b'"senderDIPID":"1401234567","senderRoleID":"SDS"}},"CustomBlock":{"pad":"'
    )
    return b"[" + item + b"x" * (size - len(item) - 5) + b'"}}]'


def _loop(op: Callable[[], object], deadline: float) -> int:
    count = 0
    while time.perf_counter() < deadline:
        op()
        count += 1
    return count


def _measure_once(op: Callable[[], object], seconds: float, threads: int) -> Result:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    if threads == 1:
        total = _loop(op, deadline)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            total = sum(pool.map(lambda _: _loop(op, deadline), range(threads)))
    wall = time.perf_counter() - wall0
    return Result("", threads, total, wall, time.process_time() - cpu0)


def _measure_pair(
    ops: dict[str, Callable[[], object]], seconds: float, threads: int, slice_seconds: float = 0.5
) -> list[Result]:
    """Measure each op for ``seconds`` in interleaved short slices, alternating which goes
    first, so load from other processes on a shared machine hits both sides alike (the ratio
    is the result that matters)."""
    for op in ops.values():
        op()  # warm up (lazy OpenSSL state, blinding)
    totals = {label: Result(label, threads, 0, 0.0, 0.0) for label in ops}
    rounds = max(1, round(seconds / slice_seconds))
    labels = list(ops)
    for i in range(rounds):
        for label in labels if i % 2 == 0 else reversed(labels):
            r = _measure_once(ops[label], seconds / rounds, threads)
            t = totals[label]
            totals[label] = Result(
                label,
                threads,
                t.signatures + r.signatures,
                t.wall_seconds + r.wall_seconds,
                t.cpu_seconds + r.cpu_seconds,
            )
    return [totals[label] for label in labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    ca = create_ca("bench CA", bits=2048)
    signer = issue(ca, "bench.example.test", Purpose.SIGNING, bits=4096)
    credential = SigningCredential(signer.key, signer.cert, source="bench")
    body = _body()
    now = datetime.now(UTC)
    # Raw: the same bytes the module signs, prepared once; only the RSA operation is timed.
    data = string_to_sign("POST", URL, format_signature_date(now), content_hash(body))
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def raw() -> bytes:
        return signer.key.sign(data, pkcs1, sha256)

    def module() -> dict[str, str]:
        return credential.sign("POST", URL, body, datetime.now(UTC))

    print(
        f"RSA-{signer.key.key_size}, body {len(body)} bytes, {args.seconds:g}s per run, "
        f"{args.threads} thread(s) on {os.cpu_count()} CPU(s)"
    )
    ops: dict[str, Callable[[], object]] = {
        "raw cryptography": raw,
        "SigningCredential.sign": module,
    }
    load_before = os.getloadavg()[0]
    results = []
    for threads in sorted({1, args.threads}):
        raw_result, mod_result = _measure_pair(ops, args.seconds, threads)
        results.append((raw_result, mod_result))
    load_after = os.getloadavg()[0]

    print(f"{'':24}{'threads':>8}{'sig/s':>10}{'CPU ms/sig':>12}")
    for raw_result, mod_result in results:
        for r in (raw_result, mod_result):
            print(f"{r.label:<24}{r.threads:>8}{r.rate:>10.1f}{r.cpu_ms_per_signature:>12.2f}")
        print(
            f"{'module / raw':<24}{raw_result.threads:>8}"
            f"{mod_result.rate / raw_result.rate:>10.3f}"
            f"{mod_result.cpu_ms_per_signature / raw_result.cpu_ms_per_signature:>12.3f}"
        )
    print(
        f"load average {load_before:.2f} -> {load_after:.2f} "
        "(other processes skew absolute rates; the interleaved ratio holds up better)"
    )


if __name__ == "__main__":
    main()
