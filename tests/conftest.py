"""Fixtures shared by every test: one SparkSession per test session, built by the project's factory.

Under ``CI=true`` nothing passes by skipping: a test that skipped (whatever the reason) fails
the session, listed by name at the end. Expected failures (``xfail``) are not skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
ON_CI = os.environ.get("CI", "").lower() == "true"
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if ON_CI and _SKIPPED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int) -> None:  # noqa: ANN001 - pytest's hook
    if ON_CI and _SKIPPED:
        terminalreporter.section("skipped under CI=true (a failure: install what they need)", red=True)
        for line in _SKIPPED:
            terminalreporter.line(line)


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
