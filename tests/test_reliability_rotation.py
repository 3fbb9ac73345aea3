"""Rotation under traffic (issue 20): a client's signing certificate (its PFX file) and its API
keys are replaced while messages flow (produced before, during and after) through a gateway
running as its own process, against the DIP simulator, which accepts the old and the new
certificate during the rotation as the DIP does. No message may fail or be lost. The new
certificate expires in 29 days: the expiry gauge the gateway exports for it makes the 30-day
alert rule fire (checked with promtool)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families

from dipsim.server import Simulator
from gateway.kafka.clients import create_producer
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.signing.pki import (
    DevPkiOptions,
    Issued,
    Purpose,
    cert_pem,
    create_dev_pki,
    issue,
    pfx_bytes,
)
from gateway.signing.trust import fingerprint_sha256
from tests.dipsim_fixtures import DevPki, dcp_http_client
from tests.gateway_process import GatewayProcess
from tests.kafka_fixtures import KafkaUnderTest
from tests.promtool_fixtures import run_promtool
from tests.sim_checks import until_stored
from tests.test_egress_e2e import _collect, _gateway_config, _payload, _simulator, _sur

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "monitoring" / "rules.yaml"
PER_ROUND = 10
ROUND_SECONDS = 0.15
ROUNDS_AFTER = 10
"""Rounds produced after the rotation is complete (before it, as many as it takes)."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("rotation-pki")
    create_dev_pki(folder, DevPkiOptions(clients=2, bits=2048))
    yield folder


def _replace_file(path: Path, data: bytes) -> None:
    """As Kubernetes swaps a mounted secret: a new file renamed over the old, never half-written."""
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(data)
    os.replace(staged, path)


def _dev_ca(pki: Path) -> Issued:
    manifest = orjson.loads((pki / "dev-pki.json").read_bytes())
    cert = x509.load_pem_x509_certificate((pki / manifest["ca"]["cert"]).read_bytes())
    key = serialization.load_pem_private_key((pki / manifest["ca"]["key"]).read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Issued(key, cert)


async def _sim_rotate(sim: Simulator, pki: Path, dip_id: str, **body: list[str]) -> None:
    """What the DIP accepts ``dip_id`` with from now on, through the simulator's control API."""
    dev = DevPki(pki, orjson.loads((pki / "dev-pki.json").read_bytes()))
    async with dcp_http_client(dev, sim.base_url) as http:
        answer = await http.put(f"/_sim/senders/{dip_id}", json=body)
    assert answer.status_code == 200, answer.text


async def _until(gateway: GatewayProcess, metric: str, at_least: float) -> None:
    async with asyncio.timeout(60):
        while await gateway.metric(metric) < at_least:  # noqa: ASYNC110 (polls a process)
            await asyncio.sleep(0.1)


async def test_certificate_and_api_key_rotation_under_traffic_loses_nothing(
    pki: Path, tmp_path: Path, kafka: KafkaUnderTest
) -> None:
    manifest = orjson.loads((pki / "dev-pki.json").read_bytes())
    client = manifest["clients"][0]
    dip_id = client["dip_ids"][0]["dip_id"]
    pfx_path = pki / client["signing_pfx"]
    primary = pki / client["dip_ids"][0]["api_key_file"]
    secondary = pki / client["dip_ids"][0]["secondary_api_key_file"]
    old_cert = x509.load_pem_x509_certificate((pki / client["signing_cert"]).read_bytes())
    key_2 = secondary.read_text().strip()
    key_3 = secrets.token_urlsafe(32)
    new = issue(_dev_ca(pki), f"{client['name']} rotated", Purpose.SIGNING, bits=2048, days=29)

    async with _simulator(pki) as sim:
        config = _gateway_config(pki, kafka, sim, max_batch_messages=20, linger_ms=20)
        fast_reload = config.ops.model_copy(update={"reload_interval_seconds": 0.2})
        config = config.model_copy(update={"ops": fast_reload})
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        sent: list[dict[str, Any]] = []
        rotated = asyncio.Event()
        gateway = GatewayProcess(config, tmp_path, "gateway")
        try:
            await gateway.start()

            async def produce() -> None:
                """A round every ROUND_SECONDS until ROUNDS_AFTER rounds after the rotation."""
                producer = create_producer(config.kafka)
                await producer.start()
                try:
                    after = 0
                    while after < ROUNDS_AFTER:
                        after += rotated.is_set()
                        start = len(sent)
                        sent.extend(_payload(1 + i % 2, i) for i in range(start, start + PER_ROUND))
                        acks = [
                            await producer.send(topic, orjson.dumps(p), key=f"m{start}".encode())
                            for p in sent[start:]
                        ]
                        await asyncio.gather(*acks)
                        await asyncio.sleep(ROUND_SECONDS)
                finally:
                    await producer.stop()

            producing = asyncio.create_task(produce())
            await asyncio.sleep(1.0)
            # The certificate: registered beside the old one, the PFX swapped, the old retired
            # once the gateway signs with the new one.
            old_pem, new_pem = cert_pem(old_cert).decode(), cert_pem(new.cert).decode()
            await _sim_rotate(sim, pki, dip_id, certificates=[old_pem, new_pem])
            _replace_file(pfx_path, pfx_bytes(new.key, new.cert))
            await _until(gateway, "dcpgw_credential_reloads", 1)
            await asyncio.sleep(0.5)  # requests signed just before the swap reach the DIP
            await _sim_rotate(sim, pki, dip_id, certificates=[new_pem])
            # The API key: the DIP revokes the primary (the gateway falls back to the
            # secondary), then the operator moves the secondary to primary, with a fresh
            # secondary registered first.
            await _sim_rotate(sim, pki, dip_id, api_keys=[key_2])
            await _until(gateway, "dcpgw_egress_api_key_fallbacks", 1)
            await _sim_rotate(sim, pki, dip_id, api_keys=[key_2, key_3])
            _replace_file(secondary, key_3.encode())
            _replace_file(primary, key_2.encode())
            await _until(gateway, "dcpgw_credential_reloads", 2)
            rotated.set()
            await producing
            references = {_sur(p) for p in sent}
            await until_stored(sim, references, running=[gateway])
            outcomes = await _collect(config, len(sent))
            fallbacks = await gateway.metric("dcpgw_egress_api_key_fallbacks")
            failed_reloads = await _reload_failures(gateway)
            expiry = await _expiry_series(gateway)
            assert await gateway.terminate() == 0
        finally:
            gateway.ensure_stopped()
        signers = Counter(m.signer_fingerprint for m in sim.state.messages if m.sender == dip_id)

    assert set(outcomes.result_refs()) == references
    assert not outcomes.dead
    assert sim.state.stats()["rejectedMessages"] == {}
    assert set(signers) == {fingerprint_sha256(old_cert), fingerprint_sha256(new.cert)}
    assert fallbacks >= 1 and failed_reloads == 0
    # The gauge follows the certificate in use: the new serial, 29 days out; the old is gone.
    mine = {
        labels["serial"]: value for labels, value in expiry if labels["client"] == client["name"]
    }
    assert mine == {format(new.cert.serial_number, "x"): new.cert.not_valid_after_utc.timestamp()}
    _assert_only_the_rotated_certificate_alerts(expiry, client["name"], tmp_path)


async def _reload_failures(gateway: GatewayProcess) -> float:
    text = await gateway.scrape()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "dcpgw_credential_reloads"
        for s in f.samples
        if s.name.endswith("_total") and s.labels.get("outcome") == "failed"
    )


