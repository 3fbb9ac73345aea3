"""Shared fixtures. Each family lives in its own module; this file only gathers them."""

from tests.asyncio_fixtures import _cancel_leaked_tasks  # noqa: F401
from tests.dipsim_fixtures import (  # noqa: F401
    dev_pki,
    dev_pki_manifest,
    pki,
    simulator,
    webhook_receiver,
)
from tests.kafka_fixtures import kafka  # noqa: F401
