"""The batch sender's loop against a scripted DIP: client holds (429, 503, no answer, 401/403)
with Retry-After, request retries, the 401 key fallback and its memory, 413 halving, give-up,
the hold budget, diverting and unsignable senders (no network involved; a fake clock)."""

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
from gateway.egress.fairness import FairSlots
from gateway.egress.holds import ClientHolds, HoldKind
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.retry import RetryPolicy
from gateway.egress.routing import Prepared, Router
from gateway.egress.sender import BatchSender, Delivery, Sent
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


class _Clock:
    """Fake time: back-off sleeps and hold waits are recorded and move it on."""

    def __init__(self) -> None:
        self.now = 1024.0  # exact in binary: the recorded waits are exact too
        self.sleeps: list[float] = []  # back-off of a request retry
        self.waits: list[float | None] = []  # waiting out a client hold

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def wait(self, event: Any, seconds: float | None) -> None:
        assert seconds is not None, "a hold wait without a deadline would never end here"
        self.waits.append(seconds)
        self.now += seconds


def _sender(
    dip: _ScriptedDip, attempts: int = 4, budget: float = 21_600.0
) -> tuple[BatchSender, _Clock]:
    clock = _Clock()
    policy = RetryPolicy(max_attempts=attempts, initial_seconds=0.1, max_seconds=1.0)
    holds = ClientHolds(
        policy, auth_probe_seconds=60.0, clock=clock, rand=lambda: 1.0, wait=clock.wait
    )
    sender = BatchSender(
        cast(DipClient, dip),
        policy,
        holds=holds,
        slots=FairSlots(4),
        hold_budget_seconds=budget,
        sleep=clock.sleep,
        rand=lambda: 1.0,
        clock=clock,
    )
    return sender, clock


async def _deliver(sender: BatchSender, batch: Batch) -> list[Delivery]:
    sent = await sender.deliver(batch)
    assert sent.held == []
    return sent.deliveries


async def test_a_held_client_waits_out_retry_after_then_its_probe_succeeds() -> None:
    dip = _ScriptedDip([(429, {"Retry-After": "2"}, b""), (503, {}, b""), _ok])
    sender, clock = _sender(dip)
    out = await _deliver(sender, _batch(3))
    # The hold: Retry-After, then the back-off of the second refusal (equal jitter, rand=1).
    assert clock.waits == pytest.approx([2.0, 0.2]) and clock.sleeps == []
    assert sender.holds.get(out[0].prepared.route.client.name) is None  # released
    assert [d.result.accepted for d in out] == [True] * 3
    assert [d.attempts for d in out] == [3] * 3
    assert all(type(d) is Delivery and len(d) == len(Delivery._fields) for d in out)
    assert out[0].result.transaction_id == f"T-{out[0].prepared.message.sender_unique_reference}"
    assert len({tuple(refs) for _, refs, _ in dip.sent}) == 1  # the same batch every time


async def test_gives_up_after_max_attempts() -> None:
    dip = _ScriptedDip([(500, {}, b"boom")] * 3)
    sender, clock = _sender(dip, attempts=3)
    out = await _deliver(sender, _batch(2))
    assert len(clock.sleeps) == 2 and clock.waits == []  # about the request: no client hold
    assert all(not d.result.accepted for d in out)
    assert (
        out[0].result.reason
        == "gave up after 3 attempts: DIP answered 500 Internal Server Error: boom"
    )
    assert out[0].status == 500


async def test_no_answer_holds_the_client_until_a_probe_gets_through() -> None:
    dip = _ScriptedDip([DipTransportError("refused"), DipTransportError("slow"), _ok])
    sender, clock = _sender(dip)
    out = await _deliver(sender, _batch(1))
    assert out[0].result.accepted and out[0].attempts == 3
    assert clock.waits == pytest.approx([0.1, 0.2])  # growing probe intervals: a bounded rate


