"""Outcome mapping for every DIP status, and the retry schedule with Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from gateway.egress.outcomes import Action, MessageResult, decide, transport_failure
from gateway.egress.retry import RETRY_AFTER_CAP_SECONDS, RetryPolicy, parse_retry_after

REFS = ["S-a", "S-b", "S-c"]


def _entry(
    ref: str | None, message: str, tid: str | None = None, help_: str | None = None
) -> dict[str, object]:
    return {
        "transactionID": tid,
        "senderUniqueReference": ref,
        "message": message,
        "help": help_,
    }


def _body(*entries: dict[str, object]) -> bytes:
    return orjson.dumps({"messageArray": list(entries), "timestamp": "2026-11-23T10:00:00+00:00"})


def test_201_accepts_all_and_records_transaction_ids() -> None:
    body = _body(*(_entry(r, "MSG0000 - Success", f"T-{r}") for r in reversed(REFS)))
    d = decide(201, {}, body, REFS)
    assert d.action is Action.FINAL
    assert [r.accepted for r in d.results] == [True] * 3
    assert [r.transaction_id for r in d.results] == ["T-S-a", "T-S-b", "T-S-c"]


def test_201_in_request_order_takes_each_entry_by_position() -> None:
    """The usual answer: one entry per message, in request order (no index is built)."""
    body = _body(
        _entry("S-a", "MSG0000 - Success", "T-1"),
        _entry("S-b", "", ""),  # empty strings are no values
        _entry("S-c", "MSG0000 - Success", "T-3"),
    )
    d = decide(201, {}, body, REFS)
    assert all(type(r) is MessageResult and len(r) == len(MessageResult._fields) for r in d.results)
    assert [(r.accepted, r.transaction_id, r.dip_message) for r in d.results] == [
        (True, "T-1", "MSG0000 - Success"),
        (True, None, None),
        (True, "T-3", "MSG0000 - Success"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        # a field of another type: that value is no value, the entry's others still count
        _body(
            _entry("S-a", "MSG0000 - Success", "T-1"),
            {"senderUniqueReference": "S-b", "transactionID": 7, "message": {"x": 1}},
            _entry("S-c", "MSG0000 - Success", "T-3"),
        ),
        # a bare array of entries, and an entry that is not an object (skipped)
        orjson.dumps(
            [
                _entry("S-a", "MSG0000 - Success", "T-1"),
                "noise",
                _entry("S-b", "", None),
                _entry("S-c", "MSG0000 - Success", "T-3"),
            ]
        ),
    ],
)
def test_201_not_in_the_usual_shape_is_read_like_one_in_it(body: bytes) -> None:
    """The typed reading of the usual 201 hands anything else to the general one: same
    results as far as the entries say anything."""
    d = decide(201, {}, body, REFS)
    assert [(r.accepted, r.transaction_id) for r in d.results] == [
        (True, "T-1"),
        (True, None),
        (True, "T-3"),
    ]
    assert d.results[1].dip_message is None


def test_201_nested_too_deeply_to_decode_is_accepted_without_ids_not_a_crash() -> None:
    """Both readings refuse a document nested beyond their depth (msgspec raises
    RecursionError, not a DecodeError): the 201 still accepts every message, without IDs."""
    deep = b"[" * 5000 + b"]" * 5000
    body = _body(*(_entry(r, "MSG0000 - Success", f"T-{r}") for r in REFS))[:-1] + b',"help":'
    d = decide(201, {}, body + deep + b"}", REFS)
    assert d.action is Action.FINAL
    assert [(r.accepted, r.transaction_id) for r in d.results] == [(True, None)] * 3


def test_201_with_a_message_without_reference_matches_the_others_by_reference() -> None:
    body = _body(_entry("S-c", "MSG0000 - Success", "T-c"), _entry("S-a", "MSG0000", "T-a"))
    d = decide(201, {}, body, ["S-a", None, "S-c"])
    assert [r.transaction_id for r in d.results] == ["T-a", None, "T-c"]
    assert all(r.accepted for r in d.results)


def test_201_with_equal_counts_and_a_message_without_reference_is_not_taken_by_position() -> None:
    """An entry without a reference is nobody's, even where the counts agree."""
    body = _body(
        _entry("S-a", "MSG0000 - Success", "T-a"),
        _entry(None, "MSG0000 - Success", "T-x"),
        _entry("S-c", "MSG0000 - Success", "T-c"),
    )
    d = decide(201, {}, body, ["S-a", None, "S-c"])
    assert [r.transaction_id for r in d.results] == ["T-a", None, "T-c"]


