"""Bad input catalogue and secrets scan over one realistic run.

Every malformed, hostile or unroutable record on an outbound topic ends dead-lettered with a
clear reason and its original bytes, and the gateway keeps going. All cases go through one real
run (Apache Kafka, ``dcp-gateway run`` in its own process, the DIP simulator), in one partition
so a good record produced after them proves the gateway is still delivering; each case is then
its own test over that run's outcomes.

The run is set up as in production where secrets are concerned (a password-protected DCP PFX,
the webhook on with signed and hostile pushes, debug logging), and everything it put out (the
process log, a metrics scrape, dead-letter headers, webhook answers) is scanned for the actual
secret values of the dev PKI and for message bodies.
"""

from __future__ import annotations

import base64
import copy
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization

from gateway.config import GatewayConfig
from gateway.dip.webhook_urls import publication_callback_url
from gateway.ingress.samples import body_of, publication, sign_push
from gateway.kafka.clients import common_kwargs, create_producer
from gateway.kafka.embedded import free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.signing.credentials import load_pfx
from gateway.signing.pki import pfx_bytes
from tests.gateway_process import GatewayProcess
from tests.ingress_fixtures import PUBLIC, tx
from tests.kafka_fixtures import KafkaUnderTest
from tests.secrets_scan import SECRET_BODY_MARKER
from tests.test_egress_e2e import (
    Outcome,
    _collect,
    _gateway_config,
    _payload,
    _produce,
    _simulator,
    _status,
    _sur,
)

pytestmark = pytest.mark.timeout(300)

CLIENT_1 = "client-1"
GATEWAY_WIDE = None
WARM_UP = 20
BIG = 16 * 1024 * 1024
"""``max.message.bytes`` of the run's outbound and dead-letter topics: the 10 MB case must be
readable, and its dead letter writable (the gateway's producer allows 16 MiB)."""
RSS_GROWTH_MAX = 200 * 1024 * 1024
BODY_MARKER = SECRET_BODY_MARKER
"""In the free text of every message the run sends or pushes: a body that leaks shows it."""
REASON_MAX = 1000
"""A reason is a sentence, not an echo of the record: bounded however large the field was."""


@dataclass(frozen=True)
class Case:
    id: str
    value: bytes | None
    reason: str  # a fragment of the dcpgw-reason header
    owner: str | None = CLIENT_1  # the client whose dead-letter topic gets it; None: gateway-wide
    status: bool = False  # produced to the status-message topic, not the outbound one

    @property
    def key(self) -> bytes:
        return f"case-{self.id}".encode()


def unowned(id: str, value: bytes | None, reason: str) -> Case:
    """A case refused before its sender is read: the gateway-wide dead-letter topic."""
    return Case(id, value, reason, GATEWAY_WIDE)


