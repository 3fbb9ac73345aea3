"""Carry out a scenario: set up, run its phases with a progress bar, measure the limits."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.config import GatewayConfig
from gateway.demo import simulator_program
from gateway.kafka.embedded import EmbeddedBroker, free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.loadtest import harness, limits
from gateway.loadtest.egress import (
    OutcomeReader,
    Outcomes,
    RecordCounter,
    produce,
    wait_settled,
)
from gateway.loadtest.harness import Environment
from gateway.loadtest.messages import MessageFactory, senders
from gateway.loadtest.pusher import PUSH_TIMEOUT
from gateway.loadtest.scenarios import EgressPhase, IngressPhase, Scenario
from gateway.loadtest.stats import Latency, ProcSeries, busy_seconds, read_proc, steal_seconds

#: Seconds without a new outcome (after producing ended) before the rest count as missing.
IDLE_TIMEOUT = 30.0
#: Longest an ingress phase's pushes may take to drain after their schedule: every push is
#: bounded by PUSH_TIMEOUT, but a wedged gateway would make that a bound of hours.
PUSHER_DRAIN_CAP = 600.0
#: Slack on top for the pusher's start and exit.
PUSHER_MARGIN = 60.0


@dataclass(frozen=True)
class Options:
    output: Path
    workdir: Path
    bits: int = 4096
    bootstrap_servers: str | None = None
    simulator_url: str | None = None
    pki: Path | None = None  # the simulator's dev PKI (required with simulator_url)
    tansu: bool = False  # with bootstrap_servers: that broker is Tansu
    kafka: dict[str, Any] = field(default_factory=dict)  # its TLS/SASL settings (--kafka-config)
    command: str = ""
    progress: bool = True


@dataclass
class Context:
    options: Options
    env: Environment
    factory: MessageFactory
    run_tag: str
    progress: Any
    dip_latency_ms: float = 0.0
    phase_index: int = 0
    #: The highest msgs/s a flat-out phase reached so far, per batch size.
    max_rate: dict[int, float] = field(default_factory=dict)
    logs: Path = field(default_factory=Path)
    sim_pid: int | None = None
    configs: list[Path] = field(default_factory=list)  # removed at the end of the run


@dataclass(frozen=True)
class _Machine:
    """CPU seconds so far: the gateway, the simulator (when started here), this process (the
    load generator), the whole machine, and the hypervisor's steal; ``at``: when."""

    at: float
    gateway: float
    simulator: float
    generator: float
    machine: float
    steal: float

    @classmethod
    def now(cls, gateway_pid: int, sim_pid: int | None) -> _Machine:
        gateway = read_proc(gateway_pid)
        if gateway is None:
            raise RuntimeError("the gateway process has ended")
        sim = read_proc(sim_pid) if sim_pid else None
        return cls(
            time.monotonic(),
            gateway.cpu_seconds,
            sim.cpu_seconds if sim else 0.0,
            time.process_time(),
            busy_seconds(),
            steal_seconds(),
        )

    def __sub__(self, other: _Machine) -> _Machine:
        return _Machine(
            self.at - other.at,
            self.gateway - other.gateway,
            self.simulator - other.simulator,
            self.generator - other.generator,
            self.machine - other.machine,
            self.steal - other.steal,
        )

    def figures(self, messages: int) -> dict[str, Any]:
        """CPUs busy between the two readings (``at`` is then their distance): ``other`` is
        everything else on the machine, the broker included (and, with ``--simulator-url``,
        that simulator)."""
        window = self.at
        if window <= 0:
            return {}
        other = self.machine - self.gateway - self.simulator - self.generator
        return {
            "gateway_cpus_busy": self.gateway / window,
            "simulator_cpu_us_per_message": self.simulator / messages * 1e6 if messages else None,
            "generator_cpus_busy": self.generator / window,
            "machine_cpus_busy": self.machine / window,
            "other_cpus_busy": max(0.0, other) / window,
            "steal_cpus": self.steal / window,
        }


