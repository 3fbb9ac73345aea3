"""Pure parts of ingress: URL scheme, envelope parsing, checks, routing decisions, dedup window.

Signatures are real (RSA, the DIP signing vector certificate and the test CA); no network.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from gateway.config import IngressSettings, parse_config
from gateway.dip.webhook_urls import publication_callback_url, status_callback_url
from gateway.ingress.dedup import DedupWindow
from gateway.ingress.envelope import (
    EnvelopeError,
    Publication,
    StatusMessage,
    decode_publications,
    decode_status_messages,
    parse_json,
    parse_publications,
    parse_status_messages,
)
from gateway.ingress.pipeline import (
    H_INTERFACE,
    H_QUARANTINE_REASON,
    H_RECIPIENT,
    H_REPLAY,
    H_TRANSACTION_ID,
    Outcome,
    Rejection,
    RoutingTable,
    answer_status,
    check_push,
    plan_deliveries,
    rejection_body,
    response_body,
)
from gateway.ingress.routes import Route, RouteKind, RouteTable
from gateway.ingress.samples import body_of, publication, sign_push, status_message
from gateway.schema import default_registry
from gateway.signing.credentials import SigningCredential, load_pem
from gateway.signing.pki import Issued, Purpose, create_ca, issue
from gateway.signing.trust import TrustPolicy
from tests import dip_payloads

VECTORS = Path(__file__).parent / "vectors"
OWNED = "1400010001"
OTHER_CLIENT = "1400020001"
UNOWNED = "1999999999"
BASE = "https://gw.example.test"


@pytest.fixture(scope="module")
def dip_signer() -> SigningCredential:
    return load_pem(VECTORS / "dip-signing.key", VECTORS / "dip-signing.pem")


@pytest.fixture(scope="module")
def trust() -> TrustPolicy:
    return TrustPolicy.from_files(
        [VECTORS / "test-ca.pem"], signer_names=["dip-signing.example.test"]
    )


@pytest.fixture(scope="module")
def other_ca_signer() -> SigningCredential:
    ca = create_ca("Some Other CA", bits=2048)
    leaf = issue(ca, "impostor.example.test", Purpose.SIGNING, bits=2048)
    return SigningCredential(leaf.key, leaf.cert, "impostor")


@pytest.fixture(scope="module")
def expired_signer() -> SigningCredential:
    """Issued by the trusted test CA, but its validity ended last year."""
    ca_credential = load_pem(VECTORS / "test-ca.key", VECTORS / "test-ca.pem")
    ca = Issued(ca_credential.private_key, ca_credential.certificate)
    leaf = issue(
        ca,
        "old-dip-signing.example.test",
        Purpose.SIGNING,
        bits=2048,
        not_before=datetime.now(UTC) - dt.timedelta(days=400),
        days=365,
    )
    return SigningCredential(leaf.key, leaf.cert, "expired")


def _settings() -> IngressSettings:
    return IngressSettings(public_base_url=BASE)


def _table() -> RoutingTable:
    def client(name: str, dip: str, status: str | None) -> dict[str, object]:
        topics: dict[str, object] = {
            "inbound": f"{name}.in",
            "results": f"{name}.res",
            "dead_letter": f"{name}.dl",
        }
        if status:
            topics["status"] = status
        return {
            "name": name,
            "signing_pfx": "x.pfx",
            "topics": topics,
            "dip_ids": [{"dip_id": dip, "role": "SUP", "mpid": "ABCD", "api_key_file": "k"}],
        }

    config = parse_config(
        {
            "environment": "DEV",
            "dip": {"base_url": "https://dip.example"},
            "dcp": {"dcp_id": "9000000001"},
            "trust": {"pinned_sha256": ["ab" * 32]},
            "clients": [client("one", OWNED, "one.status"), client("two", OTHER_CLIENT, None)],
        },
        base_dir=Path("/"),
        check_files=False,
    )
    return RoutingTable.from_config(config)


def _route(recipient: str = OWNED, interface: str | None = "IF-043") -> Route:
    kind = RouteKind.PUBLICATION if interface else RouteKind.STATUS
    return Route(kind, recipient, interface)


def _url(route: Route) -> str:
    s = _settings()
    if route.interface:
        return publication_callback_url(s, route.interface, route.recipient)
    return status_callback_url(s, route.recipient)


def _check(
    route: Route,
    body: bytes,
    signer: SigningCredential,
    trust: TrustPolicy,
    *,
    when: datetime | None = None,
    headers: dict[str, str] | None = None,
    url: str | None = None,
) -> object:
    now = datetime.now(UTC)
    signed = headers or sign_push(signer, url or _url(route), body, when or now)
    return check_push(
        route, _url(route), body, signed, trust, now, timedelta(seconds=300), 1_000_000
    )


# -- routes -----------------------------------------------------------------------------------


def _match(table: RouteTable, path: str) -> Route | None:
    return table.resolve(path)[0]


def _signed_url(table: RouteTable, path: str, query: str) -> str:
    """The URL the webhook app checks the signature against, for a request to ``path``."""
    return table.public_url(table.resolve(path)[1], query)


def test_callback_urls_round_trip_through_the_route_table() -> None:
    s = _settings()
    table = RouteTable.from_settings(s)
    pub = publication_callback_url(s, "IF-043", OWNED)
    assert pub == f"{BASE}/dip/publications/IF-043/{OWNED}"
    assert _match(table, pub.removeprefix(BASE)) == Route(RouteKind.PUBLICATION, OWNED, "IF-043")
    status = status_callback_url(s, OWNED)
    assert status == f"{BASE}/dip/status/{OWNED}"
    assert _match(table, status.removeprefix(BASE)) == Route(RouteKind.STATUS, OWNED)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/dip/publications/IF-043",
        "/dip/publications/IF-043/123",
        "/dip/publications/XX-043/1400010001",
        "/dip/publications/IF-043/1400010001/extra",
        "/dip/status/1400010001/x",
    ],
)
def test_paths_that_are_not_webhooks_do_not_match(path: str) -> None:
    assert _match(RouteTable.from_settings(_settings()), path) is None


def test_public_base_url_with_a_prefix_accepts_both_proxy_styles() -> None:
    s = IngressSettings(public_base_url="https://gw.example.test/dcp")
    table = RouteTable.from_settings(s)
    route = Route(RouteKind.STATUS, OWNED)
    assert _match(table, f"/dcp/dip/status/{OWNED}") == route
    assert _match(table, f"/dip/status/{OWNED}") == route
    expected = f"https://gw.example.test/dcp/dip/status/{OWNED}?a=1"
    assert _signed_url(table, f"/dcp/dip/status/{OWNED}", "a=1") == expected
    assert _signed_url(table, f"/dip/status/{OWNED}", "a=1") == expected


def test_prefix_that_is_also_the_webhook_paths_first_segment_routes_both_proxy_styles() -> None:
    # Base /dip and publications under /dip/publications: a proxy that strips /dip forwards
    # /dip/publications/..., one that keeps it forwards /dip/dip/publications/...
    s = IngressSettings(public_base_url="https://gw.example.test/dip")
    table = RouteTable.from_settings(s)
    route = Route(RouteKind.PUBLICATION, OWNED, "IF-043")
    expected = f"https://gw.example.test/dip/dip/publications/IF-043/{OWNED}"
    for path in (f"/dip/publications/IF-043/{OWNED}", f"/dip/dip/publications/IF-043/{OWNED}"):
        assert _match(table, path) == route
        assert _signed_url(table, path, "") == expected
    assert publication_callback_url(s, "IF-043", OWNED) == expected


# -- envelope -----------------------------------------------------------------------------------


def test_publication_fields_are_extracted_once() -> None:
    items = [publication(OWNED, "T-1", mpan="2000000000001", replay=True)]
    [m] = parse_publications(orjson.loads(body_of(items)))
    assert (m.interface, m.transaction_id, m.publication_id, m.replay) == (
        "IF-043",
        "T-1",
        "PUB-043",
        True,
    )
    assert m.recipients == frozenset({OWNED})
    assert m.kafka_key == "2000000000001"


def test_publication_without_mpan_is_keyed_by_transaction() -> None:
    [m] = parse_publications([publication(OWNED, "T-2", mpan=None)])
    assert m.kafka_key == "T-2"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({}, "non-empty JSON array"),
        ([], "non-empty JSON array"),
        ([1], "not a JSON object"),
        ([{"nopayload": {}}], '"payload"'),
        ([{"payload": {"CommonBlock": {"S0": {}, "A0": {}}}}], "D0"),
        ([{"payload": {"CommonBlock": {"D0": {}, "A0": {}}}}], "S0"),
        ([{"payload": {"CommonBlock": {"S0": {"interfaceID": "IF-043"}, "D0": {}}}}], "D0"),
        (
            [
                {
                    "payload": {
                        "CommonBlock": {
                            "S0": {"interfaceID": "IF-043"},
                            "D0": {"transactionID": "T-1"},
                            "A0": [],
                        }
                    }
                }
            ],
            "A0",
        ),
    ],
)
def test_bad_envelopes_name_the_fault(document: object, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as err:
        parse_publications(document)
    assert err.value.reason == "bad_envelope"
    assert fragment in err.value.detail


def _variant(change: str) -> list[object]:
    """A push of two publications, the second changed as ``change`` says (a path in its
    CommonBlock, ``=``, a JSON value; ``-path`` removes it)."""
    second = publication(OWNED, "T-51", recipients=[OWNED, OTHER_CLIENT])
    if change.startswith("-"):
        *parents, leaf = change[1:].split(".")
        block = second["payload"]["CommonBlock"]
        for name in parents:
            block = block[name]
        del block[leaf]
    elif change:
        path, value = change.split("=", 1)
        *parents, leaf = path.split(".")
        block = second["payload"]["CommonBlock"]
        for name in parents:
            block = block.setdefault(name, {})
        block[leaf] = orjson.loads(value)
    return [publication(OWNED, "T-50"), second]


#: accepted or refused, each as the reference parse decides; the typed decoder takes some and
#: hands the rest to the reference
ENVELOPE_VARIANTS = [
    "",
    "D0.replayIndicator=true",
    "-M0",
    "M0=null",
    'M0="x"',
    'M0.MPANCore=""',
    "M0.MPANCore=7",
    'M1={"principalMPAN": "2000000000009"}',
    'M1={"principalMPAN": 9}',
    "-A0",
    "A0={}",
    "A0=null",
    "A0=[]",
    'A0.primaryRecipients="x"',
    "A0.primaryRecipients=null",
    'A0.secondaryRecipients=[1, "1400030001"]',
    "-S1",
    "S1=null",
    'S1="x"',
    "S1.senderDIPID=5",
    "S1.senderCorrelationID=null",
    "-S0.interfaceID",
    'S0.InterfaceID="IF-043"',
    'S0={"InterfaceID": "IF-043"}',
    'S0={"interfaceID": "", "InterfaceID": "IF-043"}',
    'S0={"interfaceID": null, "InterfaceID": "IF-043"}',
    "S0.interfaceID=43",
    "S0.eventCode=1",
    "S0.schemaVersion=null",
    "S0=[]",
    "-D0.transactionID",
    'D0.transactionID=""',
    "D0.transactionID=5",
    'D0.replayIndicator="true"',
    "D0.publicationID=1",
    "-D0",
]


def _decoded(decode: object, body: bytes) -> object:
    """What ``decode(body)`` gives: the messages with their values parsed, or the error."""
    try:
        messages = decode(body)  # type: ignore[operator]
    except EnvelopeError as exc:
        return (exc.reason, exc.detail)
    return [
        (m._replace(payload_json=b""), orjson.loads(m.payload_json))
        if isinstance(m, Publication)
        else (m.transaction_id, m.recipient_dip_id, orjson.loads(m.body_json))
        for m in messages
    ]


@pytest.mark.parametrize("change", ENVELOPE_VARIANTS)
def test_the_typed_decoder_agrees_with_the_reference_parse(change: str) -> None:
    body = body_of(_variant(change))  # type: ignore[arg-type]
    reference = _decoded(lambda b: parse_publications(parse_json(b)), body)
    assert _decoded(decode_publications, body) == reference


_GOOD = body_of([publication(OWNED, "T-53")])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[",
        b"{}",
        b"[]",
        b"[1]",
        b'[{"payload": []}]',
        b'[{"payload": {}}]',
        b'[{"payload": {"CommonBlock": null}}]',
        b"\xef\xbb\xbf[]",
        # a push the typed decoder would take but for one value in the CustomBlock
        _GOOD.replace(b'"L"', b"NaN"),
        _GOOD.replace(b'"L"', b'"\xff"'),  # not UTF-8 (msgspec does not check what it skips)
        _GOOD.replace(b'"L"', b'"\xed\xa0\x80"'),  # a surrogate, UTF-8 encoded
        _GOOD.replace(b'"L"', b'"\\ud800"'),  # a lone surrogate, escaped
        _GOOD.replace(b'"L"', b"[1,]"),
        _GOOD.replace(b'"L"', b'"a\x01"'),  # a control character in a string
        b"[" + b"[" * 5000 + b"]" * 5000 + b"]",  # deeper than either parser goes
    ],
)
def test_the_typed_decoder_refuses_what_the_reference_parse_refuses(body: bytes) -> None:
    assert decode_publications(_GOOD)  # the push the variants come from is accepted
    with pytest.raises(EnvelopeError) as reference:
        parse_publications(parse_json(body))
    with pytest.raises(EnvelopeError) as typed:
        decode_publications(body)
    assert (typed.value.reason, typed.value.detail) == (
        reference.value.reason,
        reference.value.detail,
    )


def _spaced(document: object) -> bytes:
    """JSON as another encoder writes it: indented, keys sorted."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("change", ["", 'S1="not an object"'])  # typed, and the reference's
