"""Liveness and readiness for Kubernetes probes.

Components (egress consumer, ingress webhook, Kafka producer) register a named check; ``/livez``
fails only when a component is wedged, ``/readyz`` when one cannot do its work right now (Kafka
unreachable, credentials failed to load). Kept free of I/O: components push their state here.

Liveness is judged only for components that send heartbeats (:meth:`Health.beat`): the first
beat opts a component in, and from then on a heartbeat older than ``stall_seconds`` marks it
stalled. A component that only reports readiness (:meth:`Health.set`) has given no liveness
signal, so its age proves nothing: an idle but healthy component must not fail ``/livez``.
Components that opt in beat on their own schedule, well inside ``stall_seconds``, whether or
not there is traffic (see :attr:`Health.beat_interval`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class _Component:
    ready: bool = False
    detail: str = "starting"
    heartbeat: float = field(default_factory=time.monotonic)
    beats: bool = False  # opted in to liveness by beating at least once


class Health:
    def __init__(self, stall_seconds: float = 120.0) -> None:
        if stall_seconds <= 0:
            raise ValueError("stall_seconds must be positive")
        self._components: dict[str, _Component] = {}
        self._stall = stall_seconds

    @property
    def beat_interval(self) -> float:
        """How often a component that beats on a timer should beat: a quarter of the stall
        window (at most 5 s), so one late beat never reads as a stall."""
        return min(5.0, self._stall / 4)

    def set(self, name: str, ready: bool, detail: str = "") -> None:
        comp = self._components.setdefault(name, _Component())
        comp.ready, comp.detail, comp.heartbeat = ready, detail or comp.detail, time.monotonic()

    def beat(self, name: str) -> None:
        comp = self._components.setdefault(name, _Component())
        comp.heartbeat, comp.beats = time.monotonic(), True

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
            stalled = comp.beats and now - comp.heartbeat > self._stall
            ok = ok and not stalled
            report[name] = f"stalled {now - comp.heartbeat:.0f}s" if stalled else "ok"
        return ok, report
