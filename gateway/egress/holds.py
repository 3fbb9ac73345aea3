"""Per-client holds: when the DIP pushes back on one client MP, that client waits, as a whole.

A 429 is about one API key's rate limit; 502-504 and no answer say the DIP cannot take the
client's requests now; 401/403 with every key say its credentials are wrong. None of them is
about the message, so none of them should burn a message's attempts or dead-letter it after a
few seconds, and none of them concerns the other clients. Instead the client is **held**:

* its batches wait here without holding a request slot (:mod:`gateway.egress.fairness`);
* one batch at a time **probes** once the hold's time is up: after the DIP's ``Retry-After``
  when it gives one, else after an exponential back-off with equal jitter (never near zero),
  so the client's request rate under 429 follows the DIP, not the number of its waiting
  batches;
* the probe's answer decides for all: any answer that is not another push-back opens the
  client; another push-back extends the hold;
* a client stopped by 401/403 is probed every ``auth_probe_seconds``, and at once when its
  API key files change (the caller's ``token``).

How long a message may wait in a hold is the caller's business (``egress.hold_budget_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.egress.retry import RETRY_AFTER_CAP_SECONDS, RetryPolicy

_TOKEN_CHECK_SECONDS = 5.0
"""How often a client stopped for its credentials looks whether its key files changed."""


class HoldKind(StrEnum):
    THROTTLED = "throttled"  # 429
    UNAVAILABLE = "unavailable"  # 502, 503, 504, no answer
    AUTH = "auth"  # 401 with every key, 403


_HOLD_STATUSES = {429: HoldKind.THROTTLED, 502: HoldKind.UNAVAILABLE}
_HOLD_STATUSES.update({503: HoldKind.UNAVAILABLE, 504: HoldKind.UNAVAILABLE})


def hold_kind(status: int | None, *, retryable: bool) -> HoldKind | None:
    """The hold a DIP answer calls for (``status`` None: no answer), or None: the answer is
    about the request, not the client."""
    if status is None:
        return HoldKind.UNAVAILABLE if retryable else None
    if status in (401, 403) and not retryable:
        return HoldKind.AUTH
    return _HOLD_STATUSES.get(status) if retryable else None


@dataclass(slots=True)
class Hold:
    kind: HoldKind
    since: float  # clock() when the client was first held (this episode)
    until: float  # clock() from which one batch may probe
    failures: int
    reason: str
    token: Hashable = None  # the credentials the DIP refused (AUTH)
    probing: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class ClientHolds:
    """Hold state per client; ``admit`` is where held batches wait."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        auth_probe_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        on_change: Callable[[str, Hold | None], None] | None = None,
        wait: Callable[[asyncio.Event, float | None], Awaitable[None]] | None = None,
    ) -> None:
        self._policy = policy
        self._wait = wait or _wait
        self._auth_probe = auth_probe_seconds
        self._clock = clock
        self._rand = rand
        self._on_change = on_change
        self._holds: dict[str, Hold] = {}
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Callers waiting in :meth:`admit` now (a drain need not wait for them: they would
        wait out the hold)."""
        return self._waiting

    def get(self, client: str) -> Hold | None:
        return self._holds.get(client)

    def held(self) -> dict[str, Hold]:
        return dict(self._holds)

    def hold(
        self,
        client: str,
        kind: HoldKind,
        reason: str,
        retry_after: float | None = None,
        *,
        probe: bool = False,
        token: Hashable = None,
    ) -> Hold:
        """The DIP pushed back on ``client``: hold it, or extend its hold.

        ``probe``: the answer is to this hold's probe, so the back-off grows. Answers to
        requests that were already under way when the hold began only stretch it to their
        ``Retry-After``: 32 batches refused at once are one refusal, not 32."""
        now = self._clock()
        current = self._holds.get(client)
        if (
            current is not None
            and not probe
            and not (kind is HoldKind.AUTH and current.kind is not HoldKind.AUTH)
        ):
            if retry_after is not None:
                current.until = max(current.until, now + min(retry_after, RETRY_AFTER_CAP_SECONDS))
            current.reason = reason
            return current
        failures = 1 if current is None else current.failures + 1
        if kind is HoldKind.AUTH:
            delay = self._auth_probe
        elif retry_after is not None:  # the DIP says when: one probe per Retry-After
            delay = max(min(retry_after, RETRY_AFTER_CAP_SECONDS), self._policy.initial_seconds)
        else:
            delay = self._policy.cap(failures) * (0.5 + self._rand() / 2)  # never ~0
        since = now if current is None else current.since
        hold = Hold(kind, since, now + delay, failures, reason, token)
        self._holds[client] = hold
        if current is not None:
            current.changed.set()  # its waiters look again: a new deadline, a free probe
        if self._on_change is not None:
            self._on_change(client, hold)
        return hold

    def clear(self, client: str) -> None:
        """The DIP answered ``client`` normally: every waiting batch may go."""
        hold = self._holds.pop(client, None)
        if hold is not None:
            hold.changed.set()
            if self._on_change is not None:
                self._on_change(client, None)

    async def admit(self, client: str, token: Callable[[], Hashable] | None = None) -> bool:
        """Return when ``client`` may send: at once when it is not held (False), or when this
        caller is to probe (True: it must report with ``hold``, ``clear`` or ``abandon``)."""
        while True:
            hold = self._holds.get(client)
            if hold is None:
                return False
            now = self._clock()
            due = hold.until
            if hold.kind is HoldKind.AUTH and token is not None and token() != hold.token:
                due = now  # new key files: try them now
            if not hold.probing and now >= due:
                hold.probing = True
                return True
            wait = None if hold.probing else due - now
            if hold.kind is HoldKind.AUTH and token is not None:
                wait = _TOKEN_CHECK_SECONDS if wait is None else min(wait, _TOKEN_CHECK_SECONDS)
            self._waiting += 1
            try:
                await self._wait(hold.changed, wait)
            finally:
                self._waiting -= 1

    def lapse(self, client: str, *, after: float) -> bool:
        """Clear a hold whose probe is ``after`` seconds overdue with nobody probing: the
        batches that would probe are elsewhere (another replica reads the client's retry
        topic), so this replica would keep the client held, and diverting, for ever. The
        replica that sends its records holds it again if the DIP still pushes back."""
        hold = self._holds.get(client)
        if hold is None or hold.probing or self._clock() < hold.until + after:
            return False
        self.clear(client)
        return True

    def abandon(self, client: str) -> None:
        """The probe ended without an answer to judge by (cancelled): another batch may probe."""
        hold = self._holds.get(client)
        if hold is not None and hold.probing:
            hold.probing = False
            hold.changed.set()
            hold.changed = asyncio.Event()


async def _wait(event: asyncio.Event, seconds: float | None) -> None:
    """Until ``event`` is set or ``seconds`` have passed (None: no limit)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
