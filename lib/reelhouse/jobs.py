"""What every ``jobs/*.py`` entry point shares: arguments, logging, config, session, exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
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


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="YAML config file (default: $REELHOUSE_CONFIG or conf/local.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_spark_job(
    args: argparse.Namespace, job_name: str, body: Callable[[Any, ReelhouseConfig], Any]
) -> int:
    """Load config, build the one SparkSession, run ``body(spark, config)``, print its JSON result."""
    configure_logging(args.verbose)
    try:
        config = load_config(args.config)
        from reelhouse.session import spark_session

        spark = spark_session(config, job_name)
        try:
            result = body(spark, config)
        finally:
            # Stopping Spark explicitly: a driver that exits with delta-rs loaded and Spark
            # still up can abort in native teardown.
            spark.stop()
    except ReelhouseError as e:
        print(f"{job_name}: error: {e}", file=sys.stderr)
        return 2
    if result is not None and hasattr(result, "to_json"):
        print(result.to_json())
    return 0
