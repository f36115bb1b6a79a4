"""A/B statistics: per-variant means, deltas against the control, p-values and confidence intervals.

Users are the randomisation unit, and the impressions of one user are correlated (a user who
likes one video tends to like the next), so treating impressions as independent would make every
interval too narrow and every test too eager. Each metric is therefore a *ratio metric* over
users (Deng, Knoblich, Lu, "Applying the Delta Method in Metric Analytics", KDD 2018): user ``i``
contributes a sum ``S_i`` (e.g. plays) over ``N_i`` impressions, and the variant's value is

    R = sum(S_i) / sum(N_i)          (the per-impression rate of the variant)

with the delta-method variance

    Var(R) ~ (Var(S) - 2 R Cov(S, N) + R^2 Var(N)) / (n * mean(N)^2)
           = sum((S_i - R N_i)^2) / (n (n - 1) mean(N)^2)

(sample variances with ``n - 1``; the two lines are equal because ``S_i - R N_i`` sums to 0).
Variants hold disjoint users, so the variance of a difference is the sum of the two variances.

For every non-control variant and metric: ``delta = R_variant - R_control``, a two-sided z-test
of ``delta = 0`` (the delta-method estimate is asymptotically normal; with the hundreds of users
per variant an A/B test needs, z and Welch's t agree), and ``relative_lift = delta / R_control``.
Intervals are at the ``1 - alpha`` level (95% by default) and are per comparison. The p-values
are **Holm-adjusted** across the non-control variants of one metric (Holm is uniformly more
powerful than Bonferroni and controls the same family-wise error rate); ``significant`` is
``adjusted p < alpha``. With one treatment variant the adjustment changes nothing.

Edge cases, chosen so a report always renders:

- A variant with a single user has no variance estimate: its CI, and every delta CI and p-value
  that involves it, is NaN; such a variant is ``significant=False`` and takes no part in the
  Holm family.
- When both variants have zero variance (e.g. nobody shared anything anywhere), the p-value is 1
  for a zero delta and 0 for a non-zero one.
- ``relative_lift`` is NaN when the control's value is 0.

A sample ratio mismatch check (:func:`sample_ratio_p_value`, a chi-square goodness-of-fit test
of the users per variant against the configured shares) flags broken bucketing or logging, which
would bias every comparison; :data:`SRM_ALPHA` is the customary strict threshold.

Input is rejected with :class:`ExperimentDataError` (a ``ValueError``) when a column is missing,
an id is null, a metric value is not a finite number, a user appears in two variants, or the
control variant has no users.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from reelhouse.errors import ExperimentDataError

DEFAULT_METRICS: tuple[str, ...] = ("played", "watch_ratio", "liked", "shared")
SUM_SUFFIX = "_sum"
SRM_ALPHA = 0.001  # below this, the split of users does not match the configured shares


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one variant; the delta fields compare it with the control (None for the control)."""

    experiment: str
    variant: str
    metric: str
    users: int
    impressions: int
    mean: float
    ci_low: float
    ci_high: float
    delta: float | None
    delta_ci_low: float | None
    delta_ci_high: float | None
    relative_lift: float | None
    p_value: float | None
    significant: bool | None


@dataclass(frozen=True)
class _RatioEstimate:
    users: int
    impressions: int
    mean: float
    variance: float  # of the mean; NaN with fewer than two users


def summarize(
    per_impression: pd.DataFrame,
    *,
    experiment: str,
    control: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    alpha: float = 0.05,
) -> list[MetricSummary]:
    """Summarise a frame with one row per impression (``user_id``, ``variant`` and the metric columns)."""
    metrics = _check_metrics(metrics)
    _require_columns(per_impression, ["user_id", "variant", *metrics], "per-impression frame")
    _require_ids(per_impression)
    for metric in metrics:
        _require_finite(per_impression[metric], metric)
    per_user = (
        per_impression.groupby(["user_id", "variant"], sort=False)
        .agg(impressions=("user_id", "size"), **{f"{m}{SUM_SUFFIX}": (m, "sum") for m in metrics})
        .reset_index()
    )
    return summarize_users(per_user, experiment=experiment, control=control, metrics=metrics, alpha=alpha)


