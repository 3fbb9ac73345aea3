"""Ledger records: what one DIP request or one verified push leaves on the audit topic. Pure.

A record is a flat JSON object, one per DIP request (``direction: egress``: every attempt,
including retries, the secondary API key and 413 halves) and one per push the webhook verified
(``direction: ingress``). It holds what proves what was exchanged, never what was exchanged:

* the body only as its SHA-256 (``content_hash``: the ``X-DIP-Content-Hash`` the signature
  covers, standard base64, so it is the value the DIP logged too) and the answer only as
  ``response_hash`` (same encoding) with the per-message results the DIP gave;
* the signing certificate (serial, SHA-256 fingerprint), the signature date, and for egress
  the fingerprint of the DCP's mTLS certificate the request went over;
* never the API key, the signature, a private key or a payload.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.dip.exchange import DipExchange
from gateway.dip.vocabulary import response_entries
from gateway.signing.scheme import HEADER_CONTENT_HASH, HEADER_DATE

SCHEMA = 1
SUCCESS_MESSAGE = "MSG0000 - Success"
_MESSAGE_CHARS = 200
_CHANNEL_PREFIX = "/dip-channel/"


def now_text(now: datetime | None = None) -> str:
    """UTC with milliseconds and ``Z``: how every time in a record is written."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def interface_of(path: str) -> str:
    """``/dip-channel/IF-021`` -> ``IF-021``; the status endpoint and anything else: the path
    without its slash (``statusmessage``)."""
    if path.startswith(_CHANNEL_PREFIX):
        return path[len(_CHANNEL_PREFIX) :].split("/", 1)[0]
    return path.strip("/")


def answers(body: bytes) -> list[dict[str, Any]]:
    """Per message, what the DIP's StandardResponse said: reference, transaction ID, and the
    message (cut to 200 characters) unless it is the plain success, which the status already
    says. [] when the answer is not one (a proxy page, an empty body)."""
    out: list[dict[str, Any]] = []
    append = out.append
    for entry in response_entries(body):
        answer = {
            "reference": _text(entry.get("senderUniqueReference")),
            "transaction_id": _text(entry.get("transactionID")),
        }
        message = entry.get("message")
        if isinstance(message, str) and not message.startswith(SUCCESS_MESSAGE):
            answer["message"] = message[:_MESSAGE_CHARS]
        append(answer)
    return out


def response_hash(body: bytes) -> str | None:
    """Standard base64 of SHA-256 over the answer's bytes (as the content hash is written)."""
    if not body:
        return None
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def egress_record(
    exchange: DipExchange, client: str | None, mtls_fingerprint: str | None, at: str
) -> dict[str, Any]:
    """The record of one request the DIP client sent, at ``at`` (when its answer came)."""
    credential = exchange.credential
    references = exchange.references
    return {
        "schema": SCHEMA,
        "direction": "egress",
        "at": at,
        "client": client,
        "dip_id": exchange.sender_dip_id,
        "interface": interface_of(exchange.path),
        "method": exchange.method,
        "path": exchange.path,
        "references": list(references) if references is not None else None,
        "content_hash": exchange.signature.get(HEADER_CONTENT_HASH),
        "signature_date": exchange.signature.get(HEADER_DATE),
        "signer_serial": credential.serial_hex,
        "signer_fingerprint": credential.fingerprint_sha256,
        "mtls_fingerprint": mtls_fingerprint,
        "status": exchange.status,
        "error": exchange.error,
        "response_hash": response_hash(exchange.response),
        "answers": answers(exchange.response),
    }


