"""One DIP request and its answer, as the client saw them, for whoever wants to keep a record.

:class:`DipClient` hands one :class:`DipExchange` per request it sent (every attempt: retries,
the secondary API key, 413 halves) to an optional :class:`ExchangeObserver`, the submission
ledger in the gateway. The exchange holds references to what the client already has (the
signature headers, the credential, the answer's bytes), so making one costs one small object;
what to keep of it is the observer's business. The request body and the API key are not in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.signing.credentials import SigningCredential


@dataclass(frozen=True, slots=True)
class DipExchange:
    """What was sent (signed for ``sender_dip_id`` with ``credential``) and what came back.

    ``status`` is None when no answer came (``error`` says why: a transport error, or the
    request was cancelled while in flight, so the DIP may or may not have it)."""

    method: str
    path: str
    sender_dip_id: str
    references: Sequence[str | None] | None
    signature: Mapping[str, str]  # the X-DIP-* headers sent: date and content hash among them
    credential: SigningCredential
    status: int | None
    response: bytes = b""
    error: str | None = None


class ExchangeObserver(Protocol):
    """Told of every exchange; ``settled`` returns once what it was told so far is safe."""

    def observe(self, exchange: DipExchange) -> None:
        """Called on the event loop, once per request sent; must not block or raise."""

    async def settled(self) -> None:
        """Wait until every exchange observed so far is recorded durably; raise if one
        cannot be."""
