"""Egress's outcome writer is the shared :mod:`gateway.kafka.writer` (ingress produces through it
too); these names stay importable from here for egress's modules."""

from __future__ import annotations

from gateway.kafka.writer import OutRecord, RecordWriter, murmur2
from gateway.kafka.writer import RecordWriter as OutcomeWriter

__all__ = ["OutRecord", "OutcomeWriter", "RecordWriter", "murmur2"]
