"""Shared fixtures. Each family lives in its own module; this file only gathers them."""

from tests.kafka_fixtures import kafka  # noqa: F401
