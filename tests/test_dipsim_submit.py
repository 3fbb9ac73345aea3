# ruff: noqa: F811  (pytest fixtures imported from tests.dipsim_fixtures)
"""Submits to the DIP simulator over real mTLS with real signatures: accepted and rejected."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import orjson
import pytest

from dipsim import Simulator
from dipsim.samples import sample_message
from gateway.signing.pki import cert_pem
from tests.dipsim_fixtures import (  # noqa: F401
    DevPki,
    dcp_http_client,
    dev_pki,
    dev_pki_manifest,
    pki,
    signed_headers,
    simulator,
)


async def submit(
    sim: Simulator,
    pki: DevPki,
    items: Any,
    *,
    interface: str = "IF-043",
    client: int = 0,
    signer_client: int | None = None,
    api_key: str | None = "default",
    body: bytes | None = None,
    tamper: bytes | None = None,
    sign_url: str | None = None,
) -> httpx.Response:
    raw = body if body is not None else orjson.dumps(items)
    signer = pki.signer(client if signer_client is None else signer_client)
    key = pki.api_key(client) if api_key == "default" else api_key
    url = f"{sim.base_url}/dip-channel/{interface}"
    headers = signed_headers(signer, key, "POST", sign_url or url, raw)
    async with dcp_http_client(pki, sim.base_url) as http:
        return await http.post(url, content=tamper if tamper is not None else raw, headers=headers)


def msgs(pki: DevPki, n: int = 1, client: int = 0, **kw: Any) -> list[dict[str, Any]]:
    sender = pki.dip_id(client)
    return [
        sample_message(kw.pop("interface", "IF-043"), sender=sender, seq=i, **kw) for i in range(n)
    ]


async def test_valid_signed_request_is_accepted(simulator: Simulator, pki: DevPki) -> None:
    items = msgs(pki, 3)
    r = await submit(simulator, pki, items)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"messageArray", "timestamp"} and len(body["timestamp"]) == 25
    assert [e["message"] for e in body["messageArray"]] == ["MSG0000 - Success"] * 3
    for entry, item in zip(body["messageArray"], items, strict=True):
        s1 = item["payload"]["CommonBlock"]["S1"]
        assert entry["senderUniqueReference"] == s1["senderUniqueReference"]
        assert len(entry["transactionID"]) == 36
        assert entry["recipientID"] == pki.dip_id(0)
    sender = pki.dip_id(0)
    assert simulator.state.count(sender=sender, interface="IF-043") == 3
    assert simulator.state.count(recipient="2300000900") == 3
    stored = simulator.state.messages[0]
    assert stored.client_cert_subject and "dcp-" in stored.client_cert_subject
    assert stored.client_cert_fingerprint and len(stored.client_cert_fingerprint) == 64
    async with dcp_http_client(pki, simulator.base_url) as http:
        listed = (await http.get("/_sim/messages", params={"sender": sender})).json()
        stats = (await http.get("/_sim/stats")).json()
    assert listed["count"] == 3
    assert stats["bySender"][sender] == 3 and stats["byInterface"]["IF-043"] == 3


async def test_secondary_api_key_accepted(simulator: Simulator, pki: DevPki) -> None:
    r = await submit(simulator, pki, msgs(pki), api_key=pki.api_key(0, secondary=True))
    assert r.status_code == 201


async def test_mixed_case_host_url_as_received(simulator: Simulator, pki: DevPki) -> None:
    url = simulator.base_url.replace("127.0.0.1", "localhost")
    raw = orjson.dumps(msgs(pki))
    full = f"{url}/dip-channel/IF-043?Trace=AbC"
    headers = signed_headers(pki.signer(0), pki.api_key(0), "POST", full, raw)
    async with dcp_http_client(pki, url) as http:
        r = await http.post(full, content=raw, headers=headers)
    assert r.status_code == 201, r.text


async def test_no_client_certificate_fails_handshake(simulator: Simulator, pki: DevPki) -> None:
    async with dcp_http_client(pki, simulator.base_url, with_cert=False) as http:
        with pytest.raises(
            (httpx.ConnectError, httpx.ReadError, ssl.SSLError, httpx.RemoteProtocolError)
        ):
            await http.post("/dip-channel/IF-043", content=b"[]")
    assert simulator.state.count() == 0


@pytest.mark.parametrize(
    ("api_key", "status", "reason"),
    [(None, 401, "missing_api_key"), ("not-a-key", 401, "unknown_api_key")],
)
async def test_api_key_missing_or_unknown(
    simulator: Simulator, pki: DevPki, api_key: str | None, status: int, reason: str
) -> None:
    r = await submit(simulator, pki, msgs(pki), api_key=api_key)
    assert r.status_code == status and r.json()["reason"] == reason


async def test_api_key_of_other_dip_id_is_forbidden(simulator: Simulator, pki: DevPki) -> None:
    # Messages from client 0, signed with client 1's cert and key of client 1: 403.
    r = await submit(simulator, pki, msgs(pki, client=0), client=1)
    assert r.status_code == 403 and r.json()["reason"] == "api_key_of_other_dip_id"
    assert simulator.state.count() == 0


async def test_signature_by_wrong_client_certificate(simulator: Simulator, pki: DevPki) -> None:
    r = await submit(simulator, pki, msgs(pki), signer_client=2)
    assert r.status_code == 401 and r.json()["reason"] == "wrong_signing_certificate"


async def test_tampered_body(simulator: Simulator, pki: DevPki) -> None:
    items = msgs(pki)
    raw = orjson.dumps(items)
    r = await submit(simulator, pki, items, tamper=raw.replace(b"DEV", b"UIT"))
    assert r.status_code == 401 and r.json()["reason"] == "bad_content_hash"


async def test_bad_signature_over_other_url(simulator: Simulator, pki: DevPki) -> None:
    # Signed for another host/port: the signature does not verify over the URL as received.
    r = await submit(simulator, pki, msgs(pki), sign_url="https://127.0.0.1:1/dip-channel/IF-043")
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature"


async def test_missing_signature_headers(simulator: Simulator, pki: DevPki) -> None:
    async with dcp_http_client(pki, simulator.base_url) as http:
        r = await http.post(
            "/dip-channel/IF-043", content=b"[]", headers={"X-API-Key": pki.api_key(0)}
        )
    assert r.status_code == 401 and r.json()["reason"] == "missing_header"


async def test_interface_id_mismatch(simulator: Simulator, pki: DevPki) -> None:
    r = await submit(simulator, pki, msgs(pki), interface="IF-021")
    assert r.status_code == 400
    entry = r.json()["messageArray"][0]
    assert entry["message"] == "MSG1001 - Schema Failure"
    assert "interfaceID" in entry["help"] and entry["transactionID"] is None


async def test_malformed_json(simulator: Simulator, pki: DevPki) -> None:
    r = await submit(simulator, pki, None, body=b'[{"payload": ')
    assert r.status_code == 400
    assert r.json()["messageArray"][0]["message"] == "MSG1001 - Schema Failure"


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("S1", "senderUniqueReference"), "S-IF-043-bad", "senderUniqueReference"),
        (("S1", "senderTimestamp"), "2026-03-01T09:30:00Z", "senderTimestamp"),
        (("S1", "environmentTag"), "PROD", "environmentTag"),
        (("S1", "environmentTag"), ["DEV"], "environmentTag"),  # unhashable: MSG1001, not a 500
        (("M0", "MPANCore"), "12345", "MPANCore"),
        (("A0", "primaryRecipients"), ["123"], "primaryRecipients"),
        (("S0",), None, "S0"),
        (("M0",), None, "M0"),
    ],
)
async def test_bad_envelope(
    simulator: Simulator, pki: DevPki, path: tuple[str, ...], value: Any, needle: str
) -> None:
    items = msgs(pki)
    target = items[0]["payload"]["CommonBlock"]
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    r = await submit(simulator, pki, items)
    assert r.status_code == 400, r.text
    entry = r.json()["messageArray"][0]
    assert entry["message"] == "MSG1001 - Schema Failure" and needle in entry["help"]


async def test_body_too_large(simulator: Simulator, pki: DevPki) -> None:
    simulator.config.max_body_bytes = 2000
    r = await submit(simulator, pki, msgs(pki, 5))
    assert r.status_code == 413


async def test_too_many_messages(simulator: Simulator, pki: DevPki) -> None:
    simulator.config.max_messages_per_request = 3
    r = await submit(simulator, pki, msgs(pki, 4))
    assert r.status_code == 413
    assert "at most 3" in r.json()["messageArray"][0]["help"]


async def test_mixed_senders_rejected(simulator: Simulator, pki: DevPki) -> None:
    items = msgs(pki, 1, client=0) + msgs(pki, 1, client=1)
    r = await submit(simulator, pki, items)
    assert r.status_code == 400 and "one senderDIPID" in r.json()["messageArray"][0]["help"]


async def test_207_mixed_results_and_duplicates(simulator: Simulator, pki: DevPki) -> None:
    items = msgs(pki, 3)
    items[1]["payload"]["CommonBlock"]["S1"]["senderTimestamp"] = "yesterday"
    r = await submit(simulator, pki, items)
    assert r.status_code == 207
    codes = [e["message"] for e in r.json()["messageArray"]]
    assert codes == ["MSG0000 - Success", "MSG1001 - Schema Failure", "MSG0000 - Success"]
    # Resubmitting a message already accepted is a duplicate.
    r2 = await submit(simulator, pki, [items[0]])
    assert r2.status_code == 400
    assert r2.json()["messageArray"][0]["message"].startswith("MSG1002")
    assert simulator.state.duplicates[pki.dip_id(0)] == 1
    assert simulator.state.count() == 2


async def test_unknown_channel_is_404(simulator: Simulator, pki: DevPki) -> None:
    r = await submit(simulator, pki, msgs(pki), interface="XX-1")
    assert r.status_code == 404


async def test_clean_batch_fast_path_same_records_and_response(
    simulator: Simulator, pki: DevPki
) -> None:
    """A clean batch is stored lazily: the response, the stored messages (built on first use),
    publications, duplicates and delivery status are as for a message-by-message accept."""
    first = msgs(pki, 2)
    items = msgs(pki, 3)
    items[1]["payload"]["CommonBlock"]["S1"]["senderCorrelationID"] = 'corr "1"\\'
    items[2]["payload"]["CommonBlock"]["S1"]["DIPConnectionProviderID"] = "9000000001"
    items[2]["payload"]["CommonBlock"]["A0"]["secondaryRecipients"] = ["2300000901", None]
    r1 = await submit(simulator, pki, first)
    r = await submit(simulator, pki, items)
    assert r1.status_code == 201 and r.status_code == 201, r.text
    body = r.json()
    entries = body["messageArray"]
    assert len(body["timestamp"]) == 25
    sender = pki.dip_id(0)
    for entry, item in zip(entries, items, strict=True):
        s1 = item["payload"]["CommonBlock"]["S1"]
        assert entry == {
            "transactionID": entry["transactionID"],
            "senderUniqueReference": s1["senderUniqueReference"],
            "correlationID": s1["senderCorrelationID"],
            "sentTimestamp": body["timestamp"],
            "senderID": simulator.config.dip_id,
            "recipientID": sender,
            "DIPConnectionProviderID": s1["DIPConnectionProviderID"],
            "message": "MSG0000 - Success",
            "help": None,
            "serviceTicketURL": None,
        }
    txids = [e["transactionID"] for e in r1.json()["messageArray"] + entries]
    assert len(set(txids)) == 5 and all(len(t) == 36 and t[14] == "4" for t in txids)
    stats = simulator.state.stats()
    assert stats["messages"] == 5 and stats["publications"] == 6
    assert stats["byRecipient"] == {"2300000900": 5, "2300000901": 1}
    stored = simulator.state.messages
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]
    assert [m.transaction_id for m in stored] == txids
    assert [m.payload for m in stored[2:]] == [i["payload"] for i in items]
    assert stored[4].recipients == ("2300000900", "2300000901")
    assert stored[4].event_code == "[ConnectionTypeChange]" and stored[4].signer_fingerprint
    pubs = simulator.state.publications[("IF-043", "2300000901")]
    assert [p.transaction_id for p in pubs] == [txids[4]]
    assert pubs[0].body["payload"]["CommonBlock"]["D0"]["transactionID"] == txids[4]
    # A later duplicate of a fast-path message is still a duplicate.
    r2 = await submit(simulator, pki, [items[0], *msgs(pki, 1)])
    assert r2.status_code == 207
    assert [e["message"][:7] for e in r2.json()["messageArray"]] == ["MSG1002", "MSG0000"]
    assert simulator.state.count() == 6


async def test_fast_path_response_bytes_are_the_general_paths(
    simulator: Simulator, pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path writes its StandardResponse text piece by piece: for the same ids and
    timestamp it must be byte for byte what the general path's ``orjson.dumps`` writes, and it
    must count recipients the same way (escaped correlation ids, DCP ids, several and null
    recipients included)."""
    from dipsim.app import _ids, _responses
    from dipsim.envelope import envelope_array_ok

    items = msgs(pki, 6)
    s1 = [item["payload"]["CommonBlock"]["S1"] for item in items]
    a0 = [item["payload"]["CommonBlock"]["A0"] for item in items]
    s1[1]["senderCorrelationID"] = 'corr "1"\\ é\u2028'
    s1[2]["DIPConnectionProviderID"] = "9000000001"
    a0[3]["secondaryRecipients"] = ["2300000901", None, "2300000900"]
    a0[4]["primaryRecipients"] = [None]
    a0[5]["always"] = ["2300000902"]
    assert envelope_array_ok(items, "IF-043")
    body = orjson.dumps(items)
    commons = [item["payload"]["CommonBlock"] for item in items]
    monkeypatch.setattr(_responses, "dip_timestamp", lambda when=None: "2026-03-01T09:30:00+00:00")
    core, state, sender = simulator.core, simulator.state, pki.dip_id(0)
    start = _ids._id_next[0]
    results = []
    for fast in (True, False):
        state.reset()
        _ids._id_next[0] = start
        response = core.submissions.accept(
            "IF-043", sender, items, None, "fp", body, commons if fast else None
        )
        assert response.status == 201
        assert bool(state._pending) is fast  # the fast path took it (or did not)
        stored = [{**m.summary(), "receivedAt": None} for m in state.messages]
        results.append((response.body, state.stats(), stored))
    assert results[0] == results[1]
    assert results[0][1]["byRecipient"] == {"2300000900": 5, "2300000901": 1, "2300000902": 1}


