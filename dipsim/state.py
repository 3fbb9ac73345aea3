"""What the simulator remembers: accepted messages, publications, deliveries, status messages,
webhooks, requeues and counters. In memory, with an optional SQLite copy of accepted messages.

Everything is mutated from the event loop thread only, so no locks are needed.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson

from dipsim.envelope import publication_id

STATUS_KIND = "status"  # webhook "interface" key for status messages


class RequestBody:
    """The raw JSON array of one submit request, shared by the messages accepted from it.

    Keeping the bytes (about the size on the wire) instead of the parsed payload dicts (several
    times that, and many objects for the GC) is what makes storing every message cheap; a
    message's payload is parsed back on first use (publication pushes, replay, ``/_sim``).
    """

    __slots__ = ("_items", "body")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._items: list[Any] | None = None

    def payload(self, index: int) -> dict[str, Any]:
        items = self._items
        if items is None:
            items = self._items = orjson.loads(self.body)
        payload: dict[str, Any] = items[index]["payload"]
        return payload


@dataclass(slots=True)
class StoredMessage:
    seq: int
    transaction_id: str
    sender_unique_reference: str
    sender: str
    interface: str
    event_code: str | None
    schema_version: str | None
    mpan: str | None
    correlation_id: str | None
    recipients: tuple[str, ...]
    received_at: datetime
    client_cert_subject: str | None
    client_cert_fingerprint: str | None
    signer_fingerprint: str
    #: the request body the message came in and its index in the array
    request: RequestBody
    index: int

    @property
    def payload(self) -> dict[str, Any]:
        """The submitted ``{"CommonBlock": ..., "CustomBlock": ...}`` (parsed on demand)."""
        return self.request.payload(self.index)

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "transactionID": self.transaction_id,
            "senderUniqueReference": self.sender_unique_reference,
            "sender": self.sender,
            "interface": self.interface,
            "eventCode": self.event_code,
            "recipients": list(self.recipients),
            "receivedAt": self.received_at.isoformat(),
            "clientCertSubject": self.client_cert_subject,
            "clientCertFingerprint": self.client_cert_fingerprint,
            "signerFingerprint": self.signer_fingerprint,
            "payload": self.payload,
        }


@dataclass(slots=True)
class Publication:
    """One message as published (or to be published) to one recipient."""

    transaction_id: str
    kind: str  # interface id, or STATUS_KIND
    recipient: str
    published_at: datetime
    #: the submitted payload ({"CommonBlock":..., "CustomBlock":...}) without D0, or the
    #: StandardResponseBodyType item of a status message; None when ``origin`` holds it
    src: dict[str, Any] | None = None
    #: an interface publication (D0 added when pushed / replayed); False for status messages
    has_d0: bool = False
    event_code: str | None = None
    mpan: str | None = None
    schema_version: str | None = None
    sender_unique_reference: str | None = None
    correlation_id: str | None = None
    #: the accepted message this publishes (its payload is the source)
    origin: StoredMessage | None = None

    @classmethod
    def of_message(cls, m: StoredMessage, recipient: str, at: datetime) -> Publication:
        """The publication of accepted message ``m`` to ``recipient`` (payload read from ``m``)."""
        return cls(
            m.transaction_id,
            m.interface,
            recipient,
            at,
            None,
            True,
            m.event_code,
            m.mpan,
            m.schema_version,
            m.sender_unique_reference,
            m.correlation_id,
            m,
        )

    @property
    def source(self) -> dict[str, Any]:
        if self.src is not None:
            return self.src
        assert self.origin is not None
        return self.origin.payload

    @property
    def d0(self) -> dict[str, Any] | None:
        """The DIP's D0 block (built on demand), None for status messages."""
        if not self.has_d0:
            return None
        return {
            "transactionID": self.transaction_id,
            "transactionTimestamp": self.published_at.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "publicationID": publication_id(self.kind),
            "initialCorrelationID": self.correlation_id,
            "replayIndicator": False,
            "serviceTicketURL": None,
        }

    @property
    def body(self) -> dict[str, Any]:
        """What is pushed / replayed: ``{"payload": ...}`` with D0 filled (built on demand)."""
        d0 = self.d0
        source = self.source
        if d0 is None:
            return source
        common = source.get("CommonBlock") or {}
        return {"payload": {**source, "CommonBlock": {**common, "D0": d0}}}


