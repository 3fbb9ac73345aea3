"""Running the gateway as a process: event loop, logging, health and metrics endpoints,
process-wide collector tuning."""

from gateway.ops.collector import tuned_for_streaming, young_threshold
from gateway.ops.eventloop import loop_factory
from gateway.ops.eventloop import run as run_on_loop
from gateway.ops.health import Health
from gateway.ops.logging import configure_logging
from gateway.ops.metrics import CERT_EXPIRY, CREDENTIAL_RELOADS, export_certificate_expiry
from gateway.ops.server import ops_app, start_ops_server

__all__ = [
    "CERT_EXPIRY",
    "CREDENTIAL_RELOADS",
    "Health",
    "configure_logging",
    "export_certificate_expiry",
    "loop_factory",
    "ops_app",
    "run_on_loop",
    "start_ops_server",
    "tuned_for_streaming",
    "young_threshold",
]
