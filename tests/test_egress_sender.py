"""The batch sender's loop against a scripted DIP: retries, Retry-After, 401 key fallback,
413 halving, give-up, transport errors and unsignable senders (no network involved)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from gateway.dip import DipClient, DipResponse, DipTransportError
from gateway.egress import sender as sender_module
from gateway.egress.batching import Batch, Batcher
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.retry import RetryPolicy
from gateway.egress.routing import Prepared, Router
from gateway.egress.sender import BatchSender, Delivery
from gateway.ops.logging import LogLimiter
from gateway.signing.keystore import UnknownSender
from tests.test_egress_support import ALICE_ID, make_config, message

_ROUTER = Router(make_config())


class _Keys:
    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = keys

    def api_keys_for(self, dip_id: str) -> tuple[str, ...]:
        if dip_id != ALICE_ID:
            raise UnknownSender(dip_id)
        return self._keys


class _ScriptedDip:
    """Answers requests from a script; records what was sent."""

    def __init__(self, answers: list[Any], keys: tuple[str, ...] = ("primary",)) -> None:
        self.keystore = _Keys(keys)
        self._answers = deque(answers)
        self.sent: list[tuple[str, list[str], str | None]] = []

    async def request(
        self,
        method: str,
        path: str,
        sender: str,
        body: bytes,
        *,
        api_key: str | None = None,
        references: Sequence[str | None] | None = None,
    ) -> DipResponse:
        refs = [
            i["payload"]["CommonBlock"]["S1"]["senderUniqueReference"] for i in orjson.loads(body)
        ]
        assert references == refs  # what the ledger records is what the body carries
        self.sent.append((path, refs, api_key))
        answer = self._answers.popleft()
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer(refs)
        status, headers, payload = answer
        return DipResponse(status, headers, payload, "https://dip.example" + path)


def _batch(n: int) -> Batch:
    batcher = Batcher(n, 10_000_000, 10.0)
    closed: list[Batch] = []
    for i in range(n):
        prepared = _ROUTER.prepare(message(ALICE_ID, seq=i, offset=i), date(2026, 11, 23))
        assert isinstance(prepared, Prepared)
        closed += batcher.add(prepared, 0.0)
    assert len(closed) == 1
    return closed[0]


def _ok(refs: list[str]) -> tuple[int, dict[str, str], bytes]:
    entries = [
        {"senderUniqueReference": r, "transactionID": f"T-{r}", "message": "MSG0000 - Success"}
        for r in refs
    ]
    return 201, {}, orjson.dumps({"messageArray": entries})


def _sender(dip: _ScriptedDip, attempts: int = 4) -> tuple[BatchSender, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(max_attempts=attempts, initial_seconds=0.1, max_seconds=1.0)
    return BatchSender(cast(DipClient, dip), policy, sleep=sleep, rand=lambda: 1.0), sleeps


async def test_retries_honour_retry_after_then_succeed() -> None:
    dip = _ScriptedDip([(429, {"Retry-After": "2"}, b""), (503, {}, b""), _ok])
    sender, sleeps = _sender(dip)
    out = await sender.deliver(_batch(3))
    assert sleeps == [2.0, 0.2]
    assert [d.result.accepted for d in out] == [True] * 3
    assert [d.attempts for d in out] == [3] * 3
    assert all(type(d) is Delivery and len(d) == len(Delivery._fields) for d in out)
    assert out[0].result.transaction_id == f"T-{out[0].prepared.message.sender_unique_reference}"
    assert len({tuple(refs) for _, refs, _ in dip.sent}) == 1  # the same batch every time


async def test_gives_up_after_max_attempts() -> None:
    dip = _ScriptedDip([(500, {}, b"boom")] * 3)
    sender, sleeps = _sender(dip, attempts=3)
    out = await sender.deliver(_batch(2))
    assert len(sleeps) == 2
    assert all(not d.result.accepted for d in out)
    assert (
        out[0].result.reason
        == "gave up after 3 attempts: DIP answered 500 Internal Server Error: boom"
    )
    assert out[0].status == 500


async def test_transport_errors_are_retried() -> None:
    dip = _ScriptedDip([DipTransportError("refused"), DipTransportError("slow"), _ok])
    sender, _ = _sender(dip)
    out = await sender.deliver(_batch(1))
    assert out[0].result.accepted and out[0].attempts == 3


async def test_401_tries_the_secondary_key_once() -> None:
    dip = _ScriptedDip([(401, {}, b""), _ok], keys=("primary", "secondary"))
    sender, _ = _sender(dip)
    out = await sender.deliver(_batch(2))
    assert [k for _, _, k in dip.sent] == ["primary", "secondary"]
    assert all(d.result.accepted for d in out)
    dip = _ScriptedDip([(401, {}, b""), (401, {}, b"")], keys=("primary", "secondary"))
    sender, _ = _sender(dip)
    out = await sender.deliver(_batch(1))
    assert len(dip.sent) == 2
    assert out[0].result.reason == "DIP answered 401 Unauthorized"


async def test_403_rejects_at_once() -> None:
    dip = _ScriptedDip([(403, {}, b'{"message": "Forbidden"}')])
    sender, sleeps = _sender(dip)
    out = await sender.deliver(_batch(2))
    assert sleeps == [] and len(dip.sent) == 1
    assert all(not d.result.accepted for d in out)


async def test_413_halves_in_order_and_rejects_a_single_oversized_message() -> None:
    def too_large_if_over_one(refs: list[str]) -> tuple[int, dict[str, str], bytes]:
        return (413, {}, b"") if len(refs) > 1 else _ok(refs)

    dip = _ScriptedDip([too_large_if_over_one] * 7)
    sender, _ = _sender(dip)
    batch = _batch(4)
    out = await sender.deliver(batch)
    assert [len(refs) for _, refs, _ in dip.sent] == [4, 2, 1, 1, 2, 1, 1]
    sent_singles = [refs[0] for _, refs, _ in dip.sent if len(refs) == 1]
    assert sent_singles == [p.message.sender_unique_reference for p in batch.items]
    assert [d.prepared for d in out] == batch.items
    assert all(d.result.accepted for d in out)

    dip = _ScriptedDip([(413, {}, b"")])
    sender, _ = _sender(dip)
    single = await sender.deliver(_batch(1))
    assert single[0].result.reason == "DIP answered 413 Request Entity Too Large"


async def test_207_partial_results() -> None:
    def partial(refs: list[str]) -> tuple[int, dict[str, str], bytes]:
        entries = [
            {
                "senderUniqueReference": refs[0],
                "transactionID": "T-0",
                "message": "MSG0000 - Success",
            },
            {
                "senderUniqueReference": refs[1],
                "message": "MSG1001 - Schema Failure",
                "help": "bad",
            },
        ]
        return 207, {}, orjson.dumps({"messageArray": entries})

    sender, _ = _sender(_ScriptedDip([partial]))
    out = await sender.deliver(_batch(2))
    assert [(d.result.accepted, d.result.reason) for d in out] == [
        (True, None),
        (False, "MSG1001 - Schema Failure: bad"),
    ]


async def test_unknown_sender_is_unsignable() -> None:
    batch = _batch(1)
    batch.key = ("5555555555", batch.key[1])
    dip = _ScriptedDip([])
    sender, _ = _sender(dip)
    out = await sender.deliver(batch)
    assert dip.sent == []
    assert out[0].result.reason == "cannot sign: no credential for DIP ID 5555555555"


async def test_final_failures_carry_their_dead_letter_class() -> None:
    Answer = tuple[int, dict[str, str], bytes]
    cases: list[tuple[list[Answer], DeadLetterReason]] = [
        ([(500, {}, b"boom")] * 2, DeadLetterReason.RETRIES_EXHAUSTED),
        ([(403, {}, b"")], DeadLetterReason.DIP_AUTH),
        ([(401, {}, b"")], DeadLetterReason.DIP_AUTH),
        ([(413, {}, b"")], DeadLetterReason.TOO_LARGE),
        ([(400, {}, b"bad")], DeadLetterReason.DIP_REJECTION),
    ]
    for answers, expected in cases:
        sender, _ = _sender(_ScriptedDip(answers), attempts=2)
        (out,) = await sender.deliver(_batch(1))
        assert not out.result.accepted
        assert out.result.reason_class is expected, (answers, out.result)


async def test_the_secondary_key_fallback_is_counted_per_client() -> None:
    client = _batch(1).items[0].route.client.name

    def fallbacks() -> float:
        value = REGISTRY.get_sample_value(
            "dcpgw_egress_api_key_fallbacks_total", {"client": client}
        )
        return value or 0.0

    before = fallbacks()
    dip = _ScriptedDip([(401, {}, b""), _ok], keys=("primary", "secondary"))
    sender, _ = _sender(dip)
    await sender.deliver(_batch(1))
    assert fallbacks() == before + 1


async def test_an_answer_that_is_not_201_is_logged_once_with_who_and_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def partly(refs: list[str]) -> tuple[int, dict[str, str], bytes]:
        entries = [
            {"senderUniqueReference": refs[0], "transactionID": "T-1", "message": "MSG0000"},
            {"senderUniqueReference": refs[1], "transactionID": "T-2", "message": "MSG1001 x"},
        ]
        return 207, {}, orjson.dumps({"messageArray": entries})

    sender, _ = _sender(_ScriptedDip([partly]))
    batch = _batch(2)
    monkeypatch.setattr(sender_module, "_limiter", LogLimiter())  # earlier tests used its burst
    with capture_logs() as events:
        await sender.deliver(batch)
    (event,) = [e for e in events if e["event"] == "dip_batch_not_accepted"]
    assert event["status"] == 207 and event["count"] == 2
    assert event["dip_id"] == ALICE_ID
    assert event["first_sender_unique_reference"] == batch.items[1].message.sender_unique_reference
    assert event["first_transaction_id"] == "T-2"
    assert event["reason"].startswith("MSG1001")


async def test_the_end_to_end_latency_is_observed_from_the_record_timestamp() -> None:
    def count() -> float:
        return REGISTRY.get_sample_value("dcpgw_egress_end_to_end_seconds_count") or 0.0

    def slow_sum() -> float:
        return REGISTRY.get_sample_value("dcpgw_egress_end_to_end_seconds_sum") or 0.0

    batch = _batch(2)
    hour_ago = int((datetime.now(UTC).timestamp() - 3600) * 1000)
    for prepared in batch.items:
        prepared.message.ref = prepared.message.ref._replace(timestamp_ms=hour_ago)
    before, before_sum = count(), slow_sum()
    sender, _ = _sender(_ScriptedDip([_ok]))
    await sender.deliver(batch)
    assert count() == before + 1  # one observation per answered request
    assert 3600 <= slow_sum() - before_sum < 3700
