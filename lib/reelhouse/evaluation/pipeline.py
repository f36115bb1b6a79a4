"""The full recommender offline: recall sources blended into candidates, re-ranked by LightGBM.

Candidates: the recall blend (:func:`reelhouse.recall.blend.blend`) of the sources' answers, in
the priority and within the quotas of ``recall.quotas`` (a source without a quota is left out);
each source is asked for ``fetch_factor`` times its quota, as candidate generation does, so
overlaps do not empty its share. Exploration slots are not used: they serve discovery, which
an offline replay of past engagement cannot reward.

Ranker training mimics evaluation one step earlier. The training interactions are cut by time:
the latest ``label_fraction`` of the pairs are labels, the sources are fitted on the earlier
ones and recall candidates for the users with later positives; a candidate is positive when the
user engaged with it later. Without real times the cut is a seeded random one. Early stopping
watches the ``valid`` positives (candidates recalled by sources fitted on all of ``train``, as
at evaluation time) or, without them, a held-out tenth of the ranker's users.

Features per (user, candidate): per source its score and rank (NaN when it did not recall the
item), how many sources did, the item's popularity (users, summed weight, users in the latest
tenth of the time), the user's activity (items, summed weight), the share of the user's items
with the candidate's value of each categorical item attribute (e.g. topic) and that value as a
LightGBM category, and numeric item attributes (``*_time_s`` ones as age at the fit's end).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from reelhouse.evaluation.metrics import positives_matrix, stored_at
from reelhouse.evaluation.protocol import EvaluationError
from reelhouse.recall.base import Interactions, RecallSource
from reelhouse.recall.blend import blend
from reelhouse.recall.candidates import FETCH_FACTOR
from reelhouse.recall.topk import empty

log = logging.getLogger(__name__)

# A categorical item attribute with more distinct values than this is not used (ids, free text).
MAX_CATEGORIES = 1_000
# Users whose candidates are scored at once when ranking (bounds the feature matrix's memory).
RANK_BATCH_USERS = 4_096
# Early stopping of the lambdarank ranker watches NDCG at this depth (a feed's first screens).
EARLY_STOPPING_AT = 10


def _default_lgbm_params() -> dict[str, Any]:
    # LightGBM training parameters (scikit-learn style names are accepted as aliases);
    # ``n_estimators`` is the most boosting rounds early stopping may use.
    # ``max_bin`` 63 and a 0.1 rate: on a million-interaction log the ranker converges in tens of
    # rounds with the same validation NDCG as 255 bins at 0.05, in half the time.
    return {
        "n_estimators": 200, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 50,
        "colsample_bytree": 0.8, "max_bin": 63,
    }


@dataclass(frozen=True)
class PipelineOptions:
    """How candidates are blended and the ranker is trained."""

    quotas: Mapping[str, int]  # candidates per source in the blend, in priority order (recall.quotas)
    fetch_factor: int = FETCH_FACTOR  # each source is asked for this many times its quota
    label_fraction: float = 0.2  # latest share of the training pairs that labels the ranker's examples
    objective: Literal["lambdarank", "binary"] = "lambdarank"  # LightGBM objective of the ranker
    max_train_users: int = 10_000  # users (with later positives) the ranker learns from, a seeded sample
    max_valid_users: int = 2_000  # users of the early-stopping set, a seeded sample
    early_stopping_rounds: int = 20  # rounds without a better validation score before training stops
    lgbm_params: Mapping[str, Any] = field(default_factory=_default_lgbm_params)  # LightGBM parameters
    seed: int = 7  # seed of the samples, the time-less split and LightGBM


@dataclass
class Candidates:
    """One row per (user, candidate): ``row`` indexes the users asked for, ``X`` the features."""

    row: np.ndarray
    item: np.ndarray
    X: np.ndarray
    names: list[str]
    categorical: list[int]  # columns LightGBM treats as categories


class ItemUserStats:
    """Popularity, activity and attribute statistics of the interactions the sources were fitted on."""

    def __init__(self, interactions: Interactions) -> None:
        n_users, n_items = interactions.n_users, interactions.n_items
        user, item, weight = interactions.user, interactions.item, interactions.weight.astype(np.float64)
        times = interactions.time_s
        self.end_s = float(times.max()) if times.size else 0.0
        recent = times >= np.quantile(times, 0.9) if times.size and np.ptp(times) > 0 else np.zeros(len(times), bool)
        self.item = {
            "item_users": np.bincount(item, minlength=n_items).astype(np.float32),
            "item_weight": np.bincount(item, weights=weight, minlength=n_items).astype(np.float32),
            "item_recent_users": np.bincount(item[recent], minlength=n_items).astype(np.float32),
        }
        self.user = {
            "user_items": np.bincount(user, minlength=n_users).astype(np.float32),
            "user_weight": np.bincount(user, weights=weight, minlength=n_users).astype(np.float32),
        }
        self.categories: dict[str, np.ndarray] = {}  # attribute -> category code per item (-1 unknown)
        self.affinity: dict[str, sp.csr_matrix] = {}  # attribute -> users x categories share
        for name, values in interactions.item_attributes.items():
            if values.dtype == object:
                codes = self._category_codes(values)
                if codes is None:
                    continue
                self.categories[name] = codes
                known = codes[item] >= 0
                counts = sp.csr_matrix(
                    (weight[known], (user[known], codes[item][known])), shape=(n_users, int(codes.max()) + 1)
                )
                totals = np.asarray(counts.sum(axis=1)).ravel()
                self.affinity[name] = sp.csr_matrix(sp.diags(1.0 / np.maximum(totals, 1e-9)) @ counts)
            elif np.issubdtype(values.dtype, np.number):
                numeric = values.astype(np.float32)
                self.item[name.removesuffix("_time_s") + "_age_s" if name.endswith("_time_s") else name] = (
                    (self.end_s - numeric).astype(np.float32) if name.endswith("_time_s") else numeric
                )

    @staticmethod
    def _category_codes(values: np.ndarray) -> np.ndarray | None:
        present = np.array([v is not None and v == v for v in values])
        levels = np.unique(values[present].astype(str))
        if not 0 < len(levels) <= MAX_CATEGORIES:
            return None
        codes = np.full(len(values), -1, dtype=np.int64)
        codes[present] = np.searchsorted(levels, values[present].astype(str))
        return codes


def _values_at(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows[i], cols[i]]`` as floats (0 where not stored or ``cols`` < 0)."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    width = np.int64(matrix.shape[1])
    stored = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr)) * width + matrix.indices
    out = np.zeros(len(rows), dtype=np.float32)
    if stored.size == 0:
        return out
    valid = cols >= 0
    keys = rows.astype(np.int64) * width + np.where(valid, cols, 0)
    at = np.minimum(np.searchsorted(stored, keys), stored.size - 1)
    found = valid & (stored[at] == keys)
    out[found] = matrix.data[at[found]]
    return out


def _answer_at(
    answer: tuple[np.ndarray, np.ndarray], row: np.ndarray, item: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rank (0-based) and score of each ``(row, item)`` in one source's answer; NaN where absent."""
    items, scores = answer
    r, c = np.nonzero(items >= 0)
    keys = r.astype(np.int64) * n_items + items[r, c]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    rank = np.full(len(row), np.nan, dtype=np.float32)
    score = np.full(len(row), np.nan, dtype=np.float32)
    if keys.size == 0:
        return rank, score
    wanted = row.astype(np.int64) * n_items + item
    at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    found = keys[at] == wanted
    hit = order[at[found]]
    rank[found] = c[hit]
    score[found] = scores[r[hit], c[hit]]
    return rank, score


