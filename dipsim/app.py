"""The simulated DIP's HTTP surface (aiohttp.web): DIP endpoints plus ``/_sim`` admin.

Status codes (see the package README section in the final report):
- 401 missing/unknown API key, any signature failure, signer not the registered certificate;
- 403 API key of another DIP ID than the sender / recipient-id;
- 413 body over ``max_body_bytes`` or more than ``max_messages_per_request`` messages;
- 400 malformed JSON, not a non-empty array, mixed senderDIPIDs, or every message failed;
- 207 some messages failed, 201 all accepted (``StandardResponse`` in all three).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
from aiohttp import web

from dipsim.auth import Authenticator, AuthError, ClientCert
from dipsim.config import SimulatorConfig
from dipsim.envelope import (
    INTERFACE_PATTERN,
    MSG_DUPLICATE,
    MSG_SCHEMA_FAILURE,
    MSG_SUCCESS,
    check_message,
    envelope_array_ok,
    help_text,
)
from dipsim.faults import FaultConfig, FaultInjector
from dipsim.pusher import Pusher, _body_for
from dipsim.state import (
    STATUS_KIND,
    PendingBatch,
    Publication,
    RequestBody,
    Requeue,
    SimState,
    StoredMessage,
    StoredStatus,
)
from gateway.signing.verify import VerifiedSigner

log = logging.getLogger("dipsim")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SLOW_READ = web.RequestKey("dipsim_slow_read", float)


def _id_prefix() -> str:
    h = os.urandom(10).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"


_ID_PREFIX = _id_prefix()  # random per process: ids stay unique across restarts
_ID_MASK = (1 << 48) - 1
_id_next = [int.from_bytes(os.urandom(3), "big") << 24]


def take_transaction_ids(count: int) -> int:
    """Reserve ``count`` consecutive ids; ``transaction_id(base + i)`` is the i-th."""
    base = _id_next[0]
    _id_next[0] = base + count
    return base


def transaction_id(number: int) -> str:
    return f"{_ID_PREFIX}{number & _ID_MASK:012x}"


def new_transaction_id() -> str:
    """A unique UUID-shaped (version 4 layout) id: a random per-process prefix and a 48-bit
    counter; ~20x cheaper than ``str(uuid.uuid4())``."""
    return transaction_id(take_transaction_ids(1))


# Field getters for the fast path: map() over a batch with these runs the loop in C.
_PAYLOAD = itemgetter("payload")
_COMMON_BLOCK = itemgetter("CommonBlock")
_S1_BLOCK = itemgetter("S1")
_A0_BLOCK = itemgetter("A0")
_SENDER_DIP_ID = itemgetter("senderDIPID")
_SUR = itemgetter("senderUniqueReference")
_CORRELATION_ID = itemgetter("senderCorrelationID")
_DCP_ID = itemgetter("DIPConnectionProviderID")
_PRIMARY = itemgetter("primaryRecipients")
_SECONDARY = itemgetter("secondaryRecipients")
_ALWAYS = itemgetter("always")
_FIRST = itemgetter(0)


def _json_texts(values: list[Any]) -> list[str]:
    """Each value as JSON text. Correlation and DCP ids are usually all null: then it is one
    list multiplication, no call per message."""
    if values.count(None) == len(values):
        return ["null"] * len(values)
    return [orjson.dumps(v).decode() for v in values]


#: Pieces of JSON text per entry in :func:`_success_response`.
_PIECES_PER_ENTRY = 8
#: A transaction id's counter is 12 hex digits: 9 that change every 4096 ids, then 3 from here.
_LOW_HEX = [f"{low:03x}" for low in range(4096)]


def _success_response(
    base: int,
    surs: list[str],
    correlations: list[str],
    dcps: list[str],
    dip_id_json: str,
    sender_json: str,
    ts: str,
) -> bytes:
    """The all-MSG0000 StandardResponse of a clean batch whose transaction ids are
    ``transaction_id(base + i)``: byte for byte what ``orjson.dumps`` writes for the general
    path's entries.

    The entries differ only in a few values, so the text is laid out as one list of pieces:
    constant pieces by list multiplication, the values by slice assignment, then a single join;
    no string or dict per message. Even a transaction id is two shared pieces: its first 9
    counter digits (the same for up to 4096 consecutive ids) end the piece before it, the last
    3 come from ``_LOW_HEX``. The envelope schema limits references to ``[A-Za-z0-9-]`` and the
    ids are hex, so they need no escaping; ``correlations`` and ``dcps`` are JSON text already
    (:func:`_json_texts`).
    """
    count = len(surs)
    k = _PIECES_PER_ENTRY
    head = '{"transactionID":"' + _ID_PREFIX
    tail = f',"message":"{MSG_SUCCESS}","help":null,"serviceTicketURL":null}}'
    parts: list[str] = [""] * (k * count)
    index = 0
    while index < count:  # runs of ids sharing their first 9 counter digits
        high, low = divmod((base + index) & _ID_MASK, 4096)
        run = min(count - index, 4096 - low)
        parts[k * index : k * (index + run) : k] = [f"{tail},{head}{high:09x}"] * run
        parts[k * index + 1 : k * (index + run) : k] = _LOW_HEX[low : low + run]
        index += run
    parts[0] = '{"messageArray":[' + parts[0][len(tail) + 1 :]  # no entry before the first
    parts[2::k] = ['","senderUniqueReference":"'] * count
    parts[3::k] = surs
    parts[4::k] = ['","correlationID":'] * count
    parts[5::k] = correlations
    parts[6::k] = [
        f',"sentTimestamp":"{ts}","senderID":{dip_id_json}'
        f',"recipientID":{sender_json},"DIPConnectionProviderID":'
    ] * count
    parts[7::k] = dcps
    parts.append(f'{tail}],"timestamp":"{ts}"}}')
    return "".join(parts).encode()


def _recipient_counts(a0s: list[dict[str, Any]]) -> Counter[str]:
    """Messages per recipient over a batch's A0 blocks, each message counting once per distinct
    recipient (as :func:`_recipients`). The usual batch, one primary recipient per message and
    no secondary or always ones, is counted in C-level passes; others message by message."""
    primaries = list(map(_PRIMARY, a0s))
    if (
        set(map(len, primaries)) == {1}
        and not any(map(_SECONDARY, a0s))
        and not any(map(_ALWAYS, a0s))
    ):
        counts: Counter[str] = Counter(map(_FIRST, primaries))
        for empty in [r for r in counts if not r]:  # a null primary recipient: nobody
            del counts[empty]
        return counts
    return Counter(r for a0 in a0s for r in _recipients(a0))


def dip_timestamp(when: datetime | None = None) -> str:
    """``2026-03-01T09:30:00+00:00`` (25 characters, DT-003)."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _bare(event: str | None) -> str | None:
    return event.strip("[]") if isinstance(event, str) else None


