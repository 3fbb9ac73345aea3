"""Ingress attacks: forged, misused, replayed and malformed pushes, slow and many connections.

Every attack is refused with a 4xx (never a 5xx) before anything is written to Kafka: each test
reads the end offsets of every topic the gateway writes (one partition each) and finds them all
zero, then pushes a good sentinel that lands first and alone, proving the webhook still works.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.config import GatewayConfig
from gateway.dip.webhook_urls import publication_callback_url, status_callback_url
from gateway.ingress.samples import body_of, publication, sign_push
from gateway.kafka.clients import create_consumer
from gateway.kafka.topics import gateway_topics
from gateway.signing.credentials import SigningCredential, load_credential
from gateway.signing.pki import Issued, Purpose, issue_certificate, new_rsa_key
from tests.ingress_fixtures import (
    PUBLIC,
    first_webhook,
    gateway_config,
    push,
    running,
    sentinel_lands_alone,
    tx,
)
from tests.kafka_fixtures import KafkaUnderTest
from tests.pki_fixtures import custom_cert

pytestmark = pytest.mark.timeout(240)

NOW = dt.datetime.now(dt.UTC)
SIGNER_NAME = "dip-signing.dev.test"  # trust.signer_names of the dev PKI


@pytest.fixture(scope="module")
def dip_signer(dev_pki: Path) -> SigningCredential:
    return load_credential(dev_pki / "dip" / "signing.pfx")


@pytest.fixture(scope="module")
def dip_ca(dev_pki: Path) -> Issued:
    key = serialization.load_pem_private_key((dev_pki / "ca" / "dip-ca.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((dev_pki / "ca" / "dip-ca.pem").read_bytes())
    return Issued(key, cert)  # type: ignore[arg-type]


def _self_issued(subject: x509.Name, issuer: Issued | None) -> SigningCredential:
    """A signing certificate for ``subject`` (the DIP signer's own name, for a forgery), issued
    by ``issuer`` or self-signed."""
    key = new_rsa_key(2048)
    cert = issue_certificate(
        key.public_key(),
        subject,
        issuer.cert if issuer else None,
        issuer.key if issuer else key,
        Purpose.SIGNING,
    )
    return SigningCredential(key, cert, "forged")


def _from_dip_ca(dip_ca: Issued, **knobs: Any) -> SigningCredential:
    """Issued by the DIP's own CA to the DIP signer's name, with ``knobs`` (dates, key usage)."""
    issued = custom_cert(dip_ca, SIGNER_NAME, **knobs)
    return SigningCredential(issued.key, issued.cert, "misused")


async def written(config: GatewayConfig) -> dict[str, int]:
    """Records on each topic the gateway writes (test topics have one partition)."""
    topics = gateway_topics(config)
    consumer = create_consumer(config.kafka, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, 0) for t in topics])
    finally:
        await consumer.stop()
    return {tp.topic: offset for tp, offset in ends.items()}


async def nothing_written_then_sentinel(
    http: httpx.AsyncClient, config: GatewayConfig, signer: SigningCredential
) -> None:
    counts = await written(config)
    assert counts and set(counts.values()) == {0}, counts
    await sentinel_lands_alone(http, config, signer)


def _statuses(answers: dict[str, httpx.Response]) -> dict[str, int]:
    return {name: a.status_code for name, a in answers.items()}


async def test_forged_and_misused_signing_certificates_are_refused(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential, dip_ca: Issued
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    _, recipient, url = first_webhook(config)
    name = dip_signer.certificate.subject
    look_alike_ca = new_rsa_key(2048)
    look_alike = Issued(
        look_alike_ca,
        issue_certificate(
            look_alike_ca.public_key(), dip_ca.cert.subject, None, look_alike_ca, Purpose.CA
        ),
    )
    signers = {
        "look-alike CA of the same name": _self_issued(name, look_alike),
        "self-signed with the DIP signer's name": _self_issued(name, None),
        "expired": _from_dip_ca(dip_ca, not_before=NOW - dt.timedelta(days=400), days=30),
        "not yet valid": _from_dip_ca(dip_ca, not_before=NOW + dt.timedelta(days=2)),
        "not for signing": _from_dip_ca(dip_ca, digital_signature=False),
    }
    async with running(config) as (_, http):
        answers = {
            label: await push(http, url, body_of([publication(recipient, tx())]), signer)
            for label, signer in signers.items()
        }
        reasons = {k: a.json()["messageArray"][0]["message"] for k, a in answers.items()}
        assert reasons == {
            "look-alike CA of the same name": "401 untrusted_certificate",
            "self-signed with the DIP signer's name": "401 untrusted_certificate",
            "expired": "401 certificate_expired",
            "not yet valid": "401 certificate_not_yet_valid",
            "not for signing": "401 certificate_not_for_signing",
        }
        assert set(_statuses(answers).values()) == {401}
        await nothing_written_then_sentinel(http, config, dip_signer)


async def test_replays_and_pushes_signed_for_another_url_are_refused(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    client, recipient, url = first_webhook(config)
    other = config.clients[1].dip_ids[0].dip_id
    other_url = publication_callback_url(config.ingress, "IF-043", other)
    old = NOW - dt.timedelta(minutes=10)
    captured_body = body_of([publication(recipient, tx())])
    captured = sign_push(dip_signer, url, captured_body, old)  # a valid push, seen on the wire

    async def replay(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await http.post(path.removeprefix(PUBLIC), content=body, headers=headers)

    async with running(config) as (_, http):
        to_other = body_of([publication(recipient, tx())])
        answers = {
            "replayed with its old date": await replay(url, captured_body, captured),
            "replayed with its old date to another client": await replay(
                other_url, captured_body, captured
            ),
            "signed for another client's URL": await replay(
                url, to_other, sign_push(dip_signer, other_url, to_other)
            ),
            "signed for this URL, sent to another client's": await replay(
                other_url, to_other, sign_push(dip_signer, url, to_other)
            ),
            "signed for the status URL": await replay(
                url,
                to_other,
                sign_push(dip_signer, status_callback_url(config.ingress, recipient), to_other),
            ),
            "signed with a query string added": await replay(
                url + "?x=1", to_other, sign_push(dip_signer, url, to_other)
            ),
        }
        reasons = {k: a.json()["messageArray"][0]["message"] for k, a in answers.items()}
        assert reasons == {
            "replayed with its old date": "401 date_out_of_skew",
            "replayed with its old date to another client": "401 date_out_of_skew",
            "signed for another client's URL": "401 bad_signature",
            "signed for this URL, sent to another client's": "401 bad_signature",
            "signed for the status URL": "401 bad_signature",
            "signed with a query string added": "401 bad_signature",
        }
        await nothing_written_then_sentinel(http, config, dip_signer)
        # A fresh valid push replayed at once is stored once: the transaction ID repeats.
        once = tx()
        body = body_of([publication(recipient, once)])
        headers = sign_push(dip_signer, url, body)
        first, again = [await replay(url, body, headers) for _ in range(2)]
        assert (first.status_code, again.status_code) == (201, 201)
        assert "duplicate" in again.json()["messageArray"][0]["message"]
        counts = await written(config)
        assert counts[client.topics.inbound or ""] == 2  # the sentinel and the push, not the replay


async def _raw_request(port: int, head: bytes, body: bytes = b"") -> int:
    """Send bytes as they are (httpx refuses to send malformed headers); the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
    return int(status_line.split()[1])


def _head(path: str, headers: dict[str, str], *extra: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    return b"\r\n".join([*lines, *extra]) + b"\r\n\r\n"


async def test_header_injection_and_smuggling_get_4xx(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    """Attempts to add, repeat or split signing headers, and ambiguous framing."""
    config = gateway_config(dev_pki, kafka.settings(), body_timeout_seconds=2)
    _, recipient, url = first_webhook(config)
    path = url.removeprefix(PUBLIC)
    body = body_of([publication(recipient, tx())])
    signed = sign_push(dip_signer, url, body) | {"Content-Length": str(len(body))}
    forged = sign_push(dip_signer, url, body.replace(b"_K", b"_A"))

    def with_extra(*extra: bytes, drop: str = "") -> bytes:
        return _head(path, {k: v for k, v in signed.items() if k != drop}, *extra)

    requests: dict[str, bytes] = {
        "signature twice": with_extra(f"X-DIP-Signature: {forged['X-DIP-Signature']}".encode()),
        "content hash twice": with_extra(
            f"X-DIP-Content-Hash: {forged['X-DIP-Content-Hash']}".encode()
        ),
        "certificate twice": with_extra(
            f"X-DIP-Signature-Certificate: {signed['X-DIP-Signature-Certificate']}".encode()
        ),
        "CR inside a value": with_extra(b"X-Note: a\rX-DIP-Signature: x"),
        "LF inside a value": with_extra(b"X-Note: a\nX-DIP-Signature: x"),
        "NUL inside a value": with_extra(b"X-Note: a\x00b"),
        "folded signature": with_extra(
            f"X-DIP-Signature: {signed['X-DIP-Signature'][:20]}".encode(),
            f" {signed['X-DIP-Signature'][20:]}".encode(),
            drop="X-DIP-Signature",
        ),
        "space before the colon": with_extra(b"X-DIP-Signature : x"),
        "two content lengths": with_extra(f"Content-Length: {len(body) + 5}".encode()),
        # chunked wins over Content-Length: the body is no chunk, so it never ends (408)
        "content length and chunked": with_extra(b"Transfer-Encoding: chunked"),
    }
    async with running(config) as (service, http):
        statuses = {
            name: await _raw_request(service.port, head, body) for name, head in requests.items()
        }
        assert all(400 <= s < 500 for s in statuses.values()), statuses
        await nothing_written_then_sentinel(http, config, dip_signer)


async def test_oversized_slow_and_many_connections_cannot_get_in_or_starve_the_webhook(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    slots = 4
    config = gateway_config(
        dev_pki,
        kafka.settings(),
        max_body_bytes=4096,
        max_concurrent_pushes=slots,
        body_timeout_seconds=1,
    )
    _, recipient, url = first_webhook(config)
    path = url.removeprefix(PUBLIC)
    big = body_of([publication(recipient, tx()) for _ in range(10)])
    assert len(big) > 4096
    async with running(config) as (service, http):
        port = service.port

        async def chunked() -> Any:
            yield big[:1000]
            yield big[1000:]

        oversized = await http.post(
            path, content=chunked(), headers=sign_push(dip_signer, url, big)
        )
        assert oversized.status_code == 413  # no Content-Length: refused while reading

        # Slow bodies: every slot taken by a sender that never finishes its body.
        body = body_of([publication(recipient, tx())])
        head = _head(path, sign_push(dip_signer, url, body) | {"Content-Length": str(len(body))})
        slow = await asyncio.gather(*(_raw_request(port, head, body[:10]) for _ in range(slots)))
        assert slow == [408] * slots

        # Slow headers hold connections, not slots: the webhook still answers.
        stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        for _, writer in stalled:
            writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-DIP")
        try:
            await nothing_written_then_sentinel(http, config, dip_signer)
        finally:
            for _, writer in stalled:
                writer.close()
    # Many connections at once, each with a bad signature: all refused with 401, none a 5xx.
    config = gateway_config(dev_pki, kafka.settings(), max_concurrent_pushes=512)
    _, recipient, url = first_webhook(config)
    async with running(config) as (_, http):
        many = httpx.AsyncClient(
            base_url=str(http.base_url), limits=httpx.Limits(max_connections=300), timeout=60
        )
        async with many:
            bodies = [body_of([publication(recipient, tx())]) for _ in range(300)]
            answers = await asyncio.gather(
                *(push(many, url, b, dip_signer, tamper=_forge_signature) for b in bodies)
            )
        assert {a.status_code for a in answers} == {401}
        await nothing_written_then_sentinel(http, config, dip_signer)


def _forge_signature(headers: dict[str, str]) -> None:
    headers["X-DIP-Signature"] = headers["X-DIP-Signature"][::-1]


async def test_the_content_hash_is_compared_in_constant_time(
    kafka: KafkaUnderTest,
    dev_pki: Path,
    dip_signer: SigningCredential,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    _, recipient, url = first_webhook(config)
    compared: list[tuple[Any, Any]] = []
    original: Callable[[Any, Any], bool] = hmac.compare_digest

    def spying(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spying)

    def wrong_hash(h: dict[str, str]) -> None:
        h["X-DIP-Content-Hash"] = "B" * 43 + "="

    async with running(config) as (_, http):
        body = body_of([publication(recipient, tx())])
        answer = await push(http, url, body, dip_signer, tamper=wrong_hash)
    assert answer.status_code == 401
    assert (b"B" * 43 + b"=") in [b for _, b in compared]