async def test_401_tries_the_secondary_key_once() -> None:
    dip = _ScriptedDip([(401, {}, b""), _ok], keys=("primary", "secondary"))
    sender, _ = _sender(dip)
    out = await _deliver(sender, _batch(2))
    assert [k for _, _, k in dip.sent] == ["primary", "secondary"]
    assert all(d.result.accepted for d in out)


async def test_a_refused_primary_key_is_skipped_until_its_file_changes() -> None:
    dip = _ScriptedDip([(401, {}, b""), _ok, _ok, _ok], keys=("primary", "secondary"))
    sender, _ = _sender(dip)
    await _deliver(sender, _batch(1))
    await _deliver(sender, _batch(1))  # straight to the secondary: no 401 per batch
    assert [k for _, _, k in dip.sent] == ["primary", "secondary", "secondary"]
    dip.keystore = _Keys(("new-primary", "secondary"))  # the primary's file was replaced
    await _deliver(sender, _batch(1))
    assert dip.sent[-1][2] == "new-primary"


async def test_401_with_every_key_stops_the_client_until_a_probe_succeeds() -> None:
    dip = _ScriptedDip([(401, {}, b""), (401, {}, b""), _ok], keys=("primary", "secondary"))
    sender, clock = _sender(dip)
    out = await _deliver(sender, _batch(1))
    assert out[0].result.accepted
    # Stopped for auth_probe_seconds (looking at the key files every 5 s), then the probe
    # went with the secondary: the primary is remembered as refused.
    assert sum(w or 0 for w in clock.waits) == 60.0
    assert [k for _, _, k in dip.sent] == ["primary", "secondary", "secondary"]


async def test_a_client_stopped_by_403_is_probed_at_once_when_its_keys_change() -> None:
    dip = _ScriptedDip([(403, {}, b'{"message": "Forbidden"}'), _ok])
    sender, clock = _sender(dip)
    batch = _batch(2)
    client = batch.items[0].route.client.name
    original_wait = clock.wait

    async def wait(event: Any, seconds: float | None) -> None:
        hold = sender.holds.get(client)
        assert hold is not None and hold.kind is HoldKind.AUTH
        dip.keystore._keys = ("rotated",)  # the operator put a new key in place
        await original_wait(event, seconds)

    clock.wait = wait  # type: ignore[method-assign]
    sender.holds._wait = wait
    out = await _deliver(sender, batch)
    assert clock.waits == [5.0]  # noticed at the first look, not after 60 s
    assert [k for _, _, k in dip.sent] == ["primary", "rotated"]
    assert all(d.result.accepted for d in out)


async def test_a_divertable_batch_of_a_held_client_comes_back_held() -> None:
    dip = _ScriptedDip([(429, {"Retry-After": "30"}, b"")])
    sender, clock = _sender(dip)
    batch = _batch(2)
    sent = await sender.deliver(batch, divertable=True)
    assert sent == Sent([], [batch]) and len(dip.sent) == 1
    assert batch.held_since == clock.now
    again = _batch(1)
    sent = await sender.deliver(again, divertable=True)  # held: not even tried
    assert sent.held == [again] and len(dip.sent) == 1


async def test_the_second_half_of_a_split_never_overtakes_a_held_first_half() -> None:
    dip = _ScriptedDip([(413, {}, b""), (429, {}, b"")])
    sender, _ = _sender(dip)
    batch = _batch(4)
    sent = await sender.deliver(batch, divertable=True)
    assert [len(b.items) for b in sent.held] == [2, 2] and sent.deliveries == []
    assert [p for b in sent.held for p in b.items] == batch.items


async def test_messages_held_past_the_budget_are_dead_lettered_with_the_reason() -> None:
    dip = _ScriptedDip([(429, {"Retry-After": "100"}, b"")] * 3)
    sender, _ = _sender(dip, budget=150.0)
    out = await _deliver(sender, _batch(2))
    assert len(dip.sent) == 2  # the first try and one probe: past the budget before a third
    assert all(d.result.reason_class is DeadLetterReason.RETRIES_EXHAUSTED for d in out)
    reason = out[0].result.reason or ""
    assert "egress.hold_budget_seconds" in reason and "429" in reason, reason
    dip = _ScriptedDip([(403, {}, b"")] * 5)
    sender, _ = _sender(dip, budget=100.0)
    out = await _deliver(sender, _batch(1))
    assert out[0].result.reason_class is DeadLetterReason.DIP_AUTH


