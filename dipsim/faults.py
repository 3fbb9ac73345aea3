"""Fault injection: what a request suffers before the simulator looks at it.

One :class:`FaultInjector` holds the current :class:`FaultConfig` and a ``random.Random``
seeded from the config, so a run with the same seed and the same request sequence sees the
same faults. Per request exactly one "outcome" draw picks at most one of 429 / 500 / 502 /
503 / 504 / timeout / reset (shares are cumulative, in that order); latency and slow reads
come on top; partial failures are drawn per message of an otherwise accepted request.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The outcome faults, in the order their shares are stacked.
OUTCOME_FAULTS = ("429", "500", "502", "503", "504", "timeout", "reset")


class FaultConfig(BaseModel):
    """Fault shares are probabilities in [0, 1]; their sum must not exceed 1."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    rate_429: float = Field(default=0.0, ge=0, le=1)
    retry_after_seconds: int = Field(default=1, ge=0)
    rate_500: float = Field(default=0.0, ge=0, le=1)
    rate_502: float = Field(default=0.0, ge=0, le=1)
    rate_503: float = Field(default=0.0, ge=0, le=1)
    rate_504: float = Field(default=0.0, ge=0, le=1)
    rate_timeout: float = Field(default=0.0, ge=0, le=1)
    #: How long a "timed out" request is held before its connection is dropped.
    timeout_hold_seconds: float = Field(default=30.0, ge=0)
    rate_reset: float = Field(default=0.0, ge=0, le=1)
    #: Share of the messages of an accepted submit answered with ``partial_message`` (207).
    rate_partial: float = Field(default=0.0, ge=0, le=1)
    partial_message: str = "MSG1001 - Schema Failure"
    partial_help: str = "fault injection: simulated rejection of this message"
    #: Share of requests whose body is read slowly: ``slow_read_ms`` per 16 KiB chunk.
    rate_slow_read: float = Field(default=0.0, ge=0, le=1)
    slow_read_ms: float = Field(default=0.0, ge=0)
    #: Path prefixes the faults apply to (never ``/_sim``).
    paths: list[str] = Field(default_factory=lambda: ["/dip-channel", "/statusmessage"])
    #: DIP IDs (owners of the request's API key) the faults apply to; None: every request.
    #: The DIP throttles per API key, so one participant can be refused while others are not.
    senders: list[str] | None = None
    #: Reseed the random stream when these faults are applied (None keeps the current one).
    seed: int | None = None

    @model_validator(mode="after")
    def _shares(self) -> FaultConfig:
        total = sum(self.rate(name) for name in OUTCOME_FAULTS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"the outcome fault shares add up to {total:.3f} > 1")
        return self

    def rate(self, name: str) -> float:
        return float(getattr(self, f"rate_{name}"))

    def applies_to(self, path: str, sender: str | None = None) -> bool:
        if path.startswith("/_sim") or not any(path.startswith(p) for p in self.paths):
            return False
        return self.senders is None or sender in self.senders


@dataclass(frozen=True)
class Decision:
    outcome: str | None  # one of OUTCOME_FAULTS or None
    delay_seconds: float
    slow_read_seconds: float  # per 16 KiB chunk; 0 = read normally


class FaultInjector:
    """Thread-safe holder of the fault config, the seeded stream and the hit counters."""

    def __init__(self, config: FaultConfig | None = None, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self.config = config or FaultConfig()
        self._random = random.Random(self.config.seed if self.config.seed is not None else seed)
        self.hits: Counter[str] = Counter()
        self._active = self._is_active(self.config)

    @staticmethod
    def _is_active(config: FaultConfig) -> bool:
        return bool(
            config.latency_ms
            or config.jitter_ms
            or config.rate_partial
            or config.rate_slow_read
            or any(config.rate(n) for n in OUTCOME_FAULTS)
        )

    @property
    def active(self) -> bool:
        return self._active

    def set(self, config: FaultConfig | dict[str, Any], seed: int | None = None) -> FaultConfig:
        """Replace the faults; reseed when ``seed`` (or ``config.seed``) is given."""
        cfg = config if isinstance(config, FaultConfig) else FaultConfig.model_validate(config)
        with self._lock:
            self.config = cfg
            self._active = self._is_active(cfg)
            new_seed = seed if seed is not None else cfg.seed
            if new_seed is not None:
                self._random = random.Random(new_seed)
        return cfg

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._random = random.Random(seed)

    def decide(self, path: str, sender: str | None = None) -> Decision | None:
        """The faults for one request (``sender``: the owner of its API key, if known), or None
        when none apply to it."""
        cfg = self.config
        if not self._active or not cfg.applies_to(path, sender):
            return None
        with self._lock:
            draw = self._random.random()
            jitter = self._random.random() if cfg.jitter_ms else 0.0
            slow = self._random.random() < cfg.rate_slow_read if cfg.rate_slow_read else False
        outcome: str | None = None
        edge = 0.0
        for name in OUTCOME_FAULTS:
            edge += cfg.rate(name)
            if draw < edge:
                outcome = name
                break
        delay = (cfg.latency_ms + jitter * cfg.jitter_ms) / 1000.0
        with self._lock:
            if outcome:
                self.hits[outcome] += 1
            if delay > 0:
                self.hits["latency"] += 1
            if slow:
                self.hits["slow_read"] += 1
        return Decision(outcome, delay, cfg.slow_read_ms / 1000.0 if slow else 0.0)

    def partial_failures(self, count: int) -> list[bool]:
        """For each of ``count`` messages: True when it must be failed (207 partial)."""
        rate = self.config.rate_partial
        if not rate or not count:
            return [False] * count
        with self._lock:
            picks = [self._random.random() < rate for _ in range(count)]
            failed = sum(picks)
            if failed:
                self.hits["partial_messages"] += failed
                self.hits["partial"] += 1
        return picks

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"config": self.config.model_dump(mode="json"), "hits": dict(self.hits)}
