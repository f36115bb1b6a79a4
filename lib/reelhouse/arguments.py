"""The one declaration of every argument the ``reelhouse`` CLI and the ``jobs/*.py`` entry points share.

Argparse only (the CLI builds every parser at start-up, so nothing heavy is imported here).

**The time rule.** Every time argument is ISO 8601 and read by :func:`utc_time`: a time with an
offset is converted to UTC, a time without one *is* UTC (never the machine's local zone), so a
job gives the same answer on a laptop in Berlin and on a cluster in UTC.
"""

from __future__ import annotations

import argparse
import datetime as dt

TRIGGERS = ("available_now", "processing_time")


def utc_time(text: str) -> dt.datetime:
    """An ISO 8601 time as an aware UTC datetime; one without an offset is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-11-21T00:00:00+00:00, got {text!r}"
        ) from e
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def add_trigger_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trigger",
        choices=TRIGGERS,
        default=None,
        help="available_now drains the topic and stops; processing_time runs until stopped (default: config)",
    )


def add_materialize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--feature-time",
        default=None,
        type=utc_time,
        help="the feature time to load (ISO, a whole hour; without an offset UTC; default: each table's latest)",
    )
    parser.add_argument("--entities", default=None, help="comma-separated: video,user,user_topic (default: all)")


def add_maintenance_arguments(parser: argparse.ArgumentParser) -> None:
    from reelhouse.lake.maintenance import table_names

    parser.add_argument("--tables", type=table_names, default=None, help="comma-separated tables (default: config)")
    parser.add_argument("--retention-hours", type=int, default=None, help="VACUUM retention (default: config)")


def add_interaction_log_arguments(group: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Columns of an interaction log file, its item features, and how it is split without a split column."""
    group.add_argument("--user-col", default="user_id", help="user column of the log (default: user_id)")
    group.add_argument("--item-col", default="item_id", help="item column of the log (default: item_id)")
    group.add_argument("--time-col", default=None, help="time column: epoch s/ms/us/ns or ISO 8601")
    group.add_argument("--rating-col", default=None, help="rating or watch-ratio column; weights the pairs")
    group.add_argument(
        "--split-col",
        default=None,
        help="column of train/valid/test (default: a time cut, or a seeded random split without time)",
    )
    group.add_argument(
        "--split-method",
        choices=("auto", "time", "random", "user"),
        default="auto",
        help="without a split column: a time cut, rows at random, or stratified by user "
        "(default auto: time with --time-col, else random)",
    )
    group.add_argument(
        "--valid-fraction", type=float, default=0.1, help="share of rows for valid without a split column"
    )
    group.add_argument("--test-fraction", type=float, default=0.1, help="share of rows for test without a split column")
    group.add_argument("--split-seed", type=int, default=7, help="seed of a random or per-user split")
    group.add_argument(
        "--item-features", default=None, help="CSV or Parquet of item attributes (e.g. topic) and vectors"
    )
    group.add_argument("--item-features-col", default=None, help="item column of --item-features (default: --item-col)")
