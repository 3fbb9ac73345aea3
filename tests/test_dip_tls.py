"""The DCP's client TLS context for the DIP: with a CA bundle configured, that bundle is the only
trust anchor, so a server certificate from any other CA is refused."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.dip.tls import client_context
from gateway.signing.credentials import SigningCredential
from gateway.signing.pki import Issued, Purpose, cert_pem, create_ca, issue, key_pem


def _server(ca: Issued, folder: Path) -> ssl.SSLContext:
    issued = issue(ca, "dip.test", Purpose.SERVER, bits=2048, ip_addresses=["127.0.0.1"])
    cert, key = folder / "server.pem", folder / "server.key"
    cert.write_bytes(cert_pem(issued.cert) + cert_pem(ca.cert))
    key.write_bytes(key_pem(issued.key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture(scope="module")
def cas() -> tuple[Issued, Issued]:
    return create_ca("DIP server CA", bits=2048), create_ca("Some public CA", bits=2048)


@pytest_asyncio.fixture
async def tls_port(
    request: pytest.FixtureRequest, cas: tuple[Issued, Issued], tmp_path: Path
) -> AsyncIterator[int]:
    """A TLS server whose certificate is issued by the CA named in the test's parameter."""
    ca = cas[0] if request.param == "dip" else cas[1]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=_server(ca, tmp_path))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _bundle(cas: tuple[Issued, Issued], tmp_path: Path) -> Path:
    path = tmp_path / "dip-ca.pem"
    path.write_bytes(cert_pem(cas[0].cert))
    return path


@pytest.mark.parametrize("tls_port", ["dip"], indirect=True)
async def test_server_from_the_configured_ca_is_accepted(
    tls_port: int, cas: tuple[Issued, Issued], tmp_path: Path
) -> None:
    context = client_context(None, _bundle(cas, tmp_path))
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=context)
    try:
        assert await reader.read() == b"hello"
    finally:
        writer.close()


@pytest.mark.parametrize("tls_port", ["other"], indirect=True)
async def test_server_from_another_ca_is_refused(
    tls_port: int, cas: tuple[Issued, Issued], tmp_path: Path
) -> None:
    context = client_context(None, _bundle(cas, tmp_path))
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncio.open_connection("127.0.0.1", tls_port, ssl=context)


def test_the_bundle_is_the_only_trust_anchor(cas: tuple[Issued, Issued], tmp_path: Path) -> None:
    context = client_context(None, _bundle(cas, tmp_path))
    subjects = [dict(_pairs(c["subject"])) for c in context.get_ca_certs()]
    assert [s["commonName"] for s in subjects] == ["DIP server CA"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_the_mtls_key_is_never_on_disk_in_plaintext(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ssl`` loads keys only from files: the temporary file holds the key encrypted with a
    one-time password, and is gone when loading ends, whether it worked or not."""
    ca = create_ca("DIP CA", bits=2048)
    issued = issue(ca, "dcp.test", Purpose.MTLS, bits=2048)
    credential = SigningCredential(issued.key, issued.cert, "dcp")
    secret_line = key_pem(issued.key).decode().splitlines()[1]
    seen: list[tuple[str, bytes, object]] = []
    original = ssl.SSLContext.load_cert_chain

    def spying(
        self: ssl.SSLContext, certfile: str, keyfile: str | None = None, password: Any = None
    ) -> None:
        seen.append((certfile, Path(certfile).read_bytes(), password))
        original(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spying)
    client_context(credential, None)
    [(name, content, password)] = seen
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in content
    assert b"-----BEGIN PRIVATE KEY-----" not in content
    assert secret_line.encode() not in content
    assert isinstance(password, bytes) and len(password) >= 32
    assert not Path(name).exists()

    def failing(self: ssl.SSLContext, certfile: str, *args: Any, **kwargs: Any) -> None:
        seen.append((certfile, b"", None))
        raise ssl.SSLError("refused")

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", failing)
    with pytest.raises(ssl.SSLError):
        client_context(credential, None)
    assert not Path(seen[-1][0]).exists()
    shm = Path("/dev/shm")
    if shm.is_dir():
        assert not [p for p in shm.iterdir() if p.name == Path(seen[-1][0]).name]


def _pairs(subject: object) -> list[tuple[str, str]]:
    """``ssl``'s subject: a tuple of RDNs, each a tuple of (name, value) pairs."""
    assert isinstance(subject, tuple)
    return [(str(rdn[0][0]), str(rdn[0][1])) for rdn in subject]