def blend_candidates(
    users: np.ndarray,
    recommended: Mapping[str, tuple[np.ndarray, np.ndarray]],
    quotas: Mapping[str, int],
    stats: ItemUserStats,
    n_items: int,
) -> Candidates:
    """The blend of the sources' answers (:func:`reelhouse.recall.blend.blend`) with features.

    Every candidate gets every source's rank and score from that source's whole answer, not only
    from the source the blend took it from.
    """
    blended = blend(recommended, quotas)
    cand_row, cand_item = blended.row, blended.item
    columns: dict[str, np.ndarray] = {}
    found = np.zeros(len(cand_row), dtype=np.float32)
    for name in (name for name, quota in quotas.items() if quota > 0 and name in recommended):
        rank, score = _answer_at(recommended[name], cand_row, cand_item, n_items)
        columns[f"{name}_rank"], columns[f"{name}_score"] = rank, score
        found += ~np.isnan(rank)
    columns["sources"] = found
    for name, values in stats.item.items():
        columns[name] = values[cand_item]
    user_codes = np.asarray(users, dtype=np.int64)[cand_row]
    for name, values in stats.user.items():
        columns[name] = values[user_codes]
    categorical = []
    for name, codes in stats.categories.items():
        item_codes = codes[cand_item]
        columns[f"{name}_affinity"] = _values_at(stats.affinity[name], user_codes, item_codes)
        categorical.append(len(columns))
        columns[name] = np.where(item_codes >= 0, item_codes, np.nan).astype(np.float32)
    X = np.column_stack(list(columns.values())).astype(np.float32) if len(cand_row) else np.zeros((0, len(columns)), np.float32)
    return Candidates(cand_row, cand_item, X, list(columns), categorical)


