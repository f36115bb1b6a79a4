"""No training/serving skew: for the same gold feature rows, the model inputs serving assembles from
the online store equal, column for column and value for value, the ones the training-set builder
gives the same impressions.

Training side: silver impressions and gold feature tables in Delta, then the real builder
(:func:`reelhouse.training.dataset.build_training_set`, local Spark) and
:func:`reelhouse.training.ranker.model_inputs`. Serving side: the same gold rows through the
materialisation's own row conversion (:class:`reelhouse.online.materialize.ChunkWriter`) into a
SQLite online store, the dimension tables into the recall index, then, as a feed request does,
the video rows through the service's in-memory table (:class:`reelhouse.serving.videos.VideoFeatureTable`,
loaded by a store scan), the user's rows through one ``read_many``, and
:func:`reelhouse.serving.features.assemble`. The same inputs assembled from ``read_many`` alone
(every entity from the store) must be equal too.

The impressions are shown at position 0, the slot serving scores every candidate at.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from reelhouse.features.gold import feature_table
from reelhouse.features.registry import ENTITY_KEYS, feature_names
from reelhouse.features.views import features_view
from reelhouse.lake import Lake
from reelhouse.online.materialize import ChunkWriter
from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.serving.features import FeatureDecoder, RequestContext, assemble, feature_keys
from reelhouse.serving.recall import build_recall_index
from reelhouse.serving.videos import VideoFeatureTable
from reelhouse.silver.tables import DIM_USERS, DIM_VIDEOS, SILVER_EVENTS
from reelhouse.training.columns import MODEL_INPUT_COLUMNS
from reelhouse.training.dataset import build_training_set
from reelhouse.training.models import model_inputs
from tests.integration.conftest import build_test_config

pytestmark = pytest.mark.integration

H10 = dt.datetime(2026, 11, 21, 10, tzinfo=dt.UTC)
IMPRESSION_TIME = H10 + dt.timedelta(minutes=30)
VIDEOS = {"v1": ("pets", "c1"), "v2": ("cars", "c2"), "v3": (None, None)}  # v3: not in dim_videos
DEVICE = {"os": "android", "network": "cellular"}


def gold_row(entity: str, keys: dict[str, str], rng: np.random.Generator) -> dict:
    """A gold row of every feature with the table's own types, some values null."""
    spec = feature_table(entity)
    row: dict[str, object] = dict(keys)
    for name in feature_names(entity):
        kind = spec.schema.field(name).type
        row[name] = int(rng.integers(0, 500)) if pa.types.is_integer(kind) else float(rng.uniform(0, 1))
    row[feature_names(entity)[2]] = None  # e.g. a rate without a denominator
    return row | {"feature_time": H10, "feature_hour": H10.strftime("%Y-%m-%dT%H")}


def silver_impression(request_id: str, video: str) -> dict:
    topic, creator = VIDEOS[video]
    return {
        "event_id": f"e-{request_id}",
        "event_type": "impression",
        "schema_version": 1,
        "user_id": "u1",
        "video_id": video,
        "event_time": IMPRESSION_TIME,
        "session_id": "s1",
        "request_id": request_id,
        "device_os": DEVICE["os"],
        "device_app_version": "1.0",
        "device_country": "BR",
        "device_network": DEVICE["network"],
        "watch_ms": None,
        "video_duration_ms": None,
        "position": 0,
        "variant": None,
        "received_at": IMPRESSION_TIME + dt.timedelta(seconds=1),
        "session_key": "u1:0",
        "session_start": IMPRESSION_TIME,
        "known_user": True,
        "known_video": topic is not None,
        "user_country": "US",
        "user_age_group": "25-34",
        "creator_id": creator,
        "topic": topic,
        "upload_time": None,
        "event_date": IMPRESSION_TIME.date(),
        "event_hour": IMPRESSION_TIME.strftime("%Y-%m-%dT%H"),
    }