def test_a_publications_value_is_its_payload_as_pushed_byte_for_byte(change: str) -> None:
    items = _variant(change)
    body = b"[" + b",".join(b'{"payload": ' + _spaced(i["payload"]) + b"}" for i in items) + b"]"  # type: ignore[index]
    messages = decode_publications(body)
    assert [m.payload_json for m in messages] == [_spaced(i["payload"]) for i in items]  # type: ignore[index]
    [_, second] = plan_deliveries(_route(), messages, _table())
    assert second.value == _spaced(items[1]["payload"])  # type: ignore[index]


def test_a_number_beyond_a_double_is_passed_on_as_pushed() -> None:
    """The one body the reference parse refused and the typed decoder takes: orjson cannot
    hold 1e999 in a float, and refused it as not JSON; it is JSON, and no longer parsed."""
    item = publication(OWNED, "T-52")
    payload = orjson.dumps(item["payload"]).replace(b'"L"', b"1e999")
    body = b'[{"payload":' + payload + b"}]"
    with pytest.raises(EnvelopeError):
        parse_publications(parse_json(body))
    [m] = decode_publications(body)
    assert (m.transaction_id, m.payload_json) == ("T-52", payload)


def test_a_payload_too_deep_to_re_encode_is_a_bad_envelope_not_a_crash() -> None:
    """orjson reads 1,024 levels but writes ~254: the reference parse, which re-encodes,
    refuses a deeper payload by name; the typed decoder passes it on as pushed."""
    item = publication(OWNED, "T-53")
    payload = orjson.dumps(item["payload"]).replace(b'"L"', b"[" * 300 + b"]" * 300)
    body = b'[{"payload":' + payload + b"}]"
    with pytest.raises(EnvelopeError) as caught:
        parse_publications(parse_json(body))
    assert caught.value.reason == "bad_envelope" and "re-encoded" in caught.value.detail
    [m] = decode_publications(body)
    assert (m.transaction_id, m.payload_json) == ("T-53", payload)


