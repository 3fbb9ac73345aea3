"""Egress benchmark: Kafka -> EgressService -> DIP simulator, messages/s and CPU per message.

Run: ``.venv/bin/python load-tests/bench_egress.py [--single N] [--batched N] [--batch 500]``

Set-up, so that ``time.process_time()`` of this process is the gateway's CPU only:

* a fresh 4096-bit dev PKI (the production key size; signing cost depends on it);
* Tansu (``EmbeddedBroker``) and the simulator (``python -m dipsim.cli``) in their own processes;
* the messages (schema-valid IF-043 from ``sample_payload``) are produced before timing starts;
* a warm-up run (64 messages at batch 1, 8 batches otherwise) through the same DipClient first,
  so the pooled mTLS connections are open (each handshake costs the event loop an RSA-4096
  signature for the client certificate), as in a gateway that has been running;
* timing runs from the first record consumed to the last message whose result record Kafka
  acknowledged (that is after the simulator's acknowledgement), read from the egress metrics;
* ``max_in_flight_messages`` is the product default (20,000), so runs longer than that are in
  the steady state a running gateway is in (fetch held at the limit, slices of 1,000);
* ``steal`` is the CPU time the hypervisor gave to other guests during the run (``/proc/stat``):
  this is a virtual machine, and figures from a run with steal are not comparable with one
  without; ``--trace SECONDS`` prints rate, in-flight records, CPU per process and steal per
  interval, to see where a run stalls.

Beside it, the same run measures RSA-4096 signing with the same key (CPU per signature and
signatures/s, on one thread alone and on as many threads at once as the scenario signs with) and
the cost of the pre-flight schema validation. For batch size 1 it prints the ratio CPU per
message / CPU per signature (target <= 1.25) against raw signatures measured just before and
after that scenario: at the same parallelism (two threads signing at once on this machine's two
CPUs, which share one core's resources, cost ~10-15 % more CPU per signature than one alone),
against one thread alone, and against the signing threads' own CPU in the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from dipsim.process import start_in_subprocess
from gateway._cpus import available_cpus
from gateway.config import EgressSettings, GatewayConfig, KafkaSettings, parse_config
from gateway.dip.client import DipClient, new_signing_pool
from gateway.egress import metrics
from gateway.egress.envelope import RecordRef
from gateway.egress.parking import new_park, state_record
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.service import EgressService
from gateway.kafka.clients import create_producer
from gateway.kafka.embedded import EmbeddedBroker
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore, load_dcp_credential
from gateway.ops import eventloop
from gateway.schema import default_registry
from gateway.schema.samples import sample_payload
from gateway.signing.pki import DevPkiOptions, create_dev_pki

SENDER = "1400010001"
CLIENT = "client-1"
INTERFACE = "IF-043"
DCP_ID = DevPkiOptions().dcp_id


@dataclass(frozen=True)
class Options:
    compression: str | None = None
    transport: str | None = None
    signing_threads: int = 0
    keys: int = 0
    py_spy: str | None = None  # record the gateway (this process) to PREFIX-<label>.txt
    perf: str | None = None  # perf-record the gateway's CPU to PREFIX-<label>.data
    trace: float = 0.0  # print a time series every this many seconds (0: off)
    outcome_interval_ms: float | None = None  # egress.outcome_produce_interval_ms (None: default)
    in_flight: int = EgressSettings().max_in_flight_messages  # the product default
    park_keys: bool = False  # clients[].park_keys, with one (other) key of the client parked


def _config(
    pki: Path, bootstrap: str, base_url: str, batch: int, options: Options
) -> GatewayConfig:
    data: dict[str, Any] = yaml.safe_load((pki / "gateway.yaml").read_text())
    tag = uuid.uuid4().hex[:8]
    data["dip"]["base_url"] = base_url
    data["ingress"] = {"enabled": False}
    data["ops"] = {"log_level": "warning"}
    data["kafka"] = {
        "bootstrap_servers": bootstrap,
        "enable_idempotence": False,
        "compression_type": options.compression,  # the product default unless told
        "create_topics": True,
        "consumer_group": f"bench-{tag}",
        "outbound_topics": [f"bench-out-{tag}"],
        "status_outbound_topic": None,
        "dead_letter_topic": f"bench-dlq-{tag}",
    }
    data["egress"] = {
        "max_batch_messages": batch,
        "max_batch_bytes": 8_000_000,
        "linger_ms": 5,
        "max_in_flight_messages": options.in_flight,
        "max_concurrent_requests": 32 if batch == 1 else 8,
        "signing_threads": options.signing_threads,
    }
    if options.transport:
        data["egress"]["transport"] = options.transport
    if options.outcome_interval_ms is not None:
        data["egress"]["outcome_produce_interval_ms"] = options.outcome_interval_ms
    for client in data["clients"]:
        client["park_keys"] = options.park_keys
        client["topics"] = {
            "inbound": f"{client['name']}-in-{tag}",
            "results": f"{client['name']}-results-{tag}",
            "dead_letter": f"{client['name']}-dlq-{tag}",
        }
    return parse_config(data, base_dir=pki)


_COUNTERS = {
    "dcpgw_egress_messages_consumed_total": "consumed",
    "dcpgw_egress_messages_accepted_total": "accepted",
}


def _counter(name: str) -> float:
    """Read the egress counter children directly: ``REGISTRY.get_sample_value`` would collect
    the whole registry (and read /proc) on every poll and bill that CPU to the gateway."""
    children = metrics.counters(CLIENT, INTERFACE)
    if name == "dcpgw_egress_messages_dead_lettered_total":  # one child per reason class
        return sum(float(children.dead_lettered(r)._value.get()) for r in DeadLetterReason)
    return float(getattr(children, _COUNTERS[name])._value.get())


_SEQ = itertools.count()


def _payloads(count: int) -> list[bytes]:
    """``count`` new messages: sequence numbers (and so senderUniqueReferences) never repeat in
    a run, or the simulator would rightly reject them as duplicates."""
    seqs = list(itertools.islice(_SEQ, count))
    now = datetime.now(UTC)
    return [
        orjson.dumps(
            sample_payload(
                INTERFACE,
                sender_dip_id=SENDER,
                sender_role="SUP",
                recipients=["2300000900"],
                seq=seq,
                now=now,
                dcp_id=DCP_ID,  # already set: the record's bytes are sent as they are
            )
        )
        for seq in seqs
    ]


async def _produce(config: GatewayConfig, values: list[bytes], keys: int) -> None:
    """``values`` keyed ``meter-<i mod keys>`` (``keys`` 0: one key per message). Egress keeps
    per-key order, so a batch waits for every earlier batch that holds one of its keys: with
    few keys every batch holds them all and batches go one at a time."""
    producer = create_producer(config.kafka, linger_ms=20)
    await producer.start()
    try:
        topic = config.kafka.outbound_topics[0]
        n = len(values)
        futures = [
            await producer.send(topic, v, key=f"meter-{i % (keys or n)}".encode())
            for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass
class Run:
    """One scenario's figures; CPU in seconds over the timed window."""

    label: str
    messages: int
    wall: float
    cpu: float  # this process: the gateway
    main_cpu: float  # the event-loop thread alone
    gc_cpu: float  # in the garbage collector (on the event-loop thread)
    gc_runs: list[int]  # collections per generation
    broker_cpu: float
    sim_cpu: float
    system_cpu: float  # the kernel's share of ``cpu`` (system calls: sockets, epoll, futexes)
    steal: float  # CPU seconds the hypervisor gave to other guests meanwhile (all CPUs)

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    def per_msg(self, seconds: float) -> float:
        return seconds / self.messages


