"""``reelhouse evaluate``: data (a log file or the lake) -> every model's metrics -> report.

The recall sources are the ones candidate generation uses
(:func:`reelhouse.recall.candidates.make_sources`: each source with a positive quota in
``recall.quotas`` that the data can feed), and the pipeline blends them with the same quotas.
A SparkSession is only started when needed (ALS, or reading the lake).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import EvaluationError
from reelhouse.evaluation.data import evaluation_data
from reelhouse.evaluation.item_features import read_item_features
from reelhouse.evaluation.logfile import LogColumns, SplitPolicy, read_interaction_log, write_quarantine
from reelhouse.evaluation.protocol import EvaluationData, EvaluationResult, evaluate_data
from reelhouse.evaluation.report import markdown_report, write_report

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateOptions:
    """What to evaluate and where the report goes (``interactions`` None: the lake's silver events)."""

    k: tuple[int, ...] = (10, 20)
    interactions: str | None = None
    columns: LogColumns = LogColumns("user_id", "item_id")
    item_features: str | None = None
    item_features_col: str | None = None  # default: the log's item column
    vector_col: str | None = None
    min_rating: float | None = None
    split: SplitPolicy = SplitPolicy()
    output_dir: Path | None = None  # default: <data_dir>/evaluation
    max_users: int | None = None
    pipeline: bool = True
    end: dt.datetime | None = None  # lake only: events before this time (default: all)


@dataclass
class EvaluationRun:
    result: EvaluationResult
    markdown: str
    paths: dict[str, Path] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)


def load_log_data(options: EvaluateOptions, output_dir: Path) -> tuple[EvaluationData, dict[str, object]]:
    """Evaluation data of an interaction log file; its import report and quarantine go to ``output_dir``."""
    log_ = read_interaction_log(options.interactions, options.columns, options.split)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = log_.report
    report.quarantine = write_quarantine(log_.quarantine, str(output_dir / "quarantine.parquet"))
    features = None
    if options.item_features is not None:
        features = read_item_features(
            options.item_features, options.item_features_col or options.columns.item, options.vector_col
        )
        report.item_features = features.num_rows
    (output_dir / "import_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    log.info("import: %s", report.to_json())
    data = evaluation_data(log_.rows, features, options.vector_col, options.min_rating)
    details = {
        "data": options.interactions,
        "rows": f"{report.valid} valid of {report.rows_read} read; malformed {report.malformed or 'none'}",
        "split": f"{report.split_method} {report.splits}"
        + (f" from {report.split_times}" if report.split_times else ""),
    }
    return data, details


def run_evaluation(
    config: ReelhouseConfig, options: EvaluateOptions, spark: Callable[[], SparkSession]
) -> EvaluationRun:
    """Evaluate the baselines, the recall sources and the pipeline; write the report.

    ``spark`` returns the job's SparkSession, called only when a session is needed.
    """
    from reelhouse.evaluation.pipeline import PipelineOptions
    from reelhouse.recall.candidates import make_source, make_sources
    from reelhouse.recall.tuning import tune_recall

    output_dir = options.output_dir or Path(config.data_dir) / "evaluation"
    if options.interactions is not None:
        data, details = load_log_data(options, output_dir)
    else:
        from reelhouse.evaluation.lakehouse import evaluation_data_from_lake

        data = evaluation_data_from_lake(spark(), config, options.split, end=options.end)
        details = {
            "data": data.description.get("source"),
            **{k: v for k, v in data.description.items() if k != "source"},
        }

    needs_spark = config.recall.quotas.get("als", 0) > 0
    session = spark() if needs_spark else None
    # Hyper-parameters chosen on a holdout of the training data drawn like the test (never the test).
    recall, tuning = tune_recall(
        config.recall,
        lambda candidate, name: make_source(session, candidate, name, data.train, None),
        data.train,
        temporal=data.temporal,
        seed=config.recall.seed,
    )
    if tuning.chosen:
        details["tuning"] = f"{tuning.chosen} on a {tuning.holdout} holdout of {tuning.users} users (tuning.json)"
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "tuning.json").write_text(json.dumps(tuning.to_dict(), indent=2))
        config = config.model_copy(update={"recall": recall})
    # No fixed as_of: decayed sources age pairs from the latest interaction of whatever they are
    # fitted on, so the pipeline's earlier fit and the full fit decay alike.
    sources = {s.name: s for s in make_sources(session, config, data.train, None)}
    if not sources and options.pipeline:
        raise EvaluationError("recall.quotas enables no source these data can feed; nothing to evaluate but baselines")
    pipeline = (
        PipelineOptions(quotas=dict(config.recall.quotas), seed=config.training.seed) if options.pipeline else None
    )
    result = evaluate_data(
        data, options.k, sources, pipeline=pipeline, seed=config.recall.seed, max_users=options.max_users
    )
    paths = write_report(result, output_dir, details)
    return EvaluationRun(result, markdown_report(result, details), paths, details)


def options_from_args(args: argparse.Namespace) -> EvaluateOptions:
    """:class:`EvaluateOptions` from :func:`reelhouse.evaluation.options.add_evaluate_arguments`."""
    return EvaluateOptions(
        k=tuple(args.k),
        interactions=args.interactions,
        columns=LogColumns(args.user_col, args.item_col, args.time_col, args.rating_col, args.split_col),
        item_features=args.item_features,
        item_features_col=args.item_features_col,
        vector_col=args.vector_col,
        min_rating=args.min_rating,
        split=SplitPolicy(args.valid_fraction, args.test_fraction, args.split_seed, method=args.split_method),
        output_dir=args.output_dir,
        max_users=args.max_users,
        pipeline=args.pipeline,
        end=args.end,
    )
