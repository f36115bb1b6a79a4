"""Fixtures shared by every test: one SparkSession per test session, built by the project's factory."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def spark():
    """local[2], UI off, UTC, two shuffle partitions, reelhouse data sources registered."""
    from reelhouse.config import load_config
    from reelhouse.session import spark_session

    config = load_config(
        PROJECT_DIR / "conf" / "local.yaml",
        environ={
            "REELHOUSE__SPARK__MASTER": "local[2]",
            "REELHOUSE__SPARK__SHUFFLE_PARTITIONS": "2",
            "REELHOUSE__SPARK__CONF__SPARK.DRIVER.MEMORY": "2g",
        },
    )
    session = spark_session(config, "tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
