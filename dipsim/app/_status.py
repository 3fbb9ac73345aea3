"""Status messages (``POST /statusmessage``): stored and published to their recipient."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dipsim.app._context import Context
from dipsim.app._responses import dip_timestamp, entry, standard_response
from dipsim.auth import AuthError
from dipsim.envelope import MSG_SCHEMA_FAILURE, MSG_SUCCESS
from dipsim.state import STATUS_KIND, Publication, StoredStatus


class StatusMessages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def submit(self, request: web.Request) -> web.StreamResponse:
        ctx = self.ctx
        state = ctx.state
        dip_id = ctx.config.dip_id
        state.requests["statusmessage"] += 1
        signed = await ctx.signed_array(request, "a non-empty StandardResponseArray")
        if isinstance(signed, web.Response):
            return signed
        owner, _signer, _body, items = signed
        others = {i.get("senderID") for i in items if isinstance(i, dict) and i.get("senderID")} - {
            owner
        }
        if others:
            return ctx.auth_error(
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
                    entry(
                        dip_id,
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
            state.add_publication(pub)
            if (STATUS_KIND, recipient) in state.webhooks:
                pubs.append(pub)
            entries.append(
                entry(
                    dip_id,
                    MSG_SUCCESS,
                    None,
                    transaction_id=txid,
                    sur=item.get("senderUniqueReference"),
                    correlation=item.get("correlationID"),
                    recipient=owner,
                    ts=ts,
                )
            )
        state.add_status(stored)
        if pubs:
            ctx.pusher.enqueue(pubs)
        status = 201 if failures == 0 else (400 if failures == len(items) else 207)
        return standard_response(entries, ts, status)
