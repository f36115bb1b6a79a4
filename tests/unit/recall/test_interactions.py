"""Interactions from plain tables: codes, merging, attributes and vectors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from reelhouse.errors import ReelhouseError
from reelhouse.recall.interactions import (
    interactions_from_frame,
    new_videos,
    with_item_attributes,
    with_item_vectors,
)

AS_OF = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)


def test_codes_follow_sorted_ids_and_repeated_pairs_merge():
    log = pd.DataFrame(
        {
            "user": ["u2", "u1", "u1", "u3"],
            "video": ["b", "a", "a", "c"],
            "w": [1.0, 0.5, 2.0, 0.0],  # u1-a twice (summed); u3-c weighs nothing (dropped)
            "t": [10.0, 5.0, 7.0, 99.0],
        }
    )
    got = interactions_from_frame(log, "user", "video", "w", "t")
    assert list(got.user_ids) == ["u1", "u2"] and list(got.item_ids) == ["a", "b"]
    assert dict(zip(zip(got.user, got.item), got.weight)) == {(0, 0): 2.5, (1, 1): 1.0}
    assert got.time_s[(got.user == 0)][0] == 7.0  # the latest of the merged pair
    assert got.matrix().toarray().tolist() == [[2.5, 0.0], [0.0, 1.0]]


def test_rows_without_weight_count_once_and_timestamps_become_epoch_seconds():
    log = pa.table({"u": ["x", "x"], "i": ["a", "b"], "when": pa.array([AS_OF, AS_OF], pa.timestamp("ms", tz="UTC"))})
    got = interactions_from_frame(log, "u", "i", time_col="when")
    assert got.weight.tolist() == [1.0, 1.0]
    assert got.time_s.tolist() == [AS_OF.timestamp()] * 2


def test_extra_items_join_after_the_engaged_ones():
    log = pd.DataFrame({"u": ["x"], "i": ["m"]})
    got = interactions_from_frame(log, "u", "i", extra_items=["z", "a", "m", "z"])
    assert list(got.item_ids) == ["m", "a", "z"]  # "m" keeps code 0; new ones sorted, once
    assert got.matrix().shape == (1, 3)


def test_a_missing_column_is_named():
    with pytest.raises(ReelhouseError, match="views"):
        interactions_from_frame(pd.DataFrame({"u": [], "i": []}), "u", "i", weight_col="views")


def test_attributes_and_vectors_attach_by_item_and_flag_missing_ones():
    got = interactions_from_frame(pd.DataFrame({"u": ["x", "x", "y"], "i": ["a", "b", "c"]}), "u", "i")
    items = pa.table(
        {
            "video_id": ["c", "a", "zz"],
            "topic": ["food", "pets", "cars"],
            "upload_time": pa.array([AS_OF, AS_OF - dt.timedelta(hours=1), AS_OF], pa.timestamp("us", tz="UTC")),
        }
    )
    got = with_item_attributes(got, items)
    assert got.item_attributes["topic"].tolist() == ["pets", None, "food"]  # b is not in the table
    upload = got.item_attributes["upload_time_s"]
    assert upload[0] == AS_OF.timestamp() - 3600 and np.isnan(upload[1])

    vectors = pa.table({"video_id": ["a", "c", "b"], "emb": [[1.0, 0.0], [0.0, 2.0], None]})
    got = with_item_vectors(got, vectors, "video_id", "emb")
    assert got.has_vector.tolist() == [True, False, True]
    assert got.item_vectors.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]]


def test_vectors_of_different_lengths_are_refused():
    got = interactions_from_frame(pd.DataFrame({"u": ["x"], "i": ["a"]}), "u", "i")
    with pytest.raises(ReelhouseError, match="different lengths"):
        with_item_vectors(got, pa.table({"video_id": ["a", "b"], "v": [[1.0], [1.0, 2.0]]}), "video_id", "v")


def test_new_videos_are_those_uploaded_in_the_hours_before_as_of():
    items = pa.table(
        {
            "video_id": ["fresh", "old", "future", "unknown"],
            "upload_time": pa.array(
                [AS_OF - dt.timedelta(hours=2), AS_OF - dt.timedelta(hours=50), AS_OF + dt.timedelta(hours=1), None],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    assert new_videos(items, AS_OF, hours=48) == ["fresh"]
