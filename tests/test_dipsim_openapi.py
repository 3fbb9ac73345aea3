"""The simulator against the published DIP OpenAPI 2.2.1 document, with schemathesis.

Every request is signed per the DIP scheme (``X-DIP-*`` over the exact bytes sent) with the
key of the DIP ID it is sent for, carries that DIP ID's API key, and goes over mTLS with the
DCP's certificate. Positive and negative cases (``mode = all``) for submit, status messages,
webhook configuration, replay, requeue, requeue status and delivery status; the checks are
schemathesis's own: no 5xx, documented status codes, responses that conform to their schemas,
and invalid requests refused.

The document under test is the published one with these test-side changes, none of which
widens what the simulator must accept:
- the ``/validate/...`` paths are left out (not part of this run);
- the four ``X-DIP-*`` signature headers are not generated: the signing hook sets them, as
  the API key of the security scheme (their values are only meaningful when computed);
- the DIP IDs a request acts for (``recipient-id``, ``S1.senderDIPID``, a status message's
  ``senderID`` and ``recipientID``) are narrowed to the DIP IDs the simulator has registered
  (one sender per submit), and the envelope blocks' timestamps and DIP IDs (S1, A0, M0, M1)
  to the forms the envelope check requires (the document gives only their length), so that
  positive cases get past authentication and the envelope rules and reach the rest; a
  positive submit is sent on the channel its first payload names (the DIP refuses a payload
  of another interface than the channel);
- the simulator's two deliberate deviations, where the document has no conforming answer
  (see ``dipsim/README.md``): replay's 200 may be an empty array (nothing to return), and a
  delivery journal's ``MPANCore`` may be null (a message of an interface without MPAN).

CI runs a short, seeded run. For a longer local run with a random seed::

    DIPSIM_OPENAPI_EXAMPLES=100 DIPSIM_OPENAPI_SEED=$RANDOM \\
        .venv/bin/python -m pytest -m openapi tests/test_dipsim_openapi.py
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import requests
import schemathesis
from schemathesis.config import SchemathesisConfig

from dipsim.envelope import MPAN_BLOCK
from dipsim.process import start_in_subprocess
from tests.dipsim_fixtures import DevPki

pytestmark = pytest.mark.openapi

DOCUMENT = Path(__file__).parent.parent / "gateway" / "data" / "dip-openapi-2.2.1.json"
_SIGNATURE_HEADERS = {
    "X-DIP-Signature",
    "X-DIP-Signature-Date",
    "X-DIP-Content-Hash",
    "X-DIP-Signature-Certificate",
}
#: The CI run: fixed seed, few examples per operation (well under a minute on two cores).
_DEFAULT_EXAMPLES = 12
_DEFAULT_SEED = 20261207
_DIGITS_10 = {"type": "string", "pattern": "^[0-9]{10}$"}
_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}$"


def _seed() -> int:
    value = os.environ.get("DIPSIM_OPENAPI_SEED", str(_DEFAULT_SEED))
    return int(value)


def document_under_test(dip_ids: list[str]) -> dict[str, Any]:
    """The published document with the test-side changes the module docstring lists."""
    doc: dict[str, Any] = orjson.loads(DOCUMENT.read_bytes())
    doc["paths"] = {p: item for p, item in doc["paths"].items() if not p.startswith("/validate")}
    schemas = doc["components"]["schemas"]
    params = doc["components"]["parameters"]
    registered = {"type": "string", "enum": dip_ids}
    params["MessageRecipientId"]["schema"] = registered
    # One sender per request (the DIP refuses mixed senders), always one that is registered;
    # and the forms the DIP's envelope rules require where the schema has only a length.
    s1 = schemas["S1"]["properties"]
    s1["senderDIPID"] = {"type": "string", "enum": dip_ids[:1]}
    s1["senderTimestamp"] = {"type": "string", "pattern": _TIMESTAMP}
    s1["DIPConnectionProviderID"] = {**_DIGITS_10, "nullable": True}
    for key in ("primaryRecipients", "secondaryRecipients", "always"):
        schemas["A0"]["properties"][key]["items"] = {**_DIGITS_10, "nullable": True}
    for block in ("M0", "M1"):
        schemas[block]["properties"]["distributorDIPID"] = _DIGITS_10
    # A request-only copy of the status message array whose sender and recipient are ours.
    item = copy.deepcopy(schemas["StandardResponseBodyType"])
    item["properties"]["senderID"] = registered
    item["properties"]["recipientID"] = registered
    schemas["TestStatusMessage"] = item
    schemas["TestStatusMessageArray"] = {
        **schemas["StandardResponseArray"],
        "items": {"$ref": "#/components/schemas/TestStatusMessage"},
    }
    body = doc["paths"]["/statusmessage"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"] = {"$ref": "#/components/schemas/TestStatusMessageArray"}
    for path, path_item in doc["paths"].items():
        for key, operation in list(path_item.items()):
            if key == "parameters":
                path_item[key] = _without_signature_headers(operation, params)
            elif isinstance(operation, dict) and "parameters" in operation:
                operation["parameters"] = _without_signature_headers(
                    operation["parameters"], params
                )
        if path.endswith("/deliveryStatus/{recipient-id}/{message-id}"):
            record = path_item["get"]["responses"]["200"]["content"]["application/json"]
            record["schema"] = copy.deepcopy(_resolve(doc, record["schema"]))
            record["schema"]["properties"]["MPANCore"] = {
                "$ref": "#/components/schemas/DT-002N-MPAN"
            }
        if "/replay/" in path:
            ok = path_item["post"]["responses"]["200"]["content"]["application/json"]
            ok["schema"] = {**_resolve(doc, ok["schema"]), "minItems": 0}
    return doc


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return dict(schema)


def _without_signature_headers(
    parameters: list[dict[str, Any]], defined: dict[str, Any]
) -> list[dict[str, Any]]:
    def name(p: dict[str, Any]) -> str:
        ref = p.get("$ref")
        return str(defined[ref.rsplit("/", 1)[1]]["name"] if ref else p["name"])

    return [p for p in parameters if name(p) not in _SIGNATURE_HEADERS]


class DipSigning(requests.auth.AuthBase):
    """Signs each prepared request (its exact body bytes and URL) as the DIP ID it acts for
    and adds that DIP ID's API key: the path's ``recipient-id``, else the body's sender,
    else the first registered DIP ID."""

    def __init__(self, pki: DevPki, clients: int) -> None:
        self._clients = {pki.dip_id(i): (pki.signer(i), pki.api_key(i)) for i in range(clients)}
        self._first = pki.dip_id(0)

    def _acting_for(self, path: str, body: bytes) -> str:
        for part in path.split("/"):
            if part in self._clients:
                return part
        try:
            first = orjson.loads(body)[0]
            if path == "/statusmessage":
                sender = first["senderID"]
            else:
                sender = first["payload"]["CommonBlock"]["S1"]["senderDIPID"]
        except (orjson.JSONDecodeError, LookupError, TypeError):
            return self._first
        return sender if isinstance(sender, str) and sender in self._clients else self._first

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert isinstance(body, bytes)
        assert request.url is not None and request.method is not None
        dip_id = self._acting_for(urlsplit(request.url).path, body)
        signer, api_key = self._clients[dip_id]
        request.headers.update(signer.sign(request.method, request.url, body, datetime.now(UTC)))
        request.headers["X-API-Key"] = api_key
        return request


@pytest.fixture(scope="module")
def simulator_process(dev_pki: Path) -> Iterator[str]:
    with start_in_subprocess(dev_pki, 0, extra_args=["--schema-validation"]) as sim:
        yield sim.base_url


@pytest.fixture(scope="module")
def dip_session(pki: DevPki) -> Iterator[requests.Session]:
    clients = len(pki.manifest["clients"])
    with requests.Session() as session:
        session.auth = DipSigning(pki, clients)
        yield session


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": _seed(),
            # Generating the 58-way payload ``oneOf`` is slow, slower still on a busy machine:
            # hypothesis's timing health checks would fail the run for the machine's load.
            "suppress-health-check": ["too_slow", "data_too_large", "large_base_example"],
            "generation": {
                "mode": "all",
                "max-examples": int(
                    os.environ.get("DIPSIM_OPENAPI_EXAMPLES", str(_DEFAULT_EXAMPLES))
                ),
                "with-security-parameters": False,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                "ignored_auth": {"enabled": False},
                "positive_data_acceptance": {"enabled": False},
            },
            "operations": [
                {
                    # The coverage phase enumerates boundary cases of the 58-way payload
                    # ``oneOf`` (gigabytes of memory), and the examples phase combines the
                    # document's property examples (a minute of collection). Fuzzing
                    # covers submit.
                    "include-path": "/dip-channel/{id}",
                    "include-method": "POST",
                    "phases": {"coverage": {"enabled": False}, "examples": {"enabled": False}},
                }
            ],
        }
    )


#: The dev PKI's DIP IDs (``tests.dipsim_fixtures.dev_pki`` makes three clients, one DIP ID
#: each, numbered 14<client:04d><dip:04d>); the test checks them against the fixture's.
DIP_IDS = ["1400010001", "1400020001", "1400030001"]
schema = schemathesis.openapi.from_dict(document_under_test(DIP_IDS), config=_config())


@schema.parametrize()
def test_simulator_follows_the_published_document(
    case: Any, pki: DevPki, dip_session: requests.Session, simulator_process: str
) -> None:
    assert [pki.dip_id(i) for i in range(len(DIP_IDS))] == DIP_IDS
    if case.operation.label == "POST /dip-channel/{id}":
        _send_on_the_payloads_channel(case)
    case.call_and_validate(
        session=dip_session,
        base_url=simulator_process,
        verify=str(pki.ca_cert),
        cert=(str(pki.dcp_cert), str(pki.dcp_key)),
    )


def _send_on_the_payloads_channel(case: Any) -> None:
    """Only for a case generated positive in every part: its channel stays a valid one."""
    if case.meta is None or case.meta.generation.mode.is_negative:
        return
    try:
        interface = case.body[0]["payload"]["CommonBlock"]["S0"]["interfaceID"]
    except (LookupError, TypeError):
        return
    if interface in MPAN_BLOCK:
        case.path_parameters["id"] = interface


def test_the_run_got_past_authentication(pki: DevPki, simulator_process: str) -> None:
    """Proof that the signing hook works: the run above was answered, not only refused (401/403
    for every request would pass every check). Runs after it, on the same simulator."""
    stats = requests.get(
        f"{simulator_process}/_sim/stats",
        verify=str(pki.ca_cert),
        cert=(str(pki.dcp_cert), str(pki.dcp_key)),
        timeout=30,
    ).json()
    if not stats["requests"]:
        pytest.skip("the schemathesis run was not selected")
    codes = {int(code): count for code, count in stats["statusCodes"].items()}
    print(f"simulator answers by status: {dict(sorted(codes.items()))}; {stats['requests']}")
    assert codes.get(201, 0) > 0 and codes.get(200, 0) > 0 and codes.get(400, 0) > 0
    assert stats["messages"] > 0
