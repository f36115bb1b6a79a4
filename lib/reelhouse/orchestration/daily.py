"""The daily batch flow in one process: the ``reelhouse_daily`` DAG's jobs, in the DAG's order.

Airflow runs each step as a task of its own (a spark-submit or a job script, with retries); a
caller that already holds a SparkSession and wants the whole day rebuilt now — the multi-day
closed loop (``reelhouse simulate --closed-loop --days N``) — runs the same library functions
those tasks call, in the order of :data:`DAILY_STEPS` (a test checks the DAG against it):

1. ``build_silver`` for ``[start, end)``;
2. ``build_features``: gold as of ``end``;
3. ``build_training_set``: impressions of ``[end - training_days, end)`` (or ``training_start``);
4. ``train``: both ranker kinds, registered without the gate (the DAG's parallel train tasks);
5. ``promote``: the gate over the new versions;
6. ``build_candidates`` as of ``end``;
7. ``materialize_online``: gold of ``end`` into the online store.

The DAG's ``evaluate`` task (the offline top-K report beside training) feeds no later step, so it
is left out here; run ``reelhouse evaluate`` for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reelhouse.config import ReelhouseConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from reelhouse.training.promotion import PromotionDecision

log = logging.getLogger(__name__)

# The DAG's task ids in dependency order; ``train`` stands for its train_<kind> tasks.
DAILY_STEPS = (
    "build_silver",
    "build_features",
    "build_training_set",
    "train",
    "promote",
    "build_candidates",
    "materialize_online",
)


@dataclass
class DailyResult:
    start: str
    end: str
    silver_rows: int = 0
    training_rows: dict[str, int] = field(default_factory=dict)  # per split
    versions: dict[str, int] = field(default_factory=dict)  # ranker kind -> registered version
    decision: PromotionDecision | None = None
    candidates: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per step

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "silver_rows": self.silver_rows,
            "training_rows": self.training_rows,
            "versions": self.versions,
            "decision": None if self.decision is None else self.decision.to_dict(),
            "candidates": self.candidates,
            "seconds": self.seconds,
        }


def run_daily_flow(
    spark: SparkSession,
    config: ReelhouseConfig,
    start: dt.datetime,
    end: dt.datetime,
    *,
    training_start: dt.datetime | None = None,
) -> DailyResult:
    """Rebuild ``[start, end)`` and everything serving reads from it (module docstring)."""
    from reelhouse.features.gold import build_features
    from reelhouse.online.materialize import materialize_online
    from reelhouse.recall.candidates import build_candidates
    from reelhouse.silver.build import build_silver
    from reelhouse.training.dataset import build_training_set
    from reelhouse.training.promotion import promote_versions
    from reelhouse.training.ranker import train_from_lake

    result = DailyResult(start=start.isoformat(), end=end.isoformat())
    training_start = training_start or end - dt.timedelta(days=config.orchestration.training_days)

    def step(name: str, run: Any) -> Any:
        log.info("daily flow [%d/%d] %s for [%s, %s)", DAILY_STEPS.index(name) + 1, len(DAILY_STEPS), name, start, end)
        began = time.monotonic()
        value = run()
        result.seconds[name] = round(time.monotonic() - began, 2)
        return value

    result.silver_rows = step("build_silver", lambda: build_silver(spark, config, start, end)).rows
    step("build_features", lambda: build_features(spark, config, end))
    built = step("build_training_set", lambda: build_training_set(spark, config, training_start, end))
    result.training_rows = dict(built.rows)
    trained = step("train", lambda: train_from_lake(config, promote=False))
    result.versions = {kind: run.version for kind, run in trained.models.items()}
    result.decision = step("promote", lambda: promote_versions(config, list(result.versions.values())))
    candidates = step("build_candidates", lambda: build_candidates(spark, config, end))
    result.candidates = sum(candidates.candidates.values())
    step("materialize_online", lambda: materialize_online(spark, config, end))
    return result
