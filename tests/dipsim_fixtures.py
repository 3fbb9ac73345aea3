"""DIP simulator fixtures: a dev PKI per session, a fresh simulator per test, and helpers.

Use from a conftest::

    from tests.dipsim_fixtures import dev_pki, dev_pki_manifest, simulator  # noqa: F401

- ``dev_pki`` (session): Path of a dev PKI made by ``create_dev_pki(..., clients=3, bits=2048)``
- ``dev_pki_manifest`` (session): its ``dev-pki.json`` as a dict
- ``simulator`` (function): a running :class:`dipsim.Simulator` on a free port, fresh state
- :class:`DevPki` / :func:`dcp_http_client` / :class:`WebhookReceiver`: plain helpers
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from dipsim import Simulator, SimulatorConfig, run_simulator
from gateway.signing.credentials import SigningCredential, load_pfx
from gateway.signing.errors import SignatureRejected
from gateway.signing.pki import DevPkiOptions, create_dev_pki
from gateway.signing.trust import TrustPolicy
from gateway.signing.verify import VerifiedSigner, verify_request


@dataclass
class DevPki:
    """Paths and secrets of a dev PKI folder, read from its manifest."""

    root: Path
    manifest: dict[str, Any]

    @property
    def ca_cert(self) -> Path:
        return self.root / str(self.manifest["ca"]["cert"])

    @property
    def dcp_cert(self) -> Path:
        return self.root / str(self.manifest["dcp_mtls"]["cert"])

    @property
    def dcp_key(self) -> Path:
        return self.root / str(self.manifest["dcp_mtls"]["key"])

    @property
    def webhook_cert(self) -> Path:
        return self.root / str(self.manifest["webhook_server"]["cert"])

    @property
    def webhook_key(self) -> Path:
        return self.root / str(self.manifest["webhook_server"]["key"])

    def client(self, index: int) -> dict[str, Any]:
        """Client 0, 1, 2 ... of the manifest."""
        return dict(self.manifest["clients"][index])

    def dip_id(self, index: int) -> str:
        return str(self.manifest["clients"][index]["dip_ids"][0]["dip_id"])

    def api_key(self, index: int, secondary: bool = False) -> str:
        entry = self.manifest["clients"][index]["dip_ids"][0]
        name = "secondary_api_key_file" if secondary else "api_key_file"
        return (self.root / str(entry[name])).read_text().strip()

    def signer(self, index: int) -> SigningCredential:
        return load_pfx(self.root / self.manifest["clients"][index]["signing_pfx"])

    def dip_signer(self) -> SigningCredential:
        return load_pfx(self.root / self.manifest["dip_signing"]["pfx"])

    def client_ssl_context(self, with_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        if with_cert:
            ctx.load_cert_chain(str(self.dcp_cert), str(self.dcp_key))
        return ctx

    def trust(self) -> TrustPolicy:
        return TrustPolicy.from_files([self.ca_cert])


def dcp_http_client(pki: DevPki, base_url: str, with_cert: bool = True) -> httpx.AsyncClient:
    """A plain httpx client connecting with the DCP's mTLS certificate."""
    return httpx.AsyncClient(
        base_url=base_url, verify=pki.client_ssl_context(with_cert), timeout=30.0
    )


def signed_headers(
    signer: SigningCredential, api_key: str | None, method: str, url: str, body: bytes
) -> dict[str, str]:
    headers = signer.sign(method, url, body, datetime.now(UTC))
    headers["Content-Type"] = "application/json"
    if api_key is not None:
        headers["X-API-Key"] = api_key
    return headers


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    body: bytes
    signer: VerifiedSigner | None
    rejection: str | None

    @property
    def items(self) -> list[Any]:
        data = orjson.loads(self.body)
        assert isinstance(data, list)
        return data


async def serve_https(app: web.Application, pki: DevPki) -> tuple[web.AppRunner, str]:
    """Serve ``app`` over TLS on a free loopback port with the dev PKI's webhook certificate
    (issued by the dev CA, which the gateway trusts): the runner to clean up, and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.webhook_cert), str(pki.webhook_key))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"https://127.0.0.1:{port}"


@dataclass
class WebhookReceiver:
    """A small HTTPS webhook that verifies the DIP signature of every push (dev CA trust).

    ``fail_next`` answers the next N pushes with ``fail_status`` (then 201 again).
    """

    pki: DevPki
    fail_next: int = 0
    fail_status: int = 503
    received: list[Received] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.signer is not None and r.rejection is None]

    def messages(self) -> list[Any]:
        return [item for r in self.accepted for item in r.items]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        url = f"https://{request.headers['Host']}{request.raw_path}"
        try:
            signer = verify_request(
                "POST", url, body, request.headers, self.pki.trust(), datetime.now(UTC)
            )
            rejection = None
        except SignatureRejected as exc:
            signer, rejection = None, str(exc)
        if self.fail_next > 0:
            self.fail_next -= 1
            self.received.append(Received(url, dict(request.headers), body, signer, "failed"))
            self._event.set()
            return web.Response(status=self.fail_status)
        self.received.append(Received(url, dict(request.headers), body, signer, rejection))
        self._event.set()
        if rejection:
            return web.json_response({"error": rejection}, status=401)
        return web.json_response({"messageArray": [], "timestamp": ""}, status=201)

    async def start(self) -> WebhookReceiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner, self.base_url = await serve_https(app, self.pki)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Wait until at least ``count`` messages were accepted."""
        async with asyncio.timeout(timeout):
            while len(self.messages()) < count:
                self._event.clear()
                await self._event.wait()


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dev-pki")
    create_dev_pki(root, DevPkiOptions(clients=3, bits=2048))
    return root


@pytest.fixture(scope="session")
def dev_pki_manifest(dev_pki: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dev_pki / "dev-pki.json").read_text())
    return data


@pytest.fixture(scope="session")
def pki(dev_pki: Path, dev_pki_manifest: dict[str, Any]) -> DevPki:
    return DevPki(dev_pki, dev_pki_manifest)


@pytest_asyncio.fixture
async def simulator(dev_pki: Path) -> AsyncIterator[Simulator]:
    config = SimulatorConfig.from_dev_pki(
        dev_pki, seed=1234, push_backoff_initial_seconds=0.05, push_backoff_max_seconds=0.2
    )
    async with run_simulator(config) as sim:
        yield sim


@pytest_asyncio.fixture
async def webhook_receiver(pki: DevPki) -> AsyncIterator[WebhookReceiver]:
    receiver = await WebhookReceiver(pki).start()
    try:
        yield receiver
    finally:
        await receiver.stop()
