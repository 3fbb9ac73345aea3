"""Retry policy: exponential backoff with full jitter, honouring the DIP's ``Retry-After``.

Full jitter (a uniform delay between zero and the exponential cap) spreads the retries of many
batches that failed together, so a DIP recovering from overload is not hit by a synchronised
wave. When the DIP says how long to wait (``Retry-After``, seconds or an HTTP date) the gateway
waits at least that long; an absurd value is capped so one answer cannot park a partition for
hours.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

from gateway.config import EgressSettings

RETRY_AFTER_CAP_SECONDS: Final = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    initial_seconds: float
    max_seconds: float

    @classmethod
    def from_settings(cls, egress: EgressSettings) -> RetryPolicy:
        return cls(
            egress.max_attempts, egress.backoff_initial_ms / 1000, egress.backoff_max_ms / 1000
        )

    def cap(self, attempt: int) -> float:
        """The upper bound of the jittered delay after failed attempt ``attempt`` (1-based)."""
        return min(self.max_seconds, self.initial_seconds * float(2 ** min(attempt - 1, 62)))

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None``: give up (dead-letter)."""
        if attempt >= self.max_attempts:
            return None
        jittered = rand() * self.cap(attempt)
        if retry_after is not None:
            return max(min(retry_after, RETRY_AFTER_CAP_SECONDS), jittered)
        return jittered


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable (the normal backoff applies then)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # str.isdigit() also takes "²", float() does not
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year past 9999 overflows
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
