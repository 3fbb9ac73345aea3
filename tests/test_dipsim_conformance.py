# ruff: noqa: F811  (pytest fixtures imported from tests.dipsim_fixtures)
"""The simulator follows the published DIP document: one regression test per class of defect
the schemathesis run found (5xx on malformed input, half-stored state, undocumented statuses,
responses outside their schemas, unvalidated status messages, an envelope check that assumed
A0 and M0 on every interface)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from dipsim import Simulator, SimulatorConfig, run_simulator
from dipsim import document as dip_document
from dipsim.envelope import MPAN_BLOCK
from dipsim.samples import sample_message
from gateway.schema import default_registry
from tests import dip_payloads
from tests.dipsim_fixtures import (  # noqa: F401
    DevPki,
    dcp_http_client,
    dev_pki,
    dev_pki_manifest,
    pki,
    simulator,
)
from tests.test_dipsim_publications import call

DOCUMENT = Path(__file__).parent.parent / "gateway" / "data" / "dip-openapi-2.2.1.json"


def conforms(component: str, data: Any) -> list[str]:
    return dip_document.problems(component, data)


@pytest_asyncio.fixture
async def validating_simulator(dev_pki: Path) -> AsyncIterator[Simulator]:
    async with run_simulator(
        SimulatorConfig.from_dev_pki(dev_pki, seed=1, schema_validation=True)
    ) as sim:
        yield sim


# -- the envelope check follows each interface's schema --------------------------------------


def _resolve(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _variants(schemas: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schemas, schema)
    if "oneOf" in schema:
        return [v for option in schema["oneOf"] for v in _variants(schemas, option)]
    return [schema]


def test_mpan_block_table_is_the_documents() -> None:
    """Every interface of DT-000 and the MPAN block each of its payload schemas requires."""
    doc = orjson.loads(DOCUMENT.read_bytes())
    schemas = doc["components"]["schemas"]
    found: dict[str, str | None] = {}
    for interface in schemas["DT-000-InterfaceID"]["enum"]:
        blocks = set()
        for variant in _variants(schemas, schemas[f"{interface}-Payload"]):
            common = _resolve(schemas, variant["properties"]["CommonBlock"])
            required = {"M0", "M1"} & set(common["required"])
            assert "A0" not in common["required"]
            blocks.add(required.pop() if required else None)
        assert len(blocks) == 1, interface
        found[interface] = blocks.pop()
    assert found == MPAN_BLOCK


@pytest.mark.parametrize("interface", dip_payloads.INTERFACES)
async def test_document_valid_message_is_accepted_with_schema_validation(
    validating_simulator: Simulator, pki: DevPki, interface: str
) -> None:
    """IF-019/020 (M1), IF-022/023/047 and REP-* (no MPAN block), without A0: accepted."""
    payload = dip_payloads.payload(interface, pki.dip_id(0))
    assert default_registry().validate(payload) == []
    r = await call(
        validating_simulator, pki, "POST", f"/dip-channel/{interface}", 0, [{"payload": payload}]
    )
    assert r.status_code == 201, r.text
    assert conforms("StandardResponse", r.json()) == []
    [stored] = validating_simulator.state.messages
    assert stored.interface == interface and stored.recipients == ()
    expected = dip_payloads.PRINCIPAL_MPAN if interface in dip_payloads.M1_INTERFACES else None
    assert stored.mpan == expected


async def test_mpan_block_where_the_schema_has_none_is_refused(
    simulator: Simulator, pki: DevPki
) -> None:
    item = sample_message("IF-043", sender=pki.dip_id(0))
    item["payload"]["CommonBlock"]["S0"]["interfaceID"] = "IF-022"
    r = await call(simulator, pki, "POST", "/dip-channel/IF-022", 0, [item])
    assert r.status_code == 400
    [entry] = r.json()["messageArray"]
    assert entry["message"] == "MSG1001 - Schema Failure" and "IF-022 has no M0" in entry["help"]
    assert simulator.state.count() == 0


# -- malformed input: a documented 4xx, never a 5xx, nothing half stored -------------------------


@pytest.mark.parametrize(
    "spoil",
    [
        lambda c: c["M0"].update(GSPGroupID=["_A"]),
        lambda c: c["M0"].update(GSPGroupID={"a": 1}),
        lambda c: c["S1"].update(senderDIPID=["1400010001"]),
        lambda c: c.update(A0=[]),
    ],
    ids=["gsp-array", "gsp-object", "sender-array", "a0-array"],
)
async def test_malformed_envelope_values_are_400(
    simulator: Simulator, pki: DevPki, spoil: Any
) -> None:
    item = sample_message("IF-043", sender=pki.dip_id(0))
    spoil(item["payload"]["CommonBlock"])
    r = await call(simulator, pki, "POST", "/dip-channel/IF-043", 0, [item])
    assert r.status_code == 400, r.text
    assert conforms("StandardResponse", r.json()) == []
    assert simulator.state.count() == 0


async def test_rejected_messages_echo_only_conforming_values(
    simulator: Simulator, pki: DevPki
) -> None:
    """A 400's entries must fit StandardResponseBodyType: malformed values become null."""
    item = sample_message("IF-043", sender=pki.dip_id(0))
    s1 = item["payload"]["CommonBlock"]["S1"]
    s1.update(senderUniqueReference="not-a-reference", senderCorrelationID="")
    s1.update(DIPConnectionProviderID="1")
    r = await call(simulator, pki, "POST", "/dip-channel/IF-043", 0, [item])
    assert r.status_code == 400
    assert conforms("StandardResponse", r.json()) == []
    [entry] = r.json()["messageArray"]
    assert entry["senderUniqueReference"] is None and entry["correlationID"] is None
    assert entry["DIPConnectionProviderID"] is None and "senderUniqueReference" in entry["help"]


