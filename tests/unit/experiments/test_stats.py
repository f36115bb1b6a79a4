"""A/B statistics: known answers worked out with the textbook formulas, A/A calibration, power, bad input."""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reelhouse.errors import ExperimentDataError
from reelhouse.experiments.stats import MetricSummary, sample_ratio_p_value, summarize, summarize_users, to_markdown

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def _frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """Impressions as (user, variant, played, watch_ratio); liked and shared stay 0."""
    frame = pd.DataFrame(rows, columns=["user_id", "variant", "played", "watch_ratio"])
    return frame.assign(liked=0, shared=0)


def _by(summaries: list[MetricSummary], metric: str) -> dict[str, MetricSummary]:
    return {s.variant: s for s in summaries if s.metric == metric}


def _delta_method(sums: list[float], counts: list[float]) -> tuple[float, float]:
    """The ratio and its variance written as in Deng et al. (covariance form, sample moments)."""
    s, n = np.asarray(sums, float), np.asarray(counts, float)
    ratio = s.sum() / n.sum()
    cov = np.cov(s, n, ddof=1)
    var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (len(s) * n.mean() ** 2)
    return ratio, var


# Control: u1 plays 2 of 3, u2 0 of 1; treatment: u3 2 of 2, u4 1 of 2, u5 1 of 1.
KNOWN = _frame(
    [
        ("u1", "ctl", 1, 0.5), ("u1", "ctl", 1, 1.0), ("u1", "ctl", 0, 0.0),
        ("u2", "ctl", 0, 0.0),
        ("u3", "new", 1, 0.9), ("u3", "new", 1, 0.7),
        ("u4", "new", 0, 0.0), ("u4", "new", 1, 0.4),
        ("u5", "new", 1, 1.0),
    ]
)  # fmt: skip


def test_known_answer_matches_the_delta_method_by_hand():
    summaries = summarize(KNOWN, experiment="exp", control="ctl")
    played = _by(summaries, "played")
    rc, vc = _delta_method([2, 0], [3, 1])  # 2/4 = 0.5
    rt, vt = _delta_method([2, 1, 1], [2, 2, 1])  # 4/5 = 0.8
    assert (rc, rt) == (0.5, 0.8)

    ctl, new = played["ctl"], played["new"]
    assert (ctl.users, ctl.impressions, new.users, new.impressions) == (2, 4, 3, 5)
    assert ctl.mean == pytest.approx(0.5) and new.mean == pytest.approx(0.8)
    assert ctl.ci_low == pytest.approx(rc - Z95 * math.sqrt(vc))
    assert ctl.ci_high == pytest.approx(rc + Z95 * math.sqrt(vc))
    assert new.ci_low == pytest.approx(rt - Z95 * math.sqrt(vt))
    assert ctl.delta is None and ctl.p_value is None and ctl.significant is None and ctl.relative_lift is None

    se = math.sqrt(vc + vt)
    assert new.delta == pytest.approx(0.3)
    assert new.delta_ci_low == pytest.approx(0.3 - Z95 * se)
    assert new.delta_ci_high == pytest.approx(0.3 + Z95 * se)
    assert new.relative_lift == pytest.approx(0.3 / 0.5)
    # Two-sided normal p-value: erfc(|z| / sqrt 2); one treatment, so Holm changes nothing.
    assert new.p_value == pytest.approx(math.erfc(0.3 / se / math.sqrt(2)))
    assert new.significant is (new.p_value < 0.05)

    watch = _by(summaries, "watch_ratio")
    rc, vc = _delta_method([1.5, 0.0], [3, 1])
    rt, vt = _delta_method([1.6, 0.4, 1.0], [2, 2, 1])
    assert watch["ctl"].mean == pytest.approx(0.375) and watch["new"].mean == pytest.approx(0.6)
    assert watch["new"].delta_ci_high == pytest.approx(rt - rc + Z95 * math.sqrt(vc + vt))


def test_per_user_aggregates_give_the_same_answer_as_impressions():
    per_user = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "variant": ["ctl", "ctl", "new", "new", "new"],
            "impressions": [3, 1, 2, 2, 1],
            "played_sum": [2, 0, 2, 1, 1],
            "watch_ratio_sum": [1.5, 0.0, 1.6, 0.4, 1.0],
        }
    )
    metrics = ("played", "watch_ratio")
    from_users = summarize_users(per_user, experiment="exp", control="ctl", metrics=metrics)
    from_impressions = summarize(KNOWN, experiment="exp", control="ctl", metrics=metrics)
    assert len(from_users) == len(from_impressions) == 4
    for a, b in zip(from_users, from_impressions, strict=True):
        assert astuple(a) == pytest.approx(astuple(b))


