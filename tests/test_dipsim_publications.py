# ruff: noqa: F811  (pytest fixtures imported from tests.dipsim_fixtures)
"""Webhook pushes, retries, replay paging, requeue, deliveryStatus and status messages."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from dipsim import Simulator
from dipsim.samples import sample_message
from tests.dipsim_fixtures import (  # noqa: F401
    DevPki,
    WebhookReceiver,
    dcp_http_client,
    dev_pki,
    dev_pki_manifest,
    pki,
    signed_headers,
    simulator,
    webhook_receiver,
)


async def call(
    sim: Simulator,
    pki: DevPki,
    method: str,
    path: str,
    client: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A request signed as client ``client``'s DIP ID (empty body for GET/DELETE; ``body``
    as JSON, or bytes as they are)."""
    raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    url = sim.base_url + path
    h = signed_headers(pki.signer(client), pki.api_key(client), method, url, raw)
    h.update(headers or {})
    async with dcp_http_client(pki, sim.base_url) as http:
        return await http.request(method, url, content=raw or None, headers=h)


async def register(
    sim: Simulator, pki: DevPki, hook: WebhookReceiver, client: int, **extra: Any
) -> None:
    rid = pki.dip_id(client)
    r = await call(
        sim,
        pki,
        "POST",
        f"/dip-channel/IF-043/pubconfig/{rid}",
        client,
        {"callbackURL": f"{hook.base_url}/dip/IF-043", **extra},
    )
    assert r.status_code == 201, r.text


async def send_to(
    sim: Simulator, pki: DevPki, sender: int, recipient: int, n: int
) -> list[dict[str, Any]]:
    items = [
        sample_message("IF-043", sender=pki.dip_id(sender), recipient=pki.dip_id(recipient))
        for _ in range(n)
    ]
    r = await call(sim, pki, "POST", "/dip-channel/IF-043", sender, items)
    assert r.status_code == 201, r.text
    return items


