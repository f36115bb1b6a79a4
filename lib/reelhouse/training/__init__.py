"""Training: point-in-time training sets from impressions and gold features, and the rankers fitted on them.

The set builder needs Spark; its names load on first use, so ``reelhouse.training.columns``
stays importable without starting anything heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

_DATASET_NAMES = (
    "TrainingSetResult",
    "as_of_buckets",
    "attributed_impressions",
    "build_training_set",
    "point_in_time_join",
    "training_set_lineage",
    "training_set_table",
    "with_split",
)

__all__ = list(_DATASET_NAMES)


def __getattr__(name: str) -> Any:
    if name in _DATASET_NAMES:
        return getattr(importlib.import_module("reelhouse.training.dataset"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