_TICK = os.sysconf("SC_CLK_TCK")


class _GcClock:
    """CPU seconds this process spends in the cyclic garbage collector (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start
            self.collections[info["generation"]] += 1


_GC = _GcClock()
gc.callbacks.append(_GC)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the simulator may run worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _proc_cpu(pids: list[int]) -> float:
    """utime + stime of ``pids`` (seconds, from /proc/<pid>/stat)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


async def _park_one_key(config: GatewayConfig) -> None:
    """A parked key of the client that none of the messages has: every batch then takes the
    parked-key check per record (the costlier path), and nothing is parked."""
    topic = config.kafka.parked_keys_topic
    assert topic is not None
    await ensure_topics(config.kafka, [topic], configs={"cleanup.policy": "compact"})
    client = config.clients[0].name
    ref = RecordRef(config.kafka.outbound_topics[0], 0, 0, b"parked-elsewhere", None)
    record = state_record(topic, client, b"parked-elsewhere", new_park(ref, "schema", "dlq"))
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        await (await producer.send(record.topic, record.value, key=record.key))
    finally:
        await producer.stop()


async def _scenario(
    pki: Path,
    bootstrap: str,
    base_url: str,
    batch: int,
    values: list[bytes],
    options: Options,
    pids: tuple[int, int],
    label: str,
    warmup: list[bytes],
) -> Run:
    """Messages/s and CPU of the gateway (this process), the broker and the simulator."""
    config = _config(pki, bootstrap, base_url, batch, options)
    await ensure_topics(config.kafka, gateway_topics(config))
    if options.park_keys:
        await _park_one_key(config)
    await _produce(config, values, options.keys)
    keystore = build_keystore(config)
    pool = new_signing_pool(config.egress.signing_threads)
    n = len(values)
    broker_pid, sim_pid = pids
    credential = load_dcp_credential(config.dcp)
    async with DipClient.over_mtls(
        config.dip, credential, keystore, pool=pool, transport=config.egress.transport
    ) as dip:
        if warmup:
            # Same DipClient: its pooled mTLS connections (each handshake costs the event loop
            # an RSA-4096 signature) are open before the measured run, as in a running gateway.
            warm = _config(pki, bootstrap, base_url, batch, options)
            await ensure_topics(warm.kafka, gateway_topics(warm))
            await _produce(warm, warmup, options.keys)
            await _until_done(warm, keystore, dip, len(warmup))
        name = label.replace(" ", "_")
        recorders = [
            *([_start_py_spy(f"{options.py_spy}-{name}.txt")] if options.py_spy else []),
            *([_start_perf(f"{options.perf}-{name}.data")] if options.perf else []),
        ]
        if recorders:
            await asyncio.sleep(1.0)  # let them attach before the clock starts
        for recorder in recorders:
            if recorder.poll() is not None:
                raise SystemExit(
                    f"{recorder.args[0]} ended at once (exit {recorder.returncode}): is it "
                    "installed (and for perf, kernel.perf_event_paranoid low enough)?"
                )
        consumed0 = _counter("dcpgw_egress_messages_consumed_total")
        accepted0 = _counter("dcpgw_egress_messages_accepted_total")
        rejected0 = _counter("dcpgw_egress_messages_dead_lettered_total")
        stop = asyncio.Event()
        task = asyncio.create_task(EgressService(config, keystore, dip).run(stop))
        while _counter("dcpgw_egress_messages_consumed_total") == consumed0:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        broker_pids, sim_pids = _tree(broker_pid), _tree(sim_pid)
        broker0, sim0 = _proc_cpu(broker_pids), _proc_cpu(sim_pids)
        wall0, cpu0, main0 = time.perf_counter(), time.process_time(), time.thread_time()
        sys0 = os.times().system
        gc0, runs0 = _GC.seconds, list(_GC.collections)
        steal0 = _steal()
        switches0 = _switches()
        tracer = None
        if options.trace:
            tracer = asyncio.create_task(_trace(options.trace, broker_pids, sim_pids))
        while True:
            done = _counter("dcpgw_egress_messages_accepted_total") - accepted0
            dead = _counter("dcpgw_egress_messages_dead_lettered_total") - rejected0
            if done + dead >= n:
                break
            await asyncio.sleep(_poll_delay(n - done - dead, done + dead, wall0))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        main = time.thread_time() - main0
        system = os.times().system - sys0
        gc_cpu = _GC.seconds - gc0
        gc_runs = [b - a for a, b in zip(runs0, _GC.collections, strict=True)]
        broker, sim = _proc_cpu(broker_pids) - broker0, _proc_cpu(sim_pids) - sim0
        steal = _steal() - steal0
        waits, preempted = (b - a for a, b in zip(switches0, _switches(), strict=True))
        if tracer is not None:
            tracer.cancel()
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)
        stop.set()
        await task
    pool.shutdown(wait=True)
    print(
        f"  {label}: gc collections per generation {gc_runs}, {gc_cpu * 1e3:.0f} ms; "
        f"gateway system CPU {system / n * 1e6:.1f} us/msg of {cpu / n * 1e6:.1f}; "
        f"event loop per message: {waits / n:.2f} waits (went to sleep), "
        f"{preempted / n:.2f} preemptions"
    )
    if dead:
        print(f"  warning: {int(dead)} messages dead-lettered")
    return Run(label, n, wall, cpu, main, gc_cpu, gc_runs, broker, sim, system, steal)


