"""The multi-day closed loop's report: per-variant statistics, deltas, off-policy pairing, JSON, markdown, plot.

Synthetic frames come from a seeded generator; the seed is printed with every test (shown on a
failure) and REELHOUSE_TEST_SEED=<seed> replays it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelhouse.errors import ExperimentDataError
from reelhouse.experiments.stats import summarize
from reelhouse.simulator.loop_report import (
    FROZEN,
    LEARNING,
    LoopDay,
    LoopReport,
    champion_version,
    delta,
    json_safe,
    pair_off_policy,
    plot_learning_curve,
    render_markdown,
    variant_day_stats,
    write_report,
)

SEED = int(os.environ.get("REELHOUSE_TEST_SEED", "20261130"))
Z95 = 1.959963984540054
COLUMNS = [
    "user_id",
    "experiment",
    "variant",
    "ranker",
    "request_id",
    "video_id",
    "position",
    "played",
    "watch_ratio",
    "liked",
    "shared",
    "new_video",
]
VARIANT_KEYS = {
    "watch_ratio",
    "ci",
    "new_video_share",
    "coverage",
    "play_rate",
    "like_rate",
    "share_rate",
    "users",
    "impressions",
}
DAY_KEYS = {
    "day",
    "date",
    "learning",
    "frozen",
    "delta",
    "delta_ci",
    "champion",
    "frozen_model",
    "gate",
    "gate_reason",
    "traffic_s",
    "flow_s",
    # beyond the benchmark's keys
    "gate_detail",
    "new_video_delta",
    "new_video_delta_ci",
    "flow",
    "serving",
}
OFF_POLICY_KEYS = {
    "version",
    "estimate",
    "ci",
    "realised",
    "realised_ci",
    "within_ci",
    "estimated_on_day",
    "served_on_day",
}
TARGET_KEYS = {
    "last_day_delta_ci_excludes_zero_and_positive",
    "new_video_share_not_below_frozen",
    "off_policy_within_ci_share",
}


@pytest.fixture
def rng() -> np.random.Generator:
    print(f"synthetic frames seed {SEED} (REELHOUSE_TEST_SEED={SEED} replays it)")
    return np.random.default_rng(SEED)


def synthetic_day(
    rng: np.random.Generator,
    *,
    users: int = 300,
    lift: float = 0.0,
    new_share: tuple[float, float] = (0.1, 0.1),
    videos: int = 500,
    champion: str = "reelhouse-ranker/1",
    frozen: str = "reelhouse-ranker/1",
) -> pd.DataFrame:
    """Impressions of ``users`` users per variant; learning watches ``lift`` more of each played video.

    Each user has their own propensity to play and to watch (so a user's impressions are correlated),
    and 1 to 15 impressions.
    """
    rows: list[tuple] = []
    for v, (variant, ranker) in enumerate(((LEARNING, champion), (FROZEN, frozen))):
        for u in range(users):
            play_p, watch = rng.beta(4, 2), rng.beta(3, 3)
            for position in range(int(rng.integers(1, 16))):
                played = int(rng.random() < play_p)
                ratio = float(np.clip(watch + (lift if variant == LEARNING else 0.0) + rng.normal(0, 0.1), 0, 1))
                rows.append(
                    (
                        f"{variant[0]}{u}",
                        "loop",
                        variant,
                        ranker,
                        f"r{v}-{u}",
                        f"v{int(rng.integers(0, videos))}",
                        position,
                        played,
                        ratio * played,
                        int(played and rng.random() < 0.1),
                        int(played and rng.random() < 0.02),
                        int(rng.random() < new_share[v]),
                    )
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def tiny() -> pd.DataFrame:
    """Learning: a sees 3 videos, b 1; frozen: c 2, d 2."""
    rows = [
        ("a", LEARNING, "v1", 1, 0.2, 1, 0, 1),
        ("a", LEARNING, "v2", 1, 0.4, 0, 0, 0),
        ("a", LEARNING, "v1", 1, 0.6, 0, 1, 1),
        ("b", LEARNING, "v3", 1, 1.0, 1, 0, 0),
        ("c", FROZEN, "v1", 0, 0.0, 0, 0, 0),
        ("c", FROZEN, "v2", 1, 0.5, 0, 0, 0),
        ("d", FROZEN, "v4", 1, 0.3, 0, 0, 1),
        ("d", FROZEN, "v5", 1, 0.1, 1, 0, 0),
    ]
    frame = pd.DataFrame(
        rows, columns=["user_id", "variant", "video_id", "played", "watch_ratio", "liked", "shared", "new_video"]
    )
    return frame.assign(
        experiment="loop",
        ranker=np.where(frame["variant"] == LEARNING, "reelhouse-ranker/2", "reelhouse-ranker/1"),
        request_id="r",
        position=0,
    )


def make_day(frame: pd.DataFrame, day: int, champion: str, **kwargs) -> LoopDay:
    return LoopDay.from_impressions(
        frame,
        day=day,
        date=f"2026-11-{day + 1:02d}",
        catalogue_videos=kwargs.pop("catalogue_videos", 1000),
        champion=champion,
        frozen_model=kwargs.pop("frozen_model", "reelhouse-ranker/1"),
        flow_s=kwargs.pop("flow_s", 12.5),
        traffic_s=kwargs.pop("traffic_s", 3.25),
        **kwargs,
    )


# ---------------------------------------------------------------- statistics


def test_variant_stats_match_hand_computations_on_a_tiny_frame():
    stats = variant_day_stats(tiny(), catalogue_videos=10)
    assert list(stats) == [LEARNING, FROZEN]
    learning, frozen = stats[LEARNING], stats[FROZEN]
    assert (learning["users"], learning["impressions"], frozen["users"], frozen["impressions"]) == (2, 4, 2, 4)
    # Watch ratio: (0.2 + 0.4 + 0.6 + 1.0) / 4; per-user residuals S_i - R N_i are -0.45 and +0.45.
    assert learning["watch_ratio"]["mean"] == pytest.approx(0.55)
    variance = (0.45**2 + 0.45**2) / (2 * 1 * 2.0**2)
    se = math.sqrt(variance)
    assert learning["watch_ratio"]["ci"] == pytest.approx([0.55 - Z95 * se, 0.55 + Z95 * se])
    assert learning["play_rate"]["mean"] == 1.0 and learning["play_rate"]["ci"] == pytest.approx([1.0, 1.0])
    assert learning["like_rate"]["mean"] == pytest.approx(0.5)
    assert learning["share_rate"]["mean"] == pytest.approx(0.25)
    assert learning["new_video_share"]["mean"] == pytest.approx(0.5)
    assert frozen["play_rate"]["mean"] == pytest.approx(0.75)
    assert frozen["watch_ratio"]["mean"] == pytest.approx(0.9 / 4)
    # Coverage: distinct videos shown over the catalogue (learning v1, v2, v3; frozen v1, v2, v4, v5).
    assert (learning["videos"], learning["coverage"]) == (3, pytest.approx(0.3))
    assert (frozen["videos"], frozen["coverage"]) == (4, pytest.approx(0.4))
    assert learning["rankers"] == {"reelhouse-ranker/2": 4}


def test_variant_intervals_are_those_of_experiments_stats(rng):
    frame = synthetic_day(rng, lift=0.05)
    stats = variant_day_stats(frame, catalogue_videos=500)
    reference = summarize(frame, experiment="loop", control=FROZEN, metrics=("played", "watch_ratio", "new_video"))
    for s in reference:
        rate = {"played": "play_rate", "watch_ratio": "watch_ratio", "new_video": "new_video_share"}[s.metric]
        got = stats[s.variant]
        assert got["users"] == s.users and got["impressions"] == s.impressions
        assert got[rate]["mean"] == pytest.approx(s.mean, rel=1e-12)
        assert got[rate]["ci"] == pytest.approx([s.ci_low, s.ci_high], rel=1e-12)
        if s.metric != "new_video":  # users differ in how much they play and watch: correlated impressions
            rows = frame[frame["variant"] == s.variant]
            naive = Z95 * rows[s.metric].std(ddof=1) / math.sqrt(len(rows))
            assert s.ci_high - s.mean > naive  # wider than the interval of independent impressions


def test_delta_sign_interval_and_p_value(rng):
    frame = synthetic_day(rng, lift=0.2)  # about 7 standard errors
    d = delta(frame)
    reference = next(
        s
        for s in summarize(frame, experiment="loop", control=FROZEN, metrics=("watch_ratio",))
        if s.variant == LEARNING
    )
    stats = variant_day_stats(frame, catalogue_videos=500)
    assert d["delta"] == pytest.approx(stats[LEARNING]["watch_ratio"]["mean"] - stats[FROZEN]["watch_ratio"]["mean"])
    assert d["ci"] == pytest.approx([reference.delta_ci_low, reference.delta_ci_high])
    assert d["delta"] > 0 and d["ci"][0] > 0 and d["p_value"] < 0.05
    flipped = delta(frame, treatment=FROZEN, control=LEARNING)
    assert flipped["delta"] == pytest.approx(-d["delta"])
    assert flipped["ci"] == pytest.approx([-d["ci"][1], -d["ci"][0]])
    # Report names of the rates work too.
    assert delta(frame, "new_video_share")["delta"] == pytest.approx(delta(frame, "new_video")["delta"])


def test_delta_ignores_other_variants_and_is_nan_without_one_of_the_two(rng):
    frame = synthetic_day(rng, users=50)
    other = frame[frame["variant"] == FROZEN].assign(variant="other", user_id=lambda f: "o" + f["user_id"])
    assert delta(pd.concat([frame, other]))["p_value"] == pytest.approx(delta(frame)["p_value"])
    learning_only = frame[frame["variant"] == LEARNING]
    assert all(math.isnan(x) for x in [delta(learning_only)["delta"], *delta(learning_only)["ci"]])
    assert math.isnan(delta(frame.iloc[:0])["delta"])
    # A single user per variant: a delta but no interval.
    single = tiny()[lambda f: f["user_id"].isin(["a", "c"])]
    d = delta(single)
    assert d["delta"] == pytest.approx(0.4 - 0.25) and all(math.isnan(x) for x in d["ci"])


def test_bad_frames_are_rejected():
    frame = tiny()
    with pytest.raises(ExperimentDataError, match="new_video"):
        variant_day_stats(frame.drop(columns=["new_video"]), 10)
    both = pd.concat([frame, frame.iloc[[0]].assign(variant=FROZEN)])
    with pytest.raises(ExperimentDataError, match="more than one"):
        delta(both)
    assert variant_day_stats(frame.iloc[:0], 10) == {}


# ---------------------------------------------------------------- the report


def three_days(rng) -> LoopReport:
    """Day 0: v2 estimated, promoted; day 1: v2 serves, v3 estimated, kept; day 2: v4 estimated, promoted."""
    gate = {"decision": "promoted", "reason": "auc +0.01 | ece ok", "candidate_version": 2, "champion_version": 1}
    days = [
        make_day(
            synthetic_day(rng, lift=0.0),
            0,
            "reelhouse-ranker/1",
            gate=gate,
            off_policy={"version": 2, "estimate": 0.45, "ci": [0.0, 1.0], "estimator": "snips"},
        ),
        make_day(
            synthetic_day(rng, lift=0.06, champion="reelhouse-ranker/2"),
            1,
            "reelhouse-ranker/2",
            gate={"decision": "kept_champion", "reason": "no gain", "candidate_version": 3, "champion_version": 2},
            off_policy={"version": 3, "estimate": 0.5, "ci": [0.49, 0.51], "estimator": "snips"},
        ),
        make_day(
            synthetic_day(rng, lift=0.2, champion="reelhouse-ranker/2", new_share=(0.12, 0.1)),
            2,
            "reelhouse-ranker/2",
            gate={**gate, "candidate_version": 4, "champion_version": 2},
            off_policy={"version": 4, "estimate": 0.6, "ci": [0.55, 0.65], "estimator": "snips"},
        ),
    ]
    return LoopReport(days=days, settings={"users": 600, "days": 3, "seed": SEED, "epsilon": 0.1})


def test_json_has_exactly_the_benchmark_shape(rng):
    report = three_days(rng)
    out = json.loads(report.to_json())
    assert set(out) == {"benchmark", "settings", "days", "off_policy", "targets"}
    assert out["benchmark"] == "loop"
    assert out["settings"] == {"users": 600, "days": 3, "seed": SEED, "epsilon": 0.1}
    assert [d["day"] for d in out["days"]] == [0, 1, 2]
    for day in out["days"]:
        assert set(day) == DAY_KEYS
        assert set(day[LEARNING]) == VARIANT_KEYS and set(day[FROZEN]) == VARIANT_KEYS
        assert len(day["delta_ci"]) == 2 and len(day[LEARNING]["ci"]) == 2
        assert day[LEARNING]["users"] == 300 and isinstance(day[LEARNING]["impressions"], int)
    assert [(d["gate"], d["champion"]) for d in out["days"]] == [
        ("promoted", "reelhouse-ranker/1"),
        ("kept_champion", "reelhouse-ranker/2"),
        ("promoted", "reelhouse-ranker/2"),
    ]
    assert out["days"][0]["gate_reason"] == "auc +0.01 | ece ok" and out["days"][0]["flow_s"] == 12.5
    for pair in out["off_policy"]:
        assert set(pair) == OFF_POLICY_KEYS
    assert set(out["targets"]) == TARGET_KEYS
    last = report.days[-1]
    assert out["days"][-1]["delta"] == round(last.delta["delta"], 6)
    assert out["days"][-1][LEARNING]["watch_ratio"] == round(last.variants[LEARNING]["watch_ratio"]["mean"], 6)
    assert out["days"][-1][LEARNING]["ci"] == [round(x, 6) for x in last.variants[LEARNING]["watch_ratio"]["ci"]]
    # A 0.2 lift over 300 users per variant is far outside noise.
    assert out["targets"]["last_day_delta_ci_excludes_zero_and_positive"] is True


def test_off_policy_is_paired_with_the_first_later_day_the_version_served(rng):
    report = three_days(rng)
    pairs = {p["version"]: p for p in report.off_policy}
    served = report.days[1].variants[LEARNING]["watch_ratio"]
    # v2, estimated on day 0, serves from day 1 (and day 2): realised is day 1's learning watch ratio.
    assert pairs[2]["estimated_on_day"] == 0 and pairs[2]["served_on_day"] == 1
    assert pairs[2]["realised"] == served["mean"] and pairs[2]["realised_ci"] == served["ci"]
    assert pairs[2]["within_ci"] is True  # [0, 1] holds any watch ratio
    # v3 was kept out, v4 was promoted on the last day: neither ever served.
    for version, day in ((3, 1), (4, 2)):
        assert pairs[version]["estimated_on_day"] == day
        assert pairs[version]["served_on_day"] is None and math.isnan(pairs[version]["realised"])
        assert pairs[version]["within_ci"] is None
    out = report.to_dict()
    assert [p["realised"] is None for p in out["off_policy"]] == [False, True, True]
    assert out["targets"]["off_policy_within_ci_share"] == 1.0


def test_off_policy_pairing_uses_strictly_later_days_and_judges_the_interval():
    frame = tiny()

    def day(d: int, champion: str, estimate: dict | None) -> LoopDay:
        return make_day(frame, d, champion, off_policy=estimate)

    realised = variant_day_stats(frame, 10)[LEARNING]["watch_ratio"]["mean"]  # 0.55
    days = [
        day(0, "reelhouse-ranker/5", {"version": 5, "estimate": 0.9, "ci": [0.8, 1.0]}),  # 5 serves on day 0 only
        day(1, "reelhouse-ranker/6", {"version": 7, "estimate": 0.5, "ci": [0.5, 0.6]}),
        day(2, "trending", None),
        day(3, "reelhouse-ranker/7", {"version": 8, "estimate": 0.5, "ci": None}),
        day(4, "reelhouse-ranker/7", None),
    ]
    pairs = pair_off_policy(list(reversed(days)))
    assert [p["version"] for p in pairs] == [5, 7, 8]
    assert pairs[0]["served_on_day"] is None and pairs[0]["within_ci"] is None
    assert pairs[1]["served_on_day"] == 3 and pairs[1]["realised"] == pytest.approx(realised)
    assert pairs[1]["within_ci"] is True
    days[1].off_policy = {"version": 7, "estimate": 0.7, "ci": [0.6, 0.8]}
    assert LoopReport(days).off_policy[1]["within_ci"] is False
    assert LoopReport(days).targets["off_policy_within_ci_share"] == 0.0
    assert all(math.isnan(x) for x in pairs[2]["ci"]) and pairs[2]["within_ci"] is None
    assert champion_version("reelhouse-ranker/12") == 12 and champion_version("trending") is None


def test_nan_becomes_null_and_numbers_are_rounded():
    frame = tiny()
    single = frame[frame["user_id"].isin(["a", "b", "c"])]  # frozen has one user: no intervals
    days = [
        make_day(single, 0, "reelhouse-ranker/2", catalogue_videos=0, flow_s=math.nan),
        make_day(frame[frame["variant"] == LEARNING], 1, "reelhouse-ranker/2"),  # no frozen impressions
        LoopDay(day=2, date="2026-11-03", catalogue_videos=10, champion="x", frozen_model="y"),  # nothing ran
    ]
    report = LoopReport(days=days, settings={"epsilon": float("nan"), "ratio": np.float64(1 / 3), "n": np.int64(4)})
    text = report.to_json()
    out = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in {text}"))
    assert out["settings"] == {"epsilon": None, "ratio": 0.333333, "n": 4}
    first = out["days"][0]
    assert first[FROZEN]["users"] == 1 and first[FROZEN]["ci"] == [None, None]
    assert first[LEARNING]["coverage"] is None and first["flow_s"] is None
    assert first["delta"] == round(0.55 - 0.25, 6) and first["delta_ci"] == [None, None]
    assert first["gate"] is None and first["gate_reason"] is None
    second = out["days"][1]
    assert second[FROZEN] == {**dict.fromkeys(VARIANT_KEYS), "ci": [None, None], "users": 0, "impressions": 0}
    assert second["delta"] is None and second[LEARNING]["watch_ratio"] == 0.55
    assert out["days"][2][LEARNING]["users"] == 0
    assert out["off_policy"] == []
    assert out["targets"] == {
        "last_day_delta_ci_excludes_zero_and_positive": False,
        "new_video_share_not_below_frozen": False,
        "off_policy_within_ci_share": None,
    }
    assert json_safe({"a": [np.float32(0.1234567891), np.bool_(True), float("inf")]}) == {
        "a": [pytest.approx(0.123457, abs=1e-9), True, None]
    }
    assert LoopReport(days=[]).to_dict()["days"] == []


# ---------------------------------------------------------------- markdown, plot, files


def test_markdown_has_a_row_per_day_and_variant_and_the_other_tables(rng):
    report = three_days(rng)
    text = render_markdown(report)
    for day in report.days:
        model = "reelhouse-ranker/1" if day.day == 0 else "reelhouse-ranker/2"
        assert f"| {day.day} | {day.date} | {LEARNING} | {model} | 300 |" in text
        assert f"| {day.day} | {day.date} | {FROZEN} | reelhouse-ranker/1 | 300 |" in text
        wr = day.variants[LEARNING]["watch_ratio"]
        assert f"{wr['mean']:.4f} [{wr['ci'][0]:.4f}, {wr['ci'][1]:.4f}]" in text
        assert f"{day.delta['delta']:+.4f} [{day.delta['ci'][0]:+.4f}, {day.delta['ci'][1]:+.4f}]" in text
    for heading in (
        "### Engagement",
        "### Learning minus frozen",
        "### Promotion gate",
        "### Off-policy",
        "### Targets",
    ):
        assert heading in text
    assert "| 0 | 2026-11-01 | reelhouse-ranker/1 | **promoted** | 2 | 1 | auc +0.01 \\| ece ok |" in text
    assert "| 1 | 2026-11-02 | reelhouse-ranker/2 | kept_champion | 3 | 2 | no gain | 3.2 | 12.5 |" in text
    assert "| 2 | 0 | 0.4500 [0.0000, 1.0000] | 1 |" in text and "| 3 | 1 | 0.5000 [0.4900, 0.5100] | never |" in text
    assert "(snips)" in text and "1 of 1 (100%)" in text
    assert "users=600, days=3" in text and "epsilon=0.1" in text


def test_markdown_shows_missing_variants_and_fallback_rankers():
    frame = tiny()
    frame.loc[frame.index[:1], "ranker"] = "trending"
    report = LoopReport([make_day(frame[frame["user_id"] != "c"], 0, "reelhouse-ranker/2")])
    report.days.append(make_day(frame[frame["variant"] == LEARNING], 1, "reelhouse-ranker/2"))
    text = render_markdown(report)
    assert "| 0 | 2026-11-01 | learning | reelhouse-ranker/2 (trending 25%) | 2 | 4 |" in text
    assert "| 1 | 2026-11-02 | frozen | reelhouse-ranker/1 | 0 | 0 | n/a |" in text
    assert "_No off-policy estimate was made._" in text and "no flow" in text


def test_the_learning_curve_is_a_png(rng, tmp_path):
    report = three_days(rng)
    path = plot_learning_curve(report, tmp_path / "plots" / "curve.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # NaN intervals, a missing variant and an empty run still draw.
    frame = tiny()
    sparse = LoopReport([make_day(frame[frame["user_id"].isin(["a", "c"])], 0, "reelhouse-ranker/2")])
    assert plot_learning_curve(sparse, tmp_path / "sparse.png").stat().st_size > 0
    assert plot_learning_curve(LoopReport([]), tmp_path / "empty.png").stat().st_size > 0


def test_write_report_writes_the_three_files(rng, tmp_path):
    report = three_days(rng)
    paths = write_report(report, tmp_path / "loop")
    assert set(paths) == {"markdown", "json", "png"}
    for kind, suffix in (("markdown", ".md"), ("json", ".json"), ("png", ".png")):
        written = Path(paths[kind])
        assert written.parent == tmp_path / "loop"
        assert written.name.startswith("loop-") and written.suffix == suffix and written.stat().st_size > 0
    assert json.loads(Path(paths["json"]).read_text()) == report.to_dict()
    assert Path(paths["markdown"]).read_text() == render_markdown(report)
