"""Status messages (``POST /statusmessage``): stored and published to their recipient.

Each item must be a StandardResponseBodyType of the document with a recipient; the request
is all or nothing (the document gives this endpoint 201 and 400, no 207), so one bad item
stores none, and the 400 has an entry per item saying which failed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dipsim import document
from dipsim.app._context import Context
from dipsim.app._responses import dip_timestamp, entry, standard_response
from dipsim.auth import AuthError
from dipsim.envelope import MSG_SCHEMA_FAILURE, MSG_SUCCESS
from dipsim.state import STATUS_KIND, Publication, StoredStatus


def _item_problems(index: int, item: Any) -> list[str]:
    found = document.problems("StandardResponseBodyType", item, f"$[{index}]")
    if not found and item["recipientID"] is None:
        found = [f"$[{index}].recipientID: a status message needs a recipient"]
    return found


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
        now = datetime.now(UTC)
        ts = dip_timestamp(now)
        problems = [_item_problems(index, item) for index, item in enumerate(items)]
        failing = [index for index, found in enumerate(problems) if found]
        if failing:
            # One entry per item, in order: a client matching answers to messages learns
            # which failed and that the others were not stored either.
            refused = f"not stored: the request is refused whole, {failing} failed the schema"
            state.rejected_messages[MSG_SCHEMA_FAILURE] += len(items)
            return standard_response(
                [
                    entry(
                        dip_id,
                        MSG_SCHEMA_FAILURE,
                        "; ".join(found) or refused,
                        transaction_id=item.get("transactionID")
                        if isinstance(item, dict)
                        else None,
                        sur=item.get("senderUniqueReference") if isinstance(item, dict) else None,
                        correlation=item.get("correlationID") if isinstance(item, dict) else None,
                        recipient=owner,
                        ts=ts,
                    )
                    for item, found in zip(items, problems, strict=True)
                ],
                ts,
                400,
            )
        others = {item["senderID"] for item in items} - {owner}
        if others:
            return ctx.auth_error(
                AuthError(
                    403,
                    "api_key_of_other_dip_id",
                    f"status messages from {sorted(others)} sent with the API key of {owner}",
                )
            )
        entries: list[dict[str, Any]] = []
        stored: list[StoredStatus] = []
        pubs: list[Publication] = []
        for item in items:
            recipient = item["recipientID"]
            txid = item["transactionID"] or str(uuid.uuid4())
            stored.append(StoredStatus(txid, owner, recipient, now, item))
            pub = Publication(
                transaction_id=str(uuid.uuid4()),
                kind=STATUS_KIND,
                recipient=recipient,
                published_at=now,
                src=item,
                sender_unique_reference=item["senderUniqueReference"],
                correlation_id=item["correlationID"],
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
                    sur=item["senderUniqueReference"],
                    correlation=item["correlationID"],
                    recipient=owner,
                    ts=ts,
                )
            )
        state.add_status(stored)
        if pubs:
            ctx.pusher.enqueue(pubs)
        return standard_response(entries, ts, 201)
