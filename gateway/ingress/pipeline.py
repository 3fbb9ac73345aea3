"""The checks a push passes before anything is routed, and the routing decision itself.

Pure: a request (method, route, URL as signed, body, headers, clock reading) goes in; either a
:class:`Rejection` (status code + reason for the metric + short detail for the log and the
answer) or a list of :class:`Delivery` records (topic, key, value, headers) comes out. The
HTTP server and the Kafka producer around it are thin shells.

Order of checks, cheapest and most fundamental first, so nothing unauthenticated is parsed:

=====  ========================  =============================================================
code   reason                    meaning
=====  ========================  =============================================================
404    unknown_path              not a webhook path (see :mod:`gateway.ingress.routes`)
405    method_not_allowed        anything but POST
413    too_large                 body over ``ingress.max_body_bytes``
401    <signature reason>        one of :class:`~gateway.signing.errors.RejectReason`: missing
                                 or malformed header, content hash, signature, untrusted /
                                 expired / not-yet-valid signer, date outside the skew window
400    malformed_json            body is not JSON
400    bad_envelope              not an array of ``{"payload": {CommonBlock S0/D0/A0}}``
422    wrong_recipient           ``A0`` (or ``recipientID``) does not name the webhook's DIP ID
422    interface_mismatch        ``S0.interfaceID`` is not the webhook's interface
=====  ========================  =============================================================

A push is rejected as a whole when any of its messages fails a check: a wrong recipient or
interface means the webhook registration or the sender is wrong, and routing the rest would
hide that. A verified message for a DIP ID no client owns is *not* rejected: it goes to the
quarantine topic with the reason in a header, because the DIP has delivered it and it must not
be lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

import msgspec
import orjson

from gateway.config import GatewayConfig
from gateway.ingress.dedup import DedupKey
from gateway.ingress.envelope import (
    EnvelopeError,
    Publication,
    StatusMessage,
    decode_publications,
    decode_status_messages,
)
from gateway.ingress.routes import Route, RouteKind
from gateway.signing.errors import RejectReason, SignatureRejected
from gateway.signing.trust import TrustPolicy
from gateway.signing.verify import VerifiedSigner, verify_request

SUCCESS = "MSG0000 - Success"

# Kafka record headers (values are UTF-8 bytes).
H_CHANNEL = "dip-channel"
H_INTERFACE = "dip-interface"
H_EVENT_CODE = "dip-event-code"
H_SCHEMA_VERSION = "dip-schema-version"
H_TRANSACTION_ID = "dip-transaction-id"
H_PUBLICATION_ID = "dip-publication-id"
H_REPLAY = "dip-replay-indicator"
H_SENDER = "dip-sender-dip-id"
H_RECIPIENT = "dip-recipient-dip-id"
H_SENDER_REF = "dip-sender-unique-reference"
H_STATUS_MESSAGE = "dip-status-message"
H_SOURCE = "dip-source"
H_QUARANTINE_REASON = "dip-quarantine-reason"

Message = Publication | StatusMessage


class Rejection(Exception):
    """A push refused as a whole: ``status`` for the answer, ``reason`` for the metric."""

    def __init__(
        self, status: int, reason: str, detail: str, *, log_detail: str | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        #: what the answer carries: short, and never an echo of the body or string to sign
        self.detail = detail[:300]
        #: what the log carries (may say more, e.g. the string to sign of a bad signature)
        self.log_detail = (log_detail or detail)[:1000]


class Outcome(StrEnum):
    ROUTED = "routed"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a recipient DIP ID's messages go: its client's topics."""

    client: str
    inbound: str
    status: str | None


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """DIP ID -> client topics, built once from the config."""

    destinations: Mapping[str, Destination]
    quarantine_topic: str
    dcp_id: str

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RoutingTable:
        """Every client has an inbound topic here: the config requires one while ingress is
        on (a client without one could not be routed to, so it has no destination)."""
        return cls(
            destinations={
                d.dip_id: Destination(c.name, c.topics.inbound, c.topics.status)
                for c in config.clients
                if c.topics.inbound is not None
                for d in c.dip_ids
            },
            quarantine_topic=config.kafka.quarantine_topic,
            dcp_id=config.dcp.dcp_id,
        )


class Delivery(NamedTuple):
    """One Kafka record to produce for one message of a push (a NamedTuple: one per message)."""

    message: Message
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    dedup_key: DedupKey
    quarantine_reason: str | None = None

    @property
    def replay(self) -> bool:
        """A replay (``D0.replayIndicator``): routed even when the window has seen its key."""
        return isinstance(self.message, Publication) and self.message.replay


# -- checks ---------------------------------------------------------------------------------


def check_size(content_length: int | None, max_body_bytes: int) -> None:
    if content_length is not None and content_length > max_body_bytes:
        raise Rejection(
            413, "too_large", f"body of {content_length} bytes exceeds {max_body_bytes}"
        )


