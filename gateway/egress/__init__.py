"""Egress: Kafka -> signed, batched DIP submissions, with a result or dead letter per record.

The rest of the gateway needs only the service; the modules behind it are the pure core it
shells (envelope, routing, batching, ordering, sender, outcomes, offsets, writer).
"""

from gateway.egress.service import HEALTH_NAME, EgressFailed, EgressService

__all__ = ["HEALTH_NAME", "EgressFailed", "EgressService"]
