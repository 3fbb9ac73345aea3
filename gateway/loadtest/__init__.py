"""``dcp-gateway loadtest``: end-to-end load scenarios against a gateway in its own process.

Nothing in the gateway imports this package; it drives the gateway from outside, as a load
tester would (Kafka in, the DIP simulator's answers and pushes, Kafka out).
"""

from gateway.loadtest import report
from gateway.loadtest.runner import Options, run_scenario
from gateway.loadtest.scenarios import SCENARIOS, EgressPhase, IngressPhase, Scenario

__all__ = [
    "SCENARIOS",
    "EgressPhase",
    "IngressPhase",
    "Options",
    "Scenario",
    "report",
    "run_scenario",
]