def _schema_hook() -> Any:
    """``gateway.schema.default_registry`` and ``dip_schema_failure`` when they exist."""
    try:
        from gateway.schema import default_registry, dip_schema_failure
    except ImportError:  # pragma: no cover - the schema package is optional
        return None
    return default_registry, dip_schema_failure


class SimCore:
    """Handlers and their collaborators; one per running simulator."""

    def __init__(
        self,
        config: SimulatorConfig,
        state: SimState,
        faults: FaultInjector,
        auth: Authenticator,
        pusher: Pusher,
    ) -> None:
        self.config = config
        self.state = state
        self.faults = faults
        self.auth = auth
        self.pusher = pusher
        self._tokens: dict[str, tuple[list[Any], int]] = {}
        self._schema = _schema_hook() if config.schema_validation else None
        state.materialize = self._materialize

    # ------------------------------------------------------------------ plumbing

    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes * 2 + 65536,
            middlewares=[self._count_mw, self._fault_mw],
        )
        r = app.router
        r.add_post("/dip-channel/{id}", self.submit)
        r.add_post("/dip-channel/{id}/pubconfig/{rid}", self.pubconfig_set)
        r.add_delete("/dip-channel/{id}/pubconfig/{rid}", self.pubconfig_delete)
        r.add_post("/dip-channel/{id}/replay/{rid}", self.replay)
        r.add_post("/dip-channel/{id}/requeue/{rid}", self.requeue)
        r.add_get("/dip-channel/{id}/requeueStatus/{rid}", self.requeue_status)
        r.add_get("/dip-channel/{id}/deliveryStatus/{rid}/{mid}", self.delivery_status)
        r.add_post("/statusmessage", self.status_submit)
        r.add_post("/statusmessage/config/{rid}", self.pubconfig_set)
        r.add_delete("/statusmessage/config/{rid}", self.pubconfig_delete)
        r.add_post("/statusmessage/replay/{rid}", self.replay)
        r.add_post("/statusmessage/requeue/{rid}", self.requeue)
        r.add_get("/statusmessage/requeueStatus/{rid}", self.requeue_status)
        r.add_post("/validate/{interface}/{event}", self.validate)
        r.add_get("/_sim/messages", self.sim_messages)
        r.add_get("/_sim/status-messages", self.sim_status_messages)
        r.add_get("/_sim/stats", self.sim_stats)
        r.add_get("/_sim/faults", self.sim_faults_get)
        r.add_post("/_sim/faults", self.sim_faults_set)
        r.add_post("/_sim/publish", self.sim_publish)
        r.add_get("/_sim/deliveries", self.sim_deliveries)
        r.add_get("/_sim/webhooks", self.sim_webhooks)
        r.add_post("/_sim/reset", self.sim_reset)
        return app

    @web.middleware
    async def _count_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.state.status_codes[exc.status] += 1
            raise
        self.state.status_codes[response.status] += 1
        return response

    @web.middleware
    async def _fault_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        decision = self.faults.decide(request.path)
        if decision is None:
            return await handler(request)
        if decision.delay_seconds > 0:
            await asyncio.sleep(decision.delay_seconds)
        outcome = decision.outcome
        cfg = self.faults.config
        if outcome == "429":
            return _json(
                {"statusCode": 429, "message": "Too Many Requests"},
                429,
                {"Retry-After": str(cfg.retry_after_seconds)},
            )
        if outcome in ("500", "502", "503", "504"):
            code = int(outcome)
            return _json({"statusCode": code, "message": "simulated fault"}, code)
        if outcome == "timeout":
            await asyncio.sleep(cfg.timeout_hold_seconds)
            self._reset(request)
            return web.Response(status=504)
        if outcome == "reset":
            self._reset(request)
            return web.Response(status=500)
        if decision.slow_read_seconds > 0:
            request[SLOW_READ] = decision.slow_read_seconds
        return await handler(request)

    @staticmethod
    def _reset(request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    async def _body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _TooLarge(f"body of {length} bytes exceeds {limit}")
        slow = request.get(SLOW_READ, 0.0)
        if not slow:
            body = await request.read()
        else:
            chunks: list[bytes] = []
            async for chunk in request.content.iter_chunked(16384):
                chunks.append(chunk)
                await asyncio.sleep(slow)
            body = b"".join(chunks)
        if len(body) > limit:
            raise _TooLarge(f"body of {len(body)} bytes exceeds {limit}")
        return body

    def _auth_error(self, exc: AuthError) -> web.Response:
        self.state.auth_failures[exc.reason] += 1
        return _json(
            {
                "statusCode": exc.status,
                "message": "Unauthorised" if exc.status == 401 else "Forbidden",
                "reason": exc.reason,
                "help": exc.detail[:500],
            },
            exc.status,
        )

    def _entry(
        self,
        message: str,
        help_: str | None = None,
        *,
        transaction_id: str | None = None,
        sur: Any = None,
        correlation: Any = None,
        recipient: str | None = None,
        dcp: Any = None,
        ts: str | None = None,
    ) -> dict[str, Any]:
        return {
            "transactionID": transaction_id,
            "senderUniqueReference": sur if isinstance(sur, str) else None,
            "correlationID": correlation if isinstance(correlation, str) else None,
            "sentTimestamp": ts or dip_timestamp(),
            "senderID": self.config.dip_id,
            "recipientID": recipient,
            "DIPConnectionProviderID": dcp if isinstance(dcp, str) else None,
            "message": message,
            "help": help_,
            "serviceTicketURL": None,
        }

    def _bad_request(
        self, help_: str, recipient: str | None = None, status: int = 400
    ) -> web.Response:
        return _json(
            {
                "messageArray": [self._entry(MSG_SCHEMA_FAILURE, help_[:500], recipient=recipient)],
                "timestamp": dip_timestamp(),
            },
            status,
        )

    async def _signed_array(
        self, request: web.Request, expected: str
    ) -> tuple[str, VerifiedSigner, bytes, list[Any]] | web.Response:
        """Read, authenticate and parse a submission whose body is a JSON array.

        The order is the DIP's: size limit, API key and signature, JSON, then the
        array's bounds; the first failure is the answer (413, 401/403 or 400).
        """
        try:
            body = await self._body(request)
        except _TooLarge as exc:
            return self._bad_request(str(exc), status=413)
        try:
            owner = self.auth.api_key_owner(request.headers)
            signer = self.auth.verify(request, body, owner)
        except AuthError as exc:
            return self._auth_error(exc)
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._bad_request(f"body is not valid JSON: {exc}", owner)
        if not isinstance(items, list) or not items:
            return self._bad_request(f"body must be {expected}", owner)
        if len(items) > self.config.max_messages_per_request:
            return self._bad_request(
                f"{len(items)} messages in one request; at most "
                f"{self.config.max_messages_per_request} allowed",
                owner,
                status=413,
            )
        return owner, signer, body, items

    # ------------------------------------------------------------------ submit

    async def submit(self, request: web.Request) -> web.Response:
        interface = request.match_info["id"]
        self.state.requests["submit"] += 1
        if not INTERFACE_PATTERN.match(interface):
            return _json({"statusCode": 404, "message": f"unknown channel {interface}"}, 404)
        signed = await self._signed_array(request, "a non-empty JSON array of messages")
        if isinstance(signed, web.Response):
            return signed
        owner, signer, body, items = signed
        envelope_ok = envelope_array_ok(items, interface)
        commons: list[dict[str, Any]] | None = None
        if envelope_ok:
            commons = list(map(_COMMON_BLOCK, map(_PAYLOAD, items)))
            senders = set(map(_SENDER_DIP_ID, map(_S1_BLOCK, commons)))
        else:
            senders = {s1.get("senderDIPID") for s1 in map(_s1, items) if s1 is not None}
            senders.discard(None)
        if len(senders) > 1:
            return self._bad_request(
                "all messages in one request must have one senderDIPID, found "
                f"{sorted(map(str, senders))}",
                owner,
            )
        sender = str(senders.pop()) if senders else owner
        if sender != owner:
            return self._auth_error(
                AuthError(
                    403,
                    "api_key_of_other_dip_id",
                    f"the API key belongs to DIP ID {owner}, the messages are from {sender}",
                )
            )
        peer = self.auth.peer(request)
        return self._accept(
            interface, sender, items, peer, signer.fingerprint_sha256, body, commons
        )

    def _accept(
        self,
        interface: str,
        sender: str,
        items: list[Any],
        peer: ClientCert | None,
        signer_fp: str,
        body: bytes,
        commons: list[dict[str, Any]] | None = None,
    ) -> web.Response:
        """Check, store and publish the messages of one request; the StandardResponse.

        ``commons``: given when :func:`envelope_array_ok` passed (every item's envelope is
        fine, the per-message Python checks are skipped), each item's CommonBlock.
        """
        envelope_ok = commons is not None
        state = self.state
        by_sur = state.by_sur
        now = datetime.now(UTC)
        ts = dip_timestamp(now)
        partial = self.faults.partial_failures(len(items))
        any_partial = any(partial)
        partial_cfg = self.faults.config
        schema = self._schema
        dip_id = self.config.dip_id
        request = RequestBody(body)
        subject = peer.subject if peer else None
        peer_fp = peer.fingerprint_sha256 if peer else None
        if (
            commons is not None
            and schema is None
            and not any_partial
            and not state.persistent
            and not any(kind == interface for kind, _ in state.webhooks)
        ):
            fast = self._accept_fast(
                interface, sender, commons, subject, peer_fp, signer_fp, request, now, ts
            )
            if fast is not None:
                return fast
        seq = len(state.messages)
        entries: list[dict[str, Any]] = []
        append_entry = entries.append
        accepted: list[StoredMessage] = []
        seen: set[str] = set()
        failures = 0
        for index, item in enumerate(items):
            if envelope_ok:
                payload = item["payload"]
                common = payload["CommonBlock"]
                s1 = common["S1"]
                problems: list[str] = []
            else:
                s1 = _s1(item) or {}
                problems = check_message(item, interface)
            sur = s1.get("senderUniqueReference")
            corr = s1.get("senderCorrelationID")
            dcp = s1.get("DIPConnectionProviderID")
            code: str | None = None
            help_: str | None = None
            if problems:
                code, help_ = MSG_SCHEMA_FAILURE, help_text(problems)
            elif schema is not None:
                code, help_ = self._schema_check(item["payload"])
            if code is None and (sur in by_sur or sur in seen):
                code = MSG_DUPLICATE
                help_ = f"senderUniqueReference {sur} was already received"
                state.duplicates[sender] += 1
            if code is None and any_partial and partial[index]:
                code, help_ = partial_cfg.partial_message, partial_cfg.partial_help
            if code is not None:
                failures += 1
                state.rejected_messages[code] += 1
                append_entry(
                    self._entry(
                        code, help_, sur=sur, correlation=corr, recipient=sender, dcp=dcp, ts=ts
                    )
                )
                continue
            assert isinstance(sur, str)  # the envelope check guarantees it
            seen.add(sur)
            txid = new_transaction_id()
            payload = item["payload"]
            common = payload["CommonBlock"]
            s0 = common["S0"]
            seq += 1
            accepted.append(
                StoredMessage(
                    seq,
                    txid,
                    sur,
                    sender,
                    interface,
                    s0.get("eventCode"),
                    s0.get("schemaVersion"),
                    common["M0"].get("MPANCore"),
                    corr,
                    _recipients(common["A0"]),
                    now,
                    subject,
                    peer_fp,
                    signer_fp,
                    request,
                    index,
                )
            )
            append_entry(
                {
                    "transactionID": txid,
                    "senderUniqueReference": sur,
                    "correlationID": corr if isinstance(corr, str) else None,
                    "sentTimestamp": ts,
                    "senderID": dip_id,
                    "recipientID": sender,
                    "DIPConnectionProviderID": dcp if isinstance(dcp, str) else None,
                    "message": MSG_SUCCESS,
                    "help": None,
                    "serviceTicketURL": None,
                }
            )
        state.add_messages(accepted)
        if accepted:
            self._publish_accepted(accepted, now)
        status = 201 if failures == 0 else (400 if failures == len(items) else 207)
        return _json({"messageArray": entries, "timestamp": ts}, status)

    def _accept_fast(
        self,
        interface: str,
        sender: str,
        commons: list[dict[str, Any]],
        subject: str | None,
        peer_fp: str | None,
        signer_fp: str,
        request: RequestBody,
        now: datetime,
        ts: str,
    ) -> web.Response | None:
        """All messages envelope-valid and new, nothing to push or persist: record the batch
        as a :class:`PendingBatch` and write the all-MSG0000 response directly. None when
        some senderUniqueReference repeats (the general path reports the duplicates)."""
        state = self.state
        s1s = list(map(_S1_BLOCK, commons))
        surs = list(map(_SUR, s1s))
        count = len(surs)
        if len(set(surs)) != count or not state.by_sur.keys().isdisjoint(surs):
            return None
        base = take_transaction_ids(count)
        body = _success_response(
            base,
            surs,
            _json_texts(list(map(_CORRELATION_ID, s1s))),
            _json_texts(list(map(_DCP_ID, s1s))),
            orjson.dumps(self.config.dip_id).decode(),
            orjson.dumps(sender).decode(),
            ts,
        )
        state.add_pending(
            PendingBatch(
                request,
                count,
                state.message_count,
                base,
                sender,
                interface,
                now,
                subject,
                peer_fp,
                signer_fp,
            ),
            surs,
            _recipient_counts(list(map(_A0_BLOCK, commons))),
        )
        return web.Response(body=body, status=201, content_type="application/json")

    def _materialize(self, batch: PendingBatch) -> list[StoredMessage]:
        """The StoredMessages of a fast-path batch (see :meth:`_accept_fast`)."""
        out: list[StoredMessage] = []
        request = batch.request
        for index in range(batch.count):
            common = request.payload(index)["CommonBlock"]
            s0 = common["S0"]
            s1 = common["S1"]
            out.append(
                StoredMessage(
                    batch.seq0 + index + 1,
                    transaction_id(batch.txid_base + index),
                    s1["senderUniqueReference"],
                    batch.sender,
                    batch.interface,
                    s0.get("eventCode"),
                    s0.get("schemaVersion"),
                    common["M0"].get("MPANCore"),
                    s1.get("senderCorrelationID"),
                    _recipients(common["A0"]),
                    batch.received_at,
                    batch.client_cert_subject,
                    batch.client_cert_fingerprint,
                    batch.signer_fingerprint,
                    request,
                    index,
                )
            )
        return out

    def _schema_check(self, payload: dict[str, Any]) -> tuple[str | None, str | None]:
        assert self._schema is not None
        registry_fn, failure_fn = self._schema
        try:
            violations = registry_fn().validate(payload)
        except LookupError as exc:  # UnknownInterface
            return MSG_SCHEMA_FAILURE, str(exc)[:500]
        if not violations:
            return None, None
        message, help_ = failure_fn(violations)
        return message, help_

    def _publish_accepted(self, accepted: list[StoredMessage], now: datetime) -> None:
        to_push: list[Publication] = []
        publications = self.state.publications
        webhooks = self.state.webhooks
        lanes: dict[tuple[str, str], tuple[list[Publication], bool]] = {}
        for m in accepted:
            interface = m.interface
            for recipient in m.recipients:
                key = (interface, recipient)
                lane = lanes.get(key)
                if lane is None:
                    lane = lanes[key] = (publications[key], key in webhooks)
                pub = Publication.of_message(m, recipient, now)
                lane[0].append(pub)
                self.state.publication_count += 1
                if lane[1]:
                    to_push.append(pub)
        if to_push:
            self.pusher.enqueue(to_push)

    @staticmethod
    def _make_publication(
        interface: str,
        recipient: str,
        payload: dict[str, Any],
        txid: str,
        now: datetime,
    ) -> Publication:
        common = payload.get("CommonBlock") or {}
        s1 = common.get("S1") or {}
        s0 = common.get("S0") or {}
        m0 = common.get("M0") or {}
        return Publication(
            transaction_id=txid,
            kind=interface,
            recipient=recipient,
            published_at=now,
            src=payload,
            has_d0=True,
            event_code=s0.get("eventCode"),
            mpan=m0.get("MPANCore"),
            schema_version=s0.get("schemaVersion"),
            correlation_id=s1.get("senderCorrelationID"),
        )

    def publish(
        self, interface: str, recipient: str, payloads: list[dict[str, Any]]
    ) -> list[Publication]:
        """Publish generated messages to ``recipient`` on ``interface`` (pushes if a webhook
        is registered). Each payload is ``{"CommonBlock": ..., "CustomBlock": ...}``."""
        now = datetime.now(UTC)
        pubs = [
            self._make_publication(interface, recipient, p, new_transaction_id(), now)
            for p in payloads
        ]
        for pub in pubs:
            self.state.add_publication(pub)
        if (interface, recipient) in self.state.webhooks:
            self.pusher.enqueue(pubs)
        return pubs

    # ------------------------------------------------------------------ status messages

    async def status_submit(self, request: web.Request) -> web.Response:
        self.state.requests["statusmessage"] += 1
        signed = await self._signed_array(request, "a non-empty StandardResponseArray")
        if isinstance(signed, web.Response):
            return signed
        owner, _signer, _body, items = signed
        others = {i.get("senderID") for i in items if isinstance(i, dict) and i.get("senderID")} - {
            owner
        }
        if others:
            return self._auth_error(
                AuthError(
                    403,
                    "api_key_of_other_dip_id",
                    f"status messages from {sorted(map(str, others))} sent with the API key "
                    f"of {owner}",
                )
            )
        now = datetime.now(UTC)
        ts = dip_timestamp(now)
        entries: list[dict[str, Any]] = []
        stored: list[StoredStatus] = []
        pubs: list[Publication] = []
        failures = 0
        for item in items:
            recipient = item.get("recipientID") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not (
                isinstance(recipient, str) and len(recipient) == 10 and recipient.isdigit()
            ):
                failures += 1
                entries.append(
                    self._entry(
                        MSG_SCHEMA_FAILURE,
                        "each status message must be an object with a 10-digit recipientID",
                        recipient=owner,
                        ts=ts,
                    )
                )
                continue
            txid = item.get("transactionID") or str(uuid.uuid4())
            full = {**item, "senderID": owner}
            stored.append(StoredStatus(txid, owner, recipient, now, full))
            pub = Publication(
                transaction_id=str(uuid.uuid4()),
                kind=STATUS_KIND,
                recipient=recipient,
                published_at=now,
                src=full,
                sender_unique_reference=item.get("senderUniqueReference"),
                correlation_id=item.get("correlationID"),
                event_code=txid,  # status replay filters by the item's transactionID
            )
            self.state.add_publication(pub)
            if (STATUS_KIND, recipient) in self.state.webhooks:
                pubs.append(pub)
            entries.append(
                self._entry(
                    MSG_SUCCESS,
                    None,
                    transaction_id=txid,
                    sur=item.get("senderUniqueReference"),
                    correlation=item.get("correlationID"),
                    recipient=owner,
                    ts=ts,
                )
            )
        self.state.add_status(stored)
        if pubs:
            self.pusher.enqueue(pubs)
        status = 201 if failures == 0 else (400 if failures == len(items) else 207)
        return _json({"messageArray": entries, "timestamp": ts}, status)

    # ------------------------------------------------------------------ webhooks

    def _kind(self, request: web.Request) -> str:
        return request.match_info.get("id", STATUS_KIND)

    async def _admin_auth(self, request: web.Request) -> tuple[str, bytes] | web.Response:
        rid = request.match_info["rid"]
        try:
            body = await self._body(request)
        except _TooLarge as exc:
            return self._bad_request(str(exc), status=413)
        try:
            self.auth.authenticate_as(request, body, rid)
        except AuthError as exc:
            return self._auth_error(exc)
        return rid, body

    async def pubconfig_set(self, request: web.Request) -> web.Response:
        self.state.requests["pubconfig"] += 1
        authed = await self._admin_auth(request)
        if isinstance(authed, web.Response):
            return authed
        rid, body = authed
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._bad_request("body is not valid JSON", rid)
        url = data.get("callbackURL") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return self._bad_request("WebhookConfig.callbackURL must be an https URL", rid)
        count = data.get("maxMessageCount")
        size = data.get("maxPayloadSize")
        if count is not None and (not isinstance(count, int | float) or count < 1):
            return self._bad_request("WebhookConfig.maxMessageCount must be a positive number", rid)
        if size is not None and (not isinstance(size, int | float) or size <= 0):
            return self._bad_request("WebhookConfig.maxPayloadSize must be a positive number", rid)
        from dipsim.state import Webhook

        hook = Webhook(
            url,
            int(count) if count else self.config.default_max_message_count,
            float(size) if size else None,
        )
        self.state.webhooks[(self._kind(request), rid)] = hook
        return _json(hook.as_dict(), 201)

    async def pubconfig_delete(self, request: web.Request) -> web.Response:
        self.state.requests["pubconfig"] += 1
        authed = await self._admin_auth(request)
        if isinstance(authed, web.Response):
            return authed
        rid, _ = authed
        if self.state.webhooks.pop((self._kind(request), rid), None) is None:
            return _json({"statusCode": 404, "message": "no webhook configured"}, 404)
        return web.Response(status=204)

    # ------------------------------------------------------------------ replay / requeue

    def _select(self, kind: str, rid: str, query: Any) -> list[Publication] | str:
        """Publications matching a MessageRequest / StatusMessageRequest, or a reason."""
        if not isinstance(query, dict):
            return "body must be a JSON object"
        required = (
            ("datetimeFrom", "datetimeTo")
            if kind == STATUS_KIND
            else ("datetimeFrom", "datetimeTo", "eventCode", "MPAN", "version")
        )
        missing = [k for k in required if k not in query]
        if missing:
            return f"missing {missing}"
        try:
            start = _parse_time(query.get("datetimeFrom"))
            end = _parse_time(query.get("datetimeTo"))
        except ValueError as exc:
            return f"datetimeFrom/datetimeTo: {exc}"
        pubs = self.state.publications.get((kind, rid), [])
        out: list[Publication] = []
        if kind == STATUS_KIND:
            txid = query.get("transactionID")
            sur = query.get("senderUniqueReference")
            corr = query.get("correlationID")
            for p in pubs:
                if start and p.published_at < start.replace(microsecond=0):
                    continue
                if end and p.published_at > end.replace(microsecond=999999):
                    continue
                if txid and p.event_code != txid:
                    continue
                if sur and p.sender_unique_reference != sur:
                    continue
                if corr and p.correlation_id != corr:
                    continue
                out.append(p)
            return out
        event = _bare(query.get("eventCode"))
        mpan = query.get("MPAN")
        version = query.get("version")
        txids = query.get("transactionIDs")
        if txids is not None and (not isinstance(txids, list) or not 1 <= len(txids) <= 100):
            return "transactionIDs must hold 1..100 ids"
        wanted = set(txids) if txids else None
        for p in pubs:
            if start and p.published_at < start.replace(microsecond=0):
                continue
            if end and p.published_at > end.replace(microsecond=999999):
                continue
            if event and _bare(p.event_code) != event:
                continue
            if mpan and p.mpan != mpan:
                continue
            if version and p.schema_version != version:
                continue
            if wanted is not None and p.transaction_id not in wanted:
                continue
            out.append(p)
        return out

    async def replay(self, request: web.Request) -> web.Response:
        self.state.requests["replay"] += 1
        authed = await self._admin_auth(request)
        if isinstance(authed, web.Response):
            return authed
        rid, body = authed
        kind = self._kind(request)
        token = request.headers.get("X-Continuation-Token")
        if token:
            found = self._tokens.pop(token, None)
            if found is None:
                return self._bad_request("unknown or used X-Continuation-Token", rid)
            selected, offset = found
        else:
            try:
                query = orjson.loads(body)
            except orjson.JSONDecodeError:
                return self._bad_request("body is not valid JSON", rid)
            result = self._select(kind, rid, query)
            if isinstance(result, str):
                return self._bad_request(result, rid)
            selected, offset = result, 0
        size = max(1, self.config.replay_page_size)
        page = selected[offset : offset + size]
        data = [_body_for(p, replay=True) for p in page]
        if offset + size < len(selected):
            new_token = uuid.uuid4().hex
            self._tokens[new_token] = (selected, offset + size)
            return _json(data, 206, {"X-Continuation-Token": new_token})
        return _json(data, 200)

    async def requeue(self, request: web.Request) -> web.Response:
        self.state.requests["requeue"] += 1
        authed = await self._admin_auth(request)
        if isinstance(authed, web.Response):
            return authed
        rid, body = authed
        kind = self._kind(request)
        try:
            query = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._bad_request("body is not valid JSON", rid)
        result = self._select(kind, rid, query)
        if isinstance(result, str):
            return self._bad_request(result, rid)
        if (kind, rid) not in self.state.webhooks:
            return self._bad_request(f"no webhook configured for {kind} / {rid}", rid)
        running = [
            r
            for r in self.state.requeues.values()
            if r.kind == kind and r.recipient == rid and r.status == "Processing"
        ]
        if running:
            return _json(
                {
                    "statusCode": 429,
                    "message": "Too Many Requests",
                    "help": f"requeue {running[0].requeue_id} is still processing",
                },
                429,
                {"Retry-After": "1"},
            )
        now = datetime.now(UTC)
        requeue_id = f"{rid}-{now:%Y%m%d}-{uuid.uuid4().hex[:16]}"
        self.state.requeues[requeue_id] = Requeue(requeue_id, kind, rid, len(result), 0, 0, now)
        if result:
            self.pusher.enqueue(result, replay=True, requeue_id=requeue_id)
        return _json(requeue_id, 202)

    async def requeue_status(self, request: web.Request) -> web.Response:
        self.state.requests["requeueStatus"] += 1
        authed = await self._admin_auth(request)
        if isinstance(authed, web.Response):
            return authed
        rid, _ = authed
        kind = self._kind(request)
        wanted = request.query.get("requeue-id")
        found = [
            r
            for r in self.state.requeues.values()
            if r.kind == kind and r.recipient == rid and (wanted is None or r.requeue_id == wanted)
        ]
        if not found:
            return web.Response(status=204)
        return _json([r.as_dict() for r in found])

    async def delivery_status(self, request: web.Request) -> web.Response:
        self.state.requests["deliveryStatus"] += 1
        authed = await self._admin_auth(request)
        if isinstance(authed, web.Response):
            return authed
        rid, _ = authed
        interface = request.match_info["id"]
        m = self.state.message_by_sur(request.match_info["mid"])
        if m is None or m.interface != interface or (rid != m.sender and rid not in m.recipients):
            return web.Response(status=204)
        return _json(self._journal(m))

    def _journal(self, m: StoredMessage) -> dict[str, Any]:
        def stamp(when: datetime, ms: bool = True) -> str:
            text = when.strftime("%Y-%m-%d %H:%M:%S")
            return f"{text}.{when.microsecond // 1000:03d}" if ms else text

        base = {
            "SenderDIPID": m.sender,
            "Interface": m.interface,
            "EventCode": m.event_code,
            "SentDateTime": stamp(m.received_at),
            "Duration": 0,
            "MessageDelayInMilliSeconds": 0,
            "SenderUniqueReference": m.sender_unique_reference,
            "DIPTransactionID": m.transaction_id,
            "DIPCorrelationID": None,
            "MPANCore": m.mpan,
        }
        entries: list[dict[str, Any]] = [
            {
                **base,
                "TimeGenerated": stamp(m.received_at),
                "DIPStage": "Inbound",
                "Status": "GoodToGo",
                "StatusCode": 201,
                "Reason": None,
            },
            {
                **base,
                "TimeGenerated": stamp(m.received_at),
                "DIPStage": "Addressing",
                "Status": "SentToTopic",
                "StatusCode": 200,
                "Reason": None,
                "Recipients": list(m.recipients),
            },
        ]
        status_map = {
            "Delivered": "Delivered",
            "Retrying": "Retrying",
            "RetriesExhausted": "RetriesExhausted",
            "Pending": "UnknownDeliveryStatus",
            "NoWebhook": "Paused",
        }
        for recipient in m.recipients:
            d = self.state.deliveries.get((m.interface, recipient, m.transaction_id))
            reason: str | None
            uri: str | None
            when: datetime | None
            if d is None:
                status, code, reason, uri, when = "Paused", 0, "no webhook configured", None, None
            else:
                status = status_map.get(d.status, "UnknownDeliveryStatus")
                code = d.last_status or 0
                reason = d.last_error
                uri = d.callback_url
                when = d.history[-1].at if d.history else None
            entries.append(
                {
                    **base,
                    "TimeGenerated": stamp(when or m.received_at),
                    "DIPStage": "Outbound",
                    "Status": status,
                    "StatusCode": code,
                    "Reason": reason,
                    "Recipient": recipient,
                    "uri": uri,
                }
            )
        for rn, entry in enumerate(entries, 1):
            entry["rn"] = rn
        return {
            "SentDateTime": stamp(m.received_at, ms=False),
            "Interface": m.interface,
            "SenderUniqueReference": m.sender_unique_reference,
            "DIPTransactionID": m.transaction_id,
            "DIPCorrelationID": None,
            "MPANCore": m.mpan,
            "JournalEntries": entries,
        }

    # ------------------------------------------------------------------ validate

    async def validate(self, request: web.Request) -> web.Response:
        self.state.requests["validate"] += 1
        try:
            body = await self._body(request)
            self.auth.api_key_owner(request.headers)
        except _TooLarge as exc:
            return _json(str(exc), 413)
        except AuthError as exc:
            return self._auth_error(exc)
        hook = _schema_hook()
        if hook is None:
            return _json("schema validation is not available", 500)
        registry_fn, failure_fn = hook
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _json(f"body is not valid JSON: {exc}", 400)
        if not isinstance(items, list) or not items:
            return _json("body must be a non-empty array of {payload}", 400)
        interface = request.match_info["interface"]
        event = request.match_info["event"]
        problems: list[str] = []
        for index, item in enumerate(items):
            payload = item.get("payload") if isinstance(item, dict) else None
            if not isinstance(payload, dict):
                problems.append(f"[{index}]: each item must be an object with a payload")
                continue
            try:
                violations = registry_fn().validate_for(interface, event, payload)
            except LookupError as exc:
                return _json(str(exc), 404)
            if violations:
                message, help_ = failure_fn(violations)
                problems.append(f"[{index}]: {message}: {help_}")
        if problems:
            return _json("; ".join(problems), 400)
        return _json("Message OK", 201)

    # ------------------------------------------------------------------ /_sim admin

    async def sim_messages(self, request: web.Request) -> web.Response:
        q = request.query
        found = self.state.find_messages(
            q.get("sender") or None, q.get("interface") or None, q.get("recipient") or None
        )
        limit = int(q.get("limit", "1000"))
        return _json({"count": len(found), "messages": [m.summary() for m in found[:limit]]})

    async def sim_status_messages(self, request: web.Request) -> web.Response:
        q = request.query
        found = [
            s
            for s in self.state.status_messages
            if (not q.get("sender") or s.sender == q["sender"])
            and (not q.get("recipient") or s.recipient == q["recipient"])
        ]
        return _json(
            {
                "count": len(found),
                "statusMessages": [
                    {
                        "transactionID": s.transaction_id,
                        "sender": s.sender,
                        "recipient": s.recipient,
                        "receivedAt": s.received_at.isoformat(),
                        "item": s.item,
                    }
                    for s in found
                ],
            }
        )

    async def sim_stats(self, request: web.Request) -> web.Response:
        stats = self.state.stats()
        stats["faults"] = self.faults.snapshot()["hits"]
        return _json(stats)

    async def sim_faults_get(self, request: web.Request) -> web.Response:
        return _json(self.faults.snapshot())

    async def sim_faults_set(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            cfg = self.faults.set(FaultConfig.model_validate(data))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return _json({"error": str(exc)[:2000]}, 400)
        return _json(cfg.model_dump(mode="json"))

    async def sim_publish(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            interface = data["interface"]
            recipient = data["recipient"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return _json({"error": f"need interface, recipient and payloads/count: {exc}"}, 400)
        payloads = data.get("payloads")
        if payloads is None:
            from dipsim.samples import sample_payload

            payloads = [
                sample_payload(interface, recipient, seq=i)
                for i in range(int(data.get("count", 1)))
            ]
        pubs = self.publish(interface, recipient, payloads)
        return _json({"transactionIDs": [p.transaction_id for p in pubs]}, 201)

    async def sim_deliveries(self, request: web.Request) -> web.Response:
        q = request.query
        found = self.state.deliveries_for(q.get("recipient") or None, q.get("interface") or None)
        return _json({"count": len(found), "deliveries": [d.as_dict() for d in found]})

    async def sim_webhooks(self, request: web.Request) -> web.Response:
        return _json(
            [
                {"interface": k, "recipient": r, **w.as_dict()}
                for (k, r), w in self.state.webhooks.items()
            ]
        )

    async def sim_reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        self._tokens.clear()
        return _json({"reset": True})


class _TooLarge(Exception):
    pass


def _recipients(a0: dict[str, Any]) -> tuple[str, ...]:
    """Distinct non-empty primary, secondary and always recipients, in that order."""
    primary = a0["primaryRecipients"]
    if not a0["secondaryRecipients"] and not a0["always"] and len(primary) == 1:
        return (primary[0],) if primary[0] else ()
    return tuple(
        dict.fromkeys(
            r
            for key in ("primaryRecipients", "secondaryRecipients", "always")
            for r in a0[key]
            if r
        )
    )


def _s1(item: Any) -> dict[str, Any] | None:
    try:
        s1 = item["payload"]["CommonBlock"]["S1"]
    except (KeyError, TypeError):
        return None
    return s1 if isinstance(s1, dict) else None
