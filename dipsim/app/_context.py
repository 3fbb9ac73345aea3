"""What every handler group shares: the simulator's collaborators, reading a bounded body,
authentication answers, and the prologue of the DIP's administration endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from dipsim.app._responses import bad_request, json_response
from dipsim.auth import Authenticator, AuthError
from dipsim.config import SimulatorConfig
from dipsim.envelope import MPAN_BLOCK
from dipsim.faults import FaultInjector
from dipsim.pusher import Pusher
from dipsim.state import STATUS_KIND, SimState
from gateway.signing.verify import VerifiedSigner

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: An administration endpoint after its prologue: the request, the recipient DIP ID in the
#: path (authenticated), and the body.
AdminHandler = Callable[[web.Request, str, bytes], Awaitable[web.Response]]
SLOW_READ = web.RequestKey("dipsim_slow_read", float)


class TooLarge(Exception):
    pass


def schema_hook() -> Any:
    """``gateway.schema.default_registry`` and ``dip_schema_failure`` when they exist."""
    try:
        from gateway.schema import default_registry, dip_schema_failure
    except ImportError:  # pragma: no cover - the schema package is optional
        return None
    return default_registry, dip_schema_failure


def kind_of(request: web.Request) -> str:
    """The interface of a ``/dip-channel/{id}/...`` path, STATUS_KIND for ``/statusmessage``."""
    return request.match_info.get("id", STATUS_KIND)


@dataclass
class Context:
    config: SimulatorConfig
    state: SimState
    faults: FaultInjector
    auth: Authenticator
    pusher: Pusher

    def bad_request(
        self, help_: str, recipient: str | None = None, status: int = 400
    ) -> web.Response:
        return bad_request(self.config.dip_id, help_, recipient, status)

    async def read_body(self, request: web.Request) -> bytes:
        """The body, at most ``max_body_bytes`` (else :class:`TooLarge`); read slowly when a
        slow-read fault is on."""
        limit = self.config.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise TooLarge(f"body of {length} bytes exceeds {limit}")
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
            raise TooLarge(f"body of {len(body)} bytes exceeds {limit}")
        return body

    def auth_error(self, exc: AuthError) -> web.Response:
        self.state.auth_failures[exc.reason] += 1
        return json_response(
            {
                "statusCode": exc.status,
                "message": "Unauthorised" if exc.status == 401 else "Forbidden",
                "reason": exc.reason,
                "help": exc.detail[:500],
            },
            exc.status,
        )

    async def signed_array(
        self, request: web.Request, expected: str
    ) -> tuple[str, VerifiedSigner, bytes, list[Any]] | web.Response:
        """Read, authenticate and parse a submission whose body is a JSON array.

        The order is the DIP's: size limit, API key and signature, JSON, then the
        array's bounds; the first failure is the answer (413, 401/403 or 400).
        """
        try:
            body = await self.read_body(request)
        except TooLarge as exc:
            return self.bad_request(str(exc), status=413)
        try:
            owner = self.auth.api_key_owner(request.headers)
            signer = self.auth.verify(request, body, owner)
        except AuthError as exc:
            return self.auth_error(exc)
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self.bad_request(f"body is not valid JSON: {exc}", owner)
        if not isinstance(items, list) or not items:
            return self.bad_request(f"body must be {expected}", owner)
        if len(items) > self.config.max_messages_per_request:
            return self.bad_request(
                f"{len(items)} messages in one request; at most "
                f"{self.config.max_messages_per_request} allowed",
                owner,
                status=413,
            )
        return owner, signer, body, items

    def admin(self, counter: str, handler: AdminHandler, *, delete: bool = False) -> Handler:
        """``handler`` behind the prologue every administration endpoint shares: count the
        request, read the body (413), authenticate as the path's recipient (401/403), refuse
        an interface the document does not have (400: these endpoints document no 404).

        ``delete``: the DELETE endpoints document only 204 and 401, so there every refusal,
        an unknown interface included, is a 401.
        """

        async def run(request: web.Request) -> web.StreamResponse:
            self.state.requests[counter] += 1
            rid = request.match_info["rid"]
            try:
                body = await self.read_body(request)
            except TooLarge as exc:
                return self.bad_request(str(exc), status=413)
            try:
                self.auth.authenticate_as(request, body, rid)
            except AuthError as exc:
                if delete and exc.status != 401:
                    exc = AuthError(401, exc.reason, exc.detail)
                return self.auth_error(exc)
            interface = request.match_info.get("id")
            if interface is not None and interface not in MPAN_BLOCK:
                problem = f"{interface[:20]!r} is not a DIP interface"
                if delete:
                    return self.auth_error(AuthError(401, "unknown_interface", problem))
                return self.bad_request(problem, rid)
            return await handler(request, rid, body)

        return run
