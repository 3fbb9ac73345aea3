"""The ledger record of one verified push, and waiting for it before the DIP is answered.

A push the webhook verified leaves one record (see :mod:`gateway.ledger.records`): the signer
the signature was verified with (certificate serial, fingerprint, subject), the content hash it
covers, and per message what it carried and what became of it. The webhook answers only once
the record is written, as it answers only once the messages are: when it cannot be written in
the produce timeout, the push is answered as not stored (503) and the DIP sends it again (its
messages are then duplicates, and the retry leaves its own record).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from gateway.ingress.envelope import Publication
from gateway.ingress.pipeline import Message, Outcome, RoutingTable
from gateway.ingress.routes import Route
from gateway.ledger.publisher import Ledger, LedgerError
from gateway.ledger.records import ingress_record, now_text
from gateway.signing.scheme import HEADER_CONTENT_HASH, format_signature_date
from gateway.signing.verify import VerifiedSigner


async def record_push(
    ledger: Ledger,
    route: Route,
    signer: VerifiedSigner,
    headers: Mapping[str, str],
    messages: Sequence[Message],
    outcomes: Sequence[Outcome],
    table: RoutingTable,
    timeout_seconds: float,
) -> bool:
    """Write the push's record; True once Kafka acknowledged it within ``timeout_seconds``."""
    destination = table.destinations.get(route.recipient)
    first = messages[0] if messages else None
    record = ingress_record(
        at=now_text(),
        channel=route.kind.value,
        recipient=route.recipient,
        client=destination.client if destination is not None else None,
        interface=first.interface if isinstance(first, Publication) else None,
        content_hash=headers.get(HEADER_CONTENT_HASH)
        or headers.get(HEADER_CONTENT_HASH.lower())
        or "",
        signature_date=format_signature_date(signer.signature_date),
        signer_serial=format(signer.certificate.serial_number, "x"),
        signer_fingerprint=signer.fingerprint_sha256,
        signer_subject=signer.subject,
        messages=[
            (m.sender_unique_reference, m.transaction_id, m.sender_dip_id, o.value)
            for m, o in zip(messages, outcomes, strict=True)
        ],
    )
    try:
        await asyncio.wait_for(ledger.write("ingress", route.recipient, record), timeout_seconds)
    except (LedgerError, TimeoutError):  # not written (or not yet): counted and logged there
        return False
    return True