def check_push(
    route: Route,
    signed_url: str,
    body: bytes,
    headers: Mapping[str, str],
    trust: TrustPolicy,
    now: datetime,
    max_skew: timedelta,
    max_body_bytes: int,
) -> list[Publication] | list[StatusMessage]:
    """Every check of the module docstring, in order; returns the parsed messages."""
    return check_signed_push(
        route, signed_url, body, headers, trust, now, max_skew, max_body_bytes
    )[1]


def check_signed_push(
    route: Route,
    signed_url: str,
    body: bytes,
    headers: Mapping[str, str],
    trust: TrustPolicy,
    now: datetime,
    max_skew: timedelta,
    max_body_bytes: int,
) -> tuple[VerifiedSigner, list[Publication] | list[StatusMessage]]:
    """:func:`check_push`, with the verified signer (the ledger records it)."""
    check_size(len(body), max_body_bytes)
    try:
        signer = verify_request("POST", signed_url, body, headers, trust, now, max_skew)
    except SignatureRejected as exc:
        public = _PUBLIC_SIGNATURE_DETAIL.get(exc.reason, exc.detail)
        raise Rejection(401, exc.reason.value, public, log_detail=exc.detail) from None
    try:
        if route.kind is RouteKind.PUBLICATION:
            publications = decode_publications(body)
            _check_publication_addressing(route, publications)
            return signer, publications
        statuses = decode_status_messages(body)
        _check_status_addressing(route, statuses)
        return signer, statuses
    except EnvelopeError as exc:
        raise Rejection(400, exc.reason, exc.detail) from None


#: Signature reasons whose verifier detail quotes request data (the string to sign): the
#: answer says what was checked instead, and the full detail goes to the log only.
_PUBLIC_SIGNATURE_DETAIL = {
    RejectReason.BAD_SIGNATURE: (
        "X-DIP-Signature does not verify with the signer certificate's key over "
        "POST;<the callback URL as called, lower-case>;X-DIP-Signature-Date;X-DIP-Content-Hash"
    ),
}


def _check_publication_addressing(route: Route, messages: Sequence[Publication]) -> None:
    for m in messages:
        if route.interface is not None and m.interface != route.interface:
            raise Rejection(
                422,
                "interface_mismatch",
                f"[{m.index}] is {m.interface} but was pushed to the {route.interface} webhook",
            )
        if m.recipients is not None and route.recipient not in m.recipients:
            raise Rejection(
                422,
                "wrong_recipient",
                f"[{m.index}] A0 does not address {route.recipient}, the webhook's DIP ID",
            )


def _check_status_addressing(route: Route, messages: Sequence[StatusMessage]) -> None:
    for m in messages:
        if m.recipient_dip_id is not None and m.recipient_dip_id != route.recipient:
            raise Rejection(
                422,
                "wrong_recipient",
                f"[{m.index}] recipientID {m.recipient_dip_id} is not {route.recipient}, "
                "the webhook's DIP ID",
            )


# -- routing --------------------------------------------------------------------------------


def plan_deliveries(
    route: Route,
    messages: Sequence[Message],
    table: RoutingTable,
    source: str = "webhook",
) -> list[Delivery]:
    """One Kafka record per message: the client's topic, or quarantine with the reason."""
    dest = table.destinations.get(route.recipient)
    kind, recipient = route.kind.value, route.recipient
    # the same for every message of the push: made once
    recipient_header = (H_RECIPIENT, recipient.encode())
    source_header = (H_SOURCE, source.encode())
    inbound = dest.inbound if dest is not None else table.quarantine_topic
    unknown = (H_QUARANTINE_REASON, b"unknown_recipient")
    new = _new_delivery
    out: list[Delivery] = []
    # Headers whose values a push's messages usually share, made once per distinct set of them
    # (and shared by the records: fewer objects to make, write and free).
    shared: dict[tuple[object, ...], tuple[tuple[str, bytes], list[tuple[str, bytes]]]] = {}
    for m in messages:
        if isinstance(m, Publication):
            same = (
                m.interface,
                m.replay,
                m.event_code,
                m.schema_version,
                m.publication_id,
                m.sender_dip_id,
            )
            made = shared.get(same)
            if made is None:
                made = shared[same] = _shared_headers(m, recipient_header, source_header)
            headers = [
                _PUBLICATION_CHANNEL,
                made[0],
                (H_TRANSACTION_ID, m.transaction_id.encode()),
                *made[1],
            ]
            if m.sender_unique_reference:
                headers.append((H_SENDER_REF, m.sender_unique_reference.encode()))
            if dest is None:
                headers.append(unknown)
            key = m.mpan_core or m.transaction_id  # Publication.kafka_key, in line
            out.append(
                new(
                    Delivery,
                    (
                        m,
                        inbound,
                        key.encode(),
                        m.payload_json,
                        headers,
                        (kind, recipient, m.transaction_id),  # Publication.dedup_id
                        None if dest is not None else "unknown_recipient",
                    ),
                )
            )
            continue
        topic = dest.status if dest is not None else None
        if dest is None:
            reason: str | None = "unknown_recipient"
        elif topic is None:
            reason = "no_status_topic"
        else:
            reason = None
        headers = _status_headers(m, recipient, source)
        if reason is not None:
            headers.append((H_QUARANTINE_REASON, reason.encode()))
            topic = table.quarantine_topic
        assert topic is not None
        out.append(
            Delivery(
                message=m,
                topic=topic,
                key=m.kafka_key.encode(),
                value=m.body_json,
                headers=headers,
                dedup_key=(kind, recipient, m.dedup_id),
                quarantine_reason=reason,
            )
        )
    return out