async def test_publication_pushed_signed_by_dip(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    await register(simulator, pki, webhook_receiver, client=1)
    items = await send_to(simulator, pki, sender=0, recipient=1, n=2)
    await webhook_receiver.wait_for(2)
    await simulator.wait_pushes()
    got = webhook_receiver.accepted[0]
    assert got.signer is not None and "dip-signing" in got.signer.subject
    assert got.url.endswith("/dip/IF-043")
    pushed = webhook_receiver.messages()
    d0 = pushed[0]["payload"]["CommonBlock"]["D0"]
    assert d0["publicationID"] == "PUB-043" and d0["replayIndicator"] is False
    assert len(d0["transactionTimestamp"]) == 25 and d0["transactionID"]
    surs = [p["payload"]["CommonBlock"]["S1"]["senderUniqueReference"] for p in pushed]
    assert surs == [i["payload"]["CommonBlock"]["S1"]["senderUniqueReference"] for i in items]
    deliveries = simulator.state.deliveries_for(recipient=pki.dip_id(1))
    assert len(deliveries) == 2 and all(d.delivered and d.attempts == 1 for d in deliveries)


async def test_max_message_count_honoured(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    await register(simulator, pki, webhook_receiver, client=1, maxMessageCount=3)
    await send_to(simulator, pki, sender=0, recipient=1, n=10)
    await webhook_receiver.wait_for(10)
    sizes = [len(r.items) for r in webhook_receiver.accepted]
    assert max(sizes) <= 3 and sum(sizes) == 10


async def test_webhook_retry_after_failure_is_recorded(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.fail_next = 2
    await register(simulator, pki, webhook_receiver, client=1)
    await send_to(simulator, pki, sender=0, recipient=1, n=1)
    await webhook_receiver.wait_for(1)
    await simulator.wait_pushes()
    (d,) = simulator.state.deliveries_for(recipient=pki.dip_id(1))
    assert d.delivered and d.attempts == 3 and d.failed_attempts == 2
    assert [a.status for a in d.history] == [503, 503, 201]
    async with dcp_http_client(pki, simulator.base_url) as http:
        listed = (await http.get("/_sim/deliveries", params={"recipient": pki.dip_id(1)})).json()
    assert listed["deliveries"][0]["failedAttempts"] == 2


async def test_retries_exhausted(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    simulator.config.push_max_attempts = 2
    webhook_receiver.fail_next = 5
    webhook_receiver.fail_status = 500
    await register(simulator, pki, webhook_receiver, client=1)
    await send_to(simulator, pki, sender=0, recipient=1, n=1)
    await simulator.wait_pushes()
    (d,) = simulator.state.deliveries_for(recipient=pki.dip_id(1))
    assert d.status == "RetriesExhausted" and d.attempts == 2 and d.last_status == 500


async def test_replay_pages_with_continuation_tokens(simulator: Simulator, pki: DevPki) -> None:
    simulator.config.replay_page_size = 2
    await send_to(simulator, pki, sender=0, recipient=1, n=5)
    query = {
        "datetimeFrom": None,
        "datetimeTo": None,
        "eventCode": "[ConnectionTypeChange]",
        "MPAN": None,
        "version": None,
    }
    path = f"/dip-channel/IF-043/replay/{pki.dip_id(1)}"
    pages: list[list[Any]] = []
    statuses: list[int] = []
    token: str | None = None
    while True:
        r = await call(
            simulator,
            pki,
            "POST",
            path,
            1,
            query,
            {"X-Continuation-Token": token} if token else None,
        )
        statuses.append(r.status_code)
        pages.append(r.json())
        token = r.headers.get("X-Continuation-Token")
        if r.status_code == 200:
            break
    assert statuses == [206, 206, 200]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert all(m["payload"]["CommonBlock"]["D0"]["replayIndicator"] for p in pages for m in p)
    # Another DIP ID's key cannot replay client 1's publications.
    r = await call(simulator, pki, "POST", path, 0, query)
    assert r.status_code == 403


async def test_requeue_and_requeue_status(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    await send_to(simulator, pki, sender=0, recipient=1, n=3)  # no webhook yet
    await register(simulator, pki, webhook_receiver, client=1)
    rid = pki.dip_id(1)
    query = {
        "datetimeFrom": None,
        "datetimeTo": None,
        "eventCode": None,
        "MPAN": None,
        "version": None,
    }
    r = await call(simulator, pki, "POST", f"/dip-channel/IF-043/requeue/{rid}", 1, query)
    assert r.status_code == 202
    requeue_id = r.json()
    assert isinstance(requeue_id, str) and requeue_id.startswith(rid)
    await webhook_receiver.wait_for(3)
    await simulator.wait_pushes()
    assert all(
        m["payload"]["CommonBlock"]["D0"]["replayIndicator"] for m in webhook_receiver.messages()
    )
    r = await call(
        simulator,
        pki,
        "GET",
        f"/dip-channel/IF-043/requeueStatus/{rid}?requeue-id={requeue_id}",
        1,
    )
    assert r.status_code == 200
    (status,) = r.json()
    assert status["status"] == "Completed" and status["totalTransactions"] == 3
    assert status["processedTransactions"] == 3 and status["percentComplete"] == 100
    r = await call(
        simulator, pki, "GET", f"/dip-channel/IF-043/requeueStatus/{rid}?requeue-id=nope", 1
    )
    assert r.status_code == 204


async def test_delivery_status_journal(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    await register(simulator, pki, webhook_receiver, client=1)
    (item,) = await send_to(simulator, pki, sender=0, recipient=1, n=1)
    await simulator.wait_pushes()
    sur = item["payload"]["CommonBlock"]["S1"]["senderUniqueReference"]
    r = await call(
        simulator, pki, "GET", f"/dip-channel/IF-043/deliveryStatus/{pki.dip_id(0)}/{sur}", 0
    )
    assert r.status_code == 200, r.text
    journal = r.json()
    assert journal["SenderUniqueReference"] == sur and journal["Interface"] == "IF-043"
    stages = [(e["DIPStage"], e["Status"]) for e in journal["JournalEntries"]]
    assert stages == [
        ("Inbound", "GoodToGo"),
        ("Addressing", "SentToTopic"),
        ("Outbound", "Delivered"),
    ]
    assert [e["rn"] for e in journal["JournalEntries"]] == [1, 2, 3]
    r = await call(
        simulator,
        pki,
        "GET",
        f"/dip-channel/IF-043/deliveryStatus/{pki.dip_id(0)}/S-IF-043-1234567890-SUP-20260101-x",
        0,
    )
    assert r.status_code == 204


async def test_pubconfig_delete_and_bad_body(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    await register(simulator, pki, webhook_receiver, client=1)
    rid = pki.dip_id(1)
    r = await call(simulator, pki, "POST", f"/dip-channel/IF-043/pubconfig/{rid}", 1, {"x": 1})
    assert r.status_code == 400
    r = await call(simulator, pki, "DELETE", f"/dip-channel/IF-043/pubconfig/{rid}", 1)
    assert r.status_code == 204
    assert ("IF-043", rid) not in simulator.state.webhooks


async def test_status_messages_stored_pushed_and_replayed(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    rid = pki.dip_id(1)
    r = await call(
        simulator,
        pki,
        "POST",
        f"/statusmessage/config/{rid}",
        1,
        {"callbackURL": f"{webhook_receiver.base_url}/dip/status"},
    )
    assert r.status_code == 201
    items = [
        {
            "transactionID": f"T-{i}",
            "senderUniqueReference": None,
            "correlationID": None,
            "sentTimestamp": "2026-03-01T09:30:00+00:00",
            "senderID": pki.dip_id(0),
            "recipientID": rid,
            "DIPConnectionProviderID": None,
            "message": "MSG0000 - Success",
            "help": None,
            "serviceTicketURL": None,
        }
        for i in range(3)
    ]
    r = await call(simulator, pki, "POST", "/statusmessage", 0, items)
    assert r.status_code == 201, r.text
    assert [e["transactionID"] for e in r.json()["messageArray"]] == ["T-0", "T-1", "T-2"]
    await webhook_receiver.wait_for(3)
    assert [m["transactionID"] for m in webhook_receiver.messages()] == ["T-0", "T-1", "T-2"]
    assert len(simulator.state.status_messages) == 3
    simulator.config.replay_page_size = 2
    query = {"datetimeFrom": "2000-01-01T00:00:00+00:00", "datetimeTo": "2100-01-01T00:00:00+00:00"}
    r = await call(simulator, pki, "POST", f"/statusmessage/replay/{rid}", 1, query)
    assert r.status_code == 206 and len(r.json()) == 2
    token = r.headers["X-Continuation-Token"]
    r = await call(
        simulator,
        pki,
        "POST",
        f"/statusmessage/replay/{rid}",
        1,
        query,
        {"X-Continuation-Token": token},
    )
    assert r.status_code == 200 and len(r.json()) == 1
    r = await call(simulator, pki, "POST", f"/statusmessage/requeue/{rid}", 1, query)
    assert r.status_code == 202
    await webhook_receiver.wait_for(6)
    await simulator.wait_pushes()
    r = await call(simulator, pki, "GET", f"/statusmessage/requeueStatus/{rid}", 1)
    assert r.status_code == 200 and r.json()[0]["status"] == "Completed"
    # A status message sent for someone else's DIP ID is forbidden.
    r = await call(simulator, pki, "POST", "/statusmessage", 2, items)
    assert r.status_code == 403


async def test_sim_publish_generates_publications(
    simulator: Simulator, pki: DevPki, webhook_receiver: WebhookReceiver
) -> None:
    await register(simulator, pki, webhook_receiver, client=2)
    async with dcp_http_client(pki, simulator.base_url) as http:
        r = await http.post(
            "/_sim/publish",
            json={"interface": "IF-043", "recipient": pki.dip_id(2), "count": 4},
        )
    assert r.status_code == 201 and len(r.json()["transactionIDs"]) == 4
    await webhook_receiver.wait_for(4)
