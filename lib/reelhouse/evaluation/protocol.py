"""The offline evaluation protocol: fit on ``train``, recommend to held-out users, score the top K.

Every model is asked for the ``max(K)`` best items of each user with held-out positives, over the
whole catalogue, with the items the user had in ``train`` masked (they are never held-out
positives either), and scored by :func:`~reelhouse.recall.metrics.topk_metrics`. Models:

- ``random``: a seeded uniform draw of unseen items, the floor every model must clear;
- ``popularity``: the ``popularity`` recall source when one is given, else items by their
  summed training weight (the classic most-popular baseline);
- every recall source given, by its name;
- ``pipeline``: the sources blended and re-ranked by a learned ranker
  (:mod:`reelhouse.evaluation.pipeline`), when pipeline options are given.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from reelhouse.recall.base import Interactions, RecallSource
from reelhouse.recall.metrics import first_occurrences, topk_metrics
from reelhouse.recall.popularity import PopularitySource
from reelhouse.recall.topk import excluded_mask, first_k

if TYPE_CHECKING:
    from reelhouse.evaluation.pipeline import PipelineOptions

log = logging.getLogger(__name__)


@dataclass
class EvaluationData:
    """What the protocol needs: training interactions and held-out positives in the same code space.

    ``seen`` (users x items) masks what each user had in training, positive or not; ``test`` and
    ``valid`` are binary users x items matrices of held-out positives (``valid`` only tunes the
    pipeline's ranker); ``has_time`` says whether ``train.time_s`` holds real times and
    ``temporal`` whether the held-out pairs all come after the training ones (a time split).
    """

    train: Interactions
    test: sp.csr_matrix
    valid: sp.csr_matrix | None = None
    seen: sp.csr_matrix | None = None
    has_time: bool = True
    temporal: bool = True
    description: dict[str, object] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """Metrics per model (``recall@10`` ...), with the users evaluated and each model's seconds."""

    k: list[int]
    users: int
    models: dict[str, dict[str, float]]
    seconds: dict[str, float] = field(default_factory=dict)
    catalogue: int = 0
    train_pairs: int = 0
    pipeline: dict[str, object] = field(default_factory=dict)  # the ranker's validation and fallback decision

    def to_dict(self) -> dict[str, object]:
        """``{"k": [...], "users": N, "models": {name: {metric@K: value}}}``; NaN becomes null."""
        models = {
            name: {metric: (None if value != value else round(value, 6)) for metric, value in values.items()}
            for name, values in self.models.items()
        }
        out: dict[str, object] = {"k": list(self.k), "users": self.users, "models": models}
        if self.pipeline:
            out["pipeline"] = self.pipeline
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def random_recommendations(
    users: np.ndarray, k: int, n_items: int, exclude: sp.csr_matrix | None, seed: int
) -> np.ndarray:
    """``len(users) x k`` distinct unseen items drawn uniformly per user (``-1`` when too few exist)."""
    users = np.asarray(users, dtype=np.int64)
    rng = np.random.default_rng(seed)
    n = len(users)
    if n == 0 or n_items == 0 or k == 0:
        return np.full((n, k), -1, dtype=np.int64)
    # Over-draw, drop repeats and seen items, keep the first k; the few users left short
    # (they have seen most of a small catalogue) draw from their unseen items directly.
    draws = rng.integers(0, n_items, size=(n, 2 * k + 8))
    drop = excluded_mask(exclude, users, draws) | ~first_occurrences(draws)
    items, _ = first_k(draws, np.zeros(draws.shape, dtype=np.float32), drop, k)
    for row in np.flatnonzero((items < 0).any(axis=1)):
        seen = exclude[users[row]].indices if exclude is not None else np.zeros(0, dtype=np.int64)
        unseen = np.setdiff1d(np.arange(n_items), seen)
        picked = rng.permutation(unseen)[:k]
        items[row] = -1
        items[row, : len(picked)] = picked
    return items


def evaluation_users(test: sp.csr_matrix, max_users: int | None, seed: int) -> np.ndarray:
    """User codes with held-out positives; a seeded sample of ``max_users`` of them when given."""
    users = np.flatnonzero(np.diff(sp.csr_matrix(test).indptr) > 0)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    return users


def evaluate(
    train: Interactions,
    test: sp.csr_matrix,
    k_list: Sequence[int],
    sources: Mapping[str, RecallSource],
    *,
    valid: sp.csr_matrix | None = None,
    exclude: sp.csr_matrix | None = None,
    pipeline: PipelineOptions | None = None,
    seed: int = 7,
    max_users: int | None = None,
) -> EvaluationResult:
    """Fit every model on ``train`` and score its top ``max(k_list)`` for the held-out users.

    ``test`` (and ``valid``) are users x items matrices of held-out positives in ``train``'s code
    space; ``exclude`` masks what users must not get (default: their training positives);
    ``max_users`` evaluates a seeded sample of the held-out users. With ``pipeline`` the sources
    are first fitted on the early part of ``train`` to teach the ranker, then on all of it.
    """
    k_list = sorted({int(k) for k in k_list})
    k_max = k_list[-1]
    exclude = train.seen() if exclude is None else exclude
    users = evaluation_users(test, max_users, seed)
    held_out = sp.csr_matrix(test)[users]
    log.info(
        "evaluating %d users over %d items (%d training pairs), K=%s",
        len(users),
        train.n_items,
        len(train.user),
        k_list,
    )
    result = EvaluationResult(
        k=k_list, users=len(users), models={}, catalogue=train.n_items, train_pairs=len(train.user)
    )

    def score(name: str, items: np.ndarray, started: float) -> None:
        result.models[name] = topk_metrics(items[:, :k_max], held_out, k_list, train.n_items)
        result.seconds[name] = time.perf_counter() - started
        log.info("%s: %s (%.1f s)", name, _summary(result.models[name], k_list), result.seconds[name])

    started = time.perf_counter()
    score("random", random_recommendations(users, k_max, train.n_items, exclude, seed), started)
    if "popularity" not in sources:
        started = time.perf_counter()
        baseline = PopularitySource(half_life_h=float("inf"))  # no decay: items by summed training weight
        score("popularity", baseline.fit(train).recommend(users, k_max, exclude)[0], started)

    ranker = None
    fit_seconds: dict[str, float] = {}
    if pipeline is not None and sources:
        from reelhouse.evaluation.pipeline import RecallRankPipeline

        ranker = RecallRankPipeline(sources, pipeline)
        ranker.fit(train, valid=valid, exclude=exclude)
        fit_seconds = dict(ranker.fit_seconds)
        result.pipeline = dict(ranker.decision)
    else:
        for name, source in sources.items():
            started = time.perf_counter()
            log.info("%s: fitting on %d pairs", name, len(train.user))
            source.fit(train)
            fit_seconds[name] = time.perf_counter() - started

    recommended: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    # The popularity source stands in for the baseline, so it is reported where the baseline is.
    for name, source in sorted(sources.items(), key=lambda pair: pair[0] != "popularity"):
        started = time.perf_counter() - fit_seconds.get(name, 0.0)
        depth = max(k_max, ranker.depth(name) if ranker is not None else 0)
        recommended[name] = source.recommend(users, depth, exclude)
        score(name, recommended[name][0], started)

    if ranker is not None:
        started = time.perf_counter() - ranker.ranker_seconds
        score("pipeline", ranker.rank(users, k_max, recommended)[0], started)
    return result


def evaluate_data(
    data: EvaluationData,
    k_list: Sequence[int],
    sources: Mapping[str, RecallSource],
    *,
    pipeline: PipelineOptions | None = None,
    seed: int = 7,
    max_users: int | None = None,
) -> EvaluationResult:
    """:func:`evaluate` on an :class:`EvaluationData`."""
    if pipeline is not None:
        pipeline = dataclasses.replace(pipeline, temporal=data.temporal)
    return evaluate(
        data.train,
        data.test,
        k_list,
        sources,
        valid=data.valid,
        exclude=data.seen,
        pipeline=pipeline,
        seed=seed,
        max_users=max_users,
    )


def _summary(metrics: dict[str, float], k_list: Sequence[int]) -> str:
    k = k_list[-1]
    return " ".join(f"{name}={metrics[f'{name}@{k}']:.4f}" for name in ("recall", "ndcg", "hit_rate"))