class _Timeline:
    """Seconds from the phase's start to each step: where a run's wall time goes."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self.marks: dict[str, float] = {}

    def mark(self, what: str) -> None:
        self.marks[what] = round(time.monotonic() - self._start, 2)


class _Bar:
    """A rich progress task, or nothing (``--no-progress``, tests)."""

    def __init__(self, progress: Any, label: str, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task(label, total=total) if progress is not None else None

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def set(self, done: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=done)


async def run_scenario(scenario: Scenario, options: Options) -> dict[str, Any]:
    """Every phase of ``scenario``; the raw result document (see :mod:`.report`)."""
    options.output.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        if options.simulator_url and options.pki is None:
            raise ValueError("--simulator-url needs --pki: the simulator's dev PKI folder")
        pki = options.pki
        if pki is None:
            pki = await asyncio.to_thread(
                harness.pki_for, options.workdir, scenario.clients, options.bits
            )
        bootstrap = options.bootstrap_servers
        if bootstrap is None:
            broker = EmbeddedBroker()
            bootstrap = await asyncio.to_thread(broker.start)
            stack.callback(broker.stop)
        sim_url, sim_pid = options.simulator_url, None
        if sim_url is None:
            sim = await stack.enter_async_context(
                simulator_program(pki, 0, ("--max-messages", "10000"))
            )
            sim_url, sim_pid = sim.url, sim.pid
        tansu = options.tansu or options.bootstrap_servers is None
        env = Environment(pki, bootstrap, tansu, sim_url, free_port(), options.kafka)
        run_tag = f"{int(time.time()) % 100_000:05d}"
        base_path, base = _base_config(env, run_tag)
        progress = await stack.enter_async_context(_progress(options.progress))
        ctx = Context(
            options,
            env,
            MessageFactory(base, run_tag=int(run_tag)),
            run_tag,
            progress,
            logs=options.output / "logs",
            sim_pid=sim_pid,
        )
        ctx.logs.mkdir(exist_ok=True)
        stack.callback(_remove, ctx.configs)
        doc: dict[str, Any] = {
            "scenario": scenario.name,
            "description": scenario.description,
            "command": options.command,
            "started_at": time.time(),
            "broker": "embedded Tansu" if options.bootstrap_servers is None else bootstrap,
            "simulator": "embedded" if sim_pid else sim_url,
            "phases": [],
        }
        ctx.configs.append(base_path)
        if any(isinstance(p, EgressPhase) and p.round_trip for p in scenario.phases):
            doc["webhooks_registered"] = await harness.register_webhooks(base)
        if scenario.limits:
            raw = await asyncio.to_thread(limits.raw_signing, base, scenario.signing_seconds)
            doc["raw_signing"] = raw.as_json()
        for phase in scenario.phases:
            ctx.phase_index += 1
            try:
                if isinstance(phase, EgressPhase):
                    figures = await _egress_phase(ctx, phase)
                    if figures["offered_rate"] is None:
                        rate = figures["messages_per_second"]
                        ctx.max_rate[phase.batch] = max(ctx.max_rate.get(phase.batch, 0.0), rate)
                else:
                    figures = await _ingress_phase(ctx, phase, scenario.clients)
            except Exception as exc:  # the phases measured so far are still reported
                doc["failed"] = {"phase": phase.label, "error": f"{type(exc).__name__}: {exc}"}
                break
            doc["phases"].append(figures)
        if ctx.dip_latency_ms:  # the simulator answers at once again: the baseline's DIP too
            try:
                await harness.set_dip_latency(base, 0.0)
                ctx.dip_latency_ms = 0.0
            except Exception as exc:  # a simulator gone with a failed phase: report anyway
                if "failed" not in doc:
                    raise
                doc["failed"]["cleanup"] = f"resetting the DIP latency: {exc}"
        if scenario.baseline_messages and "failed" not in doc:
            doc["baseline"] = await _baseline(ctx, scenario.baseline_messages)
        doc["finished_at"] = time.time()
        return doc


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def _progress(enabled: bool) -> AsyncIterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        yield progress


def _base_config(env: Environment, run_tag: str) -> tuple[Path, GatewayConfig]:
    data = harness.phase_config(env, f"{run_tag}-base", batch=1, ops_port=0, clients=2)
    return harness.write_config(data, env.pki, f"loadtest-{run_tag}-base")


async def _phase_config(
    ctx: Context, batch: int, clients: int, dedup_window: int = 100_000
) -> tuple[str, int, Path, GatewayConfig]:
    tag = f"{ctx.run_tag}-{ctx.phase_index}"
    ops_port = free_port()
    data = harness.phase_config(
        ctx.env, tag, batch=batch, ops_port=ops_port, clients=clients, dedup_window=dedup_window
    )
    path, config = harness.write_config(data, ctx.env.pki, f"loadtest-{tag}")
    ctx.configs.append(path)
    await ensure_topics(config.kafka, gateway_topics(config))
    return tag, ops_port, path, config


@contextlib.asynccontextmanager
async def _gateway(
    ctx: Context,
    tag: str,
    path: Path,
    ops_port: int,
    config: GatewayConfig,
    timeline: _Timeline,
) -> AsyncIterator[tuple[harness.GatewayProcess, ProcSeries]]:
    """The phase's gateway process, its CPU and memory read every 0.25 s while it runs."""
    log = ctx.logs / f"gateway-{tag}.log"
    async with harness.gateway_process(path, ops_port, log, _ready_within(config)) as gw:
        timeline.mark("gateway ready")
        series = ProcSeries(gw.pid)
        sampler = asyncio.create_task(_sample(series))
        try:
            yield gw, series
        finally:
            sampler.cancel()