def test_holm_adjusts_across_the_treatments_of_a_metric():
    rng = np.random.default_rng(7)
    rows = []
    for variant, lift in (("a", 0.0), ("b", 0.04), ("c", 0.08)):
        for u in range(150):
            base = rng.uniform(0.2, 0.6)
            rows += [(f"{variant}{u}", variant, 1, min(1.0, base + lift + rng.normal(0, 0.1))) for _ in range(4)]
    frame = _frame(rows)
    watch = _by(summarize(frame, experiment="e", control="a", metrics=["watch_ratio"]), "watch_ratio")

    # Raw two-sided p-values from each comparison's own delta and interval, then Holm by hand:
    # the smaller p is multiplied by 2, the larger by 1, and adjusted values never decrease.
    def raw(s: MetricSummary) -> float:
        se = (s.delta_ci_high - s.delta_ci_low) / (2 * Z95)
        return 2 * stats.norm.sf(abs(s.delta) / se)

    p_b, p_c = raw(watch["b"]), raw(watch["c"])
    (p_lo, lo), (p_hi, hi) = sorted([(p_b, "b"), (p_c, "c")])
    adj_lo = min(1.0, 2 * p_lo)
    assert watch[lo].p_value == pytest.approx(adj_lo)
    assert watch[hi].p_value == pytest.approx(max(adj_lo, p_hi))
    assert [s.variant for s in watch.values()] == ["a", "b", "c"]  # control first, then by name


def _aa_experiment(seed: int, users: int = 120) -> pd.DataFrame:
    """Two identical arms with strongly user-correlated outcomes (each user has their own taste)."""
    rng = np.random.default_rng(seed)
    taste = rng.beta(1.2, 1.8, size=2 * users)
    counts = rng.integers(1, 15, size=2 * users)
    user = np.repeat(np.arange(2 * users), counts)
    return pd.DataFrame(
        {
            "user_id": user.astype(str),
            "variant": np.where(user % 2 == 0, "A", "B"),
            "played": (rng.random(len(user)) < taste[user]).astype(int),
            "watch_ratio": np.clip(taste[user] + rng.normal(0, 0.05, len(user)), 0, 1),
        }
    )


def test_aa_p_values_are_roughly_uniform():
    seeds = range(200)
    p_values, naive = [], []
    for seed in seeds:
        frame = _aa_experiment(seed)
        p_values.append(_by(summarize(frame, experiment="aa", control="A", metrics=["played"]), "played")["B"].p_value)
        # A test that treats impressions as independent, on the same data, for contrast.
        a, b = (frame.loc[frame.variant == v, "played"].to_numpy() for v in ("A", "B"))
        naive.append(stats.ttest_ind(a, b, equal_var=False).pvalue)
    p_values = np.asarray(p_values)
    false_positives = int((p_values < 0.05).sum())
    # Under the null the count is Binomial(200, 0.05): mean 10; accept its central 99.9%.
    low, high = stats.binom.ppf(0.0005, len(seeds), 0.05), stats.binom.isf(0.0005, len(seeds), 0.05)
    assert low <= false_positives <= high, false_positives
    assert stats.kstest(p_values, "uniform").pvalue > 0.001
    # The simulated users really are correlated: ignoring that rejects far more often than alpha.
    assert int((np.asarray(naive) < 0.05).sum()) > high


def test_a_clear_effect_is_detected_with_an_interval_around_it():
    rng = np.random.default_rng(3)
    rows = []
    for variant, shift in (("control", 0.0), ("better", 0.15)):
        for u in range(200):
            taste = rng.uniform(0.2, 0.6)
            for _ in range(rng.integers(2, 8)):
                rows.append((f"{variant}-{u}", variant, 1, float(np.clip(taste + shift + rng.normal(0, 0.1), 0, 1))))
    watch = _by(summarize(_frame(rows), experiment="e", control="control"), "watch_ratio")["better"]
    assert watch.significant is True and watch.p_value < 1e-6
    assert watch.delta_ci_low < 0.15 < watch.delta_ci_high and watch.delta_ci_low > 0.05
    assert watch.relative_lift > 0.2