async def _trace(every: float, broker_pids: list[int], sim_pids: list[int]) -> None:
    """Per interval: messages final, records in flight, CPU of the event-loop thread, the
    whole gateway, the broker and the simulator (fractions of one CPU). Shows whether a run's
    rate is steady or decays, and which process is busy when it does. ``ready`` is the share of
    the interval the event-loop thread was runnable but waiting for a CPU (the kernel's run-queue
    delay): ``loop`` + ``ready`` near 1 means the loop wanted a whole CPU."""
    print(
        f"  {'t s':>5} {'final/s':>8} {'in flight':>9} {'loop':>5} {'ready':>5} {'gw':>5}"
        f" {'brk':>5} {'sim':>5} {'steal':>5}"
    )
    start = last_t = time.perf_counter()
    last = (_final(), time.thread_time(), time.process_time(), _run_queue_wait())
    last_b, last_s, last_st = _proc_cpu(broker_pids), _proc_cpu(sim_pids), _steal()
    while True:
        await asyncio.sleep(every)
        now = time.perf_counter()
        cur = (_final(), time.thread_time(), time.process_time(), _run_queue_wait())
        b, s, st = _proc_cpu(broker_pids), _proc_cpu(sim_pids), _steal()
        dt = now - last_t
        print(
            f"  {now - start:>5.1f} {(cur[0] - last[0]) / dt:>8.0f}"
            f" {metrics.IN_FLIGHT._value.get():>9.0f} {(cur[1] - last[1]) / dt:>5.2f}"
            f" {(cur[3] - last[3]) / dt:>5.2f}"
            f" {(cur[2] - last[2]) / dt:>5.2f} {(b - last_b) / dt:>5.2f} {(s - last_s) / dt:>5.2f}"
            f" {(st - last_st) / dt:>5.2f}"
        )
        last, last_t, last_b, last_s, last_st = cur, now, b, s, st


