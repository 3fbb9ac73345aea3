"""Dead-letter re-drive: ``dcp-gateway dlq list|redrive``.

``letters`` reads a dead letter's headers and filters them, ``policy`` says which reason
classes a re-send can fix, ``plan`` decides per dead letter and builds the re-produced record
and the re-drive log entry (all pure); ``kafka`` is the thin shell that reads the dead-letter
and log topics to their end and produces. Egress does not import this package.
"""
