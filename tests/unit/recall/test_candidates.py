"""Which sources a build fits: those with a quota that the data can feed."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.recall.candidates import make_sources
from reelhouse.recall.interactions import interactions_from_frame, with_item_attributes, with_item_vectors
from tests.conftest import PROJECT_DIR


def config_with(quotas):
    config = load_config(PROJECT_DIR / "conf" / "local.yaml", environ={})
    return config.model_copy(update={"recall": config.recall.model_copy(update={"quotas": quotas})})


def interactions(topics=False, vectors=False):
    data = interactions_from_frame(pd.DataFrame({"u": ["x", "y"], "i": ["a", "b"]}), "u", "i")
    if topics:
        data = with_item_attributes(data, pa.table({"video_id": ["a", "b"], "topic": ["t", "t"]}))
    if vectors:
        data = with_item_vectors(data, pa.table({"video_id": ["a"], "v": [[1.0, 0.0]]}), "video_id", "v")
    return data


def test_sources_follow_the_quota_order_and_skip_zero_quotas():
    config = config_with({"covisit": 5, "popularity": 3, "topic": 0})
    assert [s.name for s in make_sources(None, config, interactions(topics=True), None)] == ["covisit", "popularity"]


def test_topic_and_embedding_sources_need_their_data():
    config = config_with({"topic": 5, "embedding": 5, "popularity": 1})
    assert [s.name for s in make_sources(None, config, interactions(), None)] == ["popularity"]
    both = make_sources(None, config, interactions(topics=True, vectors=True), None)
    assert [s.name for s in both] == ["topic", "embedding", "popularity"]


def test_a_misspelt_source_and_als_without_spark_are_errors():
    with pytest.raises(ReelhouseError, match="unknown sources"):
        make_sources(None, config_with({"covisits": 5}), interactions(), None)
    with pytest.raises(ReelhouseError, match="SparkSession"):
        make_sources(None, config_with({"als": 5}), interactions(), None)
