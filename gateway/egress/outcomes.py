"""Map a DIP answer to what happens to each message of the batch. Pure.

* ``201``: every message accepted; when the body is a StandardResponse its entries give each
  message's ``transactionID`` (matched by ``senderUniqueReference``).
* Another 2xx is not in the DIP's contract for submissions (201 or 207). With a StandardResponse
  it is read per message like a 207; without one nothing says the messages were taken (a proxy's
  200 page, or a redirect followed by something in between), so every message is rejected with
  that reason: dead-lettered for a human, never counted as delivered.
* ``207`` / ``400`` with a StandardResponse: per message, matched by ``senderUniqueReference``
  (by position when the DIP gives exactly one entry per message but no usable references).
  ``MSG0000`` or a success without a message code is accepted, anything else rejected with the
  DIP's message and help text. A 207 message the DIP says nothing about is rejected ("no
  result"), so a human looks at it instead of it being sent twice; in a 400 every unmatched
  message gets the answer's general reason.
* ``400`` without per-message entries, ``403``, ``404``/``405``/``406``/``505`` and other 4xx:
  every message rejected with the reason: resending the same bytes cannot succeed.
* ``401``: try the next API key of the sender once (rotation), then reject.
* ``413``: split the batch in halves and resend them; a single message is rejected.
* ``408``, ``429``, ``5xx``, timeouts and connection errors: retry (the caller's policy decides
  how long and how often); ``Retry-After`` is passed on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from http import HTTPStatus
from typing import Any, Final, NamedTuple

import msgspec

from gateway.dip.vocabulary import response_entries
from gateway.egress.reasons import DeadLetterReason, dip_answer_reason
from gateway.egress.retry import parse_retry_after

SUCCESS_CODE: Final = "MSG0000"
_RETRYABLE: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_SNIPPET: Final = 300


class Action(Enum):
    FINAL = "final"
    RETRY = "retry"
    NEXT_KEY = "next_key"
    SPLIT = "split"


class MessageResult(NamedTuple):
    """The DIP's word on one message (a NamedTuple: one per message, cheap to make).

    ``delivered_earlier``: the DIP refused the message as a duplicate of this sender's own
    reference, i.e. an earlier copy got through (a re-send after a crash): a result, flagged,
    not a dead letter."""

    accepted: bool
    transaction_id: str | None = None
    dip_message: str | None = None
    reason: str | None = None
    delivered_earlier: bool = False
    reason_class: DeadLetterReason | None = None  # set when not accepted


_new_result = partial(tuple.__new__, MessageResult)
"""``MessageResult`` from a 6-tuple without the named tuple's Python-level ``__new__``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a batch after one answer; ``results`` line up with the batch (FINAL)."""

    action: Action
    status: int | None
    reason: str = ""
    results: list[MessageResult] = field(default_factory=list)
    retry_after: float | None = None


def decide(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    references: Sequence[str | None],
    *,
    has_next_key: bool = False,
    duplicate_codes: tuple[str, ...] = (),
) -> Decision:
    """The decision for answer ``status``/``body`` to a batch whose messages carry
    ``references`` (their senderUniqueReferences, in body order). A message refused with a
    DIP message that starts with one of ``duplicate_codes`` was delivered earlier."""
    if status == 201:
        results = _accepted_in_order(references, body)
        if results is None:
            results = _accepted_all(references, response_entries(body))
        return Decision(Action.FINAL, status, "", results)
    count = len(references)
    entries = response_entries(body)
    success = 200 <= status < 300
    if status == 207 or (entries and (success or status == 400)):
        default = (
            MessageResult(
                False,
                reason=f"DIP answered {status} but gave no result for this message",
                reason_class=DeadLetterReason.DIP_REJECTION,
            )
            if success
            else MessageResult(
                False,
                reason=_general_reason(status, body, entries),
                reason_class=DeadLetterReason.DIP_REJECTION,
            )
        )
        results = _per_message(references, entries, default, duplicate_codes)
        return Decision(Action.FINAL, status, "", results)
    reason = _general_reason(status, body, entries)
    if success:
        reason = (
            f"{reason} (no result per message: the DIP answers a submission 201 or 207, so this "
            "is not taken as acceptance; find out what answered before sending it again)"
        )
    if 300 <= status < 400:
        location = _header(headers, "location")
        reason = (
            f"{reason} (a redirect to {location!r}: the gateway does not follow redirects, "
            "which would resend the signed body and API key elsewhere; check dip.base_url)"
        )
    if status in _RETRYABLE:
        retry_after = parse_retry_after(_header(headers, "retry-after"))
        return Decision(Action.RETRY, status, reason, retry_after=retry_after)
    if status == 401 and has_next_key:
        return Decision(Action.NEXT_KEY, status, reason)
    if status == 413 and count > 1:
        return Decision(Action.SPLIT, status, reason)
    result = MessageResult(False, reason=reason, reason_class=dip_answer_reason(status))
    return Decision(Action.FINAL, status, reason, [result] * count)


