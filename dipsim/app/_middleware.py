"""Middleware: status-code counting and fault injection (429/5xx, delays, timeouts, resets,
slow reads)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web
from aiohttp.typedefs import Middleware

from dipsim.app._context import SLOW_READ, Context, Handler
from dipsim.app._responses import json_response
from dipsim.auth import AuthError


def count_statuses(ctx: Context) -> Middleware:
    """Answers by status, and by (API key owner, status): how often each participant asked
    and what it got (a gateway's request rate while one participant is throttled)."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        sender = _api_key_owner(ctx, request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            ctx.state.count_answer(sender, exc.status)
            raise
        ctx.state.count_answer(sender, response.status)
        return response

    return count


def _api_key_owner(ctx: Context, request: web.Request) -> str | None:
    if request.path.startswith("/_sim"):
        return None
    try:
        return ctx.auth.api_key_owner(request.headers)
    except AuthError:
        return None


def inject_faults(ctx: Context) -> Middleware:
    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        decision = ctx.faults.decide(request.path, _api_key_owner(ctx, request))
        if decision is None:
            return await handler(request)
        if decision.delay_seconds > 0:
            await asyncio.sleep(decision.delay_seconds)
        outcome = decision.outcome
        cfg = ctx.faults.config
        if outcome == "429":
            return json_response(
                {"statusCode": 429, "message": "Too Many Requests"},
                429,
                {"Retry-After": str(cfg.retry_after_seconds)},
            )
        if outcome in ("500", "502", "503", "504"):
            code = int(outcome)
            return json_response({"statusCode": code, "message": "simulated fault"}, code)
        if outcome == "timeout":
            await asyncio.sleep(cfg.timeout_hold_seconds)
            _reset(request)
            return web.Response(status=504)
        if outcome == "reset":
            _reset(request)
            return web.Response(status=500)
        if decision.slow_read_seconds > 0:
            request[SLOW_READ] = decision.slow_read_seconds
        return await handler(request)

    return faults


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), as a failing load balancer does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
