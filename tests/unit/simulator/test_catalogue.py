from __future__ import annotations

import re

import numpy as np
import pyarrow.parquet as pq

from reelhouse.simulator.catalogue import Catalogue

from .simworld import START_MS, small_catalogue

ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")  # the contract's id rule


def test_same_seed_same_catalogue_and_uploads() -> None:
    a, b = small_catalogue(seed=3), small_catalogue(seed=3)
    # Asking about different times in a different order must not change the upload stream.
    a.uploads_until(3_600_000)
    b.uploads_until(600_000)
    b.uploads_until(3_600_000)
    assert np.array_equal(a.users.taste, b.users.taste)
    for name in ("creator", "topic", "mix", "quality", "duration_ms", "popularity", "upload_offset_ms"):
        assert np.array_equal(getattr(a.videos, name), getattr(b.videos, name)), name
    assert not np.array_equal(small_catalogue(seed=4).users.taste, a.users.taste)


def test_tables_have_the_documented_columns_and_valid_ids(catalogue: Catalogue) -> None:
    tables = catalogue.tables(START_MS)
    assert tables["users"].column_names == ["user_id", "country", "os", "app_version", "age_group", "signup_time"]
    assert tables["videos"].column_names[:6] == [
        "video_id",
        "creator_id",
        "topic",
        "duration_ms",
        "upload_time",
        "quality",
    ]
    assert tables["users"].num_rows == tables["user_tastes"].num_rows == 2_000
    assert tables["videos"].num_rows == tables["video_topics"].num_rows == 5_000
    for table, column in (("users", "user_id"), ("videos", "video_id"), ("videos", "creator_id")):
        values = tables[table][column].to_pylist()
        assert all(ID.match(v) for v in values)
        assert len(set(values)) == len(values) or column == "creator_id"
    # Everything in the initial catalogue exists before the simulation starts.
    assert tables["users"]["signup_time"].to_numpy().max().astype("int64") < START_MS
    assert tables["videos"]["upload_time"].to_numpy().max().astype("int64") < START_MS
    taste = np.array(tables["user_tastes"]["taste"].to_pylist())
    assert taste.shape == (2_000, 12) and np.allclose(taste.sum(axis=1), 1.0, atol=1e-4)


def test_uploads_happen_at_the_configured_rate_and_are_written(catalogue: Catalogue, tmp_path) -> None:
    # 600 uploads per simulated hour: about 600 +- a few sqrt(600) in the first hour.
    visible = catalogue.uploads_until(3_600_000)
    assert 500 < visible - 5_000 < 700
    paths = catalogue.write(str(tmp_path / "catalogue"), START_MS, visible)
    assert set(paths) == {"users", "videos", "user_tastes", "video_topics"}
    videos = pq.read_table(paths["videos"])
    assert videos.num_rows == visible
    uploaded = videos.filter(videos["uploaded_during_simulation"])
    assert uploaded.num_rows == visible - 5_000
    times = uploaded["upload_time"].to_numpy().astype("int64")
    assert times.min() >= START_MS and times.max() <= START_MS + 3_600_000
    assert pq.read_table(paths["users"]).schema.metadata[b"reelhouse.seed"] == b"11"


def test_popularity_is_zipf_skewed(catalogue: Catalogue) -> None:
    popularity = np.sort(catalogue.videos.popularity[:5_000])[::-1]
    # Weight of rank r is r^-1.1, so the log-log slope over the ranks is -1.1.
    ranks = np.arange(1, 5_001)
    slope = np.polyfit(np.log(ranks[:1_000]), np.log(popularity[:1_000]), 1)[0]
    assert abs(slope + 1.1) < 0.05
    assert popularity[:50].sum() / popularity.sum() > 0.4  # top 1% of videos: > 40% of the weight