@pytest.mark.parametrize("status", [201, 207])
@pytest.mark.parametrize("in_order", [True, False])
def test_a_repeated_reference_takes_its_entries_in_order(status: int, in_order: bool) -> None:
    """Two messages with one reference: the first gets the first entry for it, the second the
    second, whether the DIP answers in request order or not, for 201 and 207 alike."""
    entries = [
        _entry("S-a", "MSG0000 - Success", "T-1"),
        _entry("S-b", "MSG0000 - Success", "T-2"),
        _entry("S-a", "MSG0000 - Success", "T-3"),
    ]
    if not in_order:
        entries = [entries[1], entries[0], entries[2]]
    d = decide(status, {}, _body(*entries), ["S-a", "S-b", "S-a"])
    assert [r.transaction_id for r in d.results] == ["T-1", "T-2", "T-3"]


def test_207_rejected_duplicate_is_not_taken_for_the_accepted_original() -> None:
    body = _body(
        _entry("S-a", "MSG0000 - Success", "T-1"),
        _entry("S-a", "MSG1002 - Duplicate Sender Unique Reference", None, "seen before"),
    )
    d = decide(207, {}, body, ["S-a", "S-a"])
    assert [r.accepted for r in d.results] == [True, False]
    assert "MSG1002" in (d.results[1].reason or "")


DUPLICATE = "MSG1002 - Duplicate Sender Unique Reference"


def test_a_duplicate_of_an_earlier_copy_is_delivered_earlier_not_rejected() -> None:
    """A re-send after a crash: the DIP refuses it as a duplicate of the sender's own
    reference, so an earlier copy got through."""
    body = _body(_entry("S-a", DUPLICATE, None, "seen before"), _entry("S-b", "MSG0000", "T-2"))
    d = decide(207, {}, body, ["S-a", "S-b"], duplicate_codes=("MSG1002",))
    assert [(r.accepted, r.delivered_earlier) for r in d.results] == [(True, True), (True, False)]
    assert d.results[0].dip_message == DUPLICATE and d.results[0].reason is None
    plain = decide(207, {}, body, ["S-a", "S-b"])  # no codes configured: a rejection
    assert [(r.accepted, r.delivered_earlier) for r in plain.results] == [
        (False, False),
        (True, False),
    ]


def test_a_reference_repeated_within_one_batch_stays_a_rejection() -> None:
    body = _body(_entry("S-a", "MSG0000 - Success", "T-1"), _entry("S-a", DUPLICATE, None))
    d = decide(207, {}, body, ["S-a", "S-a"], duplicate_codes=("MSG1002",))
    assert [(r.accepted, r.delivered_earlier) for r in d.results] == [(True, False), (False, False)]


def test_201_without_body_accepts_all() -> None:
    d = decide(201, {}, b"", REFS)
    assert [(r.accepted, r.transaction_id) for r in d.results] == [(True, None)] * 3


def test_207_partial_matched_by_reference() -> None:
    body = _body(
        _entry("S-c", "MSG0000 - Success", "T-c"),
        _entry("S-a", "MSG1001 - Schema Failure", None, "$.x: required"),
    )
    d = decide(207, {}, body, REFS)
    assert d.action is Action.FINAL
    a, b, c = d.results
    assert not a.accepted and a.reason == "MSG1001 - Schema Failure: $.x: required"
    assert not b.accepted and b.reason is not None and "no result" in b.reason
    assert c.accepted and c.transaction_id == "T-c"


def test_207_by_position_when_references_are_missing() -> None:
    body = _body(_entry(None, "MSG0000 - Success", "T-1"), _entry(None, "MSG1002 - Bad"))
    d = decide(207, {}, body, ["S-x", "S-y"])
    assert [r.accepted for r in d.results] == [True, False]


def test_400_with_general_entry_rejects_all_with_its_reason() -> None:
    body = _body(_entry(None, "MSG1001 -Schema Failure", None, "payload invalid"))
    d = decide(400, {}, body, REFS)
    assert d.action is Action.FINAL
    assert {r.reason for r in d.results} == {
        "DIP answered 400 Bad Request: MSG1001 -Schema Failure: payload invalid"
    }


def test_400_per_message() -> None:
    body = _body(*(_entry(r, "MSG1001 - Schema Failure", None, f"bad {r}") for r in REFS))
    d = decide(400, {}, body, REFS)
    assert [r.reason for r in d.results] == [f"MSG1001 - Schema Failure: bad {r}" for r in REFS]


def test_400_without_body_rejects_all() -> None:
    d = decide(400, {}, b"not json", REFS)
    assert d.action is Action.FINAL
    assert all(
        not r.accepted and r.reason == "DIP answered 400 Bad Request: not json" for r in d.results
    )


