"""The full recommender offline: recall sources blended into candidates, re-ranked by LightGBM.

Candidates: the recall blend (:func:`reelhouse.recall.blend.blend`) of the sources' answers, in
the priority and within the quotas of ``recall.quotas`` (a source without a quota is left out);
each source is asked for ``fetch_factor`` times its quota, as candidate generation does, so
overlaps do not empty its share. Exploration slots are not used: they serve discovery, which
an offline replay of past engagement cannot reward.

Ranker training mimics evaluation one step earlier, on a holdout drawn the way the test is
drawn (:func:`reelhouse.recall.tuning.holdout_mask`): when the evaluation split is temporal, the
latest ``label_fraction`` of the training pairs are labels; otherwise each user's labels are a
random ``label_fraction`` of their pairs. The sources are fitted on the rest and recall
candidates for the users with labels; a candidate is positive when it is one of the user's
labels. Early stopping watches the ``valid`` positives (candidates recalled by sources fitted on
all of ``train``, as at evaluation time) or, without them, a held-out fifth of the ranker's users.

**A ranker that can only help.** On that same validation set the ranker's top 10 is scored
against each source's own top 10 (nDCG@10 per user). The ranker is used only when it beats the
best source by a clear margin: the mean of the per-user differences must exceed ``min_lift_z``
standard errors (a one-sided paired test; a lift inside the noise of a few hundred users is not
a lift). Otherwise the pipeline answers with that source's order and
:attr:`RecallRankPipeline.decision` says so (the report prints it). Deciding on the early-stopping set favours the ranker a little; with
a separate ``valid`` split that set is the evaluation's own validation data.

Features per (user, candidate): per source its score and rank (NaN when it did not recall the
item), how many sources did, the item's popularity (users, summed weight, users in the latest
tenth of the time), the user's activity (items, summed weight), the share of the user's items
with the candidate's value of each categorical item attribute (e.g. topic) and that value as a
LightGBM category, numeric item attributes (``*_time_s`` ones as age at the fit's end), and, when
items carry content vectors, the cosine between the candidate's vector and the user's taste
(the weighted mean of the normalised vectors of the user's items).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from reelhouse.errors import EvaluationError
from reelhouse.recall.base import Interactions, RecallSource
from reelhouse.recall.blend import blend
from reelhouse.recall.candidates import FETCH_FACTOR
from reelhouse.recall.metrics import ndcg_per_row, positives_matrix, stored_at
from reelhouse.recall.topk import empty
from reelhouse.recall.tuning import TUNING_K, TUNING_METRIC, holdout_mask, subset

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
        "n_estimators": 200,
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_child_samples": 50,
        "colsample_bytree": 0.8,
        "max_bin": 63,
    }


@dataclass(frozen=True)
class PipelineOptions:
    """How candidates are blended and the ranker is trained."""

    quotas: Mapping[str, int]  # candidates per source in the blend, in priority order (recall.quotas)
    fetch_factor: int = FETCH_FACTOR  # each source is asked for this many times its quota
    label_fraction: float = 0.2  # share of the training pairs (latest, or per user) that labels the ranker's examples
    objective: Literal["lambdarank", "binary"] = "lambdarank"  # LightGBM objective of the ranker
    max_train_users: int = 10_000  # users (with later positives) the ranker learns from, a seeded sample
    max_valid_users: int = 2_000  # users of the early-stopping set, a seeded sample
    early_stopping_rounds: int = 20  # rounds without a better validation score before training stops
    lgbm_params: Mapping[str, Any] = field(default_factory=_default_lgbm_params)  # LightGBM parameters
    seed: int = 7  # seed of the samples, the per-user holdout and LightGBM
    temporal: bool = True  # the evaluation split is by time: the ranker's labels are the latest pairs
    min_lift_z: float = 1.645  # standard errors the ranker's validation lift must clear (one-sided 95 %)


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
        self.item_vectors: np.ndarray | None = None  # normalised content vectors (zero rows: none)
        self.user_vectors: np.ndarray | None = None  # normalised taste vectors
        if (
            interactions.item_vectors is not None
            and interactions.has_vector is not None
            and interactions.has_vector.any()
        ):
            vectors = np.where(interactions.has_vector[:, None], interactions.item_vectors, 0.0).astype(np.float32)
            self.item_vectors = _normalised(vectors)
            self.user_vectors = _normalised(np.asarray(interactions.matrix() @ self.item_vectors, dtype=np.float32))
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


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


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
    if stats.item_vectors is not None and stats.user_vectors is not None:
        columns["content_cosine"] = np.einsum(
            "ij,ij->i", stats.item_vectors[cand_item], stats.user_vectors[user_codes]
        ).astype(np.float32)
    categorical = []
    for name, codes in stats.categories.items():
        item_codes = codes[cand_item]
        columns[f"{name}_affinity"] = _values_at(stats.affinity[name], user_codes, item_codes)
        categorical.append(len(columns))
        columns[name] = np.where(item_codes >= 0, item_codes, np.nan).astype(np.float32)
    X = (
        np.column_stack(list(columns.values())).astype(np.float32)
        if len(cand_row)
        else np.zeros((0, len(columns)), np.float32)
    )
    return Candidates(cand_row, cand_item, X, list(columns), categorical)


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
        self.decision: dict[str, Any] = {}  # validation scores and the fallback source, if any (see _decide)

    def depth(self, name: str) -> int:
        """How many items the pipeline wants from source ``name``."""
        return self.quotas.get(name, 0) * self.options.fetch_factor

    def _recommend_all(
        self, users: np.ndarray, exclude: sp.csr_matrix | None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {name: self.sources[name].recommend(users, self.depth(name), exclude) for name in self.quotas}

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
    ) -> tuple[Candidates, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
        answers = self._recommend_all(users, exclude)
        candidates = blend_candidates(users, answers, self.quotas, self.stats, self.n_items)
        label = stored_at(positives, users[candidates.row], candidates.item).astype(np.int32)
        return candidates, label, answers

    def fit(
        self, train: Interactions, valid: sp.csr_matrix | None = None, exclude: sp.csr_matrix | None = None
    ) -> RecallRankPipeline:
        """Teach the ranker on a holdout of ``train`` drawn like the test, decide whether to use it
        (see the module docstring); leaves the sources fitted on all of ``train``."""
        options = self.options
        self.n_items = train.n_items
        held = holdout_mask(train, options.label_fraction, options.temporal, options.seed)
        early = subset(train, ~held)
        later = positives_matrix(train.user[held], train.item[held], train.n_users, train.n_items)
        log.info(
            "pipeline: ranker labels from %d held-out pairs (%s); sources fitted on the other %d",
            later.nnz,
            "latest by time" if options.temporal else "per user at random",
            len(early.user),
        )
        self._fit_sources(early, list(self.quotas), record=False)
        self.stats = ItemUserStats(early)
        users = self._sample(np.flatnonzero(np.diff(later.indptr)), options.max_train_users, 1)
        early_seen = early.seen()
        if exclude is not None:
            # What the user must never get stays masked, minus the held-out pairs that are the labels.
            early_seen = (early_seen + exclude - exclude.multiply(later)).tocsr()
            early_seen.data[:] = 1
        train_set, train_label, answers = self._labelled(users, later, early_seen)

        if valid is not None and valid.nnz:
            self._fit_sources(train, list(self.sources), record=True)
            self.stats = ItemUserStats(train)
            eval_users = self._sample(np.flatnonzero(np.diff(valid.indptr)), options.max_valid_users, 2)
            eval_set, eval_label, eval_answers = self._labelled(
                eval_users, valid, exclude if exclude is not None else train.seen()
            )
            eval_truth = valid[eval_users]
        else:
            in_eval_user = np.random.default_rng(options.seed + 3).random(len(users)) < 0.2
            in_eval = in_eval_user[train_set.row]
            eval_set, eval_label = _subset(train_set, in_eval), train_label[in_eval]
            eval_set.row = np.searchsorted(np.flatnonzero(in_eval_user), eval_set.row)
            eval_users = users[in_eval_user]
            eval_answers = {name: (got[0][in_eval_user], got[1][in_eval_user]) for name, got in answers.items()}
            eval_truth = later[eval_users]
            train_set, train_label = _subset(train_set, ~in_eval), train_label[~in_eval]
        self.feature_names = train_set.names
        started = time.perf_counter()
        self.model = self._train(train_set, train_label, eval_set, eval_label)
        self.decision = self._decide(eval_set, eval_answers, eval_truth)
        if valid is None or not valid.nnz:
            self._fit_sources(train, list(self.sources), record=True)
            self.stats = ItemUserStats(train)
        self.ranker_seconds = time.perf_counter() - started
        log.info(
            "pipeline: ranker trained on %d candidates of %d users (%d positives), %d rounds (early stopping "
            "on %d users) in %.1f s; %s",
            len(train_label),
            len(np.unique(train_set.row)),
            int(train_label.sum()),
            self.model.best_iteration or self.model.num_trees(),
            len(eval_users),
            self.ranker_seconds,
            self.decision["summary"],
        )
        return self

    def _decide(
        self, eval_set: Candidates, answers: Mapping[str, tuple[np.ndarray, np.ndarray]], truth: sp.csr_matrix
    ) -> dict[str, Any]:
        """The ranker's and every source's validation nDCG@10; ``fallback`` is the source to serve
        instead when the ranker does not beat the best of them by ``min_lift_z`` standard errors."""
        n_users = truth.shape[0]
        ranked, _ = _top_by_row(eval_set, self._predict(eval_set.X), n_users, TUNING_K)
        per_user = {"ranker": ndcg_per_row(ranked, truth, TUNING_K)}
        for name, (items, _) in answers.items():
            per_user[name] = ndcg_per_row(items[:, :TUNING_K], truth, TUNING_K)
        scores = {name: float(values.mean()) if values.size else float("nan") for name, values in per_user.items()}
        best = max((name for name in answers), key=lambda name: scores[name], default=None)
        if best is None:
            return {"validation": scores, "fallback": None, "summary": "no source to compare the ranker with"}
        lift = per_user["ranker"] - per_user[best]
        stderr = float(lift.std(ddof=1) / np.sqrt(lift.size)) if lift.size > 1 else float("inf")
        used = lift.size > 1 and float(lift.mean()) > self.options.min_lift_z * stderr
        summary = (
            f"the ranker's validation {TUNING_METRIC} {scores['ranker']:.4f} vs {best}'s {scores[best]:.4f} "
            f"(lift {float(lift.mean()):+.4f} ± {stderr:.4f} over {lift.size} users): "
            + ("the ranker is used" if used else f"not a clear lift, the pipeline serves {best}'s order")
        )
        return {
            "validation": {name: round(value, 6) for name, value in scores.items()},
            "lift": round(float(lift.mean()), 6),
            "lift_stderr": round(stderr, 6),
            "fallback": None if used else best,
            "summary": summary,
        }

    def _train(
        self, train_set: Candidates, train_label: np.ndarray, eval_set: Candidates, eval_label: np.ndarray
    ) -> Any:
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
                candidates.X,
                label,
                group=group,
                feature_name=candidates.names,
                categorical_feature=candidates.categorical or "auto",
                reference=reference,
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
        fallback = self.decision.get("fallback")
        items, scores = empty(len(users), k)
        if fallback is not None:
            got_items, got_scores = recommended[fallback]
            width = min(k, got_items.shape[1])
            items[:, :width], scores[:, :width] = got_items[:, :width], got_scores[:, :width]
            return items, scores
        for start in range(0, len(users), RANK_BATCH_USERS):
            part = slice(start, min(len(users), start + RANK_BATCH_USERS))
            batch = {name: (got[0][part], got[1][part]) for name, got in recommended.items()}
            candidates = blend_candidates(users[part], batch, self.quotas, self.stats, self.n_items)
            if len(candidates.row) == 0:
                continue
            items[part], scores[part] = _top_by_row(candidates, self._predict(candidates.X), len(users[part]), k)
        return items, scores

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X, num_iteration=self.model.best_iteration or None).astype(np.float32)

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        return self.rank(users, k, self._recommend_all(users, exclude))

    def feature_importance(self) -> dict[str, float]:
        """Gain per feature of the trained ranker, largest first."""
        if self.model is None:
            return {}
        gains = self.model.feature_importance(importance_type="gain")
        return dict(sorted(zip(self.feature_names, map(float, gains)), key=lambda pair: -pair[1]))


def _top_by_row(candidates: Candidates, predicted: np.ndarray, n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of the users asked for, the ``k`` candidates with the highest ``predicted``, best first."""
    items, scores = empty(n_rows, k)
    order = np.lexsort((-predicted, candidates.row))
    row = candidates.row[order]
    position = np.arange(len(order)) - np.searchsorted(row, row, side="left")
    keep = position < k
    items[row[keep], position[keep]] = candidates.item[order][keep]
    scores[row[keep], position[keep]] = predicted[order][keep]
    return items, scores


def _group_sizes(row: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal ``row`` values (candidates are grouped by user, rows ascending)."""
    _, sizes = np.unique(row, return_counts=True)
    return sizes


def _subset(candidates: Candidates, keep: np.ndarray) -> Candidates:
    return Candidates(
        candidates.row[keep], candidates.item[keep], candidates.X[keep], candidates.names, candidates.categorical
    )


def _with_positive_groups(candidates: Candidates, label: np.ndarray) -> tuple[Candidates, np.ndarray]:
    """Only the users with at least one positive candidate: the others teach a ranking nothing."""
    has_positive = np.bincount(candidates.row, weights=label, minlength=int(candidates.row.max(initial=-1)) + 1) > 0
    keep = has_positive[candidates.row]
    return _subset(candidates, keep), label[keep]
