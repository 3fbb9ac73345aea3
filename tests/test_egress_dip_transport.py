"""DipClient's transports against the simulator over real mTLS: both send the same signed bytes
and answer the same way; a DIP that cannot be reached is a ``DipTransportError`` on both (the
contract the sender, the admin calls and the CLI rely on)."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from dipsim import Simulator
from gateway.config import load_config
from gateway.dip import DipClient, DipTransportError, TransportName, dip_path
from gateway.keys import build_keystore, load_dcp_credential
from gateway.schema.samples import sample_payload
from tests.dipsim_fixtures import DevPki, serve_https

TRANSPORTS: list[TransportName] = ["aiohttp", "httpx"]


def _client(dev_pki: Path, base_url: str, transport: TransportName) -> DipClient:
    config = load_config(dev_pki / "gateway.yaml", {"DCP_GATEWAY__DIP__BASE_URL": base_url})
    credential = load_dcp_credential(config.dcp)
    return DipClient.over_mtls(config.dip, credential, build_keystore(config), transport=transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_signed_submission_is_accepted_on_either_transport(
    dev_pki: Path, pki: DevPki, simulator: Simulator, transport: TransportName
) -> None:
    sender = pki.dip_id(0)
    payload = sample_payload(
        "IF-043", sender_dip_id=sender, sender_role="SUP", recipients=["2300000900"], seq=1
    )
    item = {"payload": payload}
    async with _client(dev_pki, simulator.base_url, transport) as dip:
        response = await dip.request(
            "POST", dip_path("dip-channel", "IF-043"), sender, orjson.dumps([item])
        )
    assert response.status == 201, response.body
    assert all(name == name.lower() for name in response.headers)
    assert response.headers["content-type"].startswith("application/json")
    entries = orjson.loads(response.body)["messageArray"]
    assert len(entries) == 1 and entries[0]["transactionID"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unreachable_dip_is_a_dip_transport_error(
    dev_pki: Path, pki: DevPki, transport: TransportName
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _client(dev_pki, f"https://127.0.0.1:{port}", transport) as dip:
        with pytest.raises(DipTransportError):
            await dip.request("POST", dip_path("dip-channel", "IF-043"), pki.dip_id(0), b"[]")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_is_returned_not_followed(
    dev_pki: Path, pki: DevPki, transport: TransportName, status: int
) -> None:
    """Followed, a 302 turns the POST into a body-less GET whose 2xx would pass for an accepted
    submission, and a 307 resends the signed body and the API key to another address."""
    followed: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": "/elsewhere"})

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.method)
        return web.json_response({"messageArray": []}, status=201)

    app = web.Application()
    app.router.add_post("/dip-channel/IF-043", redirect)
    app.router.add_route("*", "/elsewhere", elsewhere)
    runner, base_url = await serve_https(app, pki)
    try:
        async with _client(dev_pki, base_url, transport) as dip:
            response = await dip.request(
                "POST", dip_path("dip-channel", "IF-043"), pki.dip_id(0), b"[]"
            )
    finally:
        await runner.cleanup()
    assert response.status == status
    assert response.headers["location"] == "/elsewhere"
    assert followed == []