def summarize_users(
    per_user: pd.DataFrame,
    *,
    experiment: str,
    control: str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    alpha: float = 0.05,
) -> list[MetricSummary]:
    """Summarise per-user aggregates: ``user_id``, ``variant``, ``impressions`` and ``<metric>_sum``.

    Results come grouped by metric (in the given order), the control first and then the other
    variants by name.
    """
    metrics = _check_metrics(metrics)
    if not 0 < alpha < 1:
        raise ExperimentDataError(f"alpha must be between 0 and 1 (exclusive), got {alpha!r}")
    sums = [f"{m}{SUM_SUFFIX}" for m in metrics]
    _require_columns(per_user, ["user_id", "variant", "impressions", *sums], "per-user frame")
    _require_ids(per_user)
    impressions = pd.to_numeric(per_user["impressions"], errors="coerce")
    if impressions.isna().any() or (impressions < 1).any():
        raise ExperimentDataError("impressions must be a positive count for every user row")
    for column in sums:
        _require_finite(per_user[column], column)
    duplicated = per_user.duplicated("user_id", keep=False)
    if duplicated.any():
        users = sorted(per_user.loc[duplicated, "user_id"].astype(str).unique())
        raise ExperimentDataError(
            f"{len(users)} user(s) appear in more than one row or variant (e.g. {users[:3]}); "
            "users are the randomisation unit: aggregate to one row per user and drop users seen in two variants"
        )
    variants = sorted(str(v) for v in per_user["variant"].unique())
    if control not in variants:
        raise ExperimentDataError(
            f"control variant {control!r} of experiment {experiment!r} has no users; variants present: {variants}"
        )
    ordered = [control, *(v for v in variants if v != control)]
    groups = {v: g for v, g in per_user.groupby(per_user["variant"].astype(str), sort=False)}
    z = float(stats.norm.ppf(1 - alpha / 2))

    summaries: list[MetricSummary] = []
    for metric, column in zip(metrics, sums, strict=True):
        estimates = {
            v: _ratio_estimate(groups[v][column].to_numpy(float), groups[v]["impressions"].to_numpy(float))
            for v in ordered
        }
        base = estimates[control]
        raw_p = {v: _z_test(estimates[v], base) for v in ordered[1:]}
        adjusted = _holm(raw_p)
        for variant in ordered:
            est = estimates[variant]
            se = math.sqrt(est.variance) if not math.isnan(est.variance) else math.nan
            if variant == control:
                comparison: dict[str, float | bool | None] = dict.fromkeys(
                    ("delta", "delta_ci_low", "delta_ci_high", "relative_lift", "p_value", "significant")
                )
            else:
                delta = est.mean - base.mean
                delta_se = math.sqrt(est.variance + base.variance)  # NaN propagates
                p = adjusted[variant]
                comparison = {
                    "delta": delta,
                    "delta_ci_low": delta - z * delta_se,
                    "delta_ci_high": delta + z * delta_se,
                    "relative_lift": delta / base.mean if base.mean != 0 else math.nan,
                    "p_value": p,
                    "significant": bool(p < alpha) if not math.isnan(p) else False,
                }
            summaries.append(
                MetricSummary(
                    experiment=experiment,
                    variant=variant,
                    metric=metric,
                    users=est.users,
                    impressions=est.impressions,
                    mean=est.mean,
                    ci_low=est.mean - z * se,
                    ci_high=est.mean + z * se,
                    **comparison,  # type: ignore[arg-type]
                )
            )
    return summaries