@pytest.mark.parametrize("base", [0, 4096 - 3, 3 * 4096 + 5, (1 << 48) - 2])
def test_success_response_is_orjsons_text(base: int) -> None:
    """The clean-batch response text across runs of 4096 ids and the 48-bit counter wrap."""
    from dipsim.app._ids import transaction_id
    from dipsim.app._responses import success_response
    from dipsim.envelope import MSG_SUCCESS

    count = 4100 if base == 3 * 4096 + 5 else 7
    surs = [f"S-IF-043-1400010001-SUP-20260301-{i}" for i in range(count)]
    corrs = [None if i % 2 else f'c"{i}' for i in range(count)]
    dcps = [None if i % 3 else "9000000001" for i in range(count)]
    ts = "2026-03-01T09:30:00+00:00"
    expected = {
        "messageArray": [
            {
                "transactionID": transaction_id(base + i),
                "senderUniqueReference": surs[i],
                "correlationID": corrs[i],
                "sentTimestamp": ts,
                "senderID": "2000000000",
                "recipientID": "1400010001",
                "DIPConnectionProviderID": dcps[i],
                "message": MSG_SUCCESS,
                "help": None,
                "serviceTicketURL": None,
            }
            for i in range(count)
        ],
        "timestamp": ts,
    }
    text = success_response(
        base,
        surs,
        [orjson.dumps(c).decode() for c in corrs],
        [orjson.dumps(d).decode() for d in dcps],
        '"2000000000"',
        '"1400010001"',
        ts,
    )
    assert text == orjson.dumps(expected)


