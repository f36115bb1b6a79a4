"""Command-line arguments of ``reelhouse evaluate`` (argparse only: the CLI builds every parser at start)."""

from __future__ import annotations

import argparse
from pathlib import Path

from reelhouse.arguments import add_interaction_log_arguments, utc_time
from reelhouse.errors import EvaluationError
from reelhouse.evaluation.off_policy import DEFAULT_CLIP, parse_model_ref


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
        help="lake only: evaluate events before this ISO time (default: all); the last day before it is held out; "
        "with --off-policy: impressions before this time",
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
    off_policy = parser.add_argument_group(
        "off-policy evaluation of a registered ranker on the logged impressions (docs/off_policy.md)"
    )
    off_policy.add_argument(
        "--off-policy",
        action="store_true",
        help="instead of the top-K evaluation: estimate the watch ratio --model would have earned on the training "
        "set's logged impressions (clipped IPS and SNIPS) beside the logged policy's; the JSON is the last line",
    )
    off_policy.add_argument(
        "--model", type=model_ref, default=None, metavar="REF", help="version:<n> or alias:<name> of the ranker"
    )
    off_policy.add_argument(
        "--start",
        type=utc_time,
        default=None,
        help="impressions at or after this ISO time (default with no --end either: the training set's test split)",
    )
    off_policy.add_argument(
        "--clip", type=clip_value, default=None, help=f"cap of the importance weights (default: {DEFAULT_CLIP:g})"
    )


def model_ref(text: str) -> str:
    """``version:3`` or ``alias:champion``, as given."""
    try:
        parse_model_ref(text)
    except EvaluationError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def clip_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--clip takes a finite number >= 1, got {text!r}")
    return value


_OFF_POLICY_ONLY = {"--model": "model", "--start": "start", "--clip": "clip"}
_TOP_K_ONLY = {"--interactions": "interactions", "--max-users": "max_users", "--output-dir": "output_dir"}


def check_evaluate_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations argparse cannot refuse by itself; a bad one exits 2 through ``parser.error``."""
    if args.off_policy:
        if args.model is None:
            parser.error("--off-policy needs --model version:<n> or alias:<name> (the ranker to evaluate)")
        given = [flag for flag, key in _TOP_K_ONLY.items() if getattr(args, key) is not None]
        if given:
            parser.error(f"{', '.join(given)} cannot be used with --off-policy (it reads the lake's training set)")
    else:
        given = [flag for flag, key in _OFF_POLICY_ONLY.items() if getattr(args, key) is not None]
        if given:
            parser.error(f"{', '.join(given)}: only with --off-policy")
