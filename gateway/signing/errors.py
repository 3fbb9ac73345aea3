"""Why a signature was refused: one closed set of reasons, each with a precise detail."""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    BAD_CONTENT_HASH = "bad_content_hash"
    BAD_SIGNATURE = "bad_signature"
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"
    SIGNER_NOT_ALLOWED = "signer_not_allowed"  # chains to the anchor, but is not a DIP signer
    CERTIFICATE_EXPIRED = "certificate_expired"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    CERTIFICATE_NOT_FOR_SIGNING = "certificate_not_for_signing"
    DATE_OUT_OF_SKEW = "date_out_of_skew"


class SignatureRejected(Exception):
    """A request's signature does not hold. ``reason`` is for metrics, ``detail`` for people."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