async def test_webhook_config_with_a_huge_count_is_stored_within_bounds(
    simulator: Simulator, pki: DevPki
) -> None:
    rid = pki.dip_id(1)
    path = f"/dip-channel/IF-043/pubconfig/{rid}"
    body = b'{"callbackURL": "https://127.0.0.1:9/hook", "maxMessageCount": 1e300}'
    r = await call(simulator, pki, "POST", path, 1, body)
    assert r.status_code == 201, r.text
    hook = simulator.state.webhooks[("IF-043", rid)]
    assert hook.max_message_count == simulator.config.max_messages_per_request
    async with dcp_http_client(pki, simulator.base_url) as http:
        listing = await http.get("/_sim/webhooks")
    assert listing.status_code == 200 and listing.json()[0]["maxMessageCount"] == 1000


@pytest.mark.parametrize(
    "config",
    [
        {"callbackURL": ["https://x"]},
        {"callbackURL": "https://127.0.0.1:9/hook", "maxMessageCount": "many"},
        {"callbackURL": "https://127.0.0.1:9/hook", "maxPayloadSize": {"kb": 1}},
    ],
)
async def test_malformed_webhook_config_is_400_and_stores_nothing(
    simulator: Simulator, pki: DevPki, config: dict[str, Any]
) -> None:
    rid = pki.dip_id(1)
    r = await call(simulator, pki, "POST", f"/statusmessage/config/{rid}", 1, config)
    assert r.status_code == 400 and "WebhookConfig" in r.json()["messageArray"][0]["help"]
    assert simulator.state.webhooks == {}


@pytest.mark.parametrize("operation", ["replay", "requeue"])
async def test_replay_and_requeue_with_object_transaction_ids_are_400(
    simulator: Simulator, pki: DevPki, operation: str
) -> None:
    rid = pki.dip_id(1)
    await call(
        simulator,
        pki,
        "POST",
        f"/dip-channel/IF-043/pubconfig/{rid}",
        1,
        {"callbackURL": "https://127.0.0.1:9/hook"},
    )
    query = {
        "datetimeFrom": None,
        "datetimeTo": None,
        "eventCode": None,
        "MPAN": None,
        "version": None,
        "transactionIDs": [{"id": 1}, ["x"]],
    }
    r = await call(simulator, pki, "POST", f"/dip-channel/IF-043/{operation}/{rid}", 1, query)
    assert r.status_code == 400, r.text
    assert "transactionIDs[0]" in r.json()["messageArray"][0]["help"]
    assert simulator.state.requeues == {}