async def test_413_halves_in_order_and_rejects_a_single_oversized_message() -> None:
    def too_large_if_over_one(refs: list[str]) -> tuple[int, dict[str, str], bytes]:
        return (413, {}, b"") if len(refs) > 1 else _ok(refs)

    dip = _ScriptedDip([too_large_if_over_one] * 7)
    sender, _ = _sender(dip)
    batch = _batch(4)
    out = await _deliver(sender, batch)
    assert [len(refs) for _, refs, _ in dip.sent] == [4, 2, 1, 1, 2, 1, 1]
    sent_singles = [refs[0] for _, refs, _ in dip.sent if len(refs) == 1]
    assert sent_singles == [p.message.sender_unique_reference for p in batch.items]
    assert [d.prepared for d in out] == batch.items
    assert all(d.result.accepted for d in out)

    dip = _ScriptedDip([(413, {}, b"")])
    sender, _ = _sender(dip)
    single = await _deliver(sender, _batch(1))
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
    out = await _deliver(sender, _batch(2))
    assert [(d.result.accepted, d.result.reason) for d in out] == [
        (True, None),
        (False, "MSG1001 - Schema Failure: bad"),
    ]


async def test_unknown_sender_is_unsignable() -> None:
    batch = _batch(1)
    batch.key = ("5555555555", batch.key[1], False)
    dip = _ScriptedDip([])
    sender, _ = _sender(dip)
    out = await _deliver(sender, batch)
    assert dip.sent == []
    assert out[0].result.reason == "cannot sign: no credential for DIP ID 5555555555"


async def test_final_failures_carry_their_dead_letter_class() -> None:
    Answer = tuple[int, dict[str, str], bytes]
    cases: list[tuple[list[Answer], DeadLetterReason]] = [
        ([(500, {}, b"boom")] * 2, DeadLetterReason.RETRIES_EXHAUSTED),
        ([(413, {}, b"")], DeadLetterReason.TOO_LARGE),
        ([(400, {}, b"bad")], DeadLetterReason.DIP_REJECTION),
    ]
    for answers, expected in cases:
        sender, _ = _sender(_ScriptedDip(answers), attempts=2)
        (out,) = await _deliver(sender, _batch(1))
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
    await _deliver(sender, _batch(1))
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
        await _deliver(sender, batch)
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
    await _deliver(sender, batch)
    assert count() == before + 1  # one observation per answered request
    assert 3600 <= slow_sum() - before_sum < 3700


async def test_a_probe_refused_on_the_primary_key_goes_on_as_the_probe_with_the_secondary() -> None:
    """A stopped client's probe that gets a 401 on its (new) primary tries the secondary; the
    hold must not be lifted in between, or every waiting batch would fire at once."""
    batch = _batch(1)
    client = batch.items[0].route.client.name
    seen: list[bool] = []

    def secondary(refs: list[str]) -> tuple[int, dict[str, str], bytes]:
        seen.append(sender.holds.get(client) is not None)  # still held while it probes
        return _ok(refs)

    dip = _ScriptedDip(
        [(401, {}, b""), (401, {}, b""), (401, {}, b""), secondary], keys=("p1", "s")
    )
    sender, clock = _sender(dip)
    original_wait = clock.wait

    async def wait(event: Any, seconds: float | None) -> None:
        dip.keystore._keys = ("p2", "s")  # a new primary key file: probe at once
        await original_wait(event, seconds)

    sender.holds._wait = wait
    out = await _deliver(sender, batch)
    assert [k for _, _, k in dip.sent] == ["p1", "s", "p2", "s"]
    assert seen == [True] and out[0].result.accepted
    assert sender.holds.get(client) is None