def write(spark, lake: Lake, spec, rows: list[dict]) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=spec.schema)
    lake.ensure_table(spark, spec)
    if rows:
        lake.write_arrow(spark, table, spec)
    return table


def test_serving_builds_the_training_columns_from_the_same_feature_rows(spark, tmp_path):
    config = build_test_config(tmp_path)
    lake = Lake(config.lake)
    rng = np.random.default_rng(5)
    gold = {
        "video": [gold_row("video", {"video_id": "v1"}, rng), gold_row("video", {"video_id": "v2"}, rng)],
        "user": [gold_row("user", {"user_id": "u1"}, rng)],
        # No (u1, cars) row: v2's user x topic features are unknown on both sides.
        "user_topic": [gold_row("user_topic", {"user_id": "u1", "topic": "pets"}, rng)],
    }
    tables = {entity: write(spark, lake, feature_table(entity), rows) for entity, rows in gold.items()}
    write(spark, lake, SILVER_EVENTS, [silver_impression(f"r-{v}", v) for v in VIDEOS])

    build_training_set(spark, config, H10, H10 + dt.timedelta(hours=1))
    training = lake.to_arrow(config.training.table).to_pandas().sort_values("video_id").reset_index(drop=True)
    assert training["video_id"].tolist() == ["v1", "v2", "v3"]
    expected = model_inputs(training)

    store = SqliteOnlineStore(tmp_path / "online.db", default_ttl_s=config.online_store.ttl_s)
    for entity, table in tables.items():
        writer = ChunkWriter(config.online_store, entity, features_view(entity))
        columns = [*ENTITY_KEYS[entity], *feature_names(entity), "feature_time"]
        for batch in table.select(columns).to_batches():
            store.write(features_view(entity), list(writer.feature_rows(batch)))
    dims_videos = pa.Table.from_pylist(
        [{"video_id": v, "creator_id": c, "topic": t, "upload_time": H10} for v, (t, c) in VIDEOS.items() if t],
        schema=pa.schema([DIM_VIDEOS.schema.field(n) for n in ("video_id", "creator_id", "topic", "upload_time")]),
    )
    dims_users = pa.Table.from_pylist(
        [{"user_id": "u1", "country": "US", "age_group": "25-34"}],
        schema=pa.schema([DIM_USERS.schema.field(n) for n in ("user_id", "country", "age_group")]),
    )
    index = build_recall_index(None, None, dims_videos, dims_users)

    video_ids = list(VIDEOS)
    codes = index.videos.codes(video_ids)
    topic_codes = np.where(codes >= 0, index.video_topic[np.maximum(codes, 0)], -1)
    keys = feature_keys("u1", video_ids, topic_codes, index.topics)
    rows = store.read_many(keys.views(), now=IMPRESSION_TIME, decode=FeatureDecoder())
    country, age_group = index.user_attributes(index.user_code("u1"))
    context = RequestContext(DEVICE["os"], DEVICE["network"], country, age_group, IMPRESSION_TIME.hour)
    videos = VideoFeatureTable()
    videos.refresh(store, now=IMPRESSION_TIME)
    now_ms = int(IMPRESSION_TIME.timestamp() * 1000)
    served = assemble(keys, rows, context, videos.lookup(video_ids, now_ms)).frame()
    store.close()
    pd.testing.assert_frame_equal(assemble(keys, rows, context).frame(), served)

    assert list(served.columns) == list(MODEL_INPUT_COLUMNS)
    pd.testing.assert_frame_equal(served, expected)
    # The comparison is not vacuous: real values on both sides, and the gaps where training has them.
    assert served.loc[0, "video_plays_1d"] == gold["video"][0]["video_plays_1d"]
    assert served.loc[:, "user_topic_affinity_7d"].isna().tolist() == [False, True, True]
    assert served["topic"].tolist()[:2] == ["pets", "cars"] and pd.isna(served.loc[2, "topic"])
