"""DipClient over the in-memory transport: what it sends is what it signed, with the sender's
API key, and each answer or failure reaches the caller unchanged (real RSA keys, no sockets)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.dip import (
    AiohttpTransport,
    DipClient,
    DipTransportError,
    MemoryTransport,
    TransportRequest,
    TransportResponse,
    client_context,
    dip_path,
)
from gateway.dip.client import mtls_transport
from gateway.keys import build_keystore
from gateway.signing.verify import verify_request
from tests.dipsim_fixtures import DevPki

BASE_URL = "https://dip.example"


def _client(dev_pki: Path, transport: MemoryTransport) -> DipClient:
    config = load_config(dev_pki / "gateway.yaml")
    return DipClient(BASE_URL, build_keystore(config), transport)


async def test_the_request_sent_is_the_one_signed(dev_pki: Path, pki: DevPki) -> None:
    sent: list[TransportRequest] = []

    async def answer(request: TransportRequest) -> TransportResponse:
        sent.append(request)
        return TransportResponse(201, {"content-type": "application/json"}, b'{"ok": true}')

    sender = pki.dip_id(0)
    async with _client(dev_pki, MemoryTransport(answer)) as dip:
        response = await dip.request(
            "POST",
            dip_path("dip-channel", "IF-043"),
            sender,
            b'[{"payload": {}}]',
            params={"a": "b c"},
        )
    [request] = sent
    assert request.url == response.url == f"{BASE_URL}/dip-channel/IF-043?a=b+c"
    assert (request.method, request.body) == ("POST", b'[{"payload": {}}]')
    assert request.headers["X-API-Key"] == pki.api_key(0)
    assert request.headers["Content-Type"] == "application/json"
    signer = verify_request(
        request.method,
        request.url,
        request.body,
        request.headers,
        pki.trust(),
        datetime.now(UTC),
    )
    assert signer.certificate == pki.signer(0).certificate
    assert (response.status, response.body) == (201, b'{"ok": true}')
    assert response.headers == {"content-type": "application/json"}


async def test_a_given_api_key_and_headers_win(dev_pki: Path, pki: DevPki) -> None:
    sent: list[TransportRequest] = []

    async def answer(request: TransportRequest) -> TransportResponse:
        sent.append(request)
        return TransportResponse(204, {}, b"")

    async with _client(dev_pki, MemoryTransport(answer)) as dip:
        await dip.request(
            "DELETE",
            "/x",
            pki.dip_id(1),
            api_key="secondary",
            headers={"Accept": "text/plain"},
        )
    assert sent[0].headers["X-API-Key"] == "secondary"
    assert sent[0].headers["Accept"] == "text/plain"
    assert sent[0].body == b""


async def test_no_answer_reaches_the_caller_as_dip_transport_error(
    dev_pki: Path, pki: DevPki
) -> None:
    async def refuse(request: TransportRequest) -> TransportResponse:
        raise DipTransportError("cannot connect: refused")

    async with _client(dev_pki, MemoryTransport(refuse)) as dip:
        with pytest.raises(DipTransportError, match="cannot connect: refused"):
            await dip.request("POST", "/x", pki.dip_id(0), b"[]")


async def test_a_transport_sends_only_once_opened(pki: DevPki) -> None:
    transport = AiohttpTransport(
        client_context(None, pki.ca_cert),
        max_connections=1,
        connect_timeout=1.0,
        request_timeout=1.0,
    )
    with pytest.raises(RuntimeError, match="before open"):
        await transport.send("GET", "https://127.0.0.1:1/", {}, b"")


async def test_requests_beyond_the_pool_are_counted_as_waiting_for_a_connection(
    dev_pki: Path, pki: DevPki
) -> None:
    """The gauge an operator reads to see the pool is the limit: requests the transport has
    beyond its connections, back to 0 once answered (or failed)."""
    release, all_sent = asyncio.Event(), asyncio.Event()
    arrived: list[TransportRequest] = []

    async def slow(request: TransportRequest) -> TransportResponse:
        arrived.append(request)
        if len(arrived) == 4:
            all_sent.set()
        await release.wait()
        if request.body == b"fail":
            raise DipTransportError("connection lost while reading the answer")
        return TransportResponse(201, {}, b"")

    transport = MemoryTransport(slow)
    transport.connections = 2
    async with _client(dev_pki, transport) as dip:
        assert dip.waiting_for_connection() == 0
        bodies = [b"[]", b"[]", b"[]", b"fail"]
        sends = [
            asyncio.create_task(dip.request("POST", "/x", pki.dip_id(0), body)) for body in bodies
        ]
        await asyncio.wait_for(all_sent.wait(), 30)  # each is signed on the pool first
        assert dip.waiting_for_connection() == 2
        release.set()
        results = await asyncio.gather(*sends, return_exceptions=True)
        assert [getattr(r, "status", type(r).__name__) for r in results] == [
            201, 201, 201, "DipTransportError"
        ]  # fmt: skip
        assert dip.waiting_for_connection() == 0


async def test_the_mtls_pool_has_one_connection_per_request_slot_unless_set(
    dev_pki: Path,
) -> None:
    config = load_config(dev_pki / "gateway.yaml")
    credential = build_keystore(config).signer_for(config.clients[0].dip_ids[0].dip_id)
    dip = config.dip.model_copy(update={"max_connections": None})
    assert mtls_transport(dip, credential, concurrent_requests=200).connections == 200
    assert mtls_transport(dip, credential, "httpx", concurrent_requests=7).connections == 7
    http2 = dip.model_copy(update={"http2": True})
    assert mtls_transport(http2, credential, "httpx").connections is None  # streams, not a pool
    pinned = dip.model_copy(update={"max_connections": 12})
    assert mtls_transport(pinned, credential, concurrent_requests=200).connections == 12