@dataclass(slots=True)
class Attempt:
    at: datetime
    status: int | None
    error: str | None
    replay: bool


@dataclass(slots=True)
class Delivery:
    """Outcome of pushing one publication to its webhook (over all its attempts)."""

    transaction_id: str
    kind: str
    recipient: str
    status: str = "Pending"  # Pending, Retrying, Delivered, RetriesExhausted, NoWebhook
    attempts: int = 0
    failed_attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    callback_url: str | None = None
    delivered_at: datetime | None = None
    history: list[Attempt] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.status == "Delivered"

    def as_dict(self) -> dict[str, Any]:
        return {
            "transactionID": self.transaction_id,
            "interface": self.kind,
            "recipient": self.recipient,
            "status": self.status,
            "delivered": self.delivered,
            "attempts": self.attempts,
            "failedAttempts": self.failed_attempts,
            "lastStatus": self.last_status,
            "lastError": self.last_error,
            "callbackURL": self.callback_url,
            "deliveredAt": self.delivered_at.isoformat() if self.delivered_at else None,
            "history": [
                {
                    "at": a.at.isoformat(),
                    "status": a.status,
                    "error": a.error,
                    "replay": a.replay,
                }
                for a in self.history
            ],
        }


@dataclass(slots=True)
class Webhook:
    callback_url: str
    max_message_count: int
    max_payload_kb: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "callbackURL": self.callback_url,
            "maxMessageCount": self.max_message_count,
            "maxPayloadSize": self.max_payload_kb,
        }


@dataclass(slots=True)
class Requeue:
    requeue_id: str
    kind: str
    recipient: str
    total: int
    processed: int = 0
    failed: int = 0
    created_at: datetime | None = None

    @property
    def status(self) -> str:
        if self.processed + self.failed < self.total:
            return "Processing"
        if self.failed == 0:
            return "Completed"
        return "Failed" if self.processed == 0 else "PartialCompletion"

    def as_dict(self) -> dict[str, Any]:
        done = self.processed + self.failed
        return {
            "requeueId": self.requeue_id,
            "percentComplete": 100 if not self.total else round(100 * done / self.total),
            "totalTransactions": self.total,
            "processedTransactions": self.processed,
            "status": self.status,
        }


@dataclass(slots=True)
class StoredStatus:
    transaction_id: str
    sender: str
    recipient: str | None
    received_at: datetime
    item: dict[str, Any]


@dataclass(slots=True)
class PendingBatch:
    """Messages of one request accepted on the fast path, not yet turned into objects.

    Everything a :class:`StoredMessage` / :class:`Publication` holds is in the request body or
    here; :meth:`SimState.flush` builds them on first use (inspection, replay, requeue,
    delivery status), so a load test that only counts pays nothing for them.
    """

    request: RequestBody
    count: int
    seq0: int  # seq of the first message minus one
    txid_base: int  # transaction ids are transaction_id(txid_base + index)
    sender: str
    interface: str
    received_at: datetime
    client_cert_subject: str | None
    client_cert_fingerprint: str | None
    signer_fingerprint: str


