"""The trust policy's answers to "is this the DIP?": signer names, issuer constraints, and
certificates the verifier cannot read. Real RSA certificates built with the production PKI
code (and a small builder here for the extensions it does not expose)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.config import ConfigError, TrustSettings, parse_config
from gateway.signing.credentials import SigningCredential
from gateway.signing.errors import RejectReason, SignatureRejected
from gateway.signing.fingerprint import normalise_fingerprint
from gateway.signing.pki import DEV_DIP_SIGNER_NAME, Issued, Purpose, issue, new_rsa_key
from gateway.signing.scheme import HEADER_CERTIFICATE, certificate_header
from gateway.signing.trust import TrustPolicy, certificate_names, fingerprint_sha256
from gateway.signing.verify import verify_request
from tests import pki_fixtures
from tests.pki_fixtures import TEST_BITS, Pki, now

pki = pki_fixtures.pki
dev_pki_dir = pki_fixtures.dev_pki_dir

URL = "https://gw.example.test/dip/publications"
BODY = b'[{"payload":{"CommonBlock":{},"CustomBlock":{}}}]'
DIP_NAME = "dip-signing.example.test"


def _sign(issued: Issued) -> dict[str, str]:
    return SigningCredential(issued.key, issued.cert, source="test").sign("POST", URL, BODY, now())


def _refusal(headers: dict[str, str], trust: TrustPolicy) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as info:
        verify_request("POST", URL, BODY, headers, trust, now())
    return info.value


def _cert(
    issuer: Issued | None,
    name: str,
    *,
    key: rsa.RSAPrivateKey | None = None,
    public_key: object = None,
    ca: bool | None,
    path_length: int | None = None,
    key_cert_sign: bool | None = None,
    extra: x509.ExtensionType | None = None,
) -> Issued:
    """A certificate with exactly the basicConstraints / keyUsage asked for (None: absent)."""
    key = key or new_rsa_key(TEST_BITS)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(public_key or key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(minutes=5))
        .not_valid_after(now() + dt.timedelta(days=30))
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length), critical=True
        )
    if key_cert_sign is not None:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=key_cert_sign,
            crl_sign=key_cert_sign,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return Issued(key, builder.sign(issuer.key if issuer else key, hashes.SHA256()))


@pytest.fixture(scope="module")
def dip(pki: Pki) -> Issued:
    """The DIP's publication signer, issued by the same CA as the MPs' signing certificates."""
    return issue(pki.ca, DIP_NAME, Purpose.SIGNING, bits=TEST_BITS)


# -- signer names -----------------------------------------------------------------------------


def test_dip_signer_is_accepted_and_an_mp_cert_from_the_same_ca_is_refused(
    pki: Pki, dip: Issued
) -> None:
    trust = TrustPolicy(anchors=(pki.ca.cert,), signer_names=frozenset({DIP_NAME}))
    signer = verify_request("POST", URL, BODY, _sign(dip), trust, now())
    assert signer.subject == f"CN={DIP_NAME}"
    refusal = _refusal(_sign(pki.signer), trust)  # an MP signing cert of the same DIP CA
    assert refusal.reason is RejectReason.SIGNER_NOT_ALLOWED
    assert "energypip-test.0001.example.test" in refusal.detail
    assert "trust.signer_names" in refusal.detail and DIP_NAME in refusal.detail


def test_signer_names_match_dns_alt_names_case_insensitively(pki: Pki) -> None:
    by_san = issue(
        pki.ca, "Publication Signer", Purpose.SIGNING, bits=TEST_BITS, dns_names=[DIP_NAME]
    )
    assert certificate_names(by_san.cert) == {"publication signer", DIP_NAME}
    trust = TrustPolicy(anchors=(pki.ca.cert,), signer_names=frozenset({DIP_NAME.upper()}))
    assert verify_request("POST", URL, BODY, _sign(by_san), trust, now()).subject


def test_a_pinned_certificate_needs_no_name(pki: Pki) -> None:
    trust = TrustPolicy(
        anchors=(pki.ca.cert,),
        pinned_sha256=frozenset({fingerprint_sha256(pki.signer_b.cert)}),
        signer_names=frozenset({DIP_NAME}),
    )
    assert verify_request("POST", URL, BODY, _sign(pki.signer_b), trust, now()).subject
    assert _refusal(_sign(pki.signer), trust).reason is RejectReason.SIGNER_NOT_ALLOWED


def test_a_name_does_not_help_a_certificate_from_another_ca(pki: Pki) -> None:
    impostor = issue(pki.other_ca, DIP_NAME, Purpose.SIGNING, bits=TEST_BITS)
    trust = TrustPolicy(anchors=(pki.ca.cert,), signer_names=frozenset({DIP_NAME}))
    assert _refusal(_sign(impostor), trust).reason is RejectReason.UNTRUSTED_CERTIFICATE


def test_trust_settings_normalise_names_and_pins(tmp_path: Path) -> None:
    """(Whether names are required with a bundle depends on ingress: the whole configuration
    decides, in the next test and in test_config.)"""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("unused")
    settings = TrustSettings(ca_bundle=bundle, signer_names=(" DIP-Signing.Example ",))
    assert settings.signer_names == ("dip-signing.example",)
    assert TrustSettings(pinned_sha256=("AB:" * 31 + "AB",)).pinned_sha256 == ("ab" * 32,)
    with pytest.raises(ValueError, match="not a certificate name"):
        TrustSettings(ca_bundle=bundle, signer_names=("two words",))


def test_config_error_names_the_field_and_the_fix(dev_pki_dir: Path) -> None:
    import yaml

    data = yaml.safe_load((dev_pki_dir / "gateway.yaml").read_text())
    assert data["trust"]["signer_names"] == [DEV_DIP_SIGNER_NAME]
    del data["trust"]["signer_names"]
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=dev_pki_dir)
    message = str(info.value)
    assert "trust.signer_names: required with trust.ca_bundle while ingress is enabled" in message
    assert "pinned_sha256" in message


def test_one_fingerprint_normalisation() -> None:
    value = "AB:cd " * 16
    assert normalise_fingerprint(value.strip()) == "abcd" * 16
    with pytest.raises(ValueError, match="64 hex digits"):
        normalise_fingerprint("ab" * 31)
    with pytest.raises(ValueError, match="64 hex digits"):
        normalise_fingerprint("zz" * 32)


# -- issuers must be CAs ----------------------------------------------------------------------


def test_a_leaf_in_the_bundle_does_not_issue(pki: Pki) -> None:
    rogue = _cert(pki.ca, "rogue-leaf.example.test", ca=False, key_cert_sign=False)
    forged = _cert(rogue, DIP_NAME, ca=False, key_cert_sign=False)
    for anchors in ((pki.ca.cert, rogue.cert), (rogue.cert,)):
        trust = TrustPolicy(anchors=anchors, signer_names=frozenset({DIP_NAME}))
        refusal = _refusal(_sign(forged), trust)
        assert refusal.reason is RejectReason.UNTRUSTED_CERTIFICATE
        assert "rogue-leaf.example.test is not a CA (basicConstraints ca=False)" in refusal.detail


def test_a_bundle_cert_without_basic_constraints_does_not_issue(pki: Pki) -> None:
    no_bc = _cert(pki.ca, "no-constraints.example.test", ca=None)
    forged = _cert(no_bc, DIP_NAME, ca=False)
    trust = TrustPolicy(anchors=(pki.ca.cert, no_bc.cert))
    assert "no basicConstraints" in _refusal(_sign(forged), trust).detail


def test_a_ca_without_key_cert_sign_does_not_issue(pki: Pki) -> None:
    root = _cert(None, "Root Without CertSign", ca=True, key_cert_sign=False)
    leaf = _cert(root, DIP_NAME, ca=False)
    refusal = _refusal(_sign(leaf), TrustPolicy(anchors=(root.cert,)))
    assert "keyUsage without keyCertSign" in refusal.detail
    good_root = _cert(None, "Root With CertSign", ca=True, key_cert_sign=True)
    good_leaf = _cert(good_root, DIP_NAME, ca=False)
    assert verify_request(
        "POST", URL, BODY, _sign(good_leaf), TrustPolicy(anchors=(good_root.cert,)), now()
    ).subject


def test_path_length_is_respected() -> None:
    root = _cert(None, "Root pathLen 0", ca=True, path_length=0, key_cert_sign=True)
    intermediate = _cert(root, "Intermediate", ca=True, key_cert_sign=True)
    leaf = _cert(intermediate, DIP_NAME, ca=False)
    trust = TrustPolicy(anchors=(root.cert, intermediate.cert))
    refusal = _refusal(_sign(leaf), trust)
    assert refusal.reason is RejectReason.UNTRUSTED_CERTIFICATE
    assert "allows 0 CA(s) below it (pathLen), the chain has 1" in refusal.detail
    root1 = _cert(None, "Root pathLen 1", ca=True, path_length=1, key_cert_sign=True)
    intermediate1 = _cert(root1, "Intermediate 1", ca=True, key_cert_sign=True)
    leaf1 = _cert(intermediate1, DIP_NAME, ca=False)
    trust1 = TrustPolicy(anchors=(root1.cert, intermediate1.cert))
    assert verify_request("POST", URL, BODY, _sign(leaf1), trust1, now()).subject


# -- certificates the verifier cannot read -----------------------------------------------------


def _headers_with_cert(pki: Pki, cert: x509.Certificate) -> dict[str, str]:
    headers = _sign(pki.signer)
    headers[HEADER_CERTIFICATE] = certificate_header(cert)
    return headers


def test_an_ed25519_certificate_is_a_malformed_header(pki: Pki) -> None:
    ed = _cert(pki.ca, DIP_NAME, public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
               key=pki.signer.key, ca=False)  # fmt: skip
    refusal = _refusal(_headers_with_cert(pki, ed.cert), TrustPolicy(anchors=(pki.ca.cert,)))
    assert refusal.reason is RejectReason.MALFORMED_HEADER
    assert "RSA" in refusal.detail


def test_an_unsupported_key_algorithm_is_a_malformed_header(pki: Pki) -> None:
    ed = _cert(pki.ca, DIP_NAME, public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
               key=pki.signer.key, ca=False)  # fmt: skip
    der = ed.cert.public_bytes(serialization.Encoding.DER)
    ed25519_oid = bytes.fromhex("06032b6570")  # 1.3.101.112
    assert der.count(ed25519_oid) == 1
    unknown = x509.load_der_x509_certificate(der.replace(ed25519_oid, bytes.fromhex("06032b657f")))
    refusal = _refusal(_headers_with_cert(pki, unknown), TrustPolicy(anchors=(pki.ca.cert,)))
    assert refusal.reason is RejectReason.MALFORMED_HEADER
    assert "public key cannot be read" in refusal.detail


def test_unparseable_extensions_are_a_malformed_header(pki: Pki) -> None:
    garbage_usage = x509.UnrecognizedExtension(x509.oid.ExtensionOID.KEY_USAGE, b"\x01\x02")
    broken = _cert(pki.ca, DIP_NAME, key=pki.signer.key, ca=False, extra=garbage_usage)
    refusal = _refusal(_headers_with_cert(pki, broken.cert), TrustPolicy(anchors=(pki.ca.cert,)))
    assert refusal.reason is RejectReason.MALFORMED_HEADER
    assert "extensions do not parse" in refusal.detail