async def test_bad_query_and_path_values_are_400(simulator: Simulator, pki: DevPki) -> None:
    rid = pki.dip_id(1)
    r = await call(simulator, pki, "GET", f"/statusmessage/requeueStatus/{rid}?requeue-id=", 1)
    assert r.status_code == 400
    r = await call(simulator, pki, "GET", f"/dip-channel/IF-043/deliveryStatus/{rid}/nope", 1)
    assert r.status_code == 400
    r = await call(simulator, pki, "POST", f"/dip-channel/IF-999/replay/{rid}", 1, {})
    assert r.status_code == 400 and "not a DIP interface" in r.json()["messageArray"][0]["help"]


# -- only documented statuses ---------------------------------------------------------------


async def test_deleting_a_webhook_answers_only_204_or_401(
    simulator: Simulator, pki: DevPki
) -> None:
    rid = pki.dip_id(1)
    r = await call(simulator, pki, "DELETE", f"/dip-channel/IF-043/pubconfig/{rid}", 1)
    assert r.status_code == 204  # nothing was configured: still 204
    r = await call(simulator, pki, "DELETE", f"/statusmessage/config/{rid}", 0)
    assert r.status_code == 401  # another DIP ID's API key: 401, the only refusal documented
    r = await call(simulator, pki, "DELETE", f"/dip-channel/IF-999/pubconfig/{rid}", 1)
    assert r.status_code == 401


def _status_item(pki: DevPki, **changes: Any) -> dict[str, Any]:
    return {
        "transactionID": "T-1",
        "senderUniqueReference": f"S-IF-043-{pki.dip_id(0)}-SUP-20260301-a1",
        "correlationID": None,
        "sentTimestamp": "2026-03-01T09:30:00+00:00",
        "senderID": pki.dip_id(0),
        "recipientID": pki.dip_id(1),
        "DIPConnectionProviderID": None,
        "message": "MSG0000 - Success",
        "help": None,
        "serviceTicketURL": None,
        **changes,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"transactionID": "T" * 66},
        {"senderUniqueReference": "S-nonsense"},
        {"correlationID": ""},
        {"recipientID": None},
        {"recipientID": ["1400020001"]},
    ],
    ids=["long-txid", "bad-sur", "empty-correlation", "no-recipient", "recipient-array"],
)
async def test_status_messages_are_validated_all_or_nothing(
    simulator: Simulator, pki: DevPki, bad: dict[str, Any]
) -> None:
    """One non-conforming item: 400 (no 207, which the document does not give this endpoint),
    an entry per item, nothing stored or published, nothing malformed echoed."""
    items = [_status_item(pki), _status_item(pki, **bad)]
    r = await call(simulator, pki, "POST", "/statusmessage", 0, items)
    assert r.status_code == 400, r.text
    assert conforms("StandardResponse", r.json()) == []
    good, bad = r.json()["messageArray"]
    assert bad["help"].startswith("$[1]") and "refused whole, [1] failed" in good["help"]
    assert good["message"] == bad["message"] == "MSG1001 - Schema Failure"
    assert simulator.state.status_messages == [] and simulator.state.publication_count == 0


async def test_conforming_status_messages_are_201(simulator: Simulator, pki: DevPki) -> None:
    r = await call(simulator, pki, "POST", "/statusmessage", 0, [_status_item(pki)])
    assert r.status_code == 201, r.text
    assert conforms("StandardResponse", r.json()) == []
    assert len(simulator.state.status_messages) == 1


async def test_replay_with_nothing_to_return_is_an_empty_200(
    simulator: Simulator, pki: DevPki
) -> None:
    """The documented deviation (dipsim/README.md): the document's arrays need an item."""
    rid = pki.dip_id(1)
    query = {"datetimeFrom": "2000-01-01T00:00:00+00:00", "datetimeTo": "2000-01-02T00:00:00+00:00"}
    r = await call(simulator, pki, "POST", f"/statusmessage/replay/{rid}", 1, query)
    assert r.status_code == 200 and r.json() == []