async def _sample(series: ProcSeries, every: float = 0.25) -> None:
    while True:
        series.sample()
        await asyncio.sleep(every)


async def _count(
    counter: RecordCounter,
    handled: Callable[[], Awaitable[float]],
    target: int,
    patience: float,
    bar: _Bar,
) -> int:
    """Records in ``counter``'s topics, read once the gateway says it has handled ``target``
    messages (or its count has not moved for ``patience`` seconds)."""
    last, since = -1, time.monotonic()
    while True:
        now = int(await handled())
        bar.set(now)
        if now >= target:
            break
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > patience:
            break
        await asyncio.sleep(0.2)
    count = await counter.count_to_end()
    bar.set(count)
    return count


async def _first_consumed(
    gw: harness.GatewayProcess, sim_pid: int | None, every: float = 0.02
) -> tuple[float, _Machine]:
    """The time and machine reading taken before the last poll that found nothing consumed.
    The gateway counts a fetch once its loop has taken it in, and answers /metrics on the same
    loop, so that poll was answered before the first records were taken in: the window may
    start up to a poll early (a slightly lower rate), never late."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    before = time.time(), _Machine.now(gw.pid, sim_pid)
    while True:
        reading = time.time(), _Machine.now(gw.pid, sim_pid)
        if (await gw.metrics(_CONSUMED))[0] > 0:
            return before
        before = reading
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway consumed no record within {IDLE_TIMEOUT:.0f} s")
        await asyncio.sleep(every)


async def _show(bar: _Bar, handled: Callable[[], Awaitable[float]]) -> None:
    while True:
        await asyncio.sleep(0.5)
        bar.set(int(await handled()))


_REQUESTS = "dcpgw_egress_requests_total"
_CONSUMED = "dcpgw_egress_messages_consumed_total"
_DIVERTED = "dcpgw_egress_messages_diverted_total"
#: The gateway's per-request histograms (sum, count), for where a request's time went.
_STAGES = tuple(
    f"dcpgw_egress_{name}_{part}"
    for name in ("batch_messages", "sign_seconds", "request_seconds", "end_to_end_seconds")
    for part in ("sum", "count")
)


def _stage_means(before: list[float], after: list[float]) -> dict[str, float | None]:
    """Means over the measured window of the gateway's own per-request histograms: messages
    per request; the wait for a signing thread plus the signature; the DIP's round trip; and
    the age of a request's first record at the DIP's answer."""
    means = []
    for i in range(0, len(_STAGES), 2):
        total, count = after[i] - before[i], after[i + 1] - before[i + 1]
        means.append(total / count if count else None)
    scale = (1.0, 1000.0, 1000.0, 1000.0)
    names = ("messages_per_request", "sign_ms", "dip_round_trip_ms", "first_record_age_ms")
    return {
        name: None if mean is None else mean * k
        for name, mean, k in zip(names, means, scale, strict=True)
    }


async def _egress_phase(ctx: Context, phase: EgressPhase) -> dict[str, Any]:
    """A fresh gateway over new topics. Flat-out batched phases are a backlog: every message
    is in Kafka before the gateway starts, so the load generator takes no CPU from it while it
    is measured. Batch-1 and open-loop phases first send a warm-up (the gateway's mTLS
    connections open, each costing it an RSA signature: one message per request slot at
    least), then produce while it runs."""
    timeline = _Timeline()
    tag, ops_port, path, config = await _phase_config(
        ctx, phase.batch, max(phase.clients, 2 if phase.round_trip else 1)
    )
    if phase.dip_latency_ms != ctx.dip_latency_ms:
        await harness.set_dip_latency(config, phase.dip_latency_ms)
        ctx.dip_latency_ms = phase.dip_latency_ms
    who = senders(config, max(phase.clients, 2 if phase.round_trip else 1))
    rate = phase.rate
    if phase.rate_of_max is not None:
        if phase.batch not in ctx.max_rate:
            raise ValueError(f"{phase.label}: no flat-out phase at batch {phase.batch} before it")
        rate = phase.rate_of_max * ctx.max_rate[phase.batch]
    preload = phase.backlog or (rate is None and phase.batch > 1)
    # A warm-up of at least one message per request slot: behind a slow DIP the gateway
    # holds up to that many connections, and each one opened while measured would add a
    # handshake's RSA signature on its event loop to the phase's CPU per message.
    slots = config.egress.max_concurrent_requests
    warm_count = 0 if preload else min(2000, max(64, slots, 4 * phase.batch))
    label = f"{phase.label} (+{warm_count} warm-up)" if warm_count else phase.label
    bar = _Bar(ctx.progress, label, phase.messages + warm_count)
    out = Outcomes(topic=config.kafka.outbound_topics[0])
    reader = OutcomeReader(config, out)
    inbound = RecordCounter(config, {c.topics.inbound for c in config.clients if c.topics.inbound})
    chunks = ctx.factory.stream(phase.messages, who, phase.interfaces, phase.round_trip)
    async with reader, inbound:
        if preload:
            sent = _Bar(ctx.progress, "  into Kafka", phase.messages)
            await produce(config, chunks, out.ledger, None, sent.advance)
        timeline.mark("topics and messages ready")
        async with _gateway(ctx, tag, path, ops_port, config, timeline) as (gw, series):
            if warm_count:
                warm_up = ctx.factory.stream(warm_count, who, phase.interfaces, phase.round_trip)
                await produce(config, warm_up, out.ledger, None, warm=True)
                await wait_settled(reader, gw.egress_final, IDLE_TIMEOUT, on_progress=bar.set)
                timeline.mark("warm-up done")
            if preload:
                # The clock starts at the gateway's first consumed record, not at /readyz:
                # its consumer joins the group and fetches after that, and counting that
                # start-up would understate the maximum (and so every "share of max" phase).
                started, machine0 = await _first_consumed(gw, ctx.sim_pid)
                timeline.mark("first record consumed")
                requests0, diverted0, *stages0 = [0.0] * (2 + len(_STAGES))
            else:
                requests0, diverted0, *stages0 = await gw.metrics(_REQUESTS, _DIVERTED, *_STAGES)
                machine0 = _Machine.now(gw.pid, ctx.sim_pid)
                started = time.time()
            producing = None
            if not preload:
                producing = asyncio.create_task(produce(config, chunks, out.ledger, rate))
            ends: list[_Machine] = []
            await wait_settled(
                reader,
                gw.egress_final,
                IDLE_TIMEOUT,
                producing,
                bar.set,
                lambda: ends.append(_Machine.now(gw.pid, ctx.sim_pid)),
            )
            machine = ends[0] - machine0
            timeline.mark("measured messages final")
            requests1, diverted1, *stages1 = await gw.metrics(_REQUESTS, _DIVERTED, *_STAGES)
            if producing is not None:
                started, _ = producing.result()
            pushed = 0
            if phase.round_trip:
                back = _Bar(ctx.progress, "  pushed back", out.ledger.delivered)
                pushed = await _count(
                    inbound, gw.ingress_messages, out.ledger.delivered, 15.0, back
                )
                timeline.mark("pushed back")
        timeline.mark("gateway stopped")
    tally = out.ledger.measured
    measured = tally.delivered + tally.dead_lettered
    window = max(1e-6, out.last_at - started)
    cpu = machine.gateway
    figures: dict[str, Any] = {
        "kind": "egress",
        "label": phase.label,
        "batch": phase.batch,
        "clients": len(who),
        "interfaces": list(phase.interfaces),
        "offered_rate": rate,
        "rate_of_max": phase.rate_of_max,
        "dip_latency_ms": phase.dip_latency_ms,
        "backlog": phase.backlog,
        "preloaded": preload,
        **tally.as_json(),
        "warmup": out.ledger.warm_up.as_json(),
        "duplicates": out.ledger.duplicates,
        "unknown_outcomes": out.ledger.unknown,
        "seconds": window,
        "messages_per_second": measured / window,
        "signatures_per_second": (requests1 - requests0) / window,
        "requests": requests1 - requests0,
        "diverted_to_retry_topics": int(diverted1 - diverted0),
        "gateway_cpu_seconds": cpu,
        "gateway_cpu_us_per_message": cpu / measured * 1e6 if measured else None,
        **machine.figures(measured),
        "peak_rss_bytes": series.peak_rss_bytes,
        "rss_series": series.as_json(series.readings[0].at if series.readings else 0.0),
        "latency_ms": out.ack_latency.summary_ms(),
        "result_latency_ms": out.result_latency.summary_ms(),
        "latency_cdf": out.ack_latency.cdf_ms(),
        "stages": _stage_means(stages0, stages1),
        "dip_status": dict(out.statuses),
        "dead_letter_reasons": dict(out.reasons.most_common(5)),
        "timeline": timeline.marks,
    }
    if phase.round_trip:
        figures["round_trip"] = {
            "expected": out.ledger.delivered,
            "received": pushed,  # distinct messages: a repeat cannot make up for a loss
            "missing": max(0, out.ledger.delivered - pushed),
            "duplicates": inbound.duplicates,
        }
    return figures


async def _ingress_phase(ctx: Context, phase: IngressPhase, clients: int) -> dict[str, Any]:
    timeline = _Timeline()
    total = phase.pushes * phase.batch
    tag, ops_port, path, config = await _phase_config(ctx, 1, clients, dedup_window=total * 2)
    port = ctx.env.webhook_port
    prefix = config.ingress.publication_path
    targets = [
        {
            "recipient": d.dip_id,
            "public_url": f"{config.ingress.public_base_url}{prefix}/IF-043/{d.dip_id}",
            "connect_url": f"https://127.0.0.1:{port}{prefix}/IF-043/{d.dip_id}",
        }
        for c in config.clients[:clients]
        for d in c.dip_ids[:1]
    ]
    spec = {
        "pki": str(ctx.env.pki),
        "targets": targets,
        "pushes": phase.pushes,
        "batch": phase.batch,
        "push_rate": phase.push_rate,
        "concurrency": phase.concurrency,
        "push_timeout": PUSH_TIMEOUT,
        "tag": f"{ctx.run_tag}{ctx.phase_index:03d}",
    }
    bar = _Bar(ctx.progress, phase.label, total)
    inbound = RecordCounter(config, {c.topics.inbound for c in config.clients if c.topics.inbound})
    async with inbound:
        async with _gateway(ctx, tag, path, ops_port, config, timeline) as (gw, series):
            proc = await asyncio.create_subprocess_exec(
                *_python("gateway.loadtest.pusher"),
                orjson.dumps(spec).decode(),
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdout is not None
            await proc.stdout.readline()  # "signed": the clock starts
            timeline.mark("pushes signed")
            machine0 = _Machine.now(gw.pid, ctx.sim_pid)
            shown = asyncio.create_task(_show(bar, gw.ingress_messages))
            try:
                # every push answered: stored, or failed
                out = await _pusher_output(proc, gw.pid, phase.label, _pusher_deadline(phase))
            finally:
                shown.cancel()
            machine = _Machine.now(gw.pid, ctx.sim_pid) - machine0
            received = await _count(inbound, gw.ingress_messages, total, IDLE_TIMEOUT, bar)
            timeline.mark("messages in Kafka")
        timeline.mark("gateway stopped")
    if proc.returncode != 0:
        raise RuntimeError(f"{phase.label}: the pusher failed with {proc.returncode}")
    result = orjson.loads(out.decode().strip().splitlines()[-1])
    latency = Latency()
    for seconds in result["latencies"]:
        latency.record_seconds(seconds)
    cpu = machine.gateway
    elapsed = result["elapsed"]
    # CPU is per message stored, not offered: a push answered 503 before its body is read, or
    # one that never connected, costs the gateway next to nothing, so dividing by the offered
    # messages would make a struggling gateway look cheap.
    stored = min(received, total)
    return {
        "kind": "ingress",
        "label": phase.label,
        "pushes": phase.pushes,
        "batch": phase.batch,
        "offered_push_rate": phase.push_rate,
        "concurrency": phase.concurrency,
        "produced": total,
        "delivered": stored,
        "dead_lettered": 0,
        "missing": max(0, total - received),
        "duplicates": inbound.duplicates,
        "unidentified_records": inbound.unidentified,
        "push_statuses": result["statuses"],
        "seconds": elapsed,
        "messages_per_second": stored / elapsed if elapsed else 0.0,
        "pushes_per_second": phase.pushes / elapsed if elapsed else 0.0,
        "push_latency_ms": latency.summary_ms(),
        "latency_cdf": latency.cdf_ms(),
        "gateway_cpu_seconds": cpu,
        "gateway_cpu_us_per_message": cpu / stored * 1e6 if stored else None,
        **machine.figures(stored),
        "peak_rss_bytes": series.peak_rss_bytes,
        "rss_series": series.as_json(series.readings[0].at if series.readings else 0.0),
        "timeline": timeline.marks,
    }


def _pusher_deadline(phase: IngressPhase) -> float:
    """Seconds the pusher may take once its pushes are signed: the schedule (open loop), then
    at most every push timing out ``concurrency`` at a time (capped), and a margin."""
    schedule = phase.pushes / phase.push_rate if phase.push_rate else 0.0
    drain = math.ceil(phase.pushes / phase.concurrency) * PUSH_TIMEOUT
    return schedule + min(drain, PUSHER_DRAIN_CAP) + PUSHER_MARGIN


async def _pusher_output(
    proc: asyncio.subprocess.Process, gateway_pid: int, label: str, within: float
) -> bytes:
    """The pusher's stdout once it exits. A gateway that ends, or a pusher still running after
    ``within`` seconds, fails the phase (the pusher killed) rather than hanging the run."""
    done = asyncio.create_task(proc.communicate())
    deadline = time.monotonic() + within
    try:
        while True:
            finished, _ = await asyncio.wait({done}, timeout=0.5)
            if finished:
                return done.result()[0]
            if read_proc(gateway_pid) is None:
                what = "the gateway process ended while the pusher was sending"
            elif time.monotonic() > deadline:
                what = f"the pusher was not done within its deadline of {within:.0f}s"
            else:
                continue
            raise RuntimeError(f"{label}: {what}; the pusher was killed")
    finally:
        if not done.done():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await done


def _ready_within(config: GatewayConfig) -> float:
    """Seconds a gateway may take to start: loading a PFX checks its RSA-4096 key (~0.3 s of
    CPU each on the project machine, more when it is busy), once per client."""
    return 60.0 + 5.0 * len(config.clients)


def _python(module: str) -> list[str]:
    import sys

    return [sys.executable, "-m", module]


async def _baseline(ctx: Context, count: int) -> dict[str, Any]:
    ctx.phase_index += 1
    _, _, path, config = await _phase_config(ctx, 1, 1)
    who = senders(config, 1)
    ledger = Outcomes().ledger
    await produce(config, ctx.factory.stream(count, who, ("IF-043",), False), ledger, None)
    bar = _Bar(ctx.progress, "naive baseline", 1)
    try:
        baseline = await limits.naive_baseline(path, count)
    except FileNotFoundError as exc:
        return {"skipped": str(exc)}
    bar.advance(1)
    return baseline.as_json()