def split_by_time(train: Interactions, label_fraction: float, seed: int) -> tuple[Interactions, sp.csr_matrix]:
    """``(earlier pairs, later positives)``: the latest ``label_fraction`` of pairs by time are labels.

    Without distinct times (or when the cut leaves either side empty) a seeded random share.
    """
    times = train.time_s
    later = np.zeros(len(times), dtype=bool)
    if times.size and np.ptp(times) > 0:
        later = times >= np.quantile(times, 1 - label_fraction, method="higher")
    if not later.any() or later.all():
        later = np.random.default_rng(seed).random(len(times)) < label_fraction
    early = dataclasses.replace(
        train, user=train.user[~later], item=train.item[~later], weight=train.weight[~later], time_s=train.time_s[~later]
    )
    return early, positives_matrix(train.user[later], train.item[later], train.n_users, train.n_items)


class RecallRankPipeline:
    """Recall from ``sources`` (each its quota), re-ranked by a LightGBM model; a recall source itself."""

    name = "pipeline"

    def __init__(self, sources: Mapping[str, RecallSource], options: PipelineOptions) -> None:
        self.sources = dict(sources)
        self.options = options
        self.quotas = {name: int(q) for name, q in options.quotas.items() if name in self.sources and q > 0}
        if not any(self.quotas.values()):
            raise EvaluationError(f"no source has a quota: sources {list(self.sources)}, quotas {dict(options.quotas)}")
        self.model: Any = None
        self.stats: ItemUserStats | None = None
        self.n_items = 0
        self.feature_names: list[str] = []
        self.fit_seconds: dict[str, float] = {}
        self.ranker_seconds = 0.0

    def depth(self, name: str) -> int:
        """How many items the pipeline wants from source ``name``."""
        return self.quotas.get(name, 0) * self.options.fetch_factor

    def _recommend_all(self, users: np.ndarray, exclude: sp.csr_matrix | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            name: self.sources[name].recommend(users, self.depth(name), exclude) for name in self.quotas
        }

    def _fit_sources(self, interactions: Interactions, names: list[str], record: bool) -> None:
        for name in names:
            started = time.perf_counter()
            log.info("%s: fitting on %d pairs", name, len(interactions.user))
            self.sources[name].fit(interactions)
            if record:
                self.fit_seconds[name] = time.perf_counter() - started

    def _sample(self, users: np.ndarray, limit: int, salt: int) -> np.ndarray:
        if len(users) <= limit:
            return users
        return np.sort(np.random.default_rng(self.options.seed + salt).choice(users, size=limit, replace=False))

    def _labelled(
        self, users: np.ndarray, positives: sp.csr_matrix, exclude: sp.csr_matrix | None
    ) -> tuple[Candidates, np.ndarray]:
        candidates = blend_candidates(users, self._recommend_all(users, exclude), self.quotas, self.stats, self.n_items)
        label = stored_at(positives, users[candidates.row], candidates.item).astype(np.int32)
        return candidates, label

    def fit(
        self, train: Interactions, valid: sp.csr_matrix | None = None, exclude: sp.csr_matrix | None = None
    ) -> RecallRankPipeline:
        """Teach the ranker on an earlier/later cut of ``train``; leaves the sources fitted on all of it."""
        options = self.options
        self.n_items = train.n_items
        early, later = split_by_time(train, options.label_fraction, options.seed)
        log.info("pipeline: ranker labels from %d later pairs; sources fitted on %d earlier ones", later.nnz, len(early.user))
        self._fit_sources(early, list(self.quotas), record=False)
        self.stats = ItemUserStats(early)
        users = self._sample(np.flatnonzero(np.diff(later.indptr)), options.max_train_users, 1)
        early_seen = early.seen()
        if exclude is not None:
            # What the user must never get stays masked, minus the later pairs that are the labels.
            early_seen = (early_seen + exclude - exclude.multiply(later)).tocsr()
        train_set, train_label = self._labelled(users, later, early_seen)

        self._fit_sources(train, list(self.sources), record=True)
        started = time.perf_counter()
        self.stats = ItemUserStats(train)
        if valid is not None and valid.nnz:
            valid_users = self._sample(np.flatnonzero(np.diff(valid.indptr)), options.max_valid_users, 2)
            eval_set, eval_label = self._labelled(valid_users, valid, exclude if exclude is not None else train.seen())
            n_eval_users = len(valid_users)
        else:
            held = np.random.default_rng(options.seed + 3).random(len(users)) < 0.1
            in_eval = held[train_set.row]
            eval_set = _subset(train_set, in_eval)
            eval_label = train_label[in_eval]
            train_set = _subset(train_set, ~in_eval)
            train_label = train_label[~in_eval]
            n_eval_users = int(held.sum())
        self.feature_names = train_set.names
        self.model = self._train(train_set, train_label, eval_set, eval_label)
        self.ranker_seconds = time.perf_counter() - started
        log.info("pipeline: ranker trained on %d candidates of %d users (%d positives), %d rounds (early stopping "
                 "on %d users) in %.1f s", len(train_label), len(np.unique(train_set.row)), int(train_label.sum()),
                 self.model.best_iteration or self.model.num_trees(), n_eval_users, self.ranker_seconds)
        return self

    def _train(self, train_set: Candidates, train_label: np.ndarray, eval_set: Candidates, eval_label: np.ndarray) -> Any:
        import lightgbm as lgb

        options = self.options
        train_set, train_label = _with_positive_groups(train_set, train_label)
        eval_set, eval_label = _with_positive_groups(eval_set, eval_label)
        if train_label.sum() == 0:
            raise EvaluationError(
                "the pipeline's ranker has no positive candidates to learn from: recall found none of the items "
                "users engaged with later; more data, larger quotas or --no-pipeline"
            )
        params = {"seed": options.seed, "verbose": -1, **options.lgbm_params}
        rounds = int(params.pop("n_estimators", 300))
        if options.objective == "lambdarank":
            params.update(objective="lambdarank", metric="ndcg", eval_at=[EARLY_STOPPING_AT])
        else:
            params.update(objective="binary", metric="auc")

        def dataset(candidates: Candidates, label: np.ndarray, reference: Any = None) -> Any:
            group = _group_sizes(candidates.row) if options.objective == "lambdarank" else None
            return lgb.Dataset(
                candidates.X, label, group=group, feature_name=candidates.names,
                categorical_feature=candidates.categorical or "auto", reference=reference,
                params={"max_bin": params.get("max_bin", 255), "verbose": -1},
            )

        train_data = dataset(train_set, train_label)
        valid_sets, callbacks = [], []
        if eval_label.sum() > 0:
            valid_sets = [dataset(eval_set, eval_label, reference=train_data)]
            callbacks = [lgb.early_stopping(options.early_stopping_rounds, verbose=False)]
        return lgb.train(params, train_data, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)

    def rank(
        self, users: np.ndarray, k: int, recommended: Mapping[str, tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of the blended candidates by the ranker, from the sources' answers for ``users``.

        ``recommended`` holds each source's ``(items, scores)`` for ``users`` (as deep as :meth:`depth`).
        """
        if self.model is None or self.stats is None:
            raise ValueError("fit the pipeline before ranking")
        users = np.asarray(users, dtype=np.int64)
        items, scores = empty(len(users), k)
        for start in range(0, len(users), RANK_BATCH_USERS):
            part = slice(start, min(len(users), start + RANK_BATCH_USERS))
            batch = {name: (got[0][part], got[1][part]) for name, got in recommended.items()}
            candidates = blend_candidates(users[part], batch, self.quotas, self.stats, self.n_items)
            if len(candidates.row) == 0:
                continue
            predicted = self._predict(candidates.X)
            order = np.lexsort((-predicted, candidates.row))
            row = candidates.row[order]
            position = np.arange(len(order)) - np.searchsorted(row, row, side="left")
            keep = position < k
            items[start + row[keep], position[keep]] = candidates.item[order][keep]
            scores[start + row[keep], position[keep]] = predicted[order][keep]
        return items, scores

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X, num_iteration=self.model.best_iteration or None).astype(np.float32)

    def recommend(self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        return self.rank(users, k, self._recommend_all(users, exclude))

    def feature_importance(self) -> dict[str, float]:
        """Gain per feature of the trained ranker, largest first."""
        if self.model is None:
            return {}
        gains = self.model.feature_importance(importance_type="gain")
        return dict(sorted(zip(self.feature_names, map(float, gains)), key=lambda pair: -pair[1]))


def _group_sizes(row: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal ``row`` values (candidates are grouped by user, rows ascending)."""
    _, sizes = np.unique(row, return_counts=True)
    return sizes


def _subset(candidates: Candidates, keep: np.ndarray) -> Candidates:
    return Candidates(candidates.row[keep], candidates.item[keep], candidates.X[keep], candidates.names, candidates.categorical)


def _with_positive_groups(candidates: Candidates, label: np.ndarray) -> tuple[Candidates, np.ndarray]:
    """Only the users with at least one positive candidate: the others teach a ranking nothing."""
    has_positive = np.bincount(candidates.row, weights=label, minlength=int(candidates.row.max(initial=-1)) + 1) > 0
    keep = has_positive[candidates.row]
    return _subset(candidates, keep), label[keep]

