"""Event-loop CPU per DIP request: the gateway's ``AiohttpTransport`` against a minimal HTTP/1.1
keep-alive client written straight on an ``asyncio.Protocol`` (one write per request, the
response cut by its ``Content-Length``), both over mTLS to an aiohttp server in another process.

At batch size 1 every message is one request, so what the HTTP client costs the loop is paid per
message on top of the signature. The minimal client is not a product transport (no chunked
bodies, no timeouts, no error mapping): it is the floor, TLS and the event loop's own work, so
the difference is what aiohttp's request machinery costs. Rounds alternate the two, after a
warm-up that opens every connection, with ``--concurrency`` requests in flight back to back.

    .venv/bin/python load-tests/bench_http_client.py --requests 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

from _loop_cpu import loop_cpu_per_call

from gateway.dip._transports.aiohttp_transport import AiohttpTransport
from gateway.ops.eventloop import run
from gateway.signing.pki import DevPkiOptions, create_dev_pki

_PATH = "/dip-channel/IF-043"
_BODY = b'[{"x":"' + b"y" * 2000 + b'"}]'  # about one IF-043 message
_HEADERS = {  # the sizes of the gateway's: API key, signature, timestamp, certificate
    "X-API-Key": "k" * 40,
    "Content-Type": "application/json",
    "Accept": "application/json",
    "X-DIP-Signature": "s" * 700,
    "X-DIP-Timestamp": "2026-12-07T20:00:00.000Z",
    "X-DIP-Certificate": "c" * 2400,
}
_ANSWER = b'{"status":"ACCEPTED","transactionId":"' + b"x" * 36 + b'"}'


def _serve(pki: Path, port: int) -> None:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201, body=_ANSWER, content_type="application/json")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "dip" / "server.pem", pki / "dip" / "server.key")
    app = web.Application()
    app.router.add_post(_PATH, answer)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, print=None)


def _client_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca" / "dip-ca.pem"))
    context.load_cert_chain(pki / "dcp" / "mtls.pem", pki / "dcp" / "mtls.key")
    return context


async def _aiohttp(pki: Path, port: int, requests: int, concurrency: int) -> float:
    transport = AiohttpTransport(
        _client_context(pki), max_connections=concurrency, connect_timeout=10, request_timeout=30
    )
    url = f"https://127.0.0.1:{port}{_PATH}"

    async def send() -> None:
        status, _, _ = await transport.send("POST", url, _HEADERS, _BODY)
        assert status == 201

    async with transport:
        return await loop_cpu_per_call(
            send, requests, concurrency, warm_up=4
        )  # every connection open


class _Connection(asyncio.Protocol):
    """One kept-alive connection; a response is complete at its Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self._buffer = bytearray()
        self._end = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._end < 0:
            head = buffer.find(b"\r\n\r\n")
            if head < 0:
                return
            start = buffer.lower().find(b"content-length:", 0, head) + 15
            self._end = head + 4 + int(buffer[start : buffer.find(b"\r\n", start)])
        if len(buffer) >= self._end and self.waiter is not None:
            response = bytes(buffer[: self._end])
            del buffer[: self._end]
            self._end = -1
            self.waiter.set_result(response)


async def _minimal(pki: Path, port: int, requests: int, concurrency: int) -> float:
    loop = asyncio.get_running_loop()
    context = _client_context(pki)
    idle: list[_Connection] = []
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in _HEADERS.items())
    request = (
        f"POST {_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        + head
        + b"Content-Length: %d\r\n\r\n" % len(_BODY)
        + _BODY
    )

    async def send() -> None:
        if idle:
            connection = idle.pop()
        else:
            _, connection = await loop.create_connection(
                _Connection, "127.0.0.1", port, ssl=context
            )
        connection.waiter = loop.create_future()
        assert connection.transport is not None
        connection.transport.write(request)
        response = await connection.waiter
        assert response.startswith(b"HTTP/1.1 201")
        idle.append(connection)

    try:
        return await loop_cpu_per_call(
            send, requests, concurrency, warm_up=4
        )  # every connection open
    finally:
        for connection in idle:
            if connection.transport is not None:
                connection.transport.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pki", type=Path, help="an existing dev PKI (else a 2048-bit one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        pki = args.pki
        if pki is None:
            pki = Path(tmp)
            create_dev_pki(pki, DevPkiOptions(clients=1, bits=2048))
        port = _free_port()
        code = f"import sys; sys.path[:0] = {sys.path!r}; from pathlib import Path; "
        code += "import runpy; m = runpy.run_path(" + repr(__file__) + ", run_name='bench')"
        code += f"; m['_serve'](Path({str(pki)!r}), {port})"
        server = subprocess.Popen([sys.executable, "-c", code])
        try:
            time.sleep(3.0)  # the server's start-up (imports, TLS context)
            print(f"loop CPU per request, {args.concurrency} in flight, {args.requests} requests")
            for index in range(args.rounds):
                aio = run(_aiohttp(pki, port, args.requests, args.concurrency)) * 1e6
                floor = run(_minimal(pki, port, args.requests, args.concurrency)) * 1e6
                print(
                    f"round {index + 1}: AiohttpTransport {aio:.0f} us, minimal HTTP/1.1 "
                    f"protocol {floor:.0f} us, difference {aio - floor:.0f} us",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
