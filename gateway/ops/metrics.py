"""Metrics shared by every part of the gateway (egress and ingress keep their own modules).

Names follow Prometheus conventions: ``dcpgw_`` prefix, base units, ``_total`` for counters.
No ``_created`` series: they double every counter's series and no rule here uses them.
Label values are bounded: clients come from the configuration, interfaces from
:data:`KNOWN_INTERFACES` (anything else is ``other``), reasons from fixed enums.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from cryptography import x509
from prometheus_client import Counter, Gauge, Info, disable_created_metrics

from gateway.signing.credentials import SigningCredential
from gateway.signing.keystore import KeyStore

disable_created_metrics()  # type: ignore[no-untyped-call]

DCP_LABEL: Final = "(dcp)"
"""The ``client`` label of what belongs to the DCP, not one client (mTLS, DIP trust anchors).
Client names cannot contain parentheses, so it never collides with one."""
OTHER_INTERFACE: Final = "other"

KNOWN_INTERFACES: Final = frozenset(
    (
        "IF-001",
        "IF-002",
        "IF-003",
        "IF-004",
        "IF-005",
        "IF-006",
        "IF-007",
        "IF-008",
        "IF-009",
        "IF-013",
        "IF-014",
        "IF-015",
        "IF-016",
        "IF-018",
        "IF-019",
        "IF-020",
        "IF-021",
        "IF-022",
        "IF-023",
        "IF-024",
        "IF-025",
        "IF-026",
        "IF-027",
        "IF-028",
        "IF-031",
        "IF-032",
        "IF-033",
        "IF-034",
        "IF-035",
        "IF-036",
        "IF-037",
        "IF-038",
        "IF-039",
        "IF-040",
        "IF-041",
        "IF-043",
        "IF-044",
        "IF-045",
        "IF-047",
        "IF-050",
        "IF-051",
        "IF-061",
        "IF-062",
        "IF-063",
        "IF-064",
        "IF-065",
        "REP-002",
        "REP-002A",
        "REP-002B",
        "REP-003",
        "REP-003A",
        "REP-004",
        "REP-006",
        "REP-007",
        "REP-008",
        "REP-009",
        "REP-900",
        "REP-901",
        "STATUS",
    )
)
"""Interface IDs that may be a label value: every interface of the packaged DIP 2.2.1 document
(a test keeps this equal to the schema registry's list) and status messages."""


def interface_label(interface_id: str) -> str:
    """``interface_id`` when it is a known interface, else ``other`` (bounded series)."""
    return interface_id if interface_id in KNOWN_INTERFACES else OTHER_INTERFACE


BUILD_INFO = Info("dcpgw_build", "The running gateway's version (value is always 1).")
CERT_EXPIRY = Gauge(
    "dcpgw_certificate_expiry_timestamp_seconds",
    "When a certificate the gateway uses expires (Unix time), by client and kind "
    "(signing, mtls, dip_trust_anchor); serial tells renewed certificates apart.",
    ["client", "kind", "serial"],
)
CREDENTIAL_RELOADS = Counter(
    "dcpgw_credential_reloads_total",
    "Credential or API key files re-read after a change, by outcome.",
    ["outcome"],
)

_exported: set[tuple[str, str, str]] = set()


def _gateway_version() -> str:
    try:
        return version("dcp-gateway")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


BUILD_INFO.info({"version": _gateway_version(), "python": platform.python_version()})


def export_certificate_expiry(
    keystore: KeyStore,
    mtls: SigningCredential | None = None,
    trust_anchors: Iterable[x509.Certificate] = (),
) -> None:
    """Set the expiry gauge to the certificates in use now: every client's signing certificate,
    the DCP's mTLS certificate (when it expires, every client stops at once) and the CA
    certificates DIP publications are verified against. Series of certificates no longer in
    use (renewed, or a client removed) are removed, so an expiry alert resolves on renewal."""
    current: dict[tuple[str, str, str], float] = {}
    for name, credential in keystore.credentials().items():
        current[_key(name, "signing", credential.certificate)] = _expiry(credential.certificate)
    if mtls is not None:
        current[_key(DCP_LABEL, "mtls", mtls.certificate)] = _expiry(mtls.certificate)
    for anchor in trust_anchors:
        current[_key(DCP_LABEL, "dip_trust_anchor", anchor)] = _expiry(anchor)
    for gone in _exported - current.keys():
        CERT_EXPIRY.remove(*gone)
    for labels, when in current.items():
        CERT_EXPIRY.labels(*labels).set(when)
    _exported.clear()
    _exported.update(current)


def _key(client: str, kind: str, certificate: x509.Certificate) -> tuple[str, str, str]:
    return (client, kind, format(certificate.serial_number, "x"))


def _expiry(certificate: x509.Certificate) -> float:
    return certificate.not_valid_after_utc.timestamp()
