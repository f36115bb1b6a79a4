"""What every ``jobs/*.py`` entry point shares: arguments, logging, config, session, exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.errors import ReelhouseError


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # py4j logs every callback at INFO; that is noise for people running jobs.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # httpx logs every request at INFO: thousands of lines for one closed-loop run.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config", default=None, help="YAML config file (default: $REELHOUSE_CONFIG or conf/local.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_job(args: argparse.Namespace, job_name: str, body: Callable[[ReelhouseConfig], Any]) -> int:
    """Load config, run ``body(config)``, print its JSON result; the exit code says how it went.

    0: done; 1: done but the result says not ``ok``; 2: a :class:`ReelhouseError` (one line on
    stderr, no traceback: bad input or configuration, not a bug).
    """
    configure_logging(args.verbose)
    try:
        result = body(load_config(args.config))
    except ReelhouseError as e:
        print(f"{job_name}: error: {e}", file=sys.stderr)
        return 2
    if result is not None and hasattr(result, "to_json"):
        print(result.to_json())
    return 1 if getattr(result, "ok", True) is False else 0


@contextmanager
def job_session(config: ReelhouseConfig, job_name: str) -> Iterator[Any]:
    """The one way a job or CLI command gets Spark: the config's session, stopped on the way out."""
    from reelhouse.session import spark_session

    spark = spark_session(config, job_name)
    try:
        yield spark
    finally:
        # Stopping Spark explicitly: a driver that exits with delta-rs loaded and Spark
        # still up can abort in native teardown.
        spark.stop()


def run_spark_job(args: argparse.Namespace, job_name: str, body: Callable[[Any, ReelhouseConfig], Any]) -> int:
    """:func:`run_job` with the one SparkSession built from the config: ``body(spark, config)``."""

    def with_spark(config: ReelhouseConfig) -> Any:
        with job_session(config, job_name) as spark:
            return body(spark, config)

    return run_job(args, job_name, with_spark)
