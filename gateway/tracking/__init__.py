"""Response tracking (opt-in): which accepted requests still await their response publication.

A request the DIP accepted (a result record with a ``senderCorrelationID``) awaits until a
publication arrives on the same client's inbound topic whose ``D0.initialCorrelationID`` (or,
when the DIP gives none, ``S1.senderCorrelationID``) is that ID. Pure state in
:mod:`~gateway.tracking.awaiting`; the consumer around it in :mod:`~gateway.tracking.service`.
Imports neither egress nor ingress: it reads what they write.
"""
