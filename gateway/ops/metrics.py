"""Metrics shared by every part of the gateway (egress and ingress keep their own modules).

Names follow Prometheus conventions: ``dcpgw_`` prefix, base units, ``_total`` for counters.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from gateway.signing.credentials import SigningCredential
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


def export_certificate_expiry(
    keystore: KeyStore, others: dict[str, SigningCredential] | None = None
) -> None:
    """Refresh the expiry gauge: every client's signing certificate, plus ``others`` (the DCP's
    mTLS certificate: when it expires, every client stops at once). Called at start and on
    every reload tick, since the number of days left changes with time, not only with files."""
    days = keystore.days_to_expiry()
    for name, credential in keystore.credentials().items():
        CERT_DAYS_TO_EXPIRY.labels(certificate=f"signing:{name}", subject=credential.subject).set(
            days[name]
        )
    now = datetime.now(UTC)
    for name, credential in (others or {}).items():
        CERT_DAYS_TO_EXPIRY.labels(certificate=name, subject=credential.subject).set(
            credential.days_to_expiry(now)
        )
