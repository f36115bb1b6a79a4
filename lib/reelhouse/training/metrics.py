"""Offline metrics of the rankers: how good the probabilities are, and how well each user's feed is ordered.

Probability quality: AUC, log-loss and calibration (expected calibration error over equal-width
bins, with the bins themselves for a reliability plot). Ranking quality is measured per user over
all of that user's impressions ordered by score, then averaged over users:

* NDCG@k with binary relevance (the label), gain 1 per positive, discount ``1 / log2(rank + 1)``
  and the ideal ordering of that user's own labels;
* Recall@k: the share of the user's positives that land in the top ``k``.

Users without a positive have no ideal ordering and are left out of both. Tied scores are
averaged over every order of the tie (the expected value of a random tie-break), so a constant
score gets the metric of a random ranking, never one that depends on the row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

DEFAULT_K = 10
CALIBRATION_BINS = 10
_EPS = 1e-15  # probabilities are clipped to [eps, 1 - eps] so log-loss stays finite

ArrayLike = np.ndarray | pd.Series | Sequence[float]


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; NaN when the labels hold only one class."""
    y = np.asarray(labels)
    if np.unique(y).size < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def log_loss(labels: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean binary cross-entropy (natural log) of P(label=1)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass(frozen=True)
class Calibration:
    """A reliability curve over equal-width probability bins; empty bins hold NaN means."""

    bin_edges: np.ndarray  # bins + 1 edges from 0 to 1
    counts: np.ndarray  # examples per bin
    mean_predicted: np.ndarray  # mean P(label=1) per bin
    fraction_positive: np.ndarray  # observed share of positives per bin
    ece: float  # sum over bins of (bin share of examples) * |mean_predicted - fraction_positive|


def calibration(labels: ArrayLike, probabilities: ArrayLike, bins: int = CALIBRATION_BINS) -> Calibration:
    """Bin ``probabilities`` into ``bins`` equal-width bins ([a, b), the last one closed)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.digitize(p, edges[1:-1])
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=p, minlength=bins) / counts
        fraction_positive = np.bincount(index, weights=y, minlength=bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] * np.abs(mean_predicted[filled] - fraction_positive[filled])) / max(len(p), 1))
    return Calibration(edges, counts, mean_predicted, fraction_positive, ece if len(p) else float("nan"))


def expected_calibration_error(labels: ArrayLike, probabilities: ArrayLike, bins: int = CALIBRATION_BINS) -> float:
    return calibration(labels, probabilities, bins).ece


@dataclass(frozen=True)
class RankingMetrics:
    ndcg: float  # mean NDCG@k over users with a positive (NaN if none)
    recall: float  # mean Recall@k over the same users
    users: int  # users with at least one positive, the ones averaged over


def ranking_metrics(users: ArrayLike, labels: ArrayLike, scores: ArrayLike, k: int = DEFAULT_K) -> RankingMetrics:
    """Per-user NDCG@k and Recall@k of ``scores`` (higher first), averaged over users with a positive.

    Labels count as relevant when > 0. Missing scores rank last.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    codes, _ = pd.factorize(pd.Series(np.asarray(users, dtype=object)), use_na_sentinel=False)
    score = np.asarray(scores, dtype=np.float64)
    frame = pd.DataFrame(
        {
            "user": codes,
            "score": np.where(np.isnan(score), -np.inf, score),
            "relevant": (np.asarray(labels, dtype=np.float64) > 0).astype(np.float64),
        }
    )
    # One row per (user, score): a tie group. Its rows occupy ranks [start, end) of that user.
    ties = (
        frame.groupby(["user", "score"], sort=False)["relevant"]
        .agg(size="size", positives="sum")
        .reset_index()
        .sort_values(["user", "score"], ascending=[True, False], kind="stable")
    )
    size = ties["size"].to_numpy(dtype=np.float64)
    end = ties.groupby("user")["size"].cumsum().to_numpy()
    start = end - ties["size"].to_numpy()
    # cumulative_discount[n] = sum of the discounts of ranks 1..n, for n = 0..k
    cumulative_discount = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    low, high = np.minimum(start, k), np.minimum(end, k)
    positives = ties["positives"].to_numpy()
    # A random order of a tie puts each of its positives on each of its ranks equally often.
    ties["dcg"] = positives / size * (cumulative_discount[high] - cumulative_discount[low])
    ties["hits"] = positives * (high - low) / size
    per_user = ties.groupby("user")[["dcg", "hits", "positives"]].sum()
    per_user = per_user[per_user["positives"] > 0]
    if per_user.empty:
        return RankingMetrics(float("nan"), float("nan"), 0)
    ideal = cumulative_discount[np.minimum(per_user["positives"].to_numpy().astype(np.int64), k)]
    ndcg = per_user["dcg"].to_numpy() / ideal
    recall = per_user["hits"].to_numpy() / per_user["positives"].to_numpy()
    return RankingMetrics(float(ndcg.mean()), float(recall.mean()), len(per_user))


def ranking_scores(users: ArrayLike, labels: ArrayLike, scores: ArrayLike, k: int = DEFAULT_K) -> dict[str, float]:
    """AUC, NDCG@k and Recall@k of any score (a model's or a baseline's, probabilities or not)."""
    ranking = ranking_metrics(users, labels, scores, k)
    return {"auc": auc(labels, scores), f"ndcg_at_{k}": ranking.ndcg, f"recall_at_{k}": ranking.recall}


def classifier_scores(
    users: ArrayLike, labels: ArrayLike, probabilities: ArrayLike, k: int = DEFAULT_K
) -> dict[str, float]:
    """Every metric of a model's P(label=1): auc, logloss, ece, ndcg_at_k, recall_at_k."""
    return {
        **ranking_scores(users, labels, probabilities, k),
        "logloss": log_loss(labels, probabilities),
        "ece": expected_calibration_error(labels, probabilities),
    }