@pytest.mark.parametrize(
    "document",
    [
        [status_message(OWNED, "T-60", "MSG0000 - Success")],
        {"messageArray": [status_message(OWNED, "T-61", "MSG0000 - Success")]},
        [{**status_message(OWNED, "T-62", "M"), "transactionID": None}],
        [{**status_message(OWNED, "T-63", "M"), "message": 5}],
        [{"message": "neither identity"}],
        {"messageArray": {}},
        {"messageArray": []},
        [],
        [[]],
    ],
)
def test_the_typed_status_decoder_agrees_with_the_reference_parse(document: object) -> None:
    """Each message's value is its JSON as pushed, byte for byte."""
    items = document.get("messageArray") if isinstance(document, dict) else document
    if isinstance(items, list):
        array = b"[" + b", ".join(_spaced(i) for i in items) + b"]"
        body = b'{"messageArray": ' + array + b"}" if isinstance(document, dict) else array
    else:
        body = _spaced(document)
    reference = _decoded(lambda b: parse_status_messages(parse_json(b)), body)
    assert _decoded(decode_status_messages, body) == reference
    if isinstance(reference, list):
        messages: list[StatusMessage] = decode_status_messages(body)
        assert isinstance(items, list)
        assert [m.body_json for m in messages] == [_spaced(i) for i in items]