def ingress_record(
    *,
    at: str,
    channel: str,
    recipient: str,
    client: str | None,
    interface: str | None,
    content_hash: str,
    signature_date: str,
    signer_serial: str,
    signer_fingerprint: str,
    signer_subject: str,
    messages: Iterable[tuple[str | None, str | None, str | None, str]],
) -> dict[str, Any]:
    """The record of one push the webhook verified: who signed it, over which content, and what
    it carried (per message: senderUniqueReference, transaction ID, sender DIP ID, and what
    became of it: routed, duplicate, quarantined, failed)."""
    return {
        "schema": SCHEMA,
        "direction": "ingress",
        "at": at,
        "channel": channel,
        "client": client,
        "dip_id": recipient,
        "interface": interface,
        "content_hash": content_hash,
        "signature_date": signature_date,
        "signer_serial": signer_serial,
        "signer_fingerprint": signer_fingerprint,
        "signer_subject": signer_subject,
        "messages": [
            {"reference": ref, "transaction_id": tx, "sender": sender, "outcome": outcome}
            for ref, tx, sender, outcome in messages
        ],
    }


def encode(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record)


def decode(value: bytes | None) -> dict[str, Any] | None:
    """A record, or None for anything that is not one (the topic is not the ledger's only
    by convention)."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("direction") not in ("egress", "ingress"):
        return None
    return doc


def references_of(record: Mapping[str, Any]) -> set[str]:
    """Every senderUniqueReference a record mentions (sent, answered, or received)."""
    found: set[str] = set()
    for ref in record.get("references") or ():
        if isinstance(ref, str):
            found.add(ref)
    for key in ("answers", "messages"):
        for entry in record.get(key) or ():
            if isinstance(entry, dict) and isinstance(entry.get("reference"), str):
                found.add(entry["reference"])
    return found


def matches(record: Mapping[str, Any], reference: str, client: str | None = None) -> bool:
    if client is not None and record.get("client") != client:
        return False
    return reference in references_of(record)


def describe(record: Mapping[str, Any], reference: str) -> list[str]:
    """Lines for an operator: what was sent for ``reference`` and what the DIP said, or what
    was received."""
    if record.get("direction") == "egress":
        return _describe_egress(record, reference)
    return _describe_ingress(record, reference)


def _describe_egress(record: Mapping[str, Any], reference: str) -> list[str]:
    references = record.get("references") or []
    status = record.get("status")
    said = f"DIP answered {status}" if status is not None else f"no answer: {record.get('error')}"
    lines = [
        f"{record.get('at')} SENT {record.get('method')} {record.get('path')} "
        f"client={record.get('client')} dip_id={record.get('dip_id')} "
        f"interface={record.get('interface')} messages={len(references)}: {said}",
        f"  content_hash={record.get('content_hash')} "
        f"signature_date={record.get('signature_date')}",
        f"  signer serial={record.get('signer_serial')} "
        f"fingerprint={record.get('signer_fingerprint')}",
        f"  mtls fingerprint={record.get('mtls_fingerprint')}",
        f"  response_hash={record.get('response_hash')}",
    ]
    for entry in _entries_for(record.get("answers"), reference):
        lines.append(
            f"  {reference}: transaction_id={entry.get('transaction_id')} "
            f"message={entry.get('message', SUCCESS_MESSAGE)}"
        )
    return lines


def _describe_ingress(record: Mapping[str, Any], reference: str) -> list[str]:
    lines = [
        f"{record.get('at')} RECEIVED {record.get('channel')} client={record.get('client')} "
        f"dip_id={record.get('dip_id')} interface={record.get('interface')} "
        f"messages={len(record.get('messages') or [])}",
        f"  content_hash={record.get('content_hash')} "
        f"signature_date={record.get('signature_date')}",
        f"  signer serial={record.get('signer_serial')} "
        f"fingerprint={record.get('signer_fingerprint')} subject={record.get('signer_subject')}",
    ]
    for entry in _entries_for(record.get("messages"), reference):
        lines.append(
            f"  {reference}: transaction_id={entry.get('transaction_id')} "
            f"sender={entry.get('sender')} outcome={entry.get('outcome')}"
        )
    return lines


def _entries_for(entries: Any, reference: str) -> Sequence[Mapping[str, Any]]:
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("reference") == reference]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
