"""Message submission (``POST /dip-channel/{id}``), publication of accepted messages, and the
validation endpoint.

A clean batch (every envelope fine, nothing to validate, push or persist, no duplicate) takes
the fast path: it is recorded as a :class:`PendingBatch` and its response is written as text;
everything else is checked and stored message by message.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
from aiohttp import web

from dipsim.app import _responses
from dipsim.app._context import Context, TooLarge, schema_hook
from dipsim.app._ids import new_transaction_id, take_transaction_ids, transaction_id
from dipsim.app._responses import entry, json_response, json_texts, standard_response
from dipsim.auth import AuthError, ClientCert
from dipsim.envelope import (
    MPAN_BLOCK,
    MSG_DUPLICATE,
    MSG_SCHEMA_FAILURE,
    MSG_SUCCESS,
    check_message,
    envelope_array_ok,
    help_text,
    mpan_of,
)
from dipsim.state import PendingBatch, Publication, RequestBody, StoredMessage

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


def _recipients(a0: dict[str, Any] | None) -> tuple[str, ...]:
    """Distinct non-empty primary, secondary and always recipients, in that order; none
    without an A0 block (the simulator does no addressing of its own)."""
    if a0 is None:
        return ()
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


def _s1(item: Any) -> dict[str, Any] | None:
    try:
        s1 = item["payload"]["CommonBlock"]["S1"]
    except (KeyError, TypeError):
        return None
    return s1 if isinstance(s1, dict) else None


class Submissions:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._schema = schema_hook() if ctx.config.schema_validation else None
        ctx.state.materialize = self._materialize

    async def submit(self, request: web.Request) -> web.StreamResponse:
        ctx = self.ctx
        interface = request.match_info["id"]
        ctx.state.requests["submit"] += 1
        if interface not in MPAN_BLOCK:
            return json_response(
                {"statusCode": 404, "message": f"unknown channel {interface}"}, 404
            )
        signed = await ctx.signed_array(request, "a non-empty JSON array of messages")
        if isinstance(signed, web.Response):
            return signed
        owner, signer, body, items = signed
        envelope_ok = envelope_array_ok(items, interface)
        commons: list[dict[str, Any]] | None = None
        senders: set[Any]
        if envelope_ok:
            commons = list(map(_COMMON_BLOCK, map(_PAYLOAD, items)))
            senders = set(map(_SENDER_DIP_ID, map(_S1_BLOCK, commons)))
        else:
            senders = {
                sender
                for s1 in map(_s1, items)
                if s1 is not None and isinstance(sender := s1.get("senderDIPID"), str)
            }
        if len(senders) > 1:
            return ctx.bad_request(
                "all messages in one request must have one senderDIPID, found "
                f"{sorted(map(str, senders))}",
                owner,
            )
        sender = str(senders.pop()) if senders else owner
        if sender != owner:
            return ctx.auth_error(
                AuthError(
                    403,
                    "api_key_of_other_dip_id",
                    f"the API key belongs to DIP ID {owner}, the messages are from {sender}",
                )
            )
        peer = ctx.auth.peer(request)
        return self.accept(interface, sender, items, peer, signer.fingerprint_sha256, body, commons)

    def accept(
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
        ctx = self.ctx
        state = ctx.state
        by_sur = state.by_sur
        now = datetime.now(UTC)
        ts = _responses.dip_timestamp(now)
        partial = ctx.faults.partial_failures(len(items))
        any_partial = any(partial)
        partial_cfg = ctx.faults.config
        dip_id = ctx.config.dip_id
        request = RequestBody(body)
        subject = peer.subject if peer else None
        peer_fp = peer.fingerprint_sha256 if peer else None
        if (
            commons is not None
            and self._schema is None
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
                s1 = item["payload"]["CommonBlock"]["S1"]
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
            elif self._schema is not None:
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
                    entry(
                        dip_id,
                        code,
                        help_,
                        sur=sur,
                        correlation=corr,
                        recipient=sender,
                        dcp=dcp,
                        ts=ts,
                    )
                )
                continue
            assert isinstance(sur, str)  # the envelope check guarantees it
            seen.add(sur)
            txid = new_transaction_id()
            common = item["payload"]["CommonBlock"]
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
                    mpan_of(common),
                    corr,
                    _recipients(common.get("A0")),
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
        return standard_response(entries, ts, status)

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
        state = self.ctx.state
        s1s = list(map(_S1_BLOCK, commons))
        surs = list(map(_SUR, s1s))
        count = len(surs)
        if len(set(surs)) != count or not state.by_sur.keys().isdisjoint(surs):
            return None
        base = take_transaction_ids(count)
        body = _responses.success_response(
            base,
            surs,
            json_texts(list(map(_CORRELATION_ID, s1s))),
            json_texts(list(map(_DCP_ID, s1s))),
            orjson.dumps(self.ctx.config.dip_id).decode(),
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
                    mpan_of(common),
                    s1.get("senderCorrelationID"),
                    _recipients(common.get("A0")),
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
        state = self.ctx.state
        to_push: list[Publication] = []
        publications = state.publications
        webhooks = state.webhooks
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
                state.publication_count += 1
                if lane[1]:
                    to_push.append(pub)
        if to_push:
            self.ctx.pusher.enqueue(to_push)

    def publish(
        self, interface: str, recipient: str, payloads: list[dict[str, Any]]
    ) -> list[Publication]:
        """Publish generated messages to ``recipient`` on ``interface`` (pushes if a webhook
        is registered). Each payload is ``{"CommonBlock": ..., "CustomBlock": ...}``."""
        now = datetime.now(UTC)
        pubs = [_publication(interface, recipient, p, new_transaction_id(), now) for p in payloads]
        state = self.ctx.state
        for pub in pubs:
            state.add_publication(pub)
        if (interface, recipient) in state.webhooks:
            self.ctx.pusher.enqueue(pubs)
        return pubs

    async def validate(self, request: web.Request) -> web.StreamResponse:
        """``POST /validate/{interface}/{event}``: each item's payload against its schema."""
        ctx = self.ctx
        ctx.state.requests["validate"] += 1
        try:
            body = await ctx.read_body(request)
            ctx.auth.api_key_owner(request.headers)
        except TooLarge as exc:
            return json_response(str(exc), 413)
        except AuthError as exc:
            return ctx.auth_error(exc)
        hook = schema_hook()
        if hook is None:
            return json_response("schema validation is not available", 500)
        registry_fn, failure_fn = hook
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return json_response(f"body is not valid JSON: {exc}", 400)
        if not isinstance(items, list) or not items:
            return json_response("body must be a non-empty array of {payload}", 400)
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
                return json_response(str(exc), 404)
            if violations:
                message, help_ = failure_fn(violations)
                problems.append(f"[{index}]: {message}: {help_}")
        if problems:
            return json_response("; ".join(problems), 400)
        return json_response("Message OK", 201)


def _publication(
    interface: str, recipient: str, payload: dict[str, Any], txid: str, now: datetime
) -> Publication:
    common = payload.get("CommonBlock") or {}
    s1 = common.get("S1") or {}
    s0 = common.get("S0") or {}
    return Publication(
        transaction_id=txid,
        kind=interface,
        recipient=recipient,
        published_at=now,
        src=payload,
        has_d0=True,
        event_code=s0.get("eventCode"),
        mpan=mpan_of(common),
        schema_version=s0.get("schemaVersion"),
        correlation_id=s1.get("senderCorrelationID"),
    )
