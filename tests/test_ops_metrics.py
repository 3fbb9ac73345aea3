"""Shared metrics: bounded interface labels, certificate expiry that follows renewals, no
``_created`` series, build info."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from gateway.egress import metrics as egress_metrics
from gateway.egress.reasons import DeadLetterReason
from gateway.ops.metrics import (
    CERT_EXPIRY,
    DCP_LABEL,
    KNOWN_INTERFACES,
    OTHER_INTERFACE,
    export_certificate_expiry,
    interface_label,
)
from gateway.schema import default_registry
from gateway.signing.credentials import SigningCredential
from gateway.signing.keystore import DipIdSpec, KeyStore, SignerSpec
from tests import pki_fixtures
from tests.pki_fixtures import Pki, write_pem

pki = pki_fixtures.pki  # the test CA's session fixture (conftest's ``pki`` is the dev PKI)


def test_known_interfaces_are_the_packaged_documents_and_status() -> None:
    documented = {iface for iface, _ in default_registry().interfaces(include_unlisted=True)}
    assert documented | {"STATUS"} == KNOWN_INTERFACES


def test_an_unknown_interface_counts_as_other_and_adds_no_series() -> None:
    assert interface_label("IF-021") == "IF-021"
    assert interface_label("IF-999") == OTHER_INTERFACE
    first = egress_metrics.counters("metrics-test", "IF-998")
    second = egress_metrics.counters("metrics-test", "IF-997")
    assert first is second and first.interface == OTHER_INTERFACE
    second.consumed.inc()
    first.dead_lettered(DeadLetterReason.ENVELOPE).inc()
    labels = {"client": "metrics-test", "interface": OTHER_INTERFACE}
    assert REGISTRY.get_sample_value("dcpgw_egress_messages_consumed_total", labels) == 1
    dead = {**labels, "reason": "envelope"}
    assert REGISTRY.get_sample_value("dcpgw_egress_messages_dead_lettered_total", dead) == 1
    assert not any(k[1] in ("IF-998", "IF-997") for k in egress_metrics._cache)


def test_no_created_series_and_a_build_info() -> None:
    text = generate_latest(REGISTRY).decode()
    assert "_created" not in text
    assert 'dcpgw_build_info{python="' in text and 'version="' in text


def _series() -> dict[tuple[str, str, str], float]:
    out = {}
    for metric in CERT_EXPIRY.collect():
        for sample in metric.samples:
            labels = sample.labels
            out[(labels["client"], labels["kind"], labels["serial"])] = sample.value
    return out


def test_certificate_expiry_follows_a_renewal(pki: Pki, tmp_path: Path) -> None:
    key, cert = write_pem(tmp_path, "alice", pki.signer)
    api_key = tmp_path / "api-key"
    api_key.write_text("k\n")
    keystore = KeyStore(
        [SignerSpec("alice", key, cert)], [DipIdSpec("1400000001", "alice", api_key)]
    )
    mtls = SigningCredential(pki.signer_b.key, pki.signer_b.cert, "mtls.pfx")
    export_certificate_expiry(keystore, mtls, [pki.ca.cert])

    def serial(issued_cert: object) -> str:
        return format(issued_cert.serial_number, "x")  # type: ignore[attr-defined]

    old = ("alice", "signing", serial(pki.signer.cert))
    series = _series()
    assert series[old] == pki.signer.cert.not_valid_after_utc.timestamp()
    assert (DCP_LABEL, "mtls", serial(pki.signer_b.cert)) in series
    assert (DCP_LABEL, "dip_trust_anchor", serial(pki.ca.cert)) in series

    # Renewal: new files in place, picked up by the reload; the old series goes away.
    write_pem(tmp_path, "alice", pki.chained)
    stat = cert.stat()
    os.utime(cert, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    os.utime(key, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert all(event.ok for event in keystore.reload_if_changed())
    export_certificate_expiry(keystore, mtls, [])
    series = _series()
    assert old not in series
    assert ("alice", "signing", serial(pki.chained.cert)) in series
    assert not [k for k in series if k[1] == "dip_trust_anchor"]  # anchors no longer in use
