"""``dcp-gateway loadtest``: end-to-end load scenarios against a gateway in its own process.

Nothing in the gateway imports this package; it drives the gateway from outside, as a load
tester would (Kafka in, the DIP simulator's answers and pushes, Kafka out). Its names load
lazily: the CLI reads the scenario table at every start, and must not pay for the runner (nor
fail where the production image leaves the demo out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway._lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.loadtest import report
    from gateway.loadtest.runner import Options, run_scenario
    from gateway.loadtest.scenarios import SCENARIOS, EgressPhase, IngressPhase, Scenario

__getattr__ = lazy_exports(
    __name__,
    {
        "Options": "gateway.loadtest.runner",
        "run_scenario": "gateway.loadtest.runner",
        "SCENARIOS": "gateway.loadtest.scenarios",
        "EgressPhase": "gateway.loadtest.scenarios",
        "IngressPhase": "gateway.loadtest.scenarios",
        "Scenario": "gateway.loadtest.scenarios",
    },
)

__all__ = [
    "SCENARIOS",
    "EgressPhase",
    "IngressPhase",
    "Options",
    "Scenario",
    "report",
    "run_scenario",
]