def _marked(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` carrying :data:`BODY_MARKER` in its free text (no output may show it)."""
    payload["CommonBlock"]["S1"]["subText"] = BODY_MARKER
    return payload


def _good(seq: int) -> dict[str, Any]:
    return _marked(_payload(1, seq))


def _edit(seq: int, change: Callable[[dict[str, Any]], object]) -> bytes:
    """Client 1's good message number ``seq`` with ``change`` applied (in place)."""
    payload = copy.deepcopy(_good(seq))
    change(payload)
    return orjson.dumps(payload)


def _s1(seq: int, **fields: object) -> bytes:
    return _edit(seq, lambda p: p["CommonBlock"]["S1"].update(fields))


def _s0(seq: int, **fields: object) -> bytes:
    return _edit(seq, lambda p: p["CommonBlock"]["S0"].update(fields))


def _without(seq: int, *path: str) -> bytes:
    def drop(p: dict[str, Any]) -> None:
        for name in path[:-1]:
            p = p[name]
        del p[path[-1]]

    return _edit(seq, drop)


def _raw(seq: int, old: bytes, new: bytes) -> bytes:
    """The good message's bytes with one literal replaced (for what orjson cannot write)."""
    good = orjson.dumps(_good(seq))
    assert old in good, old
    return good.replace(old, new, 1)


def _mpan(seq: int) -> bytes:
    return orjson.dumps(_good(seq)["CommonBlock"]["M0"]["MPANCore"])


def _cases() -> list[Case]:
    seq = iter(range(1000, 2000))
    good = orjson.dumps(_good(next(seq)))
    sender = b'"senderDIPID":"1400010001"'
    return [
        # -- not JSON, or not one JSON object
        unowned("empty-value", b"", "empty record value"),
        unowned("whitespace-only", b" \r\n\t ", "empty record value"),
        unowned("tombstone", None, "empty record value"),
        unowned("truncated-json", good[: len(good) // 2], "malformed JSON"),
        unowned("truncated-one-byte", good[:-1], "malformed JSON"),
        unowned("malformed-json", b"{not json", "malformed JSON"),
        unowned("trailing-garbage", good + b"garbage", "malformed JSON"),
        unowned("two-documents", good + good, "malformed JSON"),
        unowned("single-quotes", good.replace(b'"', b"'"), "malformed JSON"),
        unowned("trailing-comma", good[:-1] + b",}", "malformed JSON"),
        unowned("json-comment", b"/* hi */" + good, "malformed JSON"),
        unowned("top-level-array", b"[" + good + b"]", "expected a JSON object, got an array"),
        unowned("top-level-string", b'"CommonBlock"', "expected a JSON object, got a string"),
        unowned("top-level-number", b"42", "expected a JSON object, got a number"),
        unowned("top-level-null", b"null", "expected a JSON object, got null"),
        unowned("array-100k-elements", b"[" + b",".join([b"0"] * 100_000) + b"]", "got an array"),
        unowned(
            "deeply-nested-100k",
            b'{"CommonBlock":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "malformed JSON",
        ),
        # -- encodings
        unowned("utf8-bom", b"\xef\xbb\xbf" + good, "malformed JSON"),
        unowned("non-utf8-byte", _raw(next(seq), b'"_', b'"\xff'), "malformed JSON"),
        unowned("latin1-text", _raw(next(seq), b'"_', b'"\xe9'), "malformed JSON"),
        unowned("utf16-encoded", good.decode().encode("utf-16"), "malformed JSON"),
        unowned("lone-surrogate-escape", _raw(next(seq), b'"_', b'"\\ud800'), "malformed JSON"),
        unowned("nul-byte-outside-string", good[:-1] + b"\x00}", "malformed JSON"),
        # -- numbers JSON does not have, or cannot hold
        unowned(
            "nan",
            _raw(next(seq), b'"meteredIndicator":true', b'"meteredIndicator":NaN'),
            "malformed JSON",
        ),
        unowned(
            "infinity",
            _raw(next(seq), b'"meteredIndicator":true', b'"x":Infinity'),
            "malformed JSON",
        ),
        unowned("huge-integer", _raw(n := next(seq), _mpan(n), b"9" * 400), "malformed JSON"),
        unowned("huge-float", _raw(n := next(seq), _mpan(n), b"1e999"), "number is infinity"),
        # -- duplicate keys: the DIP may read the other one (a parser differential)
        unowned(
            "duplicate-key-sender",
            _raw(next(seq), sender, sender + b',"senderDIPID":"1400020001"'),
            "duplicate key",
        ),
        unowned(
            "duplicate-key-environment",
            _raw(
                next(seq),
                b'"environmentTag":"DEV"',
                b'"environmentTag":"PRD","environmentTag":"DEV"',
            ),
            "duplicate key",
        ),
        unowned(
            "duplicate-key-commonblock",
            _raw(next(seq), b'{"CommonBlock":', b'{"CommonBlock":{},"CommonBlock":'),
            "duplicate key",
        ),
        # -- missing or mistyped blocks
        Case(
            "missing-commonblock",
            _without(next(seq), "CommonBlock"),
            "CommonBlock is missing",
            GATEWAY_WIDE,
        ),
        Case(
            "commonblock-null",
            _edit(next(seq), lambda p: p.update(CommonBlock=None)),
            "CommonBlock is missing or not an object",
            GATEWAY_WIDE,
        ),
        Case(
            "commonblock-array",
            _edit(next(seq), lambda p: p.update(CommonBlock=[])),
            "CommonBlock is missing or not an object",
            GATEWAY_WIDE,
        ),
        Case(
            "missing-s0",
            _without(next(seq), "CommonBlock", "S0"),
            "CommonBlock.S0 is missing",
            GATEWAY_WIDE,
        ),
        Case(
            "missing-s1",
            _without(next(seq), "CommonBlock", "S1"),
            "CommonBlock.S1 is missing",
            GATEWAY_WIDE,
        ),
        Case(
            "s1-is-a-string",
            _edit(next(seq), lambda p: p["CommonBlock"].update(S1="x")),
            "CommonBlock.S1 is missing or not an object",
            GATEWAY_WIDE,
        ),
        Case("missing-customblock", _without(next(seq), "CustomBlock"), "Schema"),
        Case(
            "customblock-wrong-type",
            _edit(next(seq), lambda p: p.update(CustomBlock=[1])),
            "Schema",
        ),
        Case(
            "wrapper-extra-keys",
            orjson.dumps({"payload": _good(next(seq)), "x": 1}),
            "wrapper has keys besides 'payload'",
            GATEWAY_WIDE,
        ),
        Case(
            "wrapper-payload-string",
            b'{"payload":"{}"}',
            "'payload' must be an object",
            GATEWAY_WIDE,
        ),
        Case(
            "status-shape-on-dip-topic",
            b'{"senderID":"1400010001","message":"MSG0000"}',
            "not a DIP message",
            GATEWAY_WIDE,
        ),
        # -- wrong types and values in fields the checks read
        Case(
            "mpan-as-number",
            _edit(
                n := next(seq),
                lambda p: p["CommonBlock"]["M0"].update(
                    MPANCore=int(_good(n)["CommonBlock"]["M0"]["MPANCore"])
                ),
            ),
            "Schema",
        ),
        Case("sur-as-number", _s1(next(seq), senderUniqueReference=12345), "Schema"),
        Case(
            "metered-as-string",
            _edit(next(seq), lambda p: p["CustomBlock"]["B023"].update(meteredIndicator="true")),
            "Schema",
        ),
        # -- sender DIP IDs
        Case(
            "sender-missing",
            _without(next(seq), "CommonBlock", "S1", "senderDIPID"),
            "senderDIPID None is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-as-number",
            _s1(next(seq), senderDIPID=1400010001),
            "senderDIPID 1400010001 is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-9-digits",
            _s1(next(seq), senderDIPID="140001000"),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-11-digits",
            _s1(next(seq), senderDIPID="14000100011"),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-100k-digits",
            _s1(next(seq), senderDIPID="1" * 100_000),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-non-digit",
            _s1(next(seq), senderDIPID="14000X0001"),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-fullwidth-digits",
            _s1(next(seq), senderDIPID="".join(chr(0xFF10 + int(d)) for d in "1400010001")),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-trailing-newline",
            _s1(next(seq), senderDIPID="1400010001\n"),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-crlf-header-injection",
            _s1(next(seq), senderDIPID="1400010001\r\nX-API-Key: stolen"),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-nul-byte",
            _s1(next(seq), senderDIPID="1400010001\x00"),
            "is not a 10-digit DIP ID",
            GATEWAY_WIDE,
        ),
        Case(
            "sender-not-served",
            _s1(next(seq), senderDIPID="5555555555"),
            "unknown sender DIP ID 5555555555",
            GATEWAY_WIDE,
        ),
        # -- interface IDs (they become the URL path)
        Case(
            "interface-missing",
            _without(next(seq), "CommonBlock", "S0", "interfaceID"),
            "interfaceID None is not an interface ID",
        ),
        Case(
            "interface-crlf-header-injection",
            _s0(next(seq), interfaceID="IF-043\r\nX-Injected: 1"),
            "is not an interface ID",
        ),
        Case(
            "interface-path-traversal",
            _s0(next(seq), interfaceID="../../admin"),
            "is not an interface ID",
        ),
        Case(
            "interface-lower-case", _s0(next(seq), interfaceID="if-043"), "is not an interface ID"
        ),
        Case("interface-unknown", _s0(next(seq), interfaceID="IF-999"), "cannot validate"),
        Case("interface-mismatch", _s0(next(seq), interfaceID="IF-021"), "Schema"),
        # -- environment and DCP ID
        Case(
            "environment-prd",
            _s1(next(seq), environmentTag="PRD"),
            "environmentTag 'PRD' does not match",
        ),
        Case(
            "environment-lower-case",
            _s1(next(seq), environmentTag="dev"),
            "environmentTag 'dev' does not match",
        ),
        Case(
            "environment-missing",
            _without(next(seq), "CommonBlock", "S1", "environmentTag"),
            "environmentTag None does not match",
        ),
        Case(
            "dcp-id-of-another-dcp",
            _s1(next(seq), DIPConnectionProviderID="9999999999"),
            "does not overwrite",
        ),
        Case(
            "dcp-id-crlf-header-injection",
            _s1(next(seq), DIPConnectionProviderID="9000000001\r\nX-Injected: 1"),
            "does not overwrite",
        ),
        Case(
            "sur-crlf-header-injection",
            _s1(next(seq), senderUniqueReference="S-1\r\nX-Injected: 1"),
            "Schema",
        ),
        # -- size
        Case(
            "value-10mb",
            _edit(next(seq), lambda p: p["CustomBlock"]["B023"].update(padding="x" * 10_000_000)),
            "Schema",
        ),
    ]


def _status_message(**fields: object) -> bytes:
    return orjson.dumps(_status(f"S-STATUS-{len(fields)}") | fields)


STATUS_CASES = [
    Case(
        "status-not-an-object", b'["MSG0000"]', "expected a JSON object, got an array", None, True
    ),
    Case(
        "status-sender-missing",
        orjson.dumps({"message": "MSG0000 - Success"}),
        "senderID None is not a 10-digit DIP ID",
        None,
        True,
    ),
    Case(
        "status-sender-crlf-header-injection",
        _status_message(senderID="1400010001\r\nX-API-Key: stolen"),
        "senderID '1400010001\\r\\nX-API-Key: stolen' is not",
        None,
        True,
    ),
    Case(
        "status-sender-not-served",
        _status_message(senderID="5555555555"),
        "unknown sender DIP ID 5555555555",
        None,
        True,
    ),
    Case(
        "status-wrapper-extra-keys",
        orjson.dumps({"payload": orjson.loads(_status_message()), "x": 1}),
        "status wrapper must be exactly",
        None,
        True,
    ),
    Case(
        "status-dcp-id-of-another-dcp",
        _status_message(DIPConnectionProviderID="9999999999"),
        "does not overwrite",
        CLIENT_1,
        True,
    ),
    Case(
        "status-duplicate-key",
        _status_message().replace(b'"senderID":', b'"senderID":"1400020001","senderID":'),
        "duplicate key 'senderID'",
        None,
        True,
    ),
]
CASES = _cases() + STATUS_CASES
DUPLICATE_SUR = orjson.dumps(_good(1))
"""Produced twice in a row (one batch): the DIP takes the first and refuses the second."""


@dataclass
class Run:
    config: GatewayConfig
    dead: dict[bytes, list[Outcome]]
    results: dict[bytes, list[Outcome]]
    delivered: list[str]  # senderUniqueReferences the simulator stored
    rss_before: int
    rss_after: int
    log: str
    metrics: str
    answers: dict[str, httpx.Response]  # webhook answers to the run's pushes
    exit_code: int
    pfx_password: str


async def _create_big_topics(config: GatewayConfig) -> None:
    """The outbound and dead-letter topics, with one partition (one order) and room for the
    10 MB case. The broker's default ``max.message.bytes`` is about 1 MB."""
    names = [
        config.kafka.outbound_topics[0],
        config.kafka.dead_letter_topic,
        *(c.topics.dead_letter for c in config.clients),
    ]
    admin = AIOKafkaAdminClient(**common_kwargs(config.kafka))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, 1, 1, topic_configs={"max.message.bytes": str(BIG)}) for n in names]
        )
    finally:
        await admin.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _as_in_production(config: GatewayConfig, dev_pki: Path, folder: Path) -> GatewayConfig:
    """Debug logging, the webhook on (TLS, a free port), and the DCP's mTLS PFX protected by a
    password (the dev PKI's has none)."""
    password = secrets.token_urlsafe(24)
    dcp = load_pfx(dev_pki / "dcp" / "mtls.pfx")
    protected = folder / "mtls-protected.pfx"
    protected.write_bytes(
        pfx_bytes(dcp.private_key, dcp.certificate, list(dcp.chain), password=password.encode())
    )
    password_file = folder / "mtls.password"
    password_file.write_text(password + "\n")
    ingress = config.ingress.model_copy(
        update={
            "enabled": True,
            "listen_host": "127.0.0.1",
            "listen_port": free_port(),
            "public_base_url": PUBLIC,
            "tls_cert": dev_pki / "webhook" / "server.pem",
            "tls_key": dev_pki / "webhook" / "server.key",
        }
    )
    return config.model_copy(
        update={
            "ops": config.ops.model_copy(update={"log_level": "debug"}),
            "dcp": config.dcp.model_copy(
                update={"mtls_pfx": protected, "mtls_password_file": password_file}
            ),
            "ingress": ingress,
        }
    )


async def _pushes(config: GatewayConfig, dev_pki: Path) -> dict[str, httpx.Response]:
    """Signed and hostile webhook pushes carrying the body marker (and, once, secrets in
    headers the gateway has no use for)."""
    signer = load_pfx(dev_pki / "dip" / "signing.pfx")
    recipient = config.clients[0].dip_ids[0].dip_id
    url = publication_callback_url(config.ingress, "IF-043", recipient)
    api_key = (dev_pki / "clients" / "client-1" / f"{recipient}.api-key").read_text().strip()

    def body() -> bytes:
        item = publication(recipient, tx())
        item["payload"]["CommonBlock"]["S1"]["subText"] = BODY_MARKER
        return body_of([item])

    def sent(data: bytes, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**sign_push(signer, url, data), **(extra or {})}

    path = url.removeprefix(PUBLIC)
    good, tampered, stray = body(), body(), body()
    broken = body()[:-5]
    verify = ssl.create_default_context(cafile=str(dev_pki / "ca" / "dip-ca.pem"))
    base = f"https://127.0.0.1:{config.ingress.listen_port}"
    async with httpx.AsyncClient(base_url=base, verify=verify, timeout=30) as http:
        return {
            "good": await http.post(path, content=good, headers=sent(good)),
            "tampered": await http.post(
                path, content=tampered.replace(b"_K", b"_A"), headers=sent(tampered)
            ),
            "secret-headers": await http.post(
                path,
                content=stray,
                headers=sent(stray, {"X-API-Key": api_key, "Authorization": f"Bearer {api_key}"}),
            ),
            "malformed": await http.post(path, content=broken, headers=sent(broken)),
        }


@pytest_asyncio.fixture(scope="module")
async def catalogue_run(
    kafka: KafkaUnderTest, dev_pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Run]:
    folder = tmp_path_factory.mktemp("catalogue")
    async with _simulator(dev_pki) as sim:
        config = _gateway_config(dev_pki, kafka, sim, max_batch_messages=20, linger_ms=50)
        config = _as_in_production(config, dev_pki, folder)
        await _create_big_topics(config)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        warm = [_marked(_payload(1 + n % 3, n)) for n in range(WARM_UP)]
        last = _marked(_payload(2, 2_000))
        gateway = GatewayProcess(config, folder, "gateway")
        try:
            await gateway.start()
            await _produce(config, [(topic, b"warm", orjson.dumps(p)) for p in warm])
            await _collect(config, WARM_UP)
            pid = gateway.pid
            rss_before = _rss(pid)
            status_topic = config.kafka.status_outbound_topic or ""
            records = [(status_topic if c.status else topic, c.key, c.value) for c in CASES]
            records += [(topic, b"dup-sur", DUPLICATE_SUR)] * 2
            records.append((topic, b"last", orjson.dumps(last)))
            await _produce_one_by_one(config, records)
            answers = await _pushes(config, dev_pki)
            expected = WARM_UP + len(records)
            outcomes = await _collect(config, expected, wait_seconds=180)
            rss_after = _rss(pid)
            metrics_text = await gateway.scrape()
            exit_code = await gateway.terminate()
        finally:
            gateway.ensure_stopped()
        delivered = [m.sender_unique_reference for m in sim.state.messages]
    dead: dict[bytes, list[Outcome]] = {}
    results: dict[bytes, list[Outcome]] = {}
    for o in outcomes.dead:
        dead.setdefault(o.key or b"", []).append(o)
    for o in outcomes.results:
        results.setdefault(o.key or b"", []).append(o)
    assert _sur(last) in delivered
    yield Run(
        config,
        dead,
        results,
        delivered,
        rss_before,
        rss_after,
        gateway.log.read_text(errors="replace"),
        metrics_text,
        answers,
        exit_code,
        (folder / "mtls.password").read_text().strip(),
    )


async def _produce_one_by_one(
    config: GatewayConfig, records: list[tuple[str, bytes, bytes | None]]
) -> None:
    """In order, each acknowledged before the next (one partition: the order of the log)."""
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_the_catalogue_has_at_least_forty_distinct_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.value for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_record_is_dead_lettered_with_reason_and_original_bytes(
    catalogue_run: Run, case: Case
) -> None:
    run = catalogue_run
    assert case.key not in run.results, "a bad record was delivered"
    [letter] = run.dead.get(case.key, [None])
    assert letter is not None, "no dead letter"
    assert letter.value == case.value
    reason = letter.reason
    assert case.reason in reason
    assert len(reason) <= REASON_MAX
    assert "\r" not in reason and "\n" not in reason
    owner = next((c for c in run.config.clients if c.name == case.owner), None)
    expected_topic = (
        owner.topics.dead_letter if owner is not None else run.config.kafka.dead_letter_topic
    )
    assert letter.topic == expected_topic
    assert letter.headers["dcpgw-source-key"] == case.key
    kafka = run.config.kafka
    source = kafka.status_outbound_topic if case.status else kafka.outbound_topics[0]
    assert letter.headers["dcpgw-source-topic"] == (source or "").encode()


def test_a_repeated_sender_reference_in_one_batch_is_delivered_once_and_refused_once(
    catalogue_run: Run,
) -> None:
    sur = _sur(_good(1))
    assert catalogue_run.delivered.count(sur) == 1
    assert len(catalogue_run.results[b"dup-sur"]) == 1
    [refused] = catalogue_run.dead[b"dup-sur"]
    assert refused.value == DUPLICATE_SUR
    assert "uplicate" in refused.reason


def test_the_gateway_keeps_delivering_and_exits_cleanly(catalogue_run: Run) -> None:
    run = catalogue_run
    assert len(run.results[b"warm"]) == WARM_UP
    assert len(run.results[b"last"]) == 1
    assert run.exit_code == 0, run.log[-3000:]
    assert "egress_ingest_failed" not in run.log  # no case reached the internal-error path


def test_memory_stays_bounded(catalogue_run: Run) -> None:
    growth = catalogue_run.rss_after - catalogue_run.rss_before
    print(f"gateway RSS {catalogue_run.rss_before >> 20} MiB -> {catalogue_run.rss_after >> 20}")
    assert growth < RSS_GROWTH_MAX


# -- secrets ---------------------------------------------------------------------------------


def _secret_values(dev_pki: Path, pfx_password: str) -> dict[str, str]:
    """What must never be shown, by where it comes from: every API key, every line of every
    private key (PEM files and the keys inside the PFX files), pieces of every PFX file, the
    PFX password, and the marker in message bodies."""
    out = {"pfx password": pfx_password, "message body": BODY_MARKER}
    for path in sorted(dev_pki.rglob("*.api-key*")):
        out[str(path.relative_to(dev_pki))] = path.read_text().strip()
    keys = {str(p.relative_to(dev_pki)): p.read_bytes() for p in dev_pki.rglob("*.key")}
    for path in sorted(dev_pki.rglob("*.pfx")):
        name = str(path.relative_to(dev_pki))
        data = base64.b64encode(path.read_bytes()).decode()
        for start in range(64, len(data) - 48, len(data) // 8):
            out[f"{name} content at {start}"] = data[start : start + 48]
        key = load_pfx(path).private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        keys[f"{name} key"] = key
    for name, pem in keys.items():
        lines = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
        for number, line in enumerate(lines):
            if len(line) >= 40:
                out[f"{name} line {number}"] = line
    return out


def _output(run: Run) -> dict[str, str]:
    """Everything the run showed: log, metrics, dead-letter headers, webhook answers."""
    headers = "\n".join(
        f"{name}: {value.decode('latin-1')}"
        for letters in run.dead.values()
        for letter in letters
        for name, value in letter.headers.items()
    )
    answers = "\n".join(
        f"{name}: {answer.status_code} {dict(answer.headers)} {answer.text}"
        for name, answer in run.answers.items()
    )
    return {
        "log": run.log,
        "metrics": run.metrics,
        "dead-letter headers": headers,
        "webhook answers": answers,
    }


def test_the_run_really_had_secrets_to_leak(catalogue_run: Run, dev_pki: Path) -> None:
    """The scan below is not vacuous: secrets were in use, bodies carried the marker, the log
    holds the webhook's refusals."""
    run = catalogue_run
    assert run.answers["good"].status_code == 201
    assert run.answers["secret-headers"].status_code == 201
    assert run.answers["tampered"].status_code == 401
    assert run.answers["malformed"].status_code == 400
    assert any(BODY_MARKER.encode() in (o.value or b"") for d in run.dead.values() for o in d)
    assert "ingress_rejected" in run.log and "egress_started" in run.log
    assert "dcpgw_egress" in run.metrics
    assert len(_secret_values(dev_pki, run.pfx_password)) > 100


def test_no_secret_or_message_body_shows_in_any_output(catalogue_run: Run, dev_pki: Path) -> None:
    secret_values = _secret_values(dev_pki, catalogue_run.pfx_password)
    leaks = [
        f"{what} in {where}"
        for where, text in _output(catalogue_run).items()
        for what, value in secret_values.items()
        if value in text
    ]
    assert leaks == []
