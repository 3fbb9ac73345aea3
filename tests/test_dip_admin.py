"""Pure request building of the DIP admin calls: desired webhooks, sync plan, request bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from gateway.config import GatewayConfig, parse_config
from gateway.dip.admin import (
    WebhookTarget,
    channel_path,
    desired_webhooks,
    message_request,
    plan_sync,
    read_state,
    status_message_request,
    webhook_body,
    write_state,
)


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