class SimState:
    """All simulator state. Counters are plain ``Counter``s, readable by tests directly."""

    def __init__(self, sqlite_path: Path | None = None) -> None:
        self._messages: list[StoredMessage] = []
        #: senderUniqueReference -> the message, or the PendingBatch holding it
        self.by_sur: dict[str, StoredMessage | PendingBatch] = {}
        self._publications: dict[tuple[str, str], list[Publication]] = defaultdict(list)
        self._pending: list[PendingBatch] = []
        self.message_count = 0
        self.publication_count = 0
        #: builds a PendingBatch's messages and publications (set by the app)
        self.materialize: Callable[[PendingBatch], list[StoredMessage]] | None = None
        self.deliveries: dict[tuple[str, str, str], Delivery] = {}
        self.webhooks: dict[tuple[str, str], Webhook] = {}
        self.requeues: dict[str, Requeue] = {}
        self.status_messages: list[StoredStatus] = []
        self.requests: Counter[str] = Counter()  # "<path kind> <status>"
        self.status_codes: Counter[int] = Counter()
        self.answers_by_key_owner: Counter[tuple[str, int]] = Counter()  # (DIP ID, status)
        self.by_sender: Counter[str] = Counter()
        self.by_interface: Counter[str] = Counter()
        self.by_recipient: Counter[str] = Counter()
        self.by_client_cert: Counter[str] = Counter()
        self.rejected_messages: Counter[str] = Counter()  # message code -> count
        self.duplicates: Counter[str] = Counter()  # sender -> duplicate count
        self.auth_failures: Counter[str] = Counter()  # reason -> count
        self.pushes: Counter[str] = Counter()  # "ok" / "failed" / "exhausted" / "messages"
        self._db: sqlite3.Connection | None = None
        if sqlite_path is not None:
            self._db = sqlite3.connect(str(sqlite_path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS messages (transaction_id TEXT PRIMARY KEY, "
                "sur TEXT, sender TEXT, interface TEXT, recipients TEXT, received_at TEXT, "
                "client_cert TEXT, payload BLOB)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS status_messages (transaction_id TEXT PRIMARY KEY, "
                "sender TEXT, recipient TEXT, received_at TEXT, item BLOB)"
            )
            self._db.commit()

    # ---------------------------------------------------------------------- messages

    @property
    def persistent(self) -> bool:
        """Accepted messages are also written to SQLite."""
        return self._db is not None

    @property
    def messages(self) -> list[StoredMessage]:
        """Every accepted message, in order (builds pending ones first)."""
        if self._pending:
            self.flush()
        return self._messages

    @property
    def publications(self) -> dict[tuple[str, str], list[Publication]]:
        """(interface or STATUS_KIND, recipient) -> publications, in order."""
        if self._pending:
            self.flush()
        return self._publications

    def flush(self) -> None:
        """Turn pending batches into StoredMessages and Publications."""
        pending, self._pending = self._pending, []
        by_sur = self.by_sur
        publications = self._publications
        for batch in pending:
            assert self.materialize is not None
            for m in self.materialize(batch):
                self._messages.append(m)
                by_sur[m.sender_unique_reference] = m
                for recipient in m.recipients:
                    publications[(m.interface, recipient)].append(
                        Publication.of_message(m, recipient, m.received_at)
                    )

    def message_by_sur(self, sur: str) -> StoredMessage | None:
        found = self.by_sur.get(sur)
        if isinstance(found, PendingBatch):
            self.flush()
            found = self.by_sur.get(sur)
        assert not isinstance(found, PendingBatch)
        return found

    def add_pending(
        self,
        batch: PendingBatch,
        surs: list[str],
        recipients: dict[str, int],
    ) -> None:
        """Record a fast-path batch: ``surs`` its references (all new), ``recipients`` the
        number of its messages per recipient."""
        self._pending.append(batch)
        self.by_sur.update(zip(surs, repeat(batch)))  # no temporary dict (dict.fromkeys)
        n = batch.count
        self.message_count += n
        self.by_sender[batch.sender] += n
        self.by_interface[batch.interface] += n
        self.by_recipient.update(recipients)
        self.publication_count += sum(recipients.values())
        if batch.client_cert_fingerprint:
            self.by_client_cert[batch.client_cert_fingerprint] += n

    def add_messages(self, messages: list[StoredMessage]) -> None:
        if not messages:
            return
        self.messages.extend(messages)
        self.message_count += len(messages)
        self.by_sur.update((m.sender_unique_reference, m) for m in messages)
        self.by_sender.update(m.sender for m in messages)
        self.by_interface.update(m.interface for m in messages)
        self.by_recipient.update(r for m in messages for r in m.recipients)
        self.by_client_cert.update(
            m.client_cert_fingerprint for m in messages if m.client_cert_fingerprint
        )
        if self._db is not None:
            self._db.executemany(
                "INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        m.transaction_id,
                        m.sender_unique_reference,
                        m.sender,
                        m.interface,
                        ",".join(m.recipients),
                        m.received_at.isoformat(),
                        m.client_cert_fingerprint,
                        orjson.dumps(m.payload),
                    )
                    for m in messages
                ],
            )
            self._db.commit()

    def find_messages(
        self,
        sender: str | None = None,
        interface: str | None = None,
        recipient: str | None = None,
    ) -> list[StoredMessage]:
        return [
            m
            for m in self.messages
            if (sender is None or m.sender == sender)
            and (interface is None or m.interface == interface)
            and (recipient is None or recipient in m.recipients)
        ]

    def count(
        self,
        sender: str | None = None,
        interface: str | None = None,
        recipient: str | None = None,
    ) -> int:
        if sender is None and interface is None and recipient is None:
            return self.message_count
        return len(self.find_messages(sender, interface, recipient))

    # ---------------------------------------------------------------------- publications

    def add_publication(self, pub: Publication) -> None:
        self.publications[(pub.kind, pub.recipient)].append(pub)
        self.publication_count += 1

    def delivery(self, pub: Publication) -> Delivery:
        key = (pub.kind, pub.recipient, pub.transaction_id)
        found = self.deliveries.get(key)
        if found is None:
            found = self.deliveries[key] = Delivery(pub.transaction_id, pub.kind, pub.recipient)
        return found

    def deliveries_for(
        self, recipient: str | None = None, kind: str | None = None
    ) -> list[Delivery]:
        return [
            d
            for d in self.deliveries.values()
            if (recipient is None or d.recipient == recipient) and (kind is None or d.kind == kind)
        ]

    # ---------------------------------------------------------------------- status messages

    def add_status(self, items: list[StoredStatus]) -> None:
        self.status_messages.extend(items)
        if self._db is not None and items:
            self._db.executemany(
                "INSERT OR REPLACE INTO status_messages VALUES (?,?,?,?,?)",
                [
                    (
                        s.transaction_id,
                        s.sender,
                        s.recipient,
                        s.received_at.isoformat(),
                        orjson.dumps(s.item),
                    )
                    for s in items
                ],
            )
            self._db.commit()

    # ---------------------------------------------------------------------- misc

    def count_answer(self, api_key_owner: str | None, status: int) -> None:
        self.status_codes[status] += 1
        if api_key_owner is not None:
            self.answers_by_key_owner[(api_key_owner, status)] += 1

    def answers_by_owner(self) -> dict[str, dict[str, int]]:
        """{DIP ID: {status: answers}} for requests with a registered API key."""
        out: dict[str, dict[str, int]] = {}
        for (owner, status), count in self.answers_by_key_owner.items():
            out.setdefault(owner, {})[str(status)] = count
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "messages": self.message_count,
            "statusMessages": len(self.status_messages),
            "bySender": dict(self.by_sender),
            "byInterface": dict(self.by_interface),
            "byRecipient": dict(self.by_recipient),
            "byClientCert": dict(self.by_client_cert),
            "duplicates": dict(self.duplicates),
            "duplicatesTotal": sum(self.duplicates.values()),
            "rejectedMessages": dict(self.rejected_messages),
            "authFailures": dict(self.auth_failures),
            "statusCodes": {str(k): v for k, v in self.status_codes.items()},
            "statusCodesByApiKeyOwner": self.answers_by_owner(),
            "requests": dict(self.requests),
            "publications": self.publication_count,
            "deliveries": {
                status: sum(1 for d in self.deliveries.values() if d.status == status)
                for status in {d.status for d in self.deliveries.values()}
            },
            "pushes": dict(self.pushes),
            "webhooks": len(self.webhooks),
            "requeues": len(self.requeues),
        }

    def reset(self) -> None:
        """Forget messages, publications, deliveries and counters (webhooks stay)."""
        db = self._db
        webhooks = self.webhooks
        materialize = self.materialize
        self.__init__()  # type: ignore[misc]
        self._db = db
        self.webhooks = webhooks
        self.materialize = materialize

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