async def test_a_sender_rotates_certificate_and_api_key_through_the_control_api(
    simulator: Simulator, pki: DevPki
) -> None:
    """As the DIP during a rotation: the old and the new certificate are both accepted, then
    only the new; a revoked API key is refused while the other one works."""
    old = cert_pem(pki.signer(0).certificate).decode()
    new = cert_pem(pki.signer(2).certificate).decode()  # stands in for client 0's new one
    dip_id = pki.dip_id(0)
    batch = [[item] for item in msgs(pki, 5)]  # one message per request, distinct references
    async with dcp_http_client(pki, simulator.base_url) as http:
        both = await http.put(f"/_sim/senders/{dip_id}", json={"certificates": [old, new]})
        assert both.status_code == 200 and len(both.json()["signingCertificateFingerprints"]) == 2
        assert (await submit(simulator, pki, batch[0], signer_client=2)).status_code == 201
        assert (await submit(simulator, pki, batch[1])).status_code == 201
        only_new = await http.put(f"/_sim/senders/{dip_id}", json={"certificates": [new]})
        assert only_new.status_code == 200
        refused = await submit(simulator, pki, batch[2])
        assert (
            refused.status_code == 401 and refused.json()["reason"] == "wrong_signing_certificate"
        )
        secondary = pki.api_key(0, secondary=True)
        keys = await http.put(f"/_sim/senders/{dip_id}", json={"api_keys": [secondary]})
        assert keys.status_code == 200 and keys.json()["apiKeys"] == 1
        assert secondary not in keys.text  # the answer never shows a key
        revoked = await submit(simulator, pki, batch[3], signer_client=2)
        assert revoked.status_code == 401 and revoked.json()["reason"] == "unknown_api_key"
        ok = await submit(simulator, pki, batch[4], signer_client=2, api_key=secondary)
        assert ok.status_code == 201
        assert (
            await http.put("/_sim/senders/0000000042", json={"api_keys": ["k"]})
        ).status_code == 404
        assert (await http.put(f"/_sim/senders/{dip_id}", json={"api_keys": []})).status_code == 400
        assert (await http.put(f"/_sim/senders/{dip_id}", content=b"{")).status_code == 400
