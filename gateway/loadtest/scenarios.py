"""Named load-test scenarios: what each phase sends, how fast, against which DIP behaviour.

A scenario is plain data; :mod:`gateway.loadtest.runner` carries it out. Phases run one after
another against the same broker and simulator, each with a freshly started gateway process (so
its CPU, peak RSS and warm-up belong to that phase alone) and its own topics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

#: The interfaces whose publications the dev PKI's DIP IDs subscribe to: with these, every
#: message a round-trip phase sends comes back to a client's inbound topic.
PUBLISHED = ("IF-043", "IF-021")


@dataclass(frozen=True)
class EgressPhase:
    """Kafka -> gateway -> DIP: ``messages`` records spread over ``clients`` senders."""

    label: str
    messages: int
    batch: int = 500
    clients: int = 1
    interfaces: tuple[str, ...] = ("IF-043", "IF-021", "IF-044")
    #: Messages/s offered (open loop); None: as fast as the producer goes.
    rate: float | None = None
    #: Offered rate as a share of the highest msgs/s an earlier flat-out phase of this run
    #: reached at the same batch size.
    rate_of_max: float | None = None
    dip_latency_ms: float = 0.0
    #: Produce everything before the gateway starts (a backlog to drain).
    backlog: bool = False
    #: Address messages to the other clients, so the simulator pushes each accepted message
    #: back to the gateway's webhook (DIP -> gateway -> client topics), as in production.
    round_trip: bool = False

    def __post_init__(self) -> None:
        if self.round_trip and not set(self.interfaces) <= set(PUBLISHED):
            raise ValueError(f"{self.label}: round trips need interfaces in {PUBLISHED}")


@dataclass(frozen=True)
class IngressPhase:
    """DIP pushes -> gateway webhook -> client topics: ``pushes`` pre-signed pushes of
    ``batch`` publications offered at ``push_rate`` pushes/s (None: closed loop, flat out)."""

    label: str
    pushes: int
    push_rate: float | None = None
    batch: int = 100
    concurrency: int = 16


Phase = EgressPhase | IngressPhase


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    phases: tuple[Phase, ...]
    #: Measure raw RSA-4096 signing (1 thread, all cores) with the same keys.
    limits: bool = True
    #: Messages for the naive consume-sign-POST-commit baseline (0: not run).
    baseline_messages: int = 0
    #: Seconds per raw-signing measurement.
    signing_seconds: float = 2.0
    #: Clients in the dev PKI (the most any phase uses).
    clients: int = field(default=0)

    def __post_init__(self) -> None:
        wanted = max([2, *(p.clients for p in self.egress_phases)])
        object.__setattr__(self, "clients", max(self.clients, wanted))

    @property
    def egress_phases(self) -> list[EgressPhase]:
        return [p for p in self.phases if isinstance(p, EgressPhase)]


def _sweep(fractions: tuple[float, ...], messages: int) -> tuple[Phase, ...]:
    top = EgressPhase("sweep max (flat out)", messages, batch=500)
    return (
        top,
        *(
            EgressPhase(f"sweep {f:.0%} of max", messages, batch=500, rate_of_max=f)
            for f in fractions
        ),
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "smoke",
            "a short run of every path: batched egress with round-trip pushes, batch 1, "
            "a pre-signed ingress burst, raw signing and the naive baseline (CI, < 1 min)",
            (
                EgressPhase(
                    "batched, round trip",
                    3000,
                    batch=100,
                    clients=2,
                    round_trip=True,
                    interfaces=PUBLISHED,
                ),
                EgressPhase("batch 1", 60, batch=1, clients=2),
                IngressPhase("ingress", 30, push_rate=None),
            ),
            baseline_messages=20,
            signing_seconds=0.5,
        ),
        Scenario(
            "batch",
            "batch 1 against batched (50, 100, 500): each flat out, then open loop at half that",
            tuple(
                phase
                for batch, messages in ((1, 500), (50, 20_000), (100, 30_000), (500, 60_000))
                for phase in (
                    EgressPhase(f"batch {batch}", messages, batch=batch),
                    EgressPhase(
                        f"batch {batch} at half of max",
                        messages // 2,
                        batch=batch,
                        rate_of_max=0.5,
                    ),
                )
            ),
            baseline_messages=200,
        ),
        Scenario(
            "clients",
            "1, 10 and 100 sending clients, batch 500 (one signing key per client)",
            (
                EgressPhase("1 client", 40_000, clients=1),
                EgressPhase("10 clients", 40_000, clients=10),
                EgressPhase("100 clients", 40_000, clients=100),
            ),
        ),
        Scenario(
            "latency",
            "the DIP answering 150 ms later: concurrency must hide it (batch 1 and 500)",
            (
                # Long enough that the delayed phase's first 150 ms, in which no answer can
                # come back, is not a large part of its window (at 500 it was ~17 %).
                EgressPhase("batch 1", 2_000, batch=1),
                EgressPhase("batch 1, DIP +150 ms", 2_000, batch=1, dip_latency_ms=150),
                EgressPhase("batch 500", 40_000),
                EgressPhase("batch 500, DIP +150 ms", 40_000, dip_latency_ms=150),
            ),
        ),
        Scenario(
            "latency-batch1",
            "batch 1 only, without and with 150 ms on every DIP answer: the pool and the "
            "request slots must hide the round trip (--messages for a longer run)",
            (
                EgressPhase("batch 1", 1_500, batch=1),
                EgressPhase("batch 1, DIP +150 ms", 1_500, batch=1, dip_latency_ms=150),
            ),
        ),
        Scenario(
            "sweep",
            "open-loop offered rates from a quarter to 1.2x of the flat-out maximum: the knee",
            _sweep((0.25, 0.5, 0.75, 0.9, 1.0, 1.2), 40_000),
        ),
        Scenario(
            "backlog",
            "1,000,000 records waiting before the gateway starts: memory must stay bounded",
            (EgressPhase("backlog 1,000,000", 1_000_000, backlog=True, interfaces=("IF-043",)),),
            limits=False,
        ),
        Scenario(
            "ingress",
            "pre-signed pushes of 100 publications at rising push rates, then flat out",
            (
                *(
                    IngressPhase(f"{r} pushes/s", max(200, r * 8), push_rate=r)
                    for r in (25, 50, 100, 200, 400)
                ),
                IngressPhase("flat out", 1500),
            ),
            limits=False,
        ),
    )
}


def scaled(scenario: Scenario, messages: int | None) -> Scenario:
    """``scenario`` with every egress phase's message count replaced (``--messages``)."""
    if messages is None:
        return scenario
    phases = tuple(
        replace(p, messages=messages) if isinstance(p, EgressPhase) else p for p in scenario.phases
    )
    return replace(scenario, phases=phases)


