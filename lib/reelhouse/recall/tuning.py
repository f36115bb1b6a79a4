"""Each recall source's hyper-parameters, chosen on a validation holdout of its own training data.

The holdout is drawn the way the evaluation (or the next day) draws its test: by time when the
split is temporal (the latest ``tuning_fraction`` of the pairs), otherwise per user at random
(each user with at least two pairs keeps about ``1 - tuning_fraction`` of them, as a stratified
split does). Every combination of a source's ``recall.tuning_grid`` is fitted on the rest and
scored by nDCG@10 on a seeded sample of the held-out users; the best combination wins (ties:
the first in grid order). Sources are tuned one after another in quota order, each with the
values already chosen for the ones before it; a source the data cannot feed is left alone.
The chosen values and every score are returned so callers log them with their run.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from reelhouse.config import RecallConfig
from reelhouse.recall.base import Interactions, RecallSource
from reelhouse.recall.metrics import positives_matrix, topk_metrics

log = logging.getLogger(__name__)

TUNING_K = 10  # the cut-off the tuner scores at (nDCG@10, a feed's first screens)
TUNING_METRIC = f"ndcg@{TUNING_K}"

MakeSource = Callable[[RecallConfig, str], RecallSource | None]


@dataclass
class TuningResult:
    """What the tuner chose, per source, and the validation score of every setting it tried."""

    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    trials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    holdout: str = ""  # "time" or "per-user random"
    users: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as strict JSON can hold them: an infinite value (no decay) becomes ``"inf"``."""
    return {k: (str(v) if isinstance(v, float) and not np.isfinite(v) else v) for k, v in settings.items()}


def subset(interactions: Interactions, keep: np.ndarray) -> Interactions:
    """The pairs where ``keep`` is true, in the same code space."""
    return dataclasses.replace(
        interactions,
        user=interactions.user[keep],
        item=interactions.item[keep],
        weight=interactions.weight[keep],
        time_s=interactions.time_s[keep],
    )


def is_temporal(interactions: Interactions) -> bool:
    """True when the pairs carry distinct times (a time cut means something)."""
    return bool(interactions.time_s.size and np.ptp(interactions.time_s) > 0)


def holdout_mask(interactions: Interactions, fraction: float, temporal: bool, seed: int) -> np.ndarray:
    """Boolean per pair: held out. By time (the latest ``fraction``; when the pairs carry distinct
    times) or per user at random.

    Per user: a user with ``n >= 2`` pairs holds out ``n - round((1 - fraction) n)`` of them
    (at least one is kept), chosen uniformly; a user with one pair holds out nothing.
    """
    n = len(interactions.user)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if temporal and is_temporal(interactions):
        # Exactly the latest share by time (ties at the cut in pair order), at least one pair each side.
        count = min(max(1, round(fraction * n)), n - 1)
        held = np.zeros(n, dtype=bool)
        held[np.argsort(interactions.time_s, kind="stable")[n - count :]] = True
        return held
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), interactions.user))
    users = interactions.user[order]
    rank = np.arange(n) - np.searchsorted(users, users, side="left")
    counts = np.bincount(users, minlength=interactions.n_users)[users]
    keep = np.maximum(np.round((1 - fraction) * counts), 1)
    held = np.zeros(n, dtype=bool)
    held[order] = rank >= keep
    return held


def split_holdout(
    interactions: Interactions, fraction: float, temporal: bool, seed: int
) -> tuple[Interactions, sp.csr_matrix]:
    """``(the pairs to fit on, users x items held-out positives)`` (see :func:`holdout_mask`)."""
    held = holdout_mask(interactions, fraction, temporal, seed)
    positives = positives_matrix(
        interactions.user[held], interactions.item[held], interactions.n_users, interactions.n_items
    )
    return subset(interactions, ~held), positives


def tune_recall(
    recall: RecallConfig,
    make_source: MakeSource,
    interactions: Interactions,
    *,
    temporal: bool,
    seed: int,
) -> tuple[RecallConfig, TuningResult]:
    """``recall`` with each quota'd source's grid values chosen on validation (see the module docstring).

    ``make_source(recall, name)`` builds source ``name`` from a candidate configuration (None
    when the data cannot feed it). With ``recall.tune`` false, ``recall`` comes back unchanged.
    """
    result = TuningResult()
    if not recall.tune:
        return recall, result
    started = time.perf_counter()
    fit, held = split_holdout(interactions, recall.tuning_fraction, temporal, seed)
    result.holdout = "time" if temporal and is_temporal(interactions) else "per-user random"
    users = np.flatnonzero(np.diff(held.indptr) > 0)
    if len(users) > recall.tuning_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=recall.tuning_users, replace=False))
    result.users = len(users)
    if len(users) == 0:
        log.warning(
            "tuning: no held-out positives in %d pairs; recall settings kept as configured", len(interactions.user)
        )
        return recall, result
    exclude = fit.seen()
    truth = held[users]
    for name, quota in recall.quotas.items():
        grid = recall.tuning_grid.get(name)
        if quota <= 0 or not grid:
            continue
        keys = list(grid)
        best: tuple[float, dict[str, Any]] | None = None
        trials: list[dict[str, Any]] = []
        for values in itertools.product(*(grid[key] for key in keys)):
            settings = dict(zip(keys, values, strict=True))
            # Validated, so a grid value read from YAML as 20.0 becomes the int a count setting needs.
            source = make_source(RecallConfig.model_validate({**recall.model_dump(), **settings}), name)
            if source is None:
                break
            source.fit(fit)
            items, _ = source.recommend(users, TUNING_K, exclude)
            score = topk_metrics(items, truth, [TUNING_K])[TUNING_METRIC]
            trials.append({**_plain(settings), TUNING_METRIC: round(score, 6)})
            if best is None or score > best[0]:
                best = (score, settings)
        if best is None:
            continue
        recall = RecallConfig.model_validate({**recall.model_dump(), **best[1]})
        result.chosen[name] = _plain(best[1])
        result.trials[name] = trials
        log.info(
            "tuning %s: %s (validation %s %.4f over %d settings)", name, best[1], TUNING_METRIC, best[0], len(trials)
        )
    result.seconds = round(time.perf_counter() - started, 2)
    return recall, result