def _switches() -> tuple[int, int]:
    """The calling thread's (voluntary, involuntary) context switches: how often it slept
    waiting for something (each costs a wake-up later) and how often it was preempted."""
    counts = {"voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}
    try:
        with open("/proc/thread-self/status") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in counts:
                    counts[name] = int(value)
    except OSError:
        pass
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


def _run_queue_wait() -> float:
    """Seconds the calling thread has spent runnable but not running (/proc schedstat)."""
    try:
        with open("/proc/thread-self/schedstat") as handle:
            return int(handle.read().split()[1]) / 1e9
    except OSError:
        return 0.0


def _steal() -> float:
    """CPU seconds the hypervisor gave to other guests (all CPUs, /proc/stat): on a virtual
    machine this is time the benchmark wanted to run and could not."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()
    return int(fields[8]) / _TICK


def _final() -> float:
    return _counter("dcpgw_egress_messages_accepted_total") + _counter(
        "dcpgw_egress_messages_dead_lettered_total"
    )


def _poll_delay(left: float, final: float, since: float) -> float:
    """How long the benchmark sleeps before it looks at the counters again: a quarter of the
    time the messages left should take at the rate so far, between 20 ms and 0.5 s. Polling
    every 20 ms throughout woke the event loop 50 times a second, which at batch size 1 (~250
    messages/s) was ~30 us of loop CPU per message that a real gateway does not spend."""
    elapsed = time.perf_counter() - since
    if final <= 0 or elapsed <= 0:
        return 0.02
    return min(0.5, max(0.02, left / (final / elapsed) / 4))


async def _until_done(config: GatewayConfig, keystore: Any, dip: DipClient, n: int) -> None:
    """Run an EgressService until ``n`` more messages are final (warm-up, not measured)."""
    base = _final()
    stop = asyncio.Event()
    task = asyncio.create_task(EgressService(config, keystore, dip).run(stop))
    while _final() < base + n:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    stop.set()
    await task


def _start_perf(out: str) -> subprocess.Popen[bytes]:
    """`perf record` of this process's CPU time, per thread, native symbols.

    Unlike py-spy, which samples a thread whenever it is runnable (so a thread preempted inside a
    socket write that woke the broker looks busy), perf samples only CPU actually used: this is the
    profile that explains the `main us` column. `perf report -i FILE --sort tid,dso,sym`.
    """
    args = ["record", "-e", "cpu-clock", "-F", "1999", "--per-thread", "-p", str(os.getpid())]
    return subprocess.Popen(
        ["perf", *args, "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _start_py_spy(out: str) -> subprocess.Popen[bytes]:
    """py-spy (if installed in the venv) sampling this process, every thread, raw format."""
    spy = str(Path(sys.executable).parent / "py-spy")
    args = ["record", "--pid", str(os.getpid()), "--threads", "--nonblocking"]
    args += ["--format", "raw", "--rate", "499"]
    return subprocess.Popen(
        [spy, *args, "-o", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class RawSigning:
    """Raw signatures with the same key (``SigningCredential.sign``): CPU seconds per signature
    and signatures/s on one thread, and on ``threads`` threads signing at once (on this machine
    two threads share one core's resources, so each signature costs more CPU than alone)."""

    threads: int
    cpu_1: float
    rate_1: float
    cpu_n: float
    rate_n: float

    @staticmethod
    def mean(a: RawSigning, b: RawSigning) -> RawSigning:
        return RawSigning(
            a.threads,
            (a.cpu_1 + b.cpu_1) / 2,
            (a.rate_1 + b.rate_1) / 2,
            (a.cpu_n + b.cpu_n) / 2,
            (a.rate_n + b.rate_n) / 2,
        )


def _signing(pki: Path, base_url: str, body: bytes, rounds: int, threads: int) -> RawSigning:
    config = parse_config(yaml.safe_load((pki / "gateway.yaml").read_text()), base_dir=pki)
    credential = build_keystore(config).signer_for(SENDER)
    url = base_url + "/dip-channel/IF-043"
    now = datetime.now(UTC)
    credential.sign("POST", url, body, now)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        credential.sign("POST", url, body, now)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    with ThreadPoolExecutor(threads) as pool:
        wall1, cpu1 = time.perf_counter(), time.process_time()
        list(pool.map(lambda _: credential.sign("POST", url, body, now), range(rounds * threads)))
        wall_n, cpu_n = time.perf_counter() - wall1, time.process_time() - cpu1
    count = rounds * threads
    return RawSigning(threads, cpu / rounds, rounds / wall, cpu_n / count, count / wall_n)


def _schema_us(values: list[bytes], rounds: int = 5) -> float:
    registry = default_registry()
    payloads = [orjson.loads(v) for v in values[:2000]]
    registry.validate(payloads[0])
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for p in payloads:
            registry.validate(p)
        best = min(best, (time.process_time() - start) / len(payloads) * 1e6)
    return best


def _print_run(run: Run, raw: RawSigning | None) -> None:
    us = 1e6
    print(
        f"{run.label:<28}{run.messages:>7}{run.rate:>10.0f}"
        f"{run.per_msg(run.cpu) * us:>10.1f}{run.per_msg(run.main_cpu) * us:>10.1f}"
        f"{run.per_msg(run.gc_cpu) * us:>7.1f}{run.per_msg(run.cpu - run.main_cpu) * us:>10.1f}"
        f"{run.per_msg(run.broker_cpu) * us:>9.1f}{run.per_msg(run.sim_cpu) * us:>9.1f}"
        f"{(run.cpu + run.broker_cpu + run.sim_cpu) / run.wall:>7.2f}"
        f"{run.steal / run.wall:>7.2f}"
    )
    if raw is not None:
        cpu = run.per_msg(run.cpu)
        in_run = run.per_msg(run.cpu - run.main_cpu)
        same = "" if raw.threads == 1 else f"{cpu / raw.cpu_n:.3f} vs {raw.threads} at once, "
        print(
            f"{'':28}ratio CPU/msg / CPU/sig (target <= 1.25): {same}{cpu / raw.cpu_1:.3f} vs "
            f"one thread alone (raw signatures around this run: {raw.cpu_1 * 1e3:.2f} ms alone"
            + (f", {raw.cpu_n * 1e3:.2f} ms {raw.threads} at once" if raw.threads > 1 else "")
            + f"); {cpu / in_run:.3f} vs the signing threads' own CPU per message in this run"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=400, help="messages at batch size 1")
    parser.add_argument(
        "--batched", type=int, default=60_000, help="messages at --batch (steady state: > 20,000)"
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--compression",
        default=KafkaSettings().compression_type or "none",
        choices=["none", "gzip", "lz4", "snappy", "zstd"],
        help="compression_type of the gateway's producer (results, dead letters); default: "
        "the product's",
    )
    parser.add_argument("--transport", default=None, help="egress.transport (default: config's)")
    parser.add_argument(
        "--signing-threads",
        default="0",
        help="comma-separated egress.signing_threads values for batch 1 (0 = one per CPU)",
    )
    parser.add_argument(
        "--py-spy", help="record the gateway with py-spy to PREFIX-<scenario>.txt (skews CPU)"
    )
    parser.add_argument(
        "--perf",
        help="record the gateway's CPU with `perf record` to PREFIX-<scenario>.data (its "
        "sampling adds a little CPU)",
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=0,
        help="distinct Kafka keys (0: one per message, like meter IDs; few keys serialise batches)",
    )
    parser.add_argument(
        "--trace",
        type=float,
        default=0.0,
        help="print rate, in-flight records and CPU per process every N seconds of a run",
    )
    parser.add_argument("--repeat", type=int, default=1, help="batched runs (best is kept)")
    parser.add_argument(
        "--park-keys",
        choices=["off", "on", "alternate"],
        default="off",
        help="clients[].park_keys (on: with one other key parked); alternate: each batched "
        "run twice, off then on, so machine load hits both alike",
    )
    parser.add_argument(
        "--outcome-interval-ms",
        type=float,
        default=None,
        help="egress.outcome_produce_interval_ms (default: the product's)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=EgressSettings().max_in_flight_messages,
        help="egress.max_in_flight_messages (default: the product's)",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop, as ops.event_loop (auto: uvloop when installed, as `dcp-gateway run`)",
    )
    args = parser.parse_args()
    compression = None if args.compression == "none" else args.compression
    threads = [int(t) for t in args.signing_threads.split(",")]

    runs: list[tuple[Run, RawSigning | None]] = []  # batch-1 runs: raw signing around them
    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp:
        pki = Path(tmp)
        print("creating a 4096-bit dev PKI ...")
        create_dev_pki(pki, DevPkiOptions(clients=1, bits=4096))
        single = _payloads(args.single)
        batched = _payloads(args.batched)
        with start_in_subprocess(pki, 0, extra_args=["--max-messages", "10000"]) as sim:
            single_body = b"[" + (single or batched)[0] + b"]"
            cores = os.cpu_count() or 2
            start = _signing(pki, sim.base_url, single_body, 100, cores)
            schema = _schema_us(batched or single)
            # label, batch, signing threads, single, park keys
            parks = {"off": [False], "on": [True], "alternate": [False, True]}[args.park_keys]
            plan: list[tuple[str, int, int, bool, bool]] = [
                (f"batch 1, {t or available_cpus()} signing thr", 1, t, True, parks[-1])
                for t in (threads if args.single else [])
            ]
            plan += [
                (f"batch {args.batch}" + (", parking" if park else ""), args.batch, 0, False, park)
                for park in parks
            ] * (args.repeat if args.batched else 0)
            fresh = {True: [single], False: [batched]}  # made before the clock; then new ones
            for label, batch, signing_threads, single_run, park in plan:
                options = Options(
                    compression=compression,
                    transport=args.transport,
                    signing_threads=signing_threads,
                    keys=args.keys,
                    py_spy=args.py_spy,
                    perf=args.perf,
                    trace=args.trace,
                    outcome_interval_ms=args.outcome_interval_ms,
                    in_flight=args.in_flight,
                    park_keys=park,
                )
                made = fresh[single_run]
                values = (
                    made.pop() if made else _payloads(args.single if single_run else args.batched)
                )
                threads_now = signing_threads or available_cpus()
                before = (
                    _signing(pki, sim.base_url, single_body, 100, threads_now)
                    if single_run
                    else None
                )
                # A fresh broker per scenario: none runs on a broker holding the earlier ones'
                # topics and groups (Tansu keeps everything in memory, in one process).
                with EmbeddedBroker() as broker:
                    assert broker._proc is not None
                    run = eventloop.run(
                        _scenario(
                            pki,
                            broker.bootstrap_servers,
                            sim.base_url,
                            batch,
                            values,
                            options,
                            (broker._proc.pid, sim.process.pid),
                            label,
                            _payloads(64 if single_run else batch * 8),
                        ),
                        args.loop,
                    )
                raw = None
                if before is not None:
                    # The raw signatures again, just after the scenario: the machine's state moves
                    # within minutes, so the ratios use the mean of the figures around the run.
                    after = _signing(pki, sim.base_url, single_body, 100, threads_now)
                    raw = RawSigning.mean(before, after)
                runs.append((run, raw))
    print(
        f"\nmachine: {cores} CPUs; broker and simulator in separate processes on the same machine;"
        f" producer compression {args.compression}; keys: {args.keys or 'one per message'};"
        f" event loop {eventloop.loop_factory(args.loop).__module__.split('.')[0]}"
    )
    print(
        f"RSA-4096 sign, same key, at the start: {start.cpu_1 * 1e3:.2f} ms CPU/signature and "
        f"{start.rate_1:.0f} sig/s on one thread; {start.cpu_n * 1e3:.2f} ms and "
        f"{start.rate_n:.0f} sig/s on {cores} threads at once"
    )
    print(
        f"parallel capacity at the start: {start.rate_n / start.rate_1:.2f} CPUs' worth of "
        f"signatures "
        f"(a quiet 2-CPU machine gives ~1.9; ~1.0 means something else holds a CPU, or the "
        f"hypervisor does: compare the steal column)"
    )
    print(f"schema validation (IF-043): {schema:.2f} us CPU/message")
    print(
        f"\n{'scenario':<28}{'msgs':>7}{'msgs/s':>10}{'gw us':>10}{'main us':>10}{'gc us':>7}"
        f"{'other us':>10}{'broker':>9}{'sim':>9}{'CPUs':>7}{'steal':>7}"
    )
    print(
        f"{'':28}{'':>7}{'':>10}{'CPU/msg':>10}{'thread':>10}{'(main)':>7}{'threads':>10}"
        f"{'us/msg':>9}{'us/msg':>9}{'busy':>7}{'CPUs':>7}"
    )
    for run, raw in runs:
        _print_run(run, raw)
    batched_runs = [r for r, raw in runs if raw is None]
    if batched_runs:
        best = max(batched_runs, key=lambda r: r.rate)
        print(f"\nmsgs/s with batching: {best.rate:.0f} (target >= 20000)")


if __name__ == "__main__":
    main()