def test_status_messages_accept_array_and_standard_response() -> None:
    item = status_message(OWNED, "T-9", "MSG0000 - Success")
    assert parse_status_messages([item])[0].recipient_dip_id == OWNED
    assert parse_status_messages({"messageArray": [item]})[0].transaction_id == "T-9"


# -- checks -------------------------------------------------------------------------------------


def test_good_push_passes_every_check(dip_signer: SigningCredential, trust: TrustPolicy) -> None:
    body = body_of([publication(OWNED, "T-10"), publication(OWNED, "T-11")])
    messages = _check(_route(), body, dip_signer, trust)
    assert [m.transaction_id for m in messages] == ["T-10", "T-11"]  # type: ignore[attr-defined]


def _rejected(excinfo: pytest.ExceptionInfo[Rejection]) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.reason


def test_tampered_body_is_a_bad_content_hash(
    dip_signer: SigningCredential, trust: TrustPolicy
) -> None:
    body = body_of([publication(OWNED, "T-12")])
    headers = sign_push(dip_signer, _url(_route()), body)
    with pytest.raises(Rejection) as err:
        _check(_route(), body.replace(b"T-12", b"T-13"), dip_signer, trust, headers=headers)
    assert _rejected(err) == (401, "bad_content_hash")


def test_signature_over_another_url_is_a_bad_signature(
    dip_signer: SigningCredential, trust: TrustPolicy
) -> None:
    body = body_of([publication(OWNED, "T-14")])
    with pytest.raises(Rejection) as err:
        _check(_route(), body, dip_signer, trust, url="https://gw.example.test/elsewhere")
    assert _rejected(err) == (401, "bad_signature")


