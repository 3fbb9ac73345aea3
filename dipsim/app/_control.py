"""The simulator's own control API under ``/_sim``: inspect what it stored, set faults,
publish generated messages, reset. Not part of the DIP; no authentication."""

from __future__ import annotations

import orjson
from aiohttp import web
from cryptography import x509

from dipsim.app._context import Context
from dipsim.app._responses import json_response
from dipsim.app._retrieval import Retrieval
from dipsim.app._submit import Submissions
from dipsim.faults import FaultConfig


class Control:
    def __init__(self, ctx: Context, submissions: Submissions, retrieval: Retrieval) -> None:
        self.ctx = ctx
        self._submissions = submissions
        self._retrieval = retrieval

    async def messages(self, request: web.Request) -> web.Response:
        q = request.query
        found = self.ctx.state.find_messages(
            q.get("sender") or None, q.get("interface") or None, q.get("recipient") or None
        )
        limit = int(q.get("limit", "1000"))
        return json_response(
            {"count": len(found), "messages": [m.summary() for m in found[:limit]]}
        )

    async def status_messages(self, request: web.Request) -> web.Response:
        q = request.query
        found = [
            s
            for s in self.ctx.state.status_messages
            if (not q.get("sender") or s.sender == q["sender"])
            and (not q.get("recipient") or s.recipient == q["recipient"])
        ]
        return json_response(
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

    async def stats(self, request: web.Request) -> web.Response:
        stats = self.ctx.state.stats()
        stats["faults"] = self.ctx.faults.snapshot()["hits"]
        return json_response(stats)

    async def faults_get(self, request: web.Request) -> web.Response:
        return json_response(self.ctx.faults.snapshot())

    async def faults_set(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            cfg = self.ctx.faults.set(FaultConfig.model_validate(data))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return json_response({"error": str(exc)[:2000]}, 400)
        return json_response(cfg.model_dump(mode="json"))

    async def publish(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            interface = data["interface"]
            recipient = data["recipient"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return json_response(
                {"error": f"need interface, recipient and payloads/count: {exc}"}, 400
            )
        payloads = data.get("payloads")
        if payloads is None:
            from dipsim.samples import sample_payload

            payloads = [
                sample_payload(interface, recipient, seq=i)
                for i in range(int(data.get("count", 1)))
            ]
        pubs = self._submissions.publish(interface, recipient, payloads)
        return json_response({"transactionIDs": [p.transaction_id for p in pubs]}, 201)

    async def deliveries(self, request: web.Request) -> web.Response:
        q = request.query
        found = self.ctx.state.deliveries_for(
            q.get("recipient") or None, q.get("interface") or None
        )
        return json_response({"count": len(found), "deliveries": [d.as_dict() for d in found]})

    async def webhooks(self, request: web.Request) -> web.Response:
        return json_response(
            [
                {"interface": k, "recipient": r, **w.as_dict()}
                for (k, r), w in self.ctx.state.webhooks.items()
            ]
        )

    async def sender_rotate(self, request: web.Request) -> web.Response:
        """``PUT /_sim/senders/{dip_id}`` with ``{"certificates": [PEM, ...], "api_keys":
        [...]}`` (either may be left out): what the DIP ID is accepted with from now on, as the
        DIP does when a participant registers a new certificate or API key. The answer names
        the accepted certificates' fingerprints and counts the keys (never shows them)."""
        dip_id = request.match_info["dip_id"]
        try:
            data = orjson.loads(await request.read())
            pems = data.get("certificates")
            certificates = (
                None
                if pems is None
                else [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
            )
            keys = data.get("api_keys")
            reg = self.ctx.auth.rotate(
                dip_id, certificates, None if keys is None else [str(k) for k in keys]
            )
        except KeyError:
            return json_response({"error": f"DIP ID {dip_id} is not registered"}, 404)
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
            return json_response({"error": f"need certificates and/or api_keys: {exc}"}, 400)
        return json_response(
            {
                "dipId": dip_id,
                "signingCertificateFingerprints": sorted(reg.accepted),
                "apiKeys": len(reg.api_keys),
            }
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.ctx.state.reset()
        self._retrieval.forget_tokens()
        return json_response({"reset": True})