def sample_ratio_p_value(users: Mapping[str, int], shares: Mapping[str, float]) -> float | None:
    """Chi-square p-value of the users per variant against the configured shares (None without users).

    Variants in ``users`` but not in ``shares`` are ignored; configured ones without users count as 0.
    """
    if any(share <= 0 for share in shares.values()):
        raise ExperimentDataError(f"variant shares must be positive, got {dict(shares)}")
    observed = np.array([users.get(v, 0) for v in shares], dtype=float)
    if len(shares) < 2 or observed.sum() == 0:
        return None
    expected = np.array(list(shares.values()), dtype=float)
    expected *= observed.sum() / expected.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def to_markdown(summaries: Sequence[MetricSummary]) -> str:
    """One table per experiment and metric: variants as rows, control first."""
    if not summaries:
        return "_No experiment data._\n"
    lines: list[str] = []
    blocks: dict[tuple[str, str], list[MetricSummary]] = {}
    for s in summaries:
        blocks.setdefault((s.experiment, s.metric), []).append(s)
    for (experiment, metric), rows in blocks.items():
        lines += [
            f"### {experiment}: `{metric}`",
            "",
            "| variant | users | impressions | mean [95% CI] | delta vs control [CI] | lift | p (Holm) | significant |",
            "|---|---:|---:|---|---|---:|---:|:---:|",
        ]
        for s in rows:
            if s.delta is None:
                delta = lift = p = "—"
                sig = "control"
            else:
                delta = f"{_num(s.delta, signed=True)} [{_num(s.delta_ci_low)}, {_num(s.delta_ci_high)}]"
                lift = _pct(s.relative_lift)
                p = _pval(s.p_value)
                sig = "**yes**" if s.significant else "no"
            lines.append(
                f"| {s.variant} | {s.users:,} | {s.impressions:,} | "
                f"{_num(s.mean)} [{_num(s.ci_low)}, {_num(s.ci_high)}] | {delta} | {lift} | {p} | {sig} |"
            )
        lines.append("")
    return "\n".join(lines)


def _ratio_estimate(sums: np.ndarray, counts: np.ndarray) -> _RatioEstimate:
    n = len(sums)
    total = float(counts.sum())
    mean = float(sums.sum()) / total
    if n < 2:
        variance = math.nan
    else:
        residual = sums - mean * counts
        variance = float(np.dot(residual, residual)) / (n * (n - 1) * (total / n) ** 2)
    return _RatioEstimate(users=n, impressions=int(total), mean=mean, variance=variance)


def _z_test(variant: _RatioEstimate, control: _RatioEstimate) -> float:
    delta = variant.mean - control.mean
    variance = variant.variance + control.variance
    if math.isnan(variance):
        return math.nan
    if variance == 0:
        return 1.0 if delta == 0 else 0.0
    return float(2 * stats.norm.sf(abs(delta) / math.sqrt(variance)))


def _holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm step-down adjusted p-values; NaN p-values stay NaN and do not count towards the family."""
    finite = sorted((p, v) for v, p in p_values.items() if not math.isnan(p))
    m = len(finite)
    adjusted = dict.fromkeys(p_values, math.nan)
    running = 0.0
    for rank, (p, variant) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[variant] = running
    return adjusted


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        raise ExperimentDataError(f"metrics must be a sequence of column names, not the string {metrics!r}")
    metrics = tuple(metrics)
    if not metrics:
        raise ExperimentDataError("metrics is empty: name at least one metric column")
    if len(set(metrics)) != len(metrics):
        raise ExperimentDataError(f"metrics has duplicates: {list(metrics)}")
    return metrics


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ExperimentDataError(f"the {what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ExperimentDataError(f"the {what} lacks column(s) {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise ExperimentDataError(f"the {what} is empty: there is nothing to analyse")


def _require_ids(frame: pd.DataFrame) -> None:
    for column in ("user_id", "variant"):
        if frame[column].isna().any():
            raise ExperimentDataError(f"{column} is null in {int(frame[column].isna().sum())} row(s)")


def _require_finite(values: pd.Series, column: str) -> None:
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    bad = ~np.isfinite(numeric.to_numpy())
    if bad.any():
        raise ExperimentDataError(
            f"{column} must be a finite number in every row; {int(bad.sum())} row(s) are not (e.g. {values[bad].iloc[0]!r})"
        )


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.1%}"


def _pval(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"
