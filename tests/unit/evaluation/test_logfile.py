import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelhouse.errors import InteractionLogError
from reelhouse.evaluation.data import evaluation_data
from reelhouse.evaluation.item_features import read_item_features
from reelhouse.evaluation.logfile import LogColumns, SplitPolicy, epoch_seconds, read_interaction_log, write_quarantine

# Eleven data lines: six clean, one per malformed reason, and one with a field too many.
CSV = """user,item,when,rating,split
u1,a,1790000000,5,train
u1,b,1790000000000,3,TRAIN
u2,a,2026-09-21T10:00:00Z,4, test
u2,c,2026-09-21T11:00:00+02:00,0,valid
,a,1790000000,4,train
u3,,1790000000,4,train
u3,b,yesterday,4,train
u3,c,1790000000,great,train
u3,d,1790000000,4,holdout
u4,b,1790000100,2,train,extra
u4,d,1790000200,1,test
"""
COLUMNS = LogColumns("user", "item", time="when", rating="rating", split="split")


@pytest.fixture()
def log_csv(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(CSV)
    return path


def test_bad_rows_are_counted_per_reason_and_quarantined(log_csv, tmp_path):
    log = read_interaction_log(log_csv, COLUMNS)
    report = log.report
    assert report.rows_read == 11
    assert report.valid == 5
    assert report.malformed == {
        "malformed_line": 1,
        "missing_user": 1,
        "missing_item": 1,
        "unparseable_time": 1,
        "non_numeric_rating": 1,
        "unknown_split": 1,
    }
    assert report.valid + sum(report.malformed.values()) == report.rows_read
    assert report.split_method == "column"
    # Case and blanks of split values are ignored: "TRAIN" and " test" count.
    assert report.splits == {"train": 2, "valid": 1, "test": 2}
    assert (report.users, report.items) == (3, 4)

    quarantine = log.quarantine.to_pandas()
    assert sorted(quarantine["reason"]) == sorted(report.malformed)
    bad_time = quarantine[quarantine["reason"] == "unparseable_time"].iloc[0]
    assert (bad_time["raw_user"], bad_time["raw_time"], bad_time["row"]) == ("u3", "yesterday", 6)
    assert quarantine.loc[quarantine["reason"] == "malformed_line", "raw_line"].iloc[0].startswith("u4,b,")

    written = write_quarantine(log.quarantine, str(tmp_path / "out" / "quarantine.parquet"))
    assert pq.read_table(written).num_rows == 6


def test_times_in_seconds_milliseconds_and_iso_agree(log_csv):
    rows = read_interaction_log(log_csv, COLUMNS).rows.to_pandas()
    seconds = rows["event_time"].astype("int64") // 10**6  # microseconds -> seconds
    # 1790000000 s and 1790000000000 ms are the same instant; ISO with an offset is converted to UTC.
    assert seconds.tolist()[:2] == [1_790_000_000, 1_790_000_000]
    assert rows["event_time"].iloc[3] == pd.Timestamp("2026-09-21T09:00:00Z")


def test_epoch_units_are_chosen_per_column():
    assert epoch_seconds(pa.chunked_array([[1_790_000_000_000_000, None]])).tolist()[0] == pytest.approx(1.79e9)
    parsed = epoch_seconds(pa.chunked_array([["1790000000", "2026-09-21", "soon", None]]))
    assert parsed[0] == 1.79e9 and parsed[1] == pd.Timestamp("2026-09-21", tz="UTC").timestamp()
    assert np.isnan(parsed[2:]).all()


def test_without_split_column_the_latest_rows_are_test(tmp_path):
    # Times 0..99 s: the last 10 % (90..99) are test, the 10 % before (80..89) valid.
    frame = pd.DataFrame({"u": [f"u{i % 7}" for i in range(100)], "i": [f"i{i}" for i in range(100)], "t": range(100)})
    frame.to_parquet(tmp_path / "log.parquet")
    log = read_interaction_log(tmp_path / "log.parquet", LogColumns("u", "i", time="t"))
    rows = log.rows.to_pandas()
    seconds = rows["event_time"].astype("int64") // 10**6
    assert log.report.split_method == "time"
    assert log.report.splits == {"train": 80, "valid": 10, "test": 10}
    assert seconds[rows["split"] == "test"].min() == 90
    assert seconds[rows["split"] == "valid"].tolist() == list(range(80, 90))


def test_without_split_or_time_columns_the_split_is_random_and_seeded(tmp_path):
    frame = pd.DataFrame({"u": [f"u{i % 50}" for i in range(2000)], "i": [f"i{i % 97}" for i in range(2000)]})
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    first = read_interaction_log(path, LogColumns("u", "i"), SplitPolicy(seed=3))
    again = read_interaction_log(path, LogColumns("u", "i"), SplitPolicy(seed=3))
    assert first.report.split_method == "random"
    assert first.rows.column("split").equals(again.rows.column("split"))
    assert 150 < first.report.splits["test"] < 250 and 150 < first.report.splits["valid"] < 250


def test_missing_columns_and_files_are_reported(log_csv, tmp_path):
    with pytest.raises(InteractionLogError, match="not found"):
        read_interaction_log(log_csv, LogColumns("user", "video"))
    with pytest.raises(InteractionLogError, match="does not exist"):
        read_interaction_log(tmp_path / "nope.csv", COLUMNS)
    with pytest.raises(InteractionLogError):
        SplitPolicy(valid_fraction=0.5, test_fraction=0.5)


def test_evaluation_data_keeps_new_users_and_items_and_drops_seen_pairs(tmp_path):
    # u1 trains on a, b; its test has b again (seen: not a held-out positive) and new item z.
    # u9 only appears in test. Ratings of 0 are not positives.
    frame = pd.DataFrame(
        {
            "user": ["u1", "u1", "u2", "u1", "u1", "u9", "u2"],
            "item": ["a", "b", "a", "b", "z", "a", "c"],
            "rating": [5, 4, 0, 5, 3, 4, 0],
            "split": ["train", "train", "train", "test", "test", "test", "test"],
        }
    )
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    log = read_interaction_log(path, LogColumns("user", "item", rating="rating", split="split"))
    data = evaluation_data(log.rows)
    train = data.train
    assert sorted(train.user_ids) == ["u1", "u2", "u9"] and sorted(train.item_ids) == ["a", "b", "c", "z"]
    assert len(train.user) == 2  # u2's zero rating is not a training positive ...
    code = {u: i for i, u in enumerate(train.user_ids)}
    item = {v: i for i, v in enumerate(train.item_ids)}
    assert data.seen[code["u2"], item["a"]] == 1  # ... but u2 has seen a
    held = {(train.user_ids[u], train.item_ids[i]) for u, i in zip(*data.test.nonzero(), strict=True)}
    assert held == {("u1", "z"), ("u9", "a")}
    assert data.valid is None and data.has_time is False


def test_item_features_become_attributes(tmp_path):
    features = pd.DataFrame(
        {"item": ["a", "b", None, "a"], "topic": ["x", "y", "z", "w"], "length": [1.5, 2.0, 3.0, 4.0]}
    )
    features.to_csv(tmp_path / "items.csv", index=False)
    table = read_item_features(tmp_path / "items.csv", "item")
    assert table.column("item_id").to_pylist() == ["a", "b"]  # the null id and the repeat of a are dropped
    frame = pd.DataFrame({"user": ["u1", "u2"], "item": ["a", "c"], "split": ["train", "test"]})
    frame.to_csv(tmp_path / "log.csv", index=False)
    log = read_interaction_log(tmp_path / "log.csv", LogColumns("user", "item", split="split"))
    train = evaluation_data(log.rows, table).train
    by_item = dict(zip(train.item_ids, train.item_attributes["topic"], strict=True))
    assert by_item == {"a": "x", "b": "y", "c": None}
    assert np.isnan(train.item_attributes["length"][list(train.item_ids).index("c")])