def test_signer_from_another_ca_is_untrusted(
    other_ca_signer: SigningCredential, trust: TrustPolicy
) -> None:
    body = body_of([publication(OWNED, "T-15")])
    with pytest.raises(Rejection) as err:
        _check(_route(), body, other_ca_signer, trust)
    assert _rejected(err) == (401, "untrusted_certificate")


def test_expired_signer_is_refused(expired_signer: SigningCredential, trust: TrustPolicy) -> None:
    body = body_of([publication(OWNED, "T-16")])
    with pytest.raises(Rejection) as err:
        _check(_route(), body, expired_signer, trust)
    assert _rejected(err) == (401, "certificate_expired")


def test_stale_signature_date_is_refused(dip_signer: SigningCredential, trust: TrustPolicy) -> None:
    body = body_of([publication(OWNED, "T-17")])
    with pytest.raises(Rejection) as err:
        _check(_route(), body, dip_signer, trust, when=datetime.now(UTC) - timedelta(hours=1))
    assert _rejected(err) == (401, "date_out_of_skew")


def test_malformed_json_is_400(dip_signer: SigningCredential, trust: TrustPolicy) -> None:
    with pytest.raises(Rejection) as err:
        _check(_route(), b'[{"payload": ', dip_signer, trust)
    assert _rejected(err) == (400, "malformed_json")


def test_wrong_recipient_is_422(dip_signer: SigningCredential, trust: TrustPolicy) -> None:
    body = body_of([publication(OWNED, "T-18"), publication(OTHER_CLIENT, "T-19")])
    with pytest.raises(Rejection) as err:
        _check(_route(), body, dip_signer, trust)
    assert _rejected(err) == (422, "wrong_recipient")
    assert "[1]" in err.value.detail


