"""The shared arguments: one time rule, one declaration used by the CLI and the jobs alike."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util

import pytest

from reelhouse.arguments import utc_time
from reelhouse.cli import build_parser
from tests.conftest import PROJECT_DIR


def test_a_time_without_an_offset_is_utc_and_one_with_an_offset_is_converted() -> None:
    assert utc_time("2026-11-22T00:00:00") == dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    # 01:00 in UTC+1 is midnight UTC; the result is expressed in UTC, not the given zone.
    converted = utc_time("2026-11-22T01:00:00+01:00")
    assert converted == dt.datetime(2026, 11, 22, tzinfo=dt.UTC) and converted.tzinfo == dt.UTC
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        utc_time("yesterday")


def _job_parser(name: str) -> argparse.ArgumentParser:
    # The job's own parser, captured by running its main() with --help replaced by a parse.
    spec = importlib.util.spec_from_file_location(name, PROJECT_DIR / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    captured: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):  # noqa: ANN001, ANN202
        captured.append(self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            module.main([])
    finally:
        argparse.ArgumentParser.parse_args = original
    return captured[0]


@pytest.mark.parametrize(
    ("command", "job", "argv"),
    [
        ("ingest", "ingest_events", ["--trigger", "available_now"]),
        ("materialize", "materialize_online", ["--feature-time", "2026-11-22T05:00:00", "--entities", "video"]),
        ("maintain", "maintain_tables", ["--tables", "a, b", "--retention-hours", "12"]),
    ],
)
def test_the_cli_and_the_job_read_the_same_arguments_alike(command: str, job: str, argv: list[str]) -> None:
    from_cli = vars(build_parser().parse_args([command, *argv]))
    from_job = vars(_job_parser(job).parse_args(argv))
    shared = {key: value for key, value in from_job.items() if key not in ("config", "verbose")}
    assert shared and all(from_cli[key] == value for key, value in shared.items())
