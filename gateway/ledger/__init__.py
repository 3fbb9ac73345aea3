"""The submission ledger: one record per DIP request and per verified push on an audit topic,
what proves what was exchanged (hashes, certificates, statuses, transaction IDs) without the
bodies or any secret. Records are pure (:mod:`~gateway.ledger.records`); the writer is the DIP
client's observer (:mod:`~gateway.ledger.publisher`); the reader serves ``dcp-gateway audit``
(:mod:`~gateway.ledger.reader`). Imports neither egress nor ingress."""