def test_interface_other_than_the_webhooks_is_422(
    dip_signer: SigningCredential, trust: TrustPolicy
) -> None:
    body = body_of([publication(OWNED, "T-20", interface="IF-021")])
    with pytest.raises(Rejection) as err:
        _check(_route(), body, dip_signer, trust)
    assert _rejected(err) == (422, "interface_mismatch")


def test_status_recipient_mismatch_is_422(
    dip_signer: SigningCredential, trust: TrustPolicy
) -> None:
    body = body_of([status_message(OTHER_CLIENT, "T-21", "MSG0000 - Success")])
    with pytest.raises(Rejection) as err:
        _check(_route(interface=None), body, dip_signer, trust)
    assert _rejected(err) == (422, "wrong_recipient")


def test_oversized_body_is_413(dip_signer: SigningCredential, trust: TrustPolicy) -> None:
    body = body_of([publication(OWNED, f"T-{i}") for i in range(1000)])
    headers = sign_push(dip_signer, _url(_route()), body)
    with pytest.raises(Rejection) as err:
        check_push(
            _route(), _url(_route()), body, headers, trust, datetime.now(UTC),
            timedelta(seconds=300), 10_000,
        )  # fmt: skip
    assert _rejected(err) == (413, "too_large")


# -- routing ------------------------------------------------------------------------------------


def test_owned_recipient_routes_to_its_client_inbound_with_headers() -> None:
    item = publication(OWNED, "T-30", replay=True)
    messages = parse_publications([item])
    [d] = plan_deliveries(_route(), messages, _table())
    assert d.topic == "one.in"
    assert d.key == b"2000056535972"
    headers = dict(d.headers)
    assert headers[H_INTERFACE] == b"IF-043"
    assert headers[H_TRANSACTION_ID] == b"T-30"
    assert headers[H_REPLAY] == b"true"
    assert headers[H_RECIPIENT] == OWNED.encode()
    assert H_QUARANTINE_REASON not in headers
    assert orjson.loads(d.value) == item["payload"]
    assert d.dedup_key == ("publication", OWNED, "T-30")


def test_unowned_recipient_goes_to_quarantine_with_reason() -> None:
    messages = parse_publications([publication(UNOWNED, "T-31")])
    [d] = plan_deliveries(_route(UNOWNED), messages, _table())
    assert d.topic == "dip.inbound.quarantine"
    assert dict(d.headers)[H_QUARANTINE_REASON] == b"unknown_recipient"


def test_status_for_a_client_without_status_topic_is_quarantined() -> None:
    messages = parse_status_messages([status_message(OTHER_CLIENT, "T-32", "MSG")])
    [d] = plan_deliveries(_route(OTHER_CLIENT, None), messages, _table())
    assert (d.topic, d.quarantine_reason) == ("dip.inbound.quarantine", "no_status_topic")
    messages = parse_status_messages([status_message(OWNED, "T-33", "MSG")])
    [d] = plan_deliveries(_route(OWNED, None), messages, _table())
    assert d.topic == "one.status"


def test_same_transaction_for_two_recipients_has_two_dedup_keys() -> None:
    item = publication(OWNED, "T-34", recipients=[OWNED, OTHER_CLIENT])
    [a] = plan_deliveries(_route(OWNED), parse_publications([item]), _table())
    [b] = plan_deliveries(_route(OTHER_CLIENT), parse_publications([item]), _table())
    assert a.dedup_key != b.dedup_key


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ([Outcome.ROUTED, Outcome.DUPLICATE, Outcome.QUARANTINED], 201),
        ([Outcome.ROUTED, Outcome.FAILED], 207),
        ([Outcome.FAILED, Outcome.FAILED], 503),
    ],
)
def test_answer_status(outcomes: list[Outcome], status: int) -> None:
    assert answer_status(outcomes) == status