def _shared_headers(
    m: Publication, recipient: tuple[str, bytes], source: tuple[str, bytes]
) -> tuple[tuple[str, bytes], list[tuple[str, bytes]]]:
    """A publication's interface header, and its headers after the transaction ID's up to the
    sender's, in the order :func:`plan_deliveries` writes them."""
    after = [_REPLAY if m.replay else _NOT_REPLAY, recipient, source]
    if m.event_code:
        after.append((H_EVENT_CODE, m.event_code.encode()))
    if m.schema_version:
        after.append((H_SCHEMA_VERSION, m.schema_version.encode()))
    if m.publication_id:
        after.append((H_PUBLICATION_ID, m.publication_id.encode()))
    if m.sender_dip_id:
        after.append((H_SENDER, m.sender_dip_id.encode()))
    return (H_INTERFACE, m.interface.encode()), after


_new_delivery = tuple.__new__
_PUBLICATION_CHANNEL = (H_CHANNEL, b"publication")
_REPLAY = (H_REPLAY, b"true")
_NOT_REPLAY = (H_REPLAY, b"false")


def _status_headers(m: StatusMessage, recipient: str, source: str) -> list[tuple[str, bytes]]:
    headers = [
        (H_CHANNEL, b"status"),
        (H_RECIPIENT, recipient.encode()),
        (H_SOURCE, source.encode()),
    ]
    for name, value in (
        (H_TRANSACTION_ID, m.transaction_id),
        (H_SENDER, m.sender_dip_id),
        (H_SENDER_REF, m.sender_unique_reference),
        (H_STATUS_MESSAGE, m.message),
    ):
        if value:
            headers.append((name, value.encode()))
    return headers


# -- answers --------------------------------------------------------------------------------


def answer_status(outcomes: Sequence[Outcome]) -> int:
    """201 all in; 503 none in (Kafka unreachable: the DIP retries); 207 some in."""
    failed = sum(1 for o in outcomes if o is Outcome.FAILED)
    if failed == 0:
        return 201
    if failed == len(outcomes):
        return 503
    return 207


class _Entry(msgspec.Struct, gc=False):
    """One entry of the answer's ``messageArray`` (a struct: msgspec writes a hundred of them
    at about half the cost of as many dicts through orjson)."""

    transactionID: str | None
    senderUniqueReference: str | None
    correlationID: str | None
    sentTimestamp: str
    senderID: str | None
    recipientID: str
    DIPConnectionProviderID: str
    message: str
    help: None = None
    serviceTicketURL: None = None


class _StandardResponse(msgspec.Struct, gc=False):
    messageArray: list[_Entry]
    timestamp: str


_ENCODER = msgspec.json.Encoder()


_OUTCOME_TEXT = {
    Outcome.ROUTED: SUCCESS,
    Outcome.DUPLICATE: SUCCESS + " (duplicate: already routed)",
    Outcome.QUARANTINED: SUCCESS + " (quarantined: no client owns the recipient)",
    Outcome.FAILED: "Not stored: Kafka did not acknowledge; retry",
}


def response_body(
    route: Route,
    messages: Sequence[Message],
    outcomes: Sequence[Outcome],
    dcp_id: str,
    timestamp: str,
) -> bytes:
    """A ``StandardResponse`` with one entry per message, in push order."""
    recipient = route.recipient
    return _ENCODER.encode(
        _StandardResponse(
            [
                _Entry(
                    m.transaction_id,
                    m.sender_unique_reference,
                    m.correlation_id if isinstance(m, Publication) else None,
                    timestamp,
                    m.sender_dip_id,
                    recipient,
                    dcp_id,
                    _OUTCOME_TEXT[o],
                )
                for m, o in zip(messages, outcomes, strict=True)
            ],
            timestamp,
        )
    )


def rejection_body(rejection: Rejection, timestamp: str) -> bytes:
    """``StandardResponse``-shaped, with the reason as ``message`` and the detail as ``help``."""
    return orjson.dumps(
        {
            "messageArray": [
                {
                    "transactionID": None,
                    "senderUniqueReference": None,
                    "correlationID": None,
                    "sentTimestamp": timestamp,
                    "senderID": None,
                    "recipientID": None,
                    "DIPConnectionProviderID": None,
                    "message": f"{rejection.status} {rejection.reason}",
                    "help": rejection.detail,
                    "serviceTicketURL": None,
                }
            ],
            "timestamp": timestamp,
        }
    )
