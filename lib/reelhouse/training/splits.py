"""A training-set snapshot as the rankers use it: model inputs, labels and its train/valid/test splits.

The ``train`` rows the models are fitted on are a seeded sample of at most
``training.max_fit_rows``, cut in Arrow before pandas sees them. :func:`popularity_scores` is the
baseline every ranker is measured against (a video's plays in the last day).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from reelhouse.config import TrainingConfig
from reelhouse.errors import ReelhouseError
from reelhouse.training.columns import LABEL, MODEL_INPUT_COLUMNS, SPLIT
from reelhouse.training.models import model_inputs
from reelhouse.training.promotion import USER_COLUMN

POPULARITY_COLUMN = "video_plays_1d"  # the baseline's score: plays of the video in the last day
REQUIRED_COLUMNS: tuple[str, ...] = (*MODEL_INPUT_COLUMNS, LABEL, SPLIT, USER_COLUMN)


@dataclass
class Splits:
    """The training set's splits with model inputs in :func:`model_inputs` dtypes; ``fit`` is the
    (possibly sampled) part of ``train`` the models are fitted on."""

    train: pd.DataFrame
    fit: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    train_rows: int | None = None  # rows of train when only the sampled ``fit`` rows were loaded

    def rows(self) -> dict[str, int]:
        train = len(self.train) if self.train_rows is None else self.train_rows
        return {"train": train, "fit": len(self.fit), "valid": len(self.valid), "test": len(self.test)}


def _sample_train_in_arrow(table: pa.Table, training: TrainingConfig) -> tuple[pa.Table, int]:
    """``table`` with its train rows cut to a seeded sample of ``max_fit_rows``, and the train count.

    Done before pandas sees the rows, so a set of tens of millions of examples never becomes a
    DataFrame (or several copies of one) in full.
    """
    import pyarrow.compute as pc

    is_train = pc.equal(table[SPLIT], "train")
    train_rows = int(pc.sum(is_train).as_py() or 0)
    if train_rows <= training.max_fit_rows:
        return table, train_rows
    train_at = np.flatnonzero(is_train.to_numpy(zero_copy_only=False))
    keep = np.random.default_rng(training.seed).choice(train_at, size=training.max_fit_rows, replace=False)
    others = np.flatnonzero(~is_train.to_numpy(zero_copy_only=False))
    return table.take(pa.array(np.sort(np.concatenate([keep, others])))), train_rows


def split_training_set(training_set: pd.DataFrame | pa.Table, training: TrainingConfig) -> Splits:
    train_rows = None
    if isinstance(training_set, pa.Table):
        if SPLIT in training_set.column_names:
            training_set, train_rows = _sample_train_in_arrow(training_set, training)
        frame = training_set.to_pandas()
    else:
        frame = training_set
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ReelhouseError(f"training set lacks columns {missing}; rebuild it with the current training-set builder")
    frame = pd.concat([model_inputs(frame), frame[USER_COLUMN], frame[LABEL].astype(np.int64), frame[SPLIT]], axis=1)
    parts = {name: frame[frame[SPLIT] == name].reset_index(drop=True) for name in ("train", "valid", "test")}
    for name, part in parts.items():
        if part.empty:
            raise ReelhouseError(f"training set has no {name!r} rows; is it built over enough days of impressions?")
        if part[LABEL].nunique() < 2:
            only = part[LABEL].iloc[0]
            raise ReelhouseError(f"the {name!r} split has only label {only}; a ranker needs both classes")
    train = parts["train"]
    fit = train
    if len(train) > training.max_fit_rows:
        fit = train.sample(n=training.max_fit_rows, random_state=training.seed).reset_index(drop=True)
    return Splits(train=train, fit=fit, valid=parts["valid"], test=parts["test"], train_rows=train_rows)


def popularity_scores(frame: pd.DataFrame) -> np.ndarray:
    """The baseline: a video's plays in the last day (0 when unknown)."""
    if POPULARITY_COLUMN not in frame.columns:
        return np.zeros(len(frame))
    return frame[POPULARITY_COLUMN].fillna(0.0).to_numpy(dtype=np.float64)