def test_response_body_is_a_standard_response_per_message() -> None:
    messages = parse_publications([publication(OWNED, "T-40"), publication(OWNED, "T-41")])
    body = orjson.loads(
        response_body(_route(), messages, [Outcome.ROUTED, Outcome.FAILED], "9000000001", "ts")
    )
    assert [e["transactionID"] for e in body["messageArray"]] == ["T-40", "T-41"]
    assert list(body["messageArray"][0].items()) == [  # StandardResponseBodyType, in order
        ("transactionID", "T-40"),
        ("senderUniqueReference", messages[0].sender_unique_reference),
        ("correlationID", None),
        ("sentTimestamp", "ts"),
        ("senderID", "1009012345"),
        ("recipientID", OWNED),
        ("DIPConnectionProviderID", "9000000001"),
        ("message", "MSG0000 - Success"),
        ("help", None),
        ("serviceTicketURL", None),
    ]
    assert list(body) == ["messageArray", "timestamp"]
    assert "retry" in body["messageArray"][1]["message"]
    rejected = orjson.loads(rejection_body(Rejection(401, "bad_signature", "x"), "ts"))
    assert rejected["messageArray"][0]["message"] == "401 bad_signature"


# -- dedup window -------------------------------------------------------------------------------


def test_dedup_window_forgets_the_oldest_beyond_capacity() -> None:
    window = DedupWindow(2)
    for key in ("a", "b", "c"):
        window.add(("publication", OWNED, key))
    assert ("publication", OWNED, "a") not in window
    assert ("publication", OWNED, "c") in window
    assert len(window) == 2


def test_dedup_window_remembers_a_push_at_once_and_a_repeat_becomes_the_newest() -> None:
    window = DedupWindow(3)
    window.add_all([("publication", OWNED, k) for k in ("a", "b", "c")])
    window.add_all([("publication", OWNED, k) for k in ("a", "d")])  # a again: now newest
    assert ("publication", OWNED, "b") not in window  # the oldest went, not the repeated a
    assert [k in window for k in (("publication", OWNED, x) for x in "acd")] == [True] * 3
    assert len(window) == 3


def test_dedup_window_takes_a_key_twice_in_one_push_as_of_its_last_place() -> None:
    window = DedupWindow(3)
    window.add_all([("publication", OWNED, k) for k in ("a", "b", "a")])  # a newer than b
    window.add_all([("publication", OWNED, k) for k in ("c", "d")])
    assert [k in window for k in (("publication", OWNED, x) for x in "abcd")] == [
        True,
        False,
        True,
        True,
    ]


def test_dedup_window_of_zero_remembers_nothing() -> None:
    window = DedupWindow(0)
    window.add(("publication", OWNED, "a"))
    assert ("publication", OWNED, "a") not in window


def _published(interface: str, transaction_id: str) -> dict[str, object]:
    """A document-valid publication of ``interface`` without A0, as the DIP pushes it."""
    if interface == "IF-043":
        item = publication(OWNED, transaction_id, interface=interface)
        del item["payload"]["CommonBlock"]["A0"]
        return item
    payload = dip_payloads.payload(interface, OTHER_CLIENT)
    payload["CommonBlock"]["D0"] = {
        "transactionID": transaction_id,
        "transactionTimestamp": "2026-11-23T10:00:02+00:00",
        "publicationID": "PUB-" + interface.split("-")[1],
        "initialCorrelationID": None,
        "replayIndicator": False,
        "serviceTicketURL": None,
    }
    return {"payload": payload}


@pytest.mark.parametrize(
    ("interface", "key"),
    [
        ("IF-043", "2000056535972"),  # M0: keyed by its MPAN core
        ("IF-019", dip_payloads.PRINCIPAL_MPAN),  # M1: keyed by the principal MPAN
        ("IF-022", "T30"),  # no MPAN block: keyed by the transaction
        ("REP-002", "T30"),  # a report: no MPAN block either
    ],
)
def test_publication_without_a0_is_routed_by_its_webhook(
    dip_signer: SigningCredential, trust: TrustPolicy, interface: str, key: str
) -> None:
    """A0 is optional in every payload schema: the webhook path says who it is for."""
    item = _published(interface, "T30")
    assert default_registry().validate(item["payload"]) == []  # type: ignore[arg-type]
    route = _route(interface=interface)
    messages = _check(route, body_of([item]), dip_signer, trust)
    assert isinstance(messages, list) and len(messages) == 1
    m = messages[0]
    assert isinstance(m, Publication)
    assert m.recipients is None and m.kafka_key == key
    [delivery] = plan_deliveries(route, [m], _table())
    assert delivery.topic == "one.in" and delivery.key == key.encode()
