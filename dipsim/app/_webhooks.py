"""Webhook administration: ``pubconfig`` (interfaces) and ``statusmessage/config``."""

from __future__ import annotations

import orjson
from aiohttp import web

from dipsim import document
from dipsim.app._context import Context, kind_of
from dipsim.app._responses import json_response
from dipsim.state import Webhook


class Webhooks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def configure(self, request: web.Request, rid: str, body: bytes) -> web.Response:
        """Register (or replace) the webhook. ``maxMessageCount`` is a plain ``number`` in the
        document; the simulator pushes at least 1 and at most ``max_messages_per_request``
        messages per batch whatever is asked. A non-positive ``maxPayloadSize`` sets no
        limit. Everything is checked before anything is stored."""
        ctx = self.ctx
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ctx.bad_request("body is not valid JSON", rid)
        found = document.problems("WebhookConfig", data)
        if found:
            return ctx.bad_request("not a WebhookConfig: " + "; ".join(found), rid)
        url = data.get("callbackURL")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return ctx.bad_request("WebhookConfig.callbackURL must be an https URL", rid)
        count = data.get("maxMessageCount")
        size = data.get("maxPayloadSize")
        cap = ctx.config.max_messages_per_request
        hook = Webhook(
            url,
            ctx.config.default_max_message_count if count is None else int(min(max(count, 1), cap)),
            float(size) if size is not None and size > 0 else None,
        )
        ctx.state.webhooks[(kind_of(request), rid)] = hook
        return json_response(hook.as_dict(), 201)

    async def delete(self, request: web.Request, rid: str, body: bytes) -> web.Response:
        """204 whether or not a webhook was configured: the document gives no other answer."""
        self.ctx.state.webhooks.pop((kind_of(request), rid), None)
        return web.Response(status=204)
