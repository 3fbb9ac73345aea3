"""Metrics shared by every part of the gateway (egress and ingress keep their own modules).

Names follow Prometheus conventions: ``dcpgw_`` prefix, base units, ``_total`` for counters.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.signing.keystore import KeyStore

CERT_DAYS_TO_EXPIRY = Gauge(
    "dcpgw_certificate_days_to_expiry",
    "Days until a certificate the gateway uses expires (negative: expired).",
    ["certificate", "subject"],
)
CREDENTIAL_RELOADS = Counter(
    "dcpgw_credential_reloads_total",
    "Credential or API key files re-read after a change, by outcome.",
    ["outcome"],
)


def export_certificate_expiry(keystore: KeyStore) -> None:
    """Refresh the expiry gauge from the key store (called at start and after each reload)."""
    days = keystore.days_to_expiry()
    for name, credential in keystore.credentials().items():
        CERT_DAYS_TO_EXPIRY.labels(certificate=f"signing:{name}", subject=credential.subject).set(
            days[name]
        )