async def _expiry_series(gateway: GatewayProcess) -> list[tuple[dict[str, str], float]]:
    text = await gateway.scrape()
    return [
        (dict(s.labels), s.value)
        for f in text_string_to_metric_families(text)
        if f.name == "dcpgw_certificate_expiry_timestamp_seconds"
        for s in f.samples
    ]


def _assert_only_the_rotated_certificate_alerts(
    expiry: list[tuple[dict[str, str], float]], client: str, folder: Path
) -> None:
    """The scraped gauge, replayed through the real rules by promtool: evaluation starts at
    Unix time 0, so each series is shifted to "seconds from now". Only the 29-day certificate
    fires the 30-day alert; nothing fires the 7-day one."""
    now = datetime.now(UTC).timestamp()
    series = [
        {
            "series": "dcpgw_certificate_expiry_timestamp_seconds{"
            + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            + "}",
            "values": f"{round(value - now)}x90",
        }
        for labels, value in expiry
    ]
    rotated = [labels for labels, _ in expiry if labels["client"] == client]
    expected = [
        {
            "exp_labels": {
                "severity": "warning",
                **{k: labels[k] for k in ("client", "kind", "serial")},
            },
            "exp_annotations": {
                "summary": f"signing certificate of {client} expires within 30 days",
                "runbook_url": "docs/operations.md#dcpgatewaycertificateexpiressoon",
            },
        }
        for labels in rotated
    ]
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "alertname": "DcpGatewayCertificateExpiresSoon",
                        "eval_time": "70m",
                        "exp_alerts": expected,
                    },
                    {
                        "alertname": "DcpGatewayCertificateExpiresVerySoon",
                        "eval_time": "70m",
                        "exp_alerts": [],
                    },
                ],
            }
        ],
    }
    assert len(expected) == 1
    path = folder / "expiry.test.yaml"
    path.write_text(yaml.safe_dump(tests))
    assert "SUCCESS" in run_promtool("test", "rules", str(path))