def transport_failure(error: BaseException) -> Decision:
    """A request that got no HTTP answer (connection refused/reset, TLS, timeout): retry."""
    detail = str(error) or type(error).__name__
    return Decision(Action.RETRY, None, f"no answer from the DIP: {type(error).__name__}: {detail}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, item in headers.items():
            if key.lower() == name:
                return item
    return value


class _Entry(msgspec.Struct, gc=False):
    """A StandardResponse entry whose three fields are strings, null or absent (others are
    ignored, as ``response_entries`` readers ignore them)."""

    senderUniqueReference: str | None = None
    transactionID: str | None = None
    message: str | None = None


class _Answer(msgspec.Struct, gc=False):
    messageArray: list[_Entry]


_decode_answer: Final = msgspec.json.Decoder(_Answer).decode


def _accepted_in_order(references: Sequence[str | None], body: bytes) -> list[MessageResult] | None:
    """A 201's results when its entries are one per message in request order, the DIP's usual
    answer, read into typed entries in one pass (no dict per entry); ``None`` for any other
    body (no StandardResponse, another order or count, a field of another type), which the
    general reading (:func:`_accepted_all`) decides. Where both apply they agree: msgspec and
    orjson accept the same JSON and keep the last of a repeated key, and ``or None`` is
    :func:`_opt` for a string or null. (One exception, harmless: a number beyond a float's
    range, or invalid UTF-8, in a field nobody reads makes orjson refuse the whole answer, so
    every message is accepted without a transaction ID; msgspec skips that field and keeps the
    IDs.)"""
    if not body or None in references:
        return None
    try:
        entries = _decode_answer(body).messageArray
    except (msgspec.DecodeError, RecursionError):  # and its ValidationError; RecursionError:
        return None  # nested too deeply for msgspec (the general reading refuses it too)
    if len(entries) != len(references) or [e.senderUniqueReference for e in entries] != list(
        references
    ):
        return None
    new = _new_result
    return [
        new((True, e.transactionID or None, e.message or None, None, False, None)) for e in entries
    ]


def _accepted_all(
    references: Sequence[str | None], entries: list[dict[str, Any]]
) -> list[MessageResult]:
    if not entries:
        return [MessageResult(True)] * len(references)
    matched: Sequence[dict[str, Any] | None]
    if (
        len(entries) == len(references)
        and [e.get("senderUniqueReference") for e in entries] == list(references)
        and None not in references
    ):
        matched = entries  # the DIP answered in request order: no index to build
    else:
        matched = _match(references, entries)
    out: list[MessageResult] = []
    append = out.append
    for e in matched:
        if e is None:
            append(MessageResult(True))
            continue
        transaction_id, message = _opt(e.get("transactionID")), _opt(e.get("message"))
        append(_new_result((True, transaction_id, message, None, False, None)))
    return out


def _per_message(
    references: Sequence[str | None],
    entries: list[dict[str, Any]],
    default: MessageResult,
    duplicate_codes: tuple[str, ...],
) -> list[MessageResult]:
    out: list[MessageResult] = []
    seen: set[str | None] = set()
    for ref, entry in zip(references, _match(references, entries), strict=True):
        if entry is None:
            out.append(default)
            continue
        # A reference repeated within the batch is two messages, not a re-send: a refusal of
        # the second copy stays a rejection.
        out.append(_entry_result(entry, () if ref in seen else duplicate_codes))
        seen.add(ref)
    return out


def _entry_result(entry: Mapping[str, Any], duplicate_codes: tuple[str, ...]) -> MessageResult:
    message = _opt(entry.get("message"))
    transaction_id = _opt(entry.get("transactionID"))
    ok = message.startswith(SUCCESS_CODE) if message else transaction_id is not None
    if ok:
        return MessageResult(True, transaction_id, message)
    if message and duplicate_codes and message.startswith(duplicate_codes):
        return MessageResult(True, transaction_id, message, None, True)
    help_text = _str(entry.get("help"))
    reason = message or "rejected by the DIP without a message"
    if help_text:
        reason = f"{reason}: {help_text}"
    return MessageResult(
        False, transaction_id, message, reason, reason_class=DeadLetterReason.DIP_REJECTION
    )


def _match(
    references: Sequence[str | None], entries: list[dict[str, Any]]
) -> list[dict[str, Any] | None]:
    """Entry per message: by senderUniqueReference, else by position when counts agree.

    A reference that repeats in the batch takes its entries in order (the first message the
    first entry, and so on; more messages than entries: the last entry again), so a duplicate
    the DIP rejected is not taken for the accepted one, and a 201 matched here agrees with the
    positional match of an answer in request order."""
    by_ref: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        ref = entry.get("senderUniqueReference")
        if isinstance(ref, str):
            found = by_ref.get(ref)
            if found is None:
                by_ref[ref] = [entry]
            else:
                found.append(entry)
    if len(entries) == len(references) and not by_ref:
        return list(entries)
    taken: dict[str, int] = {}
    matched: list[dict[str, Any] | None] = []
    for r in references:
        if r is None or (candidates := by_ref.get(r)) is None:
            matched.append(None)
            continue
        index = taken.get(r, 0)
        taken[r] = index + 1
        matched.append(candidates[min(index, len(candidates) - 1)])
    return matched


def _general_reason(status: int, body: bytes, entries: list[dict[str, Any]]) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unexpected status"
    detail = ""
    for entry in entries:
        message = _str(entry.get("message"))
        if message:
            help_text = _str(entry.get("help"))
            detail = f"{message}: {help_text}" if help_text else message
            break
    if not detail and body:
        detail = body[:_SNIPPET].decode("utf-8", "replace").strip()
    return f"DIP answered {status} {phrase}" + (f": {detail}" if detail else "")


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
