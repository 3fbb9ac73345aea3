"""DIP admin calls: pure request building (desired webhooks, sync plan, request bodies), and
the calls themselves against the simulator, and against a misbehaving DIP (answers that are not
JSON, a continuation token given twice) over real mTLS."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from dipsim import Simulator
from dipsim.samples import sample_payload
from gateway.config import GatewayConfig, load_config, parse_config
from gateway.dip import DipClient
from gateway.dip.admin import (
    AdminError,
    WebhookTarget,
    channel_path,
    delivery_status,
    desired_webhooks,
    message_request,
    plan_sync,
    read_state,
    replay_pages,
    requeue,
    requeue_status,
    status_message_request,
    webhook_body,
    write_state,
)
from gateway.keys import build_keystore, load_dcp_credential
from tests.dipsim_fixtures import DevPki


def _config(publications: list[str]) -> GatewayConfig:
    return parse_config(
        {
            "environment": "DEV",
            "dip": {"base_url": "https://dip.example"},
            "dcp": {"dcp_id": "9000000001"},
            "trust": {"pinned_sha256": ["ab" * 32]},
            "ingress": {"public_base_url": "https://gw.example/", "max_body_bytes": 2_048_000},
            "clients": [
                {
                    "name": "one",
                    "signing_pfx": "x.pfx",
                    "topics": {"inbound": "i", "results": "r", "dead_letter": "d"},
                    "dip_ids": [
                        {
                            "dip_id": "1400010001",
                            "role": "SUP",
                            "mpid": "ABCD",
                            "api_key_file": "k",
                            "publications": publications,
                        }
                    ],
                }
            ],
        },
        base_dir=Path("/"),
        check_files=False,
    )


def test_desired_webhooks_cover_each_interface_and_the_status_channel() -> None:
    targets = desired_webhooks(_config(["IF-043", "IF-021"]))
    assert [(t.channel, t.path) for t in targets] == [
        ("IF-021", "/dip-channel/IF-021/pubconfig/1400010001"),
        ("IF-043", "/dip-channel/IF-043/pubconfig/1400010001"),
        ("status", "/statusmessage/config/1400010001"),
    ]
    assert targets[1].callback_url == "https://gw.example/dip/publications/IF-043/1400010001"
    assert targets[2].callback_url == "https://gw.example/dip/status/1400010001"


def test_webhook_body_announces_the_size_the_webhook_accepts() -> None:
    config = _config(["IF-043"])
    body = orjson.loads(webhook_body(config, desired_webhooks(config)[0]))
    assert body == {
        "callbackURL": "https://gw.example/dip/publications/IF-043/1400010001",
        "maxPayloadSize": 2000,
    }


def test_plan_registers_everything_and_removes_only_recorded_leftovers() -> None:
    desired = desired_webhooks(_config(["IF-043"]))
    old = WebhookTarget("IF-021", "1400010001", "https://gw.example/x")
    gone = WebhookTarget("IF-021", "1499999999", "https://gw.example/y")
    plan = plan_sync(desired, [*desired, old, gone], ["1400010001"])
    assert plan.register == tuple(desired)
    assert plan.remove == (old,)
    assert plan.unremovable == (gone,)
    assert any(line.startswith("skip") for line in plan.lines())
    assert plan_sync(desired, desired, ["1400010001"]).remove == ()


def test_state_file_round_trip(tmp_path: Path) -> None:
    targets = desired_webhooks(_config(["IF-043"]))
    path = tmp_path / "state.json"
    assert read_state(path) == []
    write_state(path, targets)
    assert read_state(path) == targets


def test_message_requests_use_25_character_dip_times() -> None:
    start = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    body = orjson.loads(message_request(start, start, mpan="2000056535972"))
    assert body == {
        "datetimeFrom": "2026-11-01T09:30:00+00:00",
        "datetimeTo": "2026-11-01T09:30:00+00:00",
        "eventCode": None,
        "MPAN": "2000056535972",
        "version": None,
    }
    status = orjson.loads(status_message_request(start, start, transaction_id="T-1"))
    assert status["transactionID"] == "T-1"


def test_channel_paths() -> None:
    assert channel_path("replay", "1400010001", "IF-043") == "/dip-channel/IF-043/replay/1400010001"
    assert channel_path("requeue", "1400010001", None) == "/statusmessage/requeue/1400010001"


# -- the calls, over the shared DIP connection ---------------------------------------------------


def _window() -> bytes:
    now = datetime.now(UTC)
    return message_request(now - timedelta(minutes=5), now + timedelta(minutes=5))


async def _with_dip(
    dev_pki: Path, base_url: str, call: Callable[[DipClient], Awaitable[Any]]
) -> Any:
    config = load_config(dev_pki / "gateway.yaml", {"DCP_GATEWAY__DIP__BASE_URL": base_url})
    credential = load_dcp_credential(config.dcp)
    async with DipClient.over_mtls(config.dip, credential, build_keystore(config)) as dip:
        return await call(dip)


async def _collect(dip: DipClient, dip_id: str, interface: str | None = "IF-043") -> list[Any]:
    return [page async for page in replay_pages(dip, dip_id, interface, _window())]


async def test_replay_follows_the_simulator_pages_to_the_end(
    dev_pki: Path, pki: DevPki, simulator: Simulator
) -> None:
    simulator.config.replay_page_size = 2
    recipient = pki.dip_id(0)
    simulator.publish(
        "IF-043", recipient, [sample_payload("IF-043", recipient, seq=i) for i in range(5)]
    )
    pages = await _with_dip(dev_pki, simulator.base_url, lambda dip: _collect(dip, recipient))
    assert [len(p) for p in pages] == [2, 2, 1]


async def test_a_dip_error_names_the_call_and_the_status(
    dev_pki: Path, pki: DevPki, simulator: Simulator
) -> None:
    simulator.set_faults(rate_503=1.0)
    recipient = pki.dip_id(0)
    with pytest.raises(AdminError) as info:
        await _with_dip(dev_pki, simulator.base_url, lambda dip: _collect(dip, recipient))
    assert str(info.value).startswith(
        f"replay IF-043 for {recipient} (POST /dip-channel/IF-043/replay/{recipient}): "
        "DIP answered 503"
    )


@dataclass
class BadDip:
    """An HTTPS "DIP" (the dev PKI's DIP server certificate) whose answers a test scripts:
    ``answers[path]`` is the list of (status, headers, body) given to successive calls."""

    answers: dict[str, list[tuple[int, dict[str, str], bytes]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(request.path)
        queue = self.answers.get(request.path)
        if not queue:
            return web.Response(status=404)
        status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.Response(status=status, headers=headers, body=body)


@pytest_asyncio.fixture
async def bad_dip(pki: DevPki) -> AsyncIterator[BadDip]:
    dip = BadDip()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dip.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server = pki.manifest["dip_server"]
    context.load_cert_chain(str(pki.root / server["cert"]), str(pki.root / server["key"]))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    dip.base_url = f"https://127.0.0.1:{port}"
    try:
        yield dip
    finally:
        await runner.cleanup()


_PAGE = orjson.dumps([{"payload": {}}])


async def test_replay_stops_when_the_dip_repeats_a_continuation_token(
    dev_pki: Path, pki: DevPki, bad_dip: BadDip
) -> None:
    recipient = pki.dip_id(0)
    path = f"/dip-channel/IF-043/replay/{recipient}"
    bad_dip.answers[path] = [
        (206, {"X-Continuation-Token": "t-1"}, _PAGE),
        (206, {"X-Continuation-Token": "t-2"}, _PAGE),
        (206, {"X-Continuation-Token": "t-1"}, _PAGE),  # back to the first: a loop
    ]
    pages: list[list[Any]] = []

    async def replay(dip: DipClient) -> None:
        async for page in replay_pages(dip, recipient, "IF-043", _window()):
            pages.append(page)

    with pytest.raises(AdminError) as info:
        await _with_dip(dev_pki, bad_dip.base_url, replay)
    assert f"(POST {path}): DIP returned X-Continuation-Token 't-1' again after page 3" in str(
        info.value
    )
    assert len(pages) == 3
    assert bad_dip.calls == [path] * 3


async def test_replay_206_without_a_token_is_an_incomplete_replay(
    dev_pki: Path, pki: DevPki, bad_dip: BadDip
) -> None:
    recipient = pki.dip_id(0)
    path = f"/dip-channel/IF-043/replay/{recipient}"
    bad_dip.answers[path] = [(206, {}, _PAGE)]
    with pytest.raises(AdminError, match=r"206 .* without X-Continuation-Token: the replay is"):
        await _with_dip(dev_pki, bad_dip.base_url, lambda dip: _collect(dip, recipient))
    assert bad_dip.calls == [path]


_HTML = b"<html><body>Gateway maintenance</body></html>"


async def test_answers_that_are_not_json_name_the_call_and_the_status(
    dev_pki: Path, pki: DevPki, bad_dip: BadDip
) -> None:
    rid = pki.dip_id(0)
    bad_dip.answers = {
        f"/dip-channel/IF-043/replay/{rid}": [(200, {}, _HTML)],
        f"/statusmessage/requeue/{rid}": [(202, {}, _HTML)],
        f"/dip-channel/IF-043/requeueStatus/{rid}": [(200, {}, b"{not json")],
        f"/dip-channel/IF-043/deliveryStatus/{rid}/M-1": [(200, {}, b"\xff\xfe")],
    }
    calls: list[tuple[str, Callable[[DipClient], Awaitable[Any]]]] = [
        (
            f"replay IF-043 for {rid} (POST /dip-channel/IF-043/replay/{rid})",
            lambda d: _collect(d, rid),
        ),
        (
            f"requeue status for {rid} (POST /statusmessage/requeue/{rid})",
            lambda d: requeue(d, rid, None, _window()),
        ),
        (
            f"requeueStatus IF-043 for {rid} (GET /dip-channel/IF-043/requeueStatus/{rid})",
            lambda d: requeue_status(d, rid, "IF-043", None),
        ),
        (
            f"deliveryStatus M-1 (GET /dip-channel/IF-043/deliveryStatus/{rid}/M-1)",
            lambda d: delivery_status(d, rid, "IF-043", "M-1"),
        ),
    ]
    messages = []
    for what, call in calls:
        with pytest.raises(AdminError) as info:
            await _with_dip(dev_pki, bad_dip.base_url, call)
        message = str(info.value)
        assert message.startswith(f"{what}: DIP answered 20"), message
        assert "with a body that is not JSON" in message
        messages.append(message)
    assert messages[0].endswith(
        "DIP answered 200 with a body that is not JSON: " + repr(_HTML.decode())
    )
    assert "DIP answered 202" in messages[1]
