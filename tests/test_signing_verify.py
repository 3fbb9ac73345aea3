"""Every reason the verifier can refuse a signature, each provoked with real certificates.

The reason is what metrics and the quarantine topic carry, so each failure must map to exactly
one reason, and the accepting paths (CA chain, intermediate, pin) must accept.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping

import pytest

from gateway.signing.credentials import SigningCredential
from gateway.signing.errors import RejectReason, SignatureRejected
from gateway.signing.pki import Issued, cert_pem
from gateway.signing.scheme import (
    HEADER_CERTIFICATE,
    HEADER_CONTENT_HASH,
    HEADER_DATE,
    HEADER_SIGNATURE,
    SIGNATURE_HEADERS,
    certificate_header,
    content_hash,
    sign_request,
)
from gateway.signing.trust import TrustPolicy, fingerprint_sha256
from gateway.signing.verify import VerifiedSigner, verify_request
from tests import pki_fixtures
from tests.pki_fixtures import Pki, now

pki = pki_fixtures.pki  # the session fixture, used by name below

URL = "https://gw.example.test/dip/publications"
BODY = b'[{"payload":{"CommonBlock":{},"CustomBlock":{}}}]'


def _sign(issued: Issued, *, when: dt.datetime | None = None, body: bytes = BODY) -> dict[str, str]:
    credential = SigningCredential(issued.key, issued.cert, source="test")
    return credential.sign("POST", URL, body, when or now())


def _verify(
    headers: Mapping[str, str],
    trust: TrustPolicy,
    *,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    at: dt.datetime | None = None,
) -> VerifiedSigner:
    return verify_request(method, url, body, headers, trust, at or now())


def _rejected(
    reason: RejectReason, headers: Mapping[str, str], trust: TrustPolicy, **kw: object
) -> str:
    with pytest.raises(SignatureRejected) as info:
        _verify(headers, trust, **kw)  # type: ignore[arg-type]
    assert info.value.reason is reason, info.value.detail
    return info.value.detail


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustPolicy:
    return TrustPolicy(anchors=(pki.ca.cert,))


def test_valid_signature_accepted(pki: Pki, trust: TrustPolicy) -> None:
    signer = _verify(_sign(pki.signer), trust)
    assert signer.subject == pki.signer.cert.subject.rfc4514_string()
    assert signer.fingerprint_sha256 == fingerprint_sha256(pki.signer.cert)


def test_lower_case_header_names_accepted(pki: Pki, trust: TrustPolicy) -> None:
    headers = {k.lower(): v for k, v in _sign(pki.signer).items()}
    assert _verify(headers, trust).subject.startswith("CN=energypip-test")


@pytest.mark.parametrize("missing", SIGNATURE_HEADERS)
def test_missing_header(pki: Pki, trust: TrustPolicy, missing: str) -> None:
    headers = _sign(pki.signer)
    del headers[missing]
    assert missing in _rejected(RejectReason.MISSING_HEADER, headers, trust)


def test_blank_header_counts_as_missing(pki: Pki, trust: TrustPolicy) -> None:
    headers = _sign(pki.signer) | {HEADER_SIGNATURE: "  "}
    _rejected(RejectReason.MISSING_HEADER, headers, trust)


@pytest.mark.parametrize(
    ("header", "value", "expect"),
    [
        (HEADER_SIGNATURE, "not base64!", HEADER_SIGNATURE),
        (HEADER_CONTENT_HASH, "%%%", HEADER_CONTENT_HASH),
        (HEADER_DATE, "yesterday", HEADER_DATE),
        (HEADER_DATE, "2026-03-01T09:30:01.123+01:00", "UTC"),
        (HEADER_CERTIFICATE, base64.b64encode(b"hello, not a certificate").decode(), "PEM"),
        (HEADER_CERTIFICATE, "@@not-base64@@", "base64"),
    ],
)
def test_malformed_header(
    pki: Pki,
    trust: TrustPolicy,
    header: str,
    value: str,
    expect: str,
) -> None:
    headers = _sign(pki.signer) | {header: value}
    assert expect in _rejected(RejectReason.MALFORMED_HEADER, headers, trust)


def test_certificate_header_with_broken_pem(pki: Pki, trust: TrustPolicy) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    headers = _sign(pki.signer) | {HEADER_CERTIFICATE: base64.b64encode(pem).decode()}
    _rejected(RejectReason.MALFORMED_HEADER, headers, trust)


def test_bad_content_hash(pki: Pki, trust: TrustPolicy) -> None:
    detail = _rejected(RejectReason.BAD_CONTENT_HASH, _sign(pki.signer), trust, body=BODY + b" ")
    assert str(len(BODY) + 1) in detail


def test_tampered_body_with_recomputed_hash(pki: Pki, trust: TrustPolicy) -> None:
    tampered = BODY.replace(b"CustomBlock", b"CustomBlocK")
    headers = _sign(pki.signer) | {HEADER_CONTENT_HASH: content_hash(tampered)}
    _rejected(RejectReason.BAD_SIGNATURE, headers, trust, body=tampered)


def test_tampered_url(pki: Pki, trust: TrustPolicy) -> None:
    _rejected(RejectReason.BAD_SIGNATURE, _sign(pki.signer), trust, url=URL + "?x=1")


def test_url_case_does_not_matter(pki: Pki, trust: TrustPolicy) -> None:
    """The scheme signs the lower-cased URL, so case changes in transit are harmless."""
    assert _verify(_sign(pki.signer), trust, url=URL.upper()).subject


def test_wrong_method(pki: Pki, trust: TrustPolicy) -> None:
    _rejected(RejectReason.BAD_SIGNATURE, _sign(pki.signer), trust, method="PUT")


def test_signature_from_another_key(pki: Pki, trust: TrustPolicy) -> None:
    """Signed with signer B's key but presenting signer A's certificate."""
    headers = sign_request(
        "POST", URL, BODY, now(), pki.signer_b.key, certificate_header(pki.signer.cert)
    )
    _rejected(RejectReason.BAD_SIGNATURE, headers, trust)


def test_untrusted_certificate(pki: Pki, trust: TrustPolicy) -> None:
    detail = _rejected(RejectReason.UNTRUSTED_CERTIFICATE, _sign(pki.foreign), trust)
    assert "Some Other CA" in detail


def test_self_signed_ca_itself_is_not_a_signer_unless_anchor(pki: Pki) -> None:
    trust = TrustPolicy(anchors=(pki.other_ca.cert,))
    _rejected(RejectReason.UNTRUSTED_CERTIFICATE, _sign(pki.ca), trust)


def test_expired_certificate(pki: Pki, trust: TrustPolicy) -> None:
    _rejected(RejectReason.CERTIFICATE_EXPIRED, _sign(pki.expired), trust)


def test_not_yet_valid_certificate(pki: Pki, trust: TrustPolicy) -> None:
    _rejected(RejectReason.CERTIFICATE_NOT_YET_VALID, _sign(pki.not_yet_valid), trust)


def test_certificate_not_for_signing(pki: Pki, trust: TrustPolicy) -> None:
    detail = _rejected(RejectReason.CERTIFICATE_NOT_FOR_SIGNING, _sign(pki.no_signing), trust)
    assert "digitalSignature" in detail


@pytest.mark.parametrize("offset", [dt.timedelta(minutes=-6), dt.timedelta(minutes=6)])
def test_date_out_of_skew(pki: Pki, trust: TrustPolicy, offset: dt.timedelta) -> None:
    _rejected(RejectReason.DATE_OUT_OF_SKEW, _sign(pki.signer, when=now() + offset), trust)


def test_date_within_skew_accepted(pki: Pki, trust: TrustPolicy) -> None:
    headers = _sign(pki.signer, when=now() - dt.timedelta(minutes=4))
    assert _verify(headers, trust).subject


def test_skew_disabled_accepts_old_date(pki: Pki, trust: TrustPolicy) -> None:
    headers = _sign(pki.signer, when=now() - dt.timedelta(days=3))
    signer = verify_request("POST", URL, BODY, headers, trust, now(), max_skew=None)
    assert signer.subject


def test_pinned_certificate_accepted_without_ca(pki: Pki) -> None:
    trust = TrustPolicy(pinned_sha256=frozenset({fingerprint_sha256(pki.foreign.cert)}))
    assert _verify(_sign(pki.foreign), trust).subject == "CN=imposter.example.test"


def test_pin_does_not_accept_other_certificates(pki: Pki) -> None:
    trust = TrustPolicy(pinned_sha256=frozenset({fingerprint_sha256(pki.foreign.cert)}))
    _rejected(RejectReason.UNTRUSTED_CERTIFICATE, _sign(pki.signer), trust)


def test_pinned_but_expired_is_still_refused(pki: Pki) -> None:
    trust = TrustPolicy(pinned_sha256=frozenset({fingerprint_sha256(pki.expired.cert)}))
    _rejected(RejectReason.CERTIFICATE_EXPIRED, _sign(pki.expired), trust)


def test_intermediate_chain_accepted(pki: Pki) -> None:
    trust = TrustPolicy(anchors=(pki.root.cert, pki.intermediate.cert))
    assert _verify(_sign(pki.chained), trust).subject == "CN=chained.example.test"


def test_intermediate_chain_from_bundle_file(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bundle = tmp_path_factory.mktemp("bundle") / "dip-ca.pem"
    bundle.write_bytes(cert_pem(pki.intermediate.cert) + cert_pem(pki.root.cert))
    trust = TrustPolicy.from_files([bundle])
    assert _verify(_sign(pki.chained), trust).subject == "CN=chained.example.test"


def test_chain_without_intermediate_is_untrusted(pki: Pki) -> None:
    trust = TrustPolicy(anchors=(pki.root.cert,))
    _rejected(RejectReason.UNTRUSTED_CERTIFICATE, _sign(pki.chained), trust)


def test_trust_policy_needs_something() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TrustPolicy()
