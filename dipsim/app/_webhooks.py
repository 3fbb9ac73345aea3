"""Webhook administration: ``pubconfig`` (interfaces) and ``statusmessage/config``."""

from __future__ import annotations

import orjson
from aiohttp import web

from dipsim.app._context import Context, kind_of
from dipsim.app._responses import json_response
from dipsim.state import Webhook


class Webhooks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def configure(self, request: web.Request, rid: str, body: bytes) -> web.Response:
        ctx = self.ctx
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ctx.bad_request("body is not valid JSON", rid)
        url = data.get("callbackURL") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return ctx.bad_request("WebhookConfig.callbackURL must be an https URL", rid)
        count = data.get("maxMessageCount")
        size = data.get("maxPayloadSize")
        if count is not None and (not isinstance(count, int | float) or count < 1):
            return ctx.bad_request("WebhookConfig.maxMessageCount must be a positive number", rid)
        if size is not None and (not isinstance(size, int | float) or size <= 0):
            return ctx.bad_request("WebhookConfig.maxPayloadSize must be a positive number", rid)
        hook = Webhook(
            url,
            int(count) if count else ctx.config.default_max_message_count,
            float(size) if size else None,
        )
        ctx.state.webhooks[(kind_of(request), rid)] = hook
        return json_response(hook.as_dict(), 201)

    async def delete(self, request: web.Request, rid: str, body: bytes) -> web.Response:
        if self.ctx.state.webhooks.pop((kind_of(request), rid), None) is None:
            return json_response({"statusCode": 404, "message": "no webhook configured"}, 404)
        return web.Response(status=204)
