"""Fixtures of the lake tests: maintenance against a live ingestion stream needs the ingestion tests' own."""

from tests.integration.streaming.conftest import ingest_config  # noqa: F401 - a fixture
