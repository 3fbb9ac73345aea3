"""Why a message was dead-lettered, as a bounded class.

The free-text reason (in the ``dcpgw-reason`` header) says exactly what was wrong; the class is
what an operator aggregates on: the ``reason`` label of the dead-letter counter, the
``dcpgw-reason-class`` header and the ``reason_class`` field of the dead-letter log event. A
fixed set, so a flood of distinct reasons cannot make new metric series.
"""

from __future__ import annotations

from enum import StrEnum


class DeadLetterReason(StrEnum):
    """Each member's value is the class; ``description`` says what it covers (docs/reference)."""

    description: str

    def __new__(cls, value: str, description: str = "") -> DeadLetterReason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    ENVELOPE = "envelope", "The record is not a DIP message the gateway can read (JSON, wrapper)."
    SCHEMA = "schema", "The payload fails its interface's DIP schema (the client validates)."
    ENVIRONMENT = "environment", "`S1.environmentTag` is not this gateway's environment."
    ROUTING = "routing", "No client owns the sender DIP ID, or the DCP ID is another DCP's."
    NOT_EFFECTIVE = "not_effective", "The sender DIP ID is outside its effective dates."
    SIGNING = "signing", "The client's credential could not sign the request."
    DIP_REJECTION = "dip_rejection", "The DIP refused the message (its result, or a 4xx)."
    DIP_AUTH = "dip_auth", "The DIP answered 401 or 403: API key (both keys) or certificate."
    TOO_LARGE = "too_large", "The DIP answered 413 for a single message."
    RETRIES_EXHAUSTED = "retries_exhausted", "429, 5xx or no answer outlasted the retry policy."
    INTERNAL = "internal", "A gateway bug while preparing the record (the reason names it)."


def dip_answer_reason(status: int | None) -> DeadLetterReason:
    """The class of a final DIP answer that refused a whole request."""
    if status in (401, 403):
        return DeadLetterReason.DIP_AUTH
    if status == 413:
        return DeadLetterReason.TOO_LARGE
    return DeadLetterReason.DIP_REJECTION
