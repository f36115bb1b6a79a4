"""Off-policy estimators, the slot propensities of the re-ranking approximation, and the CLI's refusal.

The random tests draw from a seed printed in every assertion message; REELHOUSE_TEST_SEED=<seed>
replays a failure.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from reelhouse.cli import main
from reelhouse.errors import EvaluationError
from reelhouse.evaluation import off_policy
from reelhouse.evaluation.off_policy import (
    APPROXIMATION,
    Z_95,
    clipped_ips,
    evaluate_off_policy,
    explore_probability,
    logged_mean,
    logging_greedy,
    parse_model_ref,
    slot_target_propensities,
    snips,
)
from tests.conftest import PROJECT_DIR

SEED = int(os.environ.get("REELHOUSE_TEST_SEED", "20261206"))


# ----------------------------------------------------------------------------- estimators
def test_a_target_equal_to_the_logging_policy_gives_the_mean_with_a_clustered_ci() -> None:
    rewards = [1.0, 0.0, 0.6, 0.2, 0.2]
    groups = ["a", "a", "b", "c", "c"]
    propensity = [0.5, 0.92, 0.025, 1.0, 0.3]  # w = 1 everywhere, whatever the propensities
    # By hand: mean 2.0 / 5 = 0.4. Group sums S = (1.0, 0.6, 0.4), sizes N = (2, 1, 2);
    # S - 0.4 N = (0.2, 0.2, -0.4), squares sum to 0.24; Var = 0.24 / (G (G - 1) mean(N)^2)
    # = 0.24 / (3 * 2 * (5/3)^2) = 0.0144, so the standard error is 0.12.
    se = 0.12
    for estimate in (
        clipped_ips(rewards, propensity, propensity, groups=groups),
        snips(rewards, propensity, propensity, groups=groups),
        logged_mean(rewards, groups=groups),
    ):
        assert estimate.value == pytest.approx(0.4)
        assert estimate.ci_low == pytest.approx(0.4 - Z_95 * se)
        assert estimate.ci_high == pytest.approx(0.4 + Z_95 * se)
        assert estimate.n == 5 and estimate.clipped == 0
        assert estimate.effective_sample_size == pytest.approx(5.0)


def test_without_groups_every_row_is_its_own_cluster() -> None:
    rewards = np.array([1.0, 0.0, 0.6, 0.2, 0.2])
    ones = np.ones(5)
    estimate = clipped_ips(rewards, ones, ones)
    se = rewards.std(ddof=1) / math.sqrt(len(rewards))
    assert estimate.value == pytest.approx(0.4)
    assert estimate.ci_high - estimate.value == pytest.approx(Z_95 * se)


def test_one_cluster_has_no_interval() -> None:
    estimate = snips([1.0, 0.0], [0.5, 0.5], [0.5, 0.5], groups=["r", "r"])
    assert estimate.value == pytest.approx(0.5)
    assert math.isnan(estimate.ci_low) and estimate.to_dict()["ci_low"] is None


def test_a_deterministic_target_on_uniform_logs_exactly() -> None:
    # K = 3 actions logged uniformly (p = 1/3); the target always picks action 0.
    k = 3
    actions = np.array([0, 0, 0, 1, 2, 1])
    rewards = np.array([1.0, 0.5, 0.0, 1.0, 1.0, 0.0])
    target = (actions == 0).astype(float)
    logging_p = np.full(len(actions), 1 / k)
    ips = clipped_ips(rewards, target, logging_p, clip=k)
    # IPS = K * sum(r[a*]) / n = 3 * 1.5 / 6; SNIPS = the mean reward of a*'s rows, 1.5 / 3.
    assert ips.value == pytest.approx(k * rewards[actions == 0].sum() / len(actions)) == pytest.approx(0.75)
    assert ips.clipped == 0
    assert snips(rewards, target, logging_p).value == pytest.approx(0.5)


def test_a_deterministic_target_on_uniform_logs_converges_to_its_action_value() -> None:
    rng = np.random.default_rng(SEED)
    k, n, best = 4, 200_000, 2
    means = np.array([0.2, 0.35, 0.6, 0.5])
    actions = rng.integers(k, size=n)
    rewards = (rng.random(n) < means[actions]).astype(float)
    groups = np.arange(n) // 5  # requests of five impressions
    target = (actions == best).astype(float)
    logging_p = np.full(n, 1 / k)
    for estimate in (
        clipped_ips(rewards, target, logging_p, clip=k, groups=groups),
        snips(rewards, target, logging_p, groups=groups),
    ):
        se = (estimate.ci_high - estimate.ci_low) / (2 * Z_95)
        assert 0 < se < 0.01, f"seed {SEED}: {estimate}"
        assert abs(estimate.value - means[best]) < 4 * se, (
            f"seed {SEED} (REELHOUSE_TEST_SEED={SEED} replays it): {estimate.estimator} {estimate.value:.4f} "
            f"vs the true {means[best]} (se {se:.4f})"
        )
        assert estimate.clipped == 0
        # About a quarter of the rows carry the weight: the effective sample is about n / K.
        assert estimate.effective_sample_size == pytest.approx(n / k, rel=0.05), f"seed {SEED}"


def test_clipping_caps_the_weights_and_counts_them() -> None:
    logging_p = [0.5, 0.1, 0.01, 0.01]
    target = [0.5, 0.5, 0.3, 0.5]  # w = 1, 5, 30, 50
    rewards = [1.0, 1.0, 1.0, 1.0]
    capped = clipped_ips(rewards, target, logging_p, clip=20)
    assert capped.value == pytest.approx((1 + 5 + 20 + 20) / 4)
    assert capped.clipped == 2
    assert capped.effective_sample_size == pytest.approx(46**2 / (1 + 25 + 400 + 400))
    free = clipped_ips(rewards, target, logging_p, clip=100)
    assert free.value == pytest.approx((1 + 5 + 30 + 50) / 4) and free.clipped == 0
    assert snips(rewards, target, logging_p).clipped == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: clipped_ips([1.0, 0.0], [0.5], [0.5, 0.5]), "one length"),
        (lambda: clipped_ips([1.0], [0.5], [0.5], groups=["a", "b"]), "one length"),
        (lambda: clipped_ips([], [], []), "no rows"),
        (lambda: clipped_ips([1.0], [0.5], [0.0]), r"logging propensities must be in \(0, 1\]"),
        (lambda: snips([1.0], [0.5], [1.5]), r"logging propensities must be in \(0, 1\]"),
        (lambda: snips([1.0], [0.5], [float("nan")]), r"logging propensities must be in \(0, 1\]"),
        (lambda: snips([1.0], [1.2], [0.5]), r"target propensities must be in \[0, 1\]"),
        (lambda: clipped_ips([float("nan")], [0.5], [0.5]), "rewards must be finite"),
        (lambda: logged_mean([float("inf")]), "rewards must be finite"),
        (lambda: clipped_ips([1.0], [0.5], [0.5], clip=0.5), "clip must be a finite number >= 1"),
        (lambda: clipped_ips([1.0], [0.5], [0.5], clip=float("inf")), "clip must be a finite number >= 1"),
        (lambda: clipped_ips([1.0], [0.5], [0.5], clip="x"), "clip must be a number"),
        (lambda: snips([1.0], [0.5], [0.5], groups=[None]), "groups must not be null"),
        (lambda: snips([1.0, 0.0], [0.0, 0.0], [0.5, 0.5]), "SNIPS is undefined"),
        (lambda: clipped_ips(["a"], [0.5], [0.5]), "rewards must be numbers"),
    ],
)
def test_bad_inputs_are_refused(call, message: str) -> None:  # noqa: ANN001 - a lambda
    with pytest.raises(EvaluationError, match=message):
        call()


# ----------------------------------------------------------------------------- propensities
EPS = 0.1


def _greedy(m: int) -> float:
    return (1 - EPS) + EPS / m


def test_a_propensity_tells_a_greedy_slot_and_its_share() -> None:
    propensity = [_greedy(5), EPS / 4, 1.0, EPS / 2]
    assert logging_greedy(propensity, EPS).tolist() == [True, False, True, False]
    assert explore_probability(propensity, EPS) == pytest.approx([EPS / 5, EPS / 4, EPS, EPS / 2])


@pytest.mark.parametrize(
    ("propensity", "epsilon", "message"),
    [
        ([0.5], EPS, "impossible on a page that is epsilon-greedy"),  # neither 0.9 + eps/M nor eps/M <= 0.05
        ([1 - EPS], EPS, "impossible"),  # greedy with eps/M = 0
        ([0.9], 0.0, "impossible"),  # a deterministic page logs 1
        ([0.0], EPS, r"propensities must be in \(0, 1\]"),
        ([0.5], 0.6, r"must be in \[0, 0.5\]"),
    ],
)
def test_impossible_propensities_are_refused(propensity: list[float], epsilon: float, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        explore_probability(propensity, epsilon)


def test_slot_target_propensities_of_the_re_ranked_page() -> None:
    # Request "a": 5 candidates, three greedy slots (M = 5, 4, 3). The challenger scores the
    # logged videos 0.3, 0.9, 0.5 at positions 0, 1, 2: at slot 0 it would pick position 1's
    # video (0.9 is the best of positions >= 0), at slots 1 and 2 the logged video.
    # Request "b": 4 candidates; slot 0 was explored (eps/4), slot 1 greedy (M = 3), slot 2
    # explored (eps/2). Scores 0.8, 0.4, 0.6: the challenger picks slot 0's explored video
    # (its greedy probability, weight 37), prefers position 2's video at slot 1 (eps/3), and
    # picks the last one at slot 2.
    # Request "c": one candidate (propensity 1): probability 1 for both policies.
    rows = [
        ("b", 2, EPS / 2, 0.6, (1 - EPS) + EPS / 2),
        ("a", 0, _greedy(5), 0.3, EPS / 5),
        ("b", 0, EPS / 4, 0.8, (1 - EPS) + EPS / 4),
        ("c", 0, 1.0, 0.1, 1.0),
        ("a", 2, _greedy(3), 0.5, _greedy(3)),
        ("b", 1, _greedy(3), 0.4, EPS / 3),
        ("a", 1, _greedy(4), 0.9, _greedy(4)),
    ]
    frame = pd.DataFrame(rows, columns=["request_id", "position", "propensity", "score", "expected"])
    target = slot_target_propensities(frame, frame["score"].to_numpy(), EPS)
    assert target == pytest.approx(frame["expected"].to_numpy())
    weights = target / frame["propensity"].to_numpy()
    assert weights[2] == pytest.approx(37.0)  # b's explored slot 0: (0.9 + 0.025) / 0.025
    assert weights[5] == pytest.approx(1 / 28)  # b's greedy slot 1 the challenger would not show
    assert weights[3] == 1.0


def test_ties_go_to_the_earliest_position() -> None:
    frame = pd.DataFrame({"request_id": ["r", "r"], "position": [1, 0], "propensity": [_greedy(2), _greedy(3)]})
    target = slot_target_propensities(frame, [0.5, 0.5], EPS)
    assert target == pytest.approx([_greedy(2), _greedy(3)])


@pytest.mark.parametrize(
    ("frame", "scores", "message"),
    [
        (
            pd.DataFrame({"request_id": ["r", "r"], "position": [0, 0], "propensity": [_greedy(3), _greedy(2)]}),
            [0.1, 0.2],
            "two impressions at position 0",
        ),
        (pd.DataFrame({"request_id": ["r"], "position": [0], "propensity": [_greedy(3)]}), [0.1, 0.2], "2 scores"),
        (pd.DataFrame({"request_id": ["r"], "position": [0], "propensity": [_greedy(3)]}), [float("nan")], "finite"),
        (
            pd.DataFrame({"request_id": [None], "position": [0], "propensity": [_greedy(3)]}),
            [0.1],
            "request_id is null",
        ),
        (pd.DataFrame({"request_id": ["r"], "propensity": [_greedy(3)]}), [0.1], "lack column"),
    ],
)
def test_bad_impressions_are_refused(frame: pd.DataFrame, scores: list[float], message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        slot_target_propensities(frame, scores, EPS)


# ----------------------------------------------------------------------------- the result and the CLI
def test_model_references() -> None:
    assert parse_model_ref("version:12") == ("version", "12")
    assert parse_model_ref("alias:champion") == ("alias", "champion")
    for bad in ("popularity", "version:x", "12", ""):
        with pytest.raises(EvaluationError, match="expected version:<n> or alias:<name>"):
            parse_model_ref(bad)


def test_evaluate_off_policy_reports_every_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    from reelhouse.config import load_config

    config = load_config(PROJECT_DIR / "conf" / "local.yaml")
    frame = pd.DataFrame(
        {
            "request_id": ["a", "a", "b", "b"],
            "position": [0, 1, 0, 1],
            "propensity": [_greedy(3), _greedy(2), EPS / 3, _greedy(2)],
            "watch_ratio": [0.2, 0.9, 1.0, 0.0],
        }
    )
    window = off_policy._Window(frame, table_version=7, without_propensity=3, without_position=0)
    monkeypatch.setattr(off_policy, "_read_window", lambda config, start, end: window)
    monkeypatch.setattr(
        off_policy, "_score_rows", lambda config, kind, value, rows: (4, np.array([0.1, 0.2, 0.9, 0.3]))
    )
    result = evaluate_off_policy(config, "alias:challenger", epsilon=EPS, clip=5)
    shape = json.loads(result.to_json())
    assert shape["model"] == "alias:challenger" and shape["version"] == 4
    assert shape["window"] == {"start": None, "end": None, "split": "test"}
    assert shape["training_set"] == {"table": config.training.table, "version": 7}
    assert (shape["rows"], shape["rows_without_propensity"], shape["epsilon"], shape["clip"]) == (4, 3, EPS, 5.0)
    assert [e["estimator"] for e in shape["estimates"]] == ["clipped_ips", "snips"]
    assert set(shape["estimates"][0]) == {
        "estimator",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "effective_sample_size",
        "clipped",
    }
    # b's explored slot 0 is the challenger's pick: w = (0.9 + eps/3) / (eps/3) = 28, clipped at 5.
    assert shape["estimates"][0]["clipped"] == 1
    assert shape["logged"]["mean"] == pytest.approx(0.525) and shape["logged"]["n"] == 4
    assert APPROXIMATION in shape["notes"]
    assert "alias:challenger" in result.summary()
    snips_ = shape["estimates"][1]
    assert result.headline() == {
        "version": 4,
        "estimator": "snips",
        "estimate": snips_["value"],
        "ci": [snips_["ci_low"], snips_["ci_high"]],
    }


def test_a_deterministic_feed_cannot_be_evaluated_off_policy() -> None:
    from reelhouse.config import load_config

    config = load_config(PROJECT_DIR / "conf" / "local.yaml")
    with pytest.raises(EvaluationError, match="explore_epsilon is 0"):
        evaluate_off_policy(config, "version:1", epsilon=0.0)


def test_off_policy_without_a_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--off-policy"])
    assert exit_.value.code == 2
    assert "--off-policy needs --model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--off-policy", "--model", "champion"], "expected version:<n> or alias:<name>"),
        (["--off-policy", "--model", "version:3", "--clip", "0.5"], "--clip takes a finite number >= 1"),
        (["--off-policy", "--model", "version:3", "--interactions", "log.csv"], "cannot be used with --off-policy"),
        (["--model", "version:3"], "only with --off-policy"),
    ],
)
def test_off_policy_arguments_are_checked(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- the window read from the lake
def _training_set(root, config) -> None:  # noqa: ANN001 - a path and a ReelhouseConfig
    """A tiny training-set Delta table written by delta-rs: request r0 in the train split, r1 and r2
    in test; one r2 row without a propensity, one r1 row without a position."""
    import datetime as dt

    import pyarrow as pa
    from deltalake import write_deltalake

    from reelhouse.training.columns import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

    day = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    times = [day, day, day + dt.timedelta(hours=1), day + dt.timedelta(hours=1), day + dt.timedelta(hours=2)]
    n = len(times)
    columns = {
        "request_id": ["r0", "r0", "r1", "r1", "r2"],
        "user_id": ["u0", "u0", "u1", "u1", "u2"],
        "video_id": ["v0", "v1", "v2", "v3", "v4"],
        "impression_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "split": ["train", "train", "test", "test", "test"],
        "watch_ratio": [0.5, 0.1, 1.0, 0.3, 0.7],
        "propensity": [_greedy(3), _greedy(2), _greedy(4), EPS / 3, None],
    }
    for name in NUMERIC_COLUMNS:
        columns[name] = pa.array([1.0] * n, pa.float64())
    columns["position"] = pa.array([0, 1, 0, None, 0], pa.int32())
    for name in CATEGORICAL_COLUMNS:
        columns[name] = pa.array(["x"] * n, pa.string())
    write_deltalake(f"{root}/{config.training.table}", pa.table(columns), partition_by=["split"])


def test_the_window_is_read_from_the_training_set(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import datetime as dt

    from reelhouse.config import load_config

    config = load_config(PROJECT_DIR / "conf" / "local.yaml", environ={"REELHOUSE__LAKE__ROOT": str(tmp_path)})
    _training_set(tmp_path, config)
    test = off_policy._read_window(config, None, None)
    assert sorted(test.frame["request_id"]) == ["r1"]  # the test split; r2 lacks a propensity, r1's 2nd a position
    assert (test.without_propensity, test.without_position, test.table_version) == (1, 1, 0)
    early = off_policy._read_window(config, None, dt.datetime(2026, 11, 20, 1, tzinfo=dt.UTC))
    assert sorted(early.frame["video_id"]) == ["v0", "v1"] and early.without_propensity == 0
    late = off_policy._read_window(config, dt.datetime(2026, 11, 20, 1, tzinfo=dt.UTC), None)
    assert sorted(late.frame["video_id"]) == ["v2"] and late.without_propensity == 1

    monkeypatch.setattr(off_policy, "_score_rows", lambda config, kind, value, rows: (2, np.linspace(0, 1, len(rows))))
    result = evaluate_off_policy(config, "version:2", None, dt.datetime(2026, 11, 21, tzinfo=dt.UTC), epsilon=EPS)
    shape = result.to_dict()
    assert shape["rows"] == 3 and shape["rows_without_propensity"] == 1
    assert shape["window"] == {"start": None, "end": "2026-11-21T00:00:00+00:00", "split": None}
    assert any("no position" in note for note in shape["notes"])
