"""Which dead letters a re-send can fix, per reason class, and why. Pure.

A re-drive sends the same bytes again. It helps only when what failed was outside the
message: the gateway's configuration, a credential, the date, or the DIP being unavailable.
When the bytes themselves were the problem, the same bytes fail the same way: those classes
are refused unless the operator forces them (e.g. after a gateway upgrade that reads them).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

from gateway.egress.reasons import DeadLetterReason


class Resend(NamedTuple):
    fixable: bool
    why: str


RESEND: MappingProxyType[DeadLetterReason, Resend] = MappingProxyType(
    {
        DeadLetterReason.ENVELOPE: Resend(
            False, "the bytes are not a DIP message: the producing system must send a new one"
        ),
        DeadLetterReason.SCHEMA: Resend(
            True,
            "fixed by a schema update, or by exempting the interface in the client's validation "
            "settings",
        ),
        DeadLetterReason.ENVIRONMENT: Resend(
            False, "the payload names another environment: its producer must correct it"
        ),
        DeadLetterReason.ROUTING: Resend(
            True, "fixed by configuration: onboard the client or DIP ID that owns the sender"
        ),
        DeadLetterReason.NOT_EFFECTIVE: Resend(
            True, "fixed by time or by correcting the DIP ID's effective dates"
        ),
        DeadLetterReason.SIGNING: Resend(
            True, "fixed by configuration: the client's signing credential"
        ),
        DeadLetterReason.DIP_REJECTION: Resend(
            False, "the DIP refused the content: the same bytes get the same verdict"
        ),
        DeadLetterReason.DIP_AUTH: Resend(
            True, "fixed by configuration: the API key or the certificate registered at the DIP"
        ),
        DeadLetterReason.TOO_LARGE: Resend(
            False, "the message is over the DIP's size limit: the same bytes are refused again"
        ),
        DeadLetterReason.RETRIES_EXHAUSTED: Resend(
            True, "fixed by time: the DIP or the network is available again"
        ),
        DeadLetterReason.INTERNAL: Resend(
            True, "a gateway bug, not the message: re-send once the fixed version runs"
        ),
    }
)
"""Every class has an entry (tested), so a new class forces a decision here."""

UNKNOWN = Resend(False, "no reason class this version knows: check the dcpgw-reason header")


def resend_policy(reason_class: DeadLetterReason | None) -> Resend:
    return UNKNOWN if reason_class is None else RESEND[reason_class]
