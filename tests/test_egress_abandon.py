"""Abandoning in-flight work (revoke, shutdown) must not start the batches queued behind it.

A batch waiting on the key gate is started when the batch ahead of it finishes. Cancelling the
batch ahead finishes it too (its ``finally`` releases its keys); if that started the waiting
batch, the batch would be sent after the partition was revoked (maybe while another gateway
owns it) or against a stopping producer. The DIP side is a stand-in that never answers: this
is task bookkeeping, no I/O is involved.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from gateway.egress.batching import Batcher
from gateway.egress.routing import Prepared, Router
from gateway.egress.service import EgressService
from tests.test_egress_support import ALICE_ID, BOB_ID, make_config, message


class _SilentSender:
    """Records which batches were handed to the DIP; never answers."""

    def __init__(self) -> None:
        self.started: list[int] = []

    async def deliver(self, batch: Any) -> list[Any]:
        self.started.append(batch.batch_id)
        await asyncio.Event().wait()
        return []


async def test_abandon_starts_no_batch_that_was_waiting_on_the_gate() -> None:
    config = make_config()
    service = EgressService(config, None, None)  # type: ignore[arg-type]
    sender = _SilentSender()
    service._sender = sender  # type: ignore[assignment]
    router = Router(config)
    batcher = Batcher(1, 1_000_000, 10.0, service._gate)
    service._batcher = batcher

    def keyed(sender_id: str, seq: int) -> Prepared:
        out = router.prepare(message(sender_id, seq, offset=seq, key=b"meter-1"), date.today())
        assert isinstance(out, Prepared)
        return out

    (first,) = batcher.add(keyed(ALICE_ID, 0), 0.0)
    (second,) = batcher.add(keyed(BOB_ID, 1), 0.0)  # same key: waits for the first
    service._dispatch(first)
    service._dispatch(second)
    await asyncio.sleep(0.01)
    assert sender.started == [first.batch_id]
    assert second.batch_id in service._waiting

    await asyncio.wait_for(service._abandon(), 5)
    await asyncio.sleep(0.01)
    assert sender.started == [first.batch_id]  # the waiting batch was not started
    assert not service._tasks and not service._waiting
