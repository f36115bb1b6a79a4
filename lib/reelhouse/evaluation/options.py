"""Command-line arguments of ``reelhouse evaluate`` (argparse only: the CLI builds every parser at start)."""

from __future__ import annotations

import argparse
from pathlib import Path

from reelhouse.arguments import add_interaction_log_arguments, utc_time


def k_values(text: str) -> tuple[int, ...]:
    """``"10,20"`` -> ``(10, 20)``; each K a positive integer."""
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated integers such as 10,20, got {text!r}") from e
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"--k values must be positive integers, got {text!r}")
    return values


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (default: the lake's silver events, the last day held out)")
    data.add_argument(
        "--end",
        type=utc_time,
        default=None,
        help="lake only: evaluate events before this ISO time (default: all); the last day before it is held out",
    )
    data.add_argument("--interactions", default=None, help="CSV or Parquet interaction log to evaluate on instead")
    add_interaction_log_arguments(data)
    data.add_argument(
        "--min-rating",
        type=float,
        default=None,
        help="a row is a positive when its rating is at least this (default: above 0)",
    )
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
