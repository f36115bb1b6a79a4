"""The quality benchmark's runs: every source and the pipeline on one interaction log, by protocol.

``make bench-quality`` (``bench/bench_quality.py``) feeds MovieLens-100k through this; a test
feeds a tiny generated log through the same code. The protocol is Microsoft Recommenders'
MovieLens benchmark: a 75/25 split stratified by user (each user's ratings in a seeded random
order, the first 75 % train), every held-out rating relevant, top 10 over the whole catalogue
minus what the user rated in train. Three runs of :func:`reelhouse.evaluation.run.run_evaluation`:

- ``no_time``: the log without its time column;
- ``with_time``: the same split with the time column (decay, recency and "latest" features);
- ``content``: as ``no_time`` with the items' content vectors (``--item-features --vector-col``),
  to measure what content adds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelhouse.config import ReelhouseConfig
from reelhouse.evaluation.logfile import LogColumns, SplitPolicy
from reelhouse.evaluation.run import EvaluateOptions, run_evaluation

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# nDCG@10 published by Microsoft Recommenders' MovieLens-100k benchmark (same split protocol).
PUBLISHED_NDCG_AT_10 = {"sar": 0.382, "bpr": 0.442, "bivae": 0.475}
REPORTED = ("ndcg", "precision", "recall", "map")
TEST_FRACTION = 0.25
SPLIT_SEED = 42


def quality_runs(
    config: ReelhouseConfig,
    log_path: Path,
    items_path: Path | None,
    spark: Callable[[], SparkSession],
    output_dir: Path,
    *,
    time_col: str = "timestamp",
    rating_col: str | None = "rating",
    vector_col: str = "genres",
    k: int = 10,
) -> dict[str, Any]:
    """``{run: {"models": {name: {metric@k}}, "pipeline": decision, "tuning": chosen}}`` per run."""
    runs: dict[str, Any] = {}
    plans = [("no_time", None, None), ("with_time", time_col, None)]
    if items_path is not None:
        plans.append(("content", None, items_path))
    for name, time, items in plans:
        options = EvaluateOptions(
            k=(k,),
            interactions=str(log_path),
            columns=LogColumns("user_id", "item_id", time, rating_col),
            item_features=str(items) if items is not None else None,
            vector_col=vector_col if items is not None else None,
            split=SplitPolicy(valid_fraction=0.0, test_fraction=TEST_FRACTION, seed=SPLIT_SEED, method="user"),
            output_dir=output_dir / name,
        )
        log.info("quality run %s", name)
        run = run_evaluation(config, options, spark)
        models = {
            model: {f"{metric}@{k}": round(values[f"{metric}@{k}"], 4) for metric in REPORTED}
            for model, values in run.result.models.items()
        }
        runs[name] = {
            "models": models,
            "pipeline": run.result.pipeline.get("summary"),
            "validation": run.result.pipeline.get("validation"),
            "tuning": run.details.get("tuning"),
        }
    return runs


def best_source_above_pipeline(run: dict[str, Any], k: int = 10) -> list[str]:
    """Models of a run whose nDCG@k is above the pipeline's (the benchmark's "no source above" check)."""
    models = run["models"]
    pipeline = models["pipeline"][f"ndcg@{k}"]
    return [name for name, values in models.items() if name != "pipeline" and values[f"ndcg@{k}"] > pipeline]
