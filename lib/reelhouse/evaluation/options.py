"""Command-line arguments of ``reelhouse evaluate`` (argparse only: the CLI builds every parser at start)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


def k_values(text: str) -> tuple[int, ...]:
    """``"10,20"`` -> ``(10, 20)``; each K a positive integer."""
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated integers such as 10,20, got {text!r}") from e
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"--k values must be positive integers, got {text!r}")
    return values


def utc_time(text: str) -> dt.datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-11-21T00:00:00+00:00, got {text!r}"
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (default: the lake's silver events, the last day held out)")
    data.add_argument(
        "--end",
        type=utc_time,
        default=None,
        help="lake only: evaluate events before this ISO time (default: all); the last day before it is held out",
    )
    data.add_argument("--interactions", default=None, help="CSV or Parquet interaction log to evaluate on instead")
    data.add_argument("--user-col", default="user_id", help="user column of the log (default: user_id)")
    data.add_argument("--item-col", default="item_id", help="item column of the log (default: item_id)")
    data.add_argument("--time-col", default=None, help="time column: epoch s/ms/us/ns or ISO 8601")
    data.add_argument("--rating-col", default=None, help="rating or watch-ratio column; weights the pairs")
    data.add_argument(
        "--min-rating",
        type=float,
        default=None,
        help="a row is a positive when its rating is at least this (default: above 0)",
    )
    data.add_argument(
        "--split-col",
        default=None,
        help="column of train/valid/test (default: a time cut, or a seeded random split without time)",
    )
    data.add_argument(
        "--split-method",
        choices=("auto", "time", "random", "user"),
        default="auto",
        help="without a split column: a time cut, rows at random, or stratified by user "
        "(default auto: time with --time-col, else random)",
    )
    data.add_argument(
        "--valid-fraction", type=float, default=0.1, help="share of rows for valid without a split column"
    )
    data.add_argument("--test-fraction", type=float, default=0.1, help="share of rows for test without a split column")
    data.add_argument("--item-features", default=None, help="CSV or Parquet of item attributes (e.g. topic)")
    data.add_argument("--item-features-col", default=None, help="item column of --item-features (default: --item-col)")
    data.add_argument("--vector-col", default=None, help="embedding column (list of floats) of --item-features")
    parser.add_argument("--k", type=k_values, default=(10, 20), help="cut-offs, comma-separated (default: 10,20)")
    parser.add_argument("--max-users", type=int, default=None, help="evaluate a seeded sample of this many users")
    parser.add_argument(
        "--no-pipeline",
        dest="pipeline",
        action="store_false",
        help="skip the blended and ranked pipeline (recall sources and baselines only)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where report.md, metrics.png and metrics.json go (default: <data_dir>/evaluation)",
    )