def test_401_tries_next_key_then_rejects() -> None:
    assert decide(401, {}, b"", REFS, has_next_key=True).action is Action.NEXT_KEY
    d = decide(401, {}, b"", REFS, has_next_key=False)
    assert d.action is Action.FINAL
    assert d.results[0].reason == "DIP answered 401 Unauthorized"


@pytest.mark.parametrize("status", [403, 404, 405, 406, 505])
def test_non_retryable_errors_reject_all(status: int) -> None:
    d = decide(status, {}, b"", REFS)
    assert d.action is Action.FINAL
    assert len(d.results) == 3 and not any(r.accepted for r in d.results)


def test_413_splits_then_rejects_a_single_message() -> None:
    assert decide(413, {}, b"", REFS).action is Action.SPLIT
    d = decide(413, {}, b"", ["S-a"])
    assert d.action is Action.FINAL
    assert d.results[0].reason == "DIP answered 413 Request Entity Too Large"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    d = decide(status, {"Retry-After": "7"}, b"busy", REFS)
    assert d.action is Action.RETRY
    assert d.retry_after == 7.0
    assert "busy" in d.reason


def test_transport_failure_is_retried() -> None:
    d = transport_failure(ConnectionResetError("reset by peer"))
    assert d.action is Action.RETRY
    assert "ConnectionResetError: reset by peer" in d.reason


def test_backoff_is_exponential_with_full_jitter_and_bounded_attempts() -> None:
    policy = RetryPolicy(max_attempts=5, initial_seconds=0.1, max_seconds=0.5)
    assert [policy.cap(a) for a in range(1, 5)] == [0.1, 0.2, 0.4, 0.5]
    assert policy.delay(1, rand=lambda: 0.0) == 0.0
    assert policy.delay(3, rand=lambda: 0.5) == pytest.approx(0.2)
    assert policy.delay(4, rand=lambda: 1.0) == pytest.approx(0.5)
    assert policy.delay(5, rand=lambda: 0.5) is None  # attempts used up: dead-letter


def test_retry_after_is_a_floor_and_capped() -> None:
    policy = RetryPolicy(max_attempts=5, initial_seconds=0.1, max_seconds=0.5)
    assert policy.delay(1, retry_after=3.0, rand=lambda: 1.0) == 3.0
    assert policy.delay(1, retry_after=0.0, rand=lambda: 1.0) == pytest.approx(0.1)
    assert policy.delay(1, retry_after=1e9, rand=lambda: 1.0) == RETRY_AFTER_CAP_SECONDS


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None


@pytest.mark.parametrize(
    "value", ["²", "١٢", "Mon, 01 Jan 99999999999 00:00:00 GMT", "Mon, 99 Foo 2026 25:61:61 GMT"]
)
def test_an_unreadable_retry_after_is_absent_and_the_answer_is_still_a_retry(value: str) -> None:
    # Unicode digits that float() refuses, and a date whose year overflows, once raised out of
    # decide() and left the batch's records without an outcome.
    assert parse_retry_after(value) is None
    d = decide(429, {"Retry-After": value}, b"", REFS)
    assert d.action is Action.RETRY
    assert d.retry_after is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_final_and_says_where_it_pointed(status: int) -> None:
    d = decide(status, {"Location": "https://elsewhere.example/maintenance"}, b"", REFS)
    assert d.action is Action.FINAL
    assert len(d.results) == 3 and not any(r.accepted for r in d.results)
    reason = d.results[0].reason or ""
    assert reason.startswith(f"DIP answered {status}")
    assert "'https://elsewhere.example/maintenance'" in reason
    assert "does not follow redirects" in reason


@pytest.mark.parametrize("status", [200, 202, 204])
def test_another_2xx_without_results_is_not_taken_for_acceptance(status: int) -> None:
    """Submissions are answered 201 or 207; a bare 200 may be a proxy's page, not the DIP."""
    d = decide(status, {}, b"<html>maintenance</html>", REFS)
    assert d.action is Action.FINAL
    assert not any(r.accepted for r in d.results) and len(d.results) == 3
    reason = d.results[0].reason or ""
    assert reason.startswith(f"DIP answered {status}")
    assert "not taken as acceptance" in reason


def test_another_2xx_with_results_is_read_per_message() -> None:
    body = _body(_entry("S-a", "MSG0000 - Success", "T-1"), _entry("S-c", "MSG0123 - bad", ""))
    d = decide(200, {}, body, REFS)
    assert d.action is Action.FINAL
    assert [r.accepted for r in d.results] == [True, False, False]
    assert d.results[0].transaction_id == "T-1"
    assert d.results[1].reason == "DIP answered 200 but gave no result for this message"
    assert d.results[2].reason == "MSG0123 - bad"
