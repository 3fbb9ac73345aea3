"""Liveness and readiness for Kubernetes probes.

Components (egress consumer, ingress webhook, Kafka producer) register a named check; ``/livez``
fails only when a component is wedged, ``/readyz`` when one cannot do its work right now (Kafka
unreachable, credentials failed to load). Kept free of I/O: components push their state here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class _Component:
    ready: bool = False
    detail: str = "starting"
    heartbeat: float = field(default_factory=time.monotonic)


class Health:
    def __init__(self, stall_seconds: float = 120.0) -> None:
        self._components: dict[str, _Component] = {}
        self._stall = stall_seconds

    def set(self, name: str, ready: bool, detail: str = "") -> None:
        comp = self._components.setdefault(name, _Component())
        comp.ready, comp.detail, comp.heartbeat = ready, detail or comp.detail, time.monotonic()

    def beat(self, name: str) -> None:
        self._components.setdefault(name, _Component()).heartbeat = time.monotonic()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        report = {
            n: ("ok" if c.ready else f"not ready: {c.detail}") for n, c in self._components.items()
        }
        return bool(self._components) and all(c.ready for c in self._components.values()), report

    def liveness(self) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        report = {}
        ok = True
        for name, comp in self._components.items():
            stalled = now - comp.heartbeat > self._stall
            ok = ok and not stalled
            report[name] = f"stalled {now - comp.heartbeat:.0f}s" if stalled else "ok"
        return ok, report
