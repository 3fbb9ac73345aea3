"""Getting publications again: replay (in the response), requeue (pushed to the webhook),
requeue status, and a message's delivery journal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from dipsim import document
from dipsim.app._context import Context, kind_of
from dipsim.app._responses import json_response
from dipsim.envelope import SUR_PATTERN
from dipsim.pusher import _body_for
from dipsim.state import STATUS_KIND, Publication, Requeue, StoredMessage


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _bare(event: str | None) -> str | None:
    return event.strip("[]") if isinstance(event, str) else None


class Retrieval:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        #: continuation token -> (the replay's selection, offset of its next page)
        self._tokens: dict[str, tuple[list[Publication], int]] = {}

    def forget_tokens(self) -> None:
        self._tokens.clear()

    def _selection(self, kind: str, rid: str, body: bytes) -> list[Publication] | web.Response:
        """The publications a MessageRequest / StatusMessageRequest body selects, or the 400."""
        try:
            query = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self.ctx.bad_request("body is not valid JSON", rid)
        component = "StatusMessageRequest" if kind == STATUS_KIND else "MessageRequest"
        found = document.problems(component, query)
        if found:
            return self.ctx.bad_request(f"not a {component}: " + "; ".join(found), rid)
        try:
            return self._select(kind, rid, query)
        except ValueError as exc:  # a 25-character datetime that is no ISO 8601 time
            return self.ctx.bad_request(f"datetimeFrom/datetimeTo: {exc}", rid)

    def _select(self, kind: str, rid: str, query: dict[str, Any]) -> list[Publication]:
        """Publications matching a request that conforms to its schema."""
        start = _parse_time(query.get("datetimeFrom"))
        end = _parse_time(query.get("datetimeTo"))
        pubs = self.ctx.state.publications.get((kind, rid), [])
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

    async def replay(self, request: web.Request, rid: str, body: bytes) -> web.Response:
        kind = kind_of(request)
        token = request.headers.get("X-Continuation-Token")
        if token:
            found = self._tokens.pop(token, None)
            if found is None:
                return self.ctx.bad_request("unknown or used X-Continuation-Token", rid)
            selected, offset = found
        else:
            result = self._selection(kind, rid, body)
            if isinstance(result, web.Response):
                return result
            selected, offset = result, 0
        size = max(1, self.ctx.config.replay_page_size)
        page = selected[offset : offset + size]
        data = [_body_for(p, replay=True) for p in page]
        if offset + size < len(selected):
            new_token = uuid.uuid4().hex
            self._tokens[new_token] = (selected, offset + size)
            return json_response(data, 206, {"X-Continuation-Token": new_token})
        return json_response(data, 200)

    async def requeue(self, request: web.Request, rid: str, body: bytes) -> web.Response:
        kind = kind_of(request)
        result = self._selection(kind, rid, body)
        if isinstance(result, web.Response):
            return result
        if (kind, rid) not in self.ctx.state.webhooks:
            return self.ctx.bad_request(f"no webhook configured for {kind} / {rid}", rid)
        running = [
            r
            for r in self.ctx.state.requeues.values()
            if r.kind == kind and r.recipient == rid and r.status == "Processing"
        ]
        if running:
            return json_response(
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
        self.ctx.state.requeues[requeue_id] = Requeue(requeue_id, kind, rid, len(result), 0, 0, now)
        if result:
            self.ctx.pusher.enqueue(result, replay=True, requeue_id=requeue_id)
        return json_response(requeue_id, 202)

    async def requeue_status(self, request: web.Request, rid: str, _body: bytes) -> web.Response:
        kind = kind_of(request)
        wanted = request.query.get("requeue-id")
        if wanted is not None and not 1 <= len(wanted) <= 200:
            return self.ctx.bad_request("requeue-id: a RequeueId has 1..200 characters", rid)
        found = [
            r
            for r in self.ctx.state.requeues.values()
            if r.kind == kind and r.recipient == rid and (wanted is None or r.requeue_id == wanted)
        ]
        if not found:
            return web.Response(status=204)
        return json_response([r.as_dict() for r in found])

    async def delivery_status(self, request: web.Request, rid: str, _body: bytes) -> web.Response:
        interface = request.match_info["id"]
        mid = request.match_info["mid"]
        if not (len(mid) <= 200 and SUR_PATTERN.match(mid)):
            problem = f"message-id: {mid[:60]!r} is not a senderUniqueReference"
            return self.ctx.bad_request(problem, rid)
        m = self.ctx.state.message_by_sur(mid)
        if m is None or m.interface != interface or (rid != m.sender and rid not in m.recipients):
            return web.Response(status=204)
        return json_response(self._journal(m))

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
            d = self.ctx.state.deliveries.get((m.interface, recipient, m.transaction_id))
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
