"""Event-loop CPU per job handed to signing threads: ``SigningPool.run`` against
``loop.run_in_executor`` on a ``ThreadPoolExecutor`` (what the gateway used before).

At batch size 1 there is one signature per message, so this hand-off is paid per message. The
job here is a GIL-free wait of ``--job-ms`` (as an RSA signature is, to the loop), so the figure
is the loop's own cost: building and settling futures and being woken. Rounds alternate the two
so that machine load hits both alike.

    .venv/bin/python load-tests/bench_handoff.py --jobs 3000 --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from _loop_cpu import loop_cpu_per_call

from gateway.dip.signing_pool import SigningPool
from gateway.ops.eventloop import run


async def _main(args: argparse.Namespace) -> None:
    wait = args.job_ms / 1000
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(args.threads, thread_name_prefix="bench")
    pool = SigningPool(args.threads, name="bench")
    figures: dict[str, list[float]] = {"run_in_executor": [], "SigningPool.run": []}
    try:
        # not measured: the executor starts its threads on first use, the pool at creation
        await loop_cpu_per_call(
            lambda: loop.run_in_executor(executor, time.sleep, wait), args.threads * 4, args.threads
        )
        for _ in range(args.rounds):
            figures["run_in_executor"].append(
                await loop_cpu_per_call(
                    lambda: loop.run_in_executor(executor, time.sleep, wait),
                    args.jobs,
                    args.threads,
                )
            )
            figures["SigningPool.run"].append(
                await loop_cpu_per_call(lambda: pool.run(time.sleep, wait), args.jobs, args.threads)
            )
    finally:
        executor.shutdown()
        pool.shutdown()
    print(f"{args.jobs} jobs of {args.job_ms} ms on {args.threads} threads, {args.rounds} rounds")
    print(f"{'hand-off':<18} {'median':>8} {'best':>8}  event-loop CPU us/job")
    for name, values in figures.items():
        median, best = statistics.median(values) * 1e6, min(values) * 1e6
        print(f"{name:<18} {median:8.1f} {best:8.1f}")
    ratio = statistics.median(figures["SigningPool.run"]) / statistics.median(
        figures["run_in_executor"]
    )
    print(f"SigningPool / run_in_executor (medians): {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per round and hand-off")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="pool threads (= concurrency)")
    parser.add_argument("--job-ms", type=float, default=0.5, help="GIL-free wait per job")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    args = parser.parse_args()
    run(_main(args), args.loop)


if __name__ == "__main__":
    main()