def test_a_variant_with_one_user_has_no_interval_and_is_not_significant():
    rows = [(f"c{u}", "control", u % 2, 0.3 + 0.01 * u) for u in range(20)]
    rows += [(f"t{u}", "treat", 1, 0.5) for u in range(20)]
    rows += [("lonely", "solo", 1, 0.9), ("lonely", "solo", 1, 0.8)]
    summaries = summarize(_frame(rows), experiment="e", control="control")
    watch = _by(summaries, "watch_ratio")
    solo = watch["solo"]
    assert solo.users == 1 and solo.impressions == 2 and solo.mean == pytest.approx(0.85)
    assert math.isnan(solo.ci_low) and math.isnan(solo.ci_high)
    assert math.isnan(solo.delta_ci_low) and math.isnan(solo.p_value) and solo.significant is False
    assert solo.delta == pytest.approx(0.85 - watch["control"].mean)
    # The lone variant is left out of the Holm family: "treat" is adjusted as if alone.
    treat = watch["treat"]
    se = (treat.delta_ci_high - treat.delta_ci_low) / (2 * Z95)
    assert treat.p_value == pytest.approx(2 * stats.norm.sf(abs(treat.delta) / se))
    assert "n/a" in to_markdown(summaries)


def test_no_variance_anywhere_gives_p_one_and_a_zero_control_gives_no_lift():
    rows = [(f"{v}{u}", v, 1, 0.5) for v in ("a", "b") for u in range(5)]
    summaries = summarize(_frame(rows), experiment="e", control="a")
    shared = _by(summaries, "shared")["b"]
    assert shared.delta == 0 and shared.p_value == 1.0 and shared.significant is False
    assert math.isnan(shared.relative_lift)


def test_markdown_has_one_table_per_metric_with_every_variant():
    text = to_markdown(summarize(KNOWN, experiment="exp", control="ctl"))
    for metric in ("played", "watch_ratio", "liked", "shared"):
        assert f"### exp: `{metric}`" in text
    assert text.count("| ctl | 2 | 4 |") == 4 and text.count("| new | 3 | 5 |") == 4
    assert "+0.3000" in text and "+60.0%" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["liked"]), r"lacks column\(s\) \['liked'\]"),
        (lambda f: f.drop(columns=["user_id"]), r"lacks column\(s\) \['user_id'\]"),
        (lambda f: f.iloc[0:0], "empty"),
        (lambda f: f.assign(watch_ratio=[np.nan] + [0.5] * (len(f) - 1)), "watch_ratio must be a finite number"),
        (lambda f: f.assign(played=["yes"] * len(f)), "played must be a finite number"),
        (lambda f: f.assign(variant=[None] + list(f.variant[1:])), "variant is null"),
        (lambda f: f.assign(variant=["ctl", "ctl", "new"] + list(f.variant[3:])), "more than one row or variant"),
    ],
)
def test_bad_input_is_rejected_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        summarize(change(KNOWN.copy()), experiment="exp", control="ctl")


def test_an_unknown_control_names_the_variants_present():
    with pytest.raises(ExperimentDataError, match=r"control variant 'baseline'.*\['ctl', 'new'\]"):
        summarize(KNOWN, experiment="exp", control="baseline")


@pytest.mark.parametrize(("kwargs", "message"), [({"alpha": 1.5}, "alpha"), ({"metrics": "played"}, "not the string")])
def test_bad_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        summarize(KNOWN, experiment="exp", control="ctl", **kwargs)


def test_per_user_rows_need_positive_impressions():
    per_user = pd.DataFrame({"user_id": ["u1"], "variant": ["ctl"], "impressions": [0], "played_sum": [0]})
    with pytest.raises(ValueError, match="impressions must be a positive count"):
        summarize_users(per_user, experiment="e", control="ctl", metrics=["played"])


def test_sample_ratio_matches_the_chi_square_by_hand():
    # 600 / 400 users where 50/50 was configured: chi2 = 2 * 100**2 / 500 = 40 with one degree of
    # freedom, whose survival function is erfc(sqrt(chi2 / 2)).
    assert sample_ratio_p_value({"a": 600, "b": 400}, {"a": 0.5, "b": 0.5}) == pytest.approx(math.erfc(math.sqrt(20)))
    assert sample_ratio_p_value({"a": 340, "b": 330, "c": 330}, {"a": 0.34, "b": 0.33, "c": 0.33}) == pytest.approx(1.0)
    # A configured variant nobody reached is a mismatch; an unconfigured one is ignored.
    assert sample_ratio_p_value({"a": 100, "x": 50}, {"a": 0.5, "b": 0.5}) < 1e-10
    assert sample_ratio_p_value({}, {"a": 0.5, "b": 0.5}) is None
