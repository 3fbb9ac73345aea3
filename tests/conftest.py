"""Shared fixtures. Each family lives in its own module; this file only gathers them."""

import pytest

from tests.asyncio_fixtures import _cancel_leaked_tasks  # noqa: F401
from tests.dipsim_fixtures import (  # noqa: F401
    dev_pki,
    dev_pki_manifest,
    pki,
    simulator,
    webhook_receiver,
)
from tests.kafka_fixtures import (  # noqa: F401
    broker_description,
    kafka,
    kafka_cluster,
    own_broker,
    tansu,
)

pytest_plugins = ["tests.secrets_scan"]  # no secret in any output of the whole suite


def pytest_report_header(config: pytest.Config) -> str:
    return broker_description()