#: The name of the scenario made from the command line's --rate, --batch, ... options.
CUSTOM = "custom"


def custom(
    messages: int,
    *,
    batch: int = 500,
    clients: int = 1,
    rate: float | None = None,
    interfaces: tuple[str, ...] = ("IF-043", "IF-021", "IF-044"),
    dip_latency_ms: float = 0.0,
) -> Scenario:
    """One egress phase as a load tester describes it: ``messages`` over ``clients`` senders
    at ``rate`` msgs/s open loop (None: as fast as possible; batched, that is a backlog), with
    the DIP answering ``dip_latency_ms`` later. Raises ValueError naming a bad value."""
    if rate is not None and not 0 < rate < math.inf:
        raise ValueError(f"--rate {rate:g} must be above 0 msgs/s (leave it out for flat out)")
    if not 1 <= batch <= 10_000:
        raise ValueError(f"--batch {batch} must be 1 to 10,000 (egress.max_batch_messages)")
    if clients < 1:
        raise ValueError(f"--clients {clients} must be at least 1")
    if not 0 <= dip_latency_ms < math.inf:
        raise ValueError(f"--dip-latency-ms {dip_latency_ms:g} must be 0 or more")
    offered = f"{rate:,.0f} msgs/s" if rate else "flat out"
    label = f"batch {batch}, {clients} client{'s' if clients > 1 else ''}, {offered}"
    if dip_latency_ms:
        label += f", DIP +{dip_latency_ms:g} ms"
    phase = EgressPhase(
        label,
        messages,
        batch=batch,
        clients=clients,
        interfaces=interfaces,
        rate=rate,
        dip_latency_ms=dip_latency_ms,
    )
    description = f"one phase from the command line: {messages:,} messages, {label}"
    return Scenario(CUSTOM, description, (phase,))
