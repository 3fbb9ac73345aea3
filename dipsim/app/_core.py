"""The simulated DIP's HTTP surface (aiohttp.web): DIP endpoints plus the ``/_sim`` control API.

Status codes (see ``dipsim/README.md``):
- 401 missing/unknown API key, any signature failure, signer not the registered certificate;
- 403 API key of another DIP ID than the sender / recipient-id;
- 413 body over ``max_body_bytes`` or more than ``max_messages_per_request`` messages;
- 400 malformed JSON, not a non-empty array, mixed senderDIPIDs, or every message failed;
- 207 some messages failed, 201 all accepted (``StandardResponse`` in all three).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dipsim.app._context import Context
from dipsim.app._control import Control
from dipsim.app._middleware import count_statuses, inject_faults
from dipsim.app._retrieval import Retrieval
from dipsim.app._status import StatusMessages
from dipsim.app._submit import Submissions
from dipsim.app._webhooks import Webhooks
from dipsim.auth import Authenticator
from dipsim.config import SimulatorConfig
from dipsim.faults import FaultInjector
from dipsim.pusher import Pusher
from dipsim.state import Publication, SimState


class SimCore:
    """The handler groups and their shared collaborators; one per running simulator."""

    def __init__(
        self,
        config: SimulatorConfig,
        state: SimState,
        faults: FaultInjector,
        auth: Authenticator,
        pusher: Pusher,
    ) -> None:
        self.ctx = ctx = Context(config, state, faults, auth, pusher)
        self.submissions = Submissions(ctx)
        self.status_messages = StatusMessages(ctx)
        self.webhooks = Webhooks(ctx)
        self.retrieval = Retrieval(ctx)
        self.control = Control(ctx, self.submissions, self.retrieval)

    def publish(
        self, interface: str, recipient: str, payloads: list[dict[str, Any]]
    ) -> list[Publication]:
        return self.submissions.publish(interface, recipient, payloads)

    def build_app(self) -> web.Application:
        ctx = self.ctx
        app = web.Application(
            client_max_size=ctx.config.max_body_bytes * 2 + 65536,
            middlewares=[count_statuses(ctx), inject_faults(ctx)],
        )
        submissions, status, hooks = self.submissions, self.status_messages, self.webhooks
        retrieval, control = self.retrieval, self.control
        configure = ctx.admin("pubconfig", hooks.configure)
        delete = ctx.admin("pubconfig", hooks.delete, delete=True)
        replay = ctx.admin("replay", retrieval.replay)
        requeue = ctx.admin("requeue", retrieval.requeue)
        requeue_status = ctx.admin("requeueStatus", retrieval.requeue_status)
        r = app.router
        r.add_post("/dip-channel/{id}", submissions.submit)
        r.add_post("/dip-channel/{id}/pubconfig/{rid}", configure)
        r.add_delete("/dip-channel/{id}/pubconfig/{rid}", delete)
        r.add_post("/dip-channel/{id}/replay/{rid}", replay)
        r.add_post("/dip-channel/{id}/requeue/{rid}", requeue)
        r.add_get("/dip-channel/{id}/requeueStatus/{rid}", requeue_status)
        r.add_get(
            "/dip-channel/{id}/deliveryStatus/{rid}/{mid}",
            ctx.admin("deliveryStatus", retrieval.delivery_status),
        )
        r.add_post("/statusmessage", status.submit)
        r.add_post("/statusmessage/config/{rid}", configure)
        r.add_delete("/statusmessage/config/{rid}", delete)
        r.add_post("/statusmessage/replay/{rid}", replay)
        r.add_post("/statusmessage/requeue/{rid}", requeue)
        r.add_get("/statusmessage/requeueStatus/{rid}", requeue_status)
        r.add_post("/validate/{interface}/{event}", submissions.validate)
        r.add_get("/_sim/messages", control.messages)
        r.add_get("/_sim/status-messages", control.status_messages)
        r.add_get("/_sim/stats", control.stats)
        r.add_get("/_sim/faults", control.faults_get)
        r.add_post("/_sim/faults", control.faults_set)
        r.add_post("/_sim/publish", control.publish)
        r.add_get("/_sim/deliveries", control.deliveries)
        r.add_get("/_sim/webhooks", control.webhooks)
        r.add_post("/_sim/reset", control.reset)
        r.add_put("/_sim/senders/{dip_id}", control.sender_rotate)
        return app
