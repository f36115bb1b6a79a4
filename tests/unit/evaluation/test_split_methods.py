"""Split methods of an imported log: stratified per user, by time, and whether the result is temporal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from reelhouse.errors import InteractionLogError
from reelhouse.evaluation.data import evaluation_data
from reelhouse.evaluation.logfile import LogColumns, SplitPolicy, parse_interaction_log, read_interaction_log

START_S = 1_790_000_000

# Rows per user; 0.75 n never ends in .5 here, so round() is unambiguous:
# n=1 -> 1 train, 4 -> 3, 8 -> 6, 3 -> round(2.25) = 2, 12 -> 9, 7 -> round(5.25) = 5.
SIZES = {"a": 1, "b": 4, "c": 8, "d": 3, "e": 12, "f": 7}
TRAIN_75 = {"a": 1, "b": 3, "c": 6, "d": 2, "e": 9, "f": 5}


def log_frame(sizes=SIZES, seed=0) -> pd.DataFrame:
    """Each user's rows on distinct items, at distinct times interleaved across users."""
    rng = np.random.default_rng(seed)
    rows = [(user, f"i{j:02d}") for user, n in sizes.items() for j in rng.choice(40, size=n, replace=False)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    frame["ts"] = START_S + rng.permutation(len(frame)) * 3_600
    frame["rating"] = rng.integers(1, 6, size=len(frame)).astype(float)
    return frame


def write_log(tmp_path, frame, name="log.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def per_user_counts(rows: pa.Table) -> pd.DataFrame:
    df = rows.select(["user_id", "split"]).to_pandas()
    return df.groupby(["user_id", "split"]).size().unstack(fill_value=0)


def test_the_per_user_split_keeps_each_users_stated_share(tmp_path):
    # 75/25 with no valid (the quality benchmark's protocol): each user's first round(0.75 n)
    # rows of a seeded shuffle are train, the rest test; a one-row user keeps theirs in train.
    path = write_log(tmp_path, log_frame())
    policy = SplitPolicy(valid_fraction=0.0, test_fraction=0.25, seed=42, method="user")
    result = read_interaction_log(path, LogColumns("user_id", "item_id", "ts", "rating"), policy)
    counts = per_user_counts(result.rows)
    for user, n in SIZES.items():
        assert counts.loc[user, "train"] == TRAIN_75[user], user
        assert counts.loc[user].get("test", 0) == n - TRAIN_75[user], user
        assert counts.loc[user].get("valid", 0) == 0
    assert result.report.split_method == "user"
    assert result.report.splits == {"train": sum(TRAIN_75.values()), "valid": 0, "test": 35 - sum(TRAIN_75.values())}


def test_the_per_user_split_with_a_valid_share():
    # 70/10/20: n=10 -> 7 train, round(1) = 1 valid, 2 test; n=20 -> 14, 2, 4.
    frame = log_frame({"x": 10, "y": 20})
    raw = pa.Table.from_pandas(frame, preserve_index=False)
    policy = SplitPolicy(valid_fraction=0.1, test_fraction=0.2, seed=1, method="user")
    rows = parse_interaction_log(raw, LogColumns("user_id", "item_id"), policy).rows
    counts = per_user_counts(rows)
    assert counts.loc["x"].to_dict() == {"test": 2, "train": 7, "valid": 1}
    assert counts.loc["y"].to_dict() == {"test": 4, "train": 14, "valid": 2}


def test_the_per_user_split_is_seeded_and_not_a_time_cut():
    frame = log_frame({f"u{u}": 12 for u in range(30)}, seed=3)
    raw = pa.Table.from_pandas(frame, preserve_index=False)
    columns = LogColumns("user_id", "item_id", "ts")

    def split(seed):
        policy = SplitPolicy(valid_fraction=0.0, test_fraction=0.25, seed=seed, method="user")
        return parse_interaction_log(raw, columns, policy).rows.column("split").to_pylist()

    first = split(42)
    assert first == split(42)
    assert first != split(43)
    # The rows are drawn at random within each user, not by time: some user has a test row
    # earlier than one of their train rows.
    frame["split"] = first
    earlier = [
        group.loc[group["split"] == "test", "ts"].min() < group.loc[group["split"] == "train", "ts"].max()
        for _, group in frame.groupby("user_id")
    ]
    assert any(earlier)


def test_a_per_user_split_needs_no_time_column():
    raw = pa.Table.from_pandas(log_frame({"x": 4, "y": 8}), preserve_index=False)
    policy = SplitPolicy(valid_fraction=0.0, test_fraction=0.25, method="user")
    counts = per_user_counts(parse_interaction_log(raw, LogColumns("user_id", "item_id"), policy).rows)
    assert counts["test"].to_dict() == {"x": 1, "y": 2}


def test_a_time_split_without_a_time_column_is_an_error(tmp_path):
    path = write_log(tmp_path, log_frame())
    with pytest.raises(InteractionLogError, match="time column"):
        read_interaction_log(path, LogColumns("user_id", "item_id", rating="rating"), SplitPolicy(method="time"))


def test_evaluation_data_is_temporal_for_a_time_split_only(tmp_path):
    # A time cut puts every held-out row after every train row (temporal); the per-user split of
    # the very same timed log does not (held-out rows are drawn from anywhere in a user's history).
    frame = log_frame({f"u{u}": 12 for u in range(30)}, seed=5)
    path = write_log(tmp_path, frame)
    columns = LogColumns("user_id", "item_id", "ts", "rating")
    by_time = read_interaction_log(path, columns, SplitPolicy(valid_fraction=0.0, test_fraction=0.25, method="time"))
    by_user = read_interaction_log(path, columns, SplitPolicy(valid_fraction=0.0, test_fraction=0.25, method="user"))
    timed, stratified = evaluation_data(by_time.rows), evaluation_data(by_user.rows)
    assert timed.has_time and timed.temporal
    assert stratified.has_time and not stratified.temporal
    untimed = read_interaction_log(
        path, LogColumns("user_id", "item_id", rating="rating"), SplitPolicy(test_fraction=0.25, method="user")
    )
    assert not evaluation_data(untimed.rows).temporal  # no time at all: nothing is temporal
