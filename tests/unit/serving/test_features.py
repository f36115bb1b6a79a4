"""Request-time model inputs mean what the training set's columns mean, for the same feature rows.

The expected frame is built the way the training set builds an example: the gold values of the
video, the user and (user, video topic) side by side, the request's device and hour, the user's
dimension attributes, then :func:`reelhouse.training.ranker.model_inputs`. Serving assembles the
same from online-store rows; both must agree value for value, gaps included. (The integration test
``tests/integration/serving/test_feature_parity.py`` builds the expected side with the real
training-set builder on Spark.)
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from reelhouse.features.registry import feature_names
from reelhouse.serving.features import (
    VIEWS,
    Categorical,
    FeatureDecoder,
    RequestContext,
    assemble,
    feature_keys,
)
from reelhouse.training.columns import MODEL_INPUT_COLUMNS
from reelhouse.training.models import model_inputs


def values(entity: str, seed: int) -> dict[str, float | int | None]:
    rng = np.random.default_rng(seed)
    out: dict[str, float | int | None] = {name: float(rng.uniform(0, 50)) for name in feature_names(entity)}
    out[feature_names(entity)[1]] = None  # a null feature (a rate with no denominator)
    out[feature_names(entity)[0]] = int(rng.integers(0, 100))  # counts are integers in the store
    return out


VIDEO = {"v1": values("video", 1), "v2": values("video", 2)}  # v3 has no row
USER = values("user", 3)
USER_TOPIC = {"u1|pets": values("user_topic", 4)}  # no row for u1|cars
TOPICS = {"v1": "pets", "v2": "cars", "v3": None}
CONTEXT = RequestContext("ios", "wifi", "US", None, 17)


def training_rows(video_ids: list[str]) -> pd.DataFrame:
    """What the training set holds for these impressions of u1 at 17:xx UTC, position 0."""
    rows = []
    for video in video_ids:
        topic = TOPICS[video]
        row: dict[str, object] = {}
        row.update(VIDEO.get(video) or dict.fromkeys(feature_names("video")))
        row.update(USER)
        row.update(USER_TOPIC.get(f"u1|{topic}") or dict.fromkeys(feature_names("user_topic")))
        row.update(
            {
                "device_os": "ios",
                "device_network": "wifi",
                "topic": topic,
                "user_country": "US",
                "user_age_group": None,
                "position": 0,
                "hour_of_day": 17,
            }
        )
        rows.append(row)
    return model_inputs(pd.DataFrame(rows))


def store_rows(decoder: FeatureDecoder | None = None) -> dict[str, dict]:
    rows = {VIEWS["video"]: VIDEO, VIEWS["user"]: {"u1": USER}, VIEWS["user_topic"]: USER_TOPIC}
    if decoder is None:
        return rows
    return {
        view: {key: decoder(view, key, 1, orjson.dumps(v)) for key, v in by_key.items()}
        for view, by_key in rows.items()
    }


@pytest.mark.parametrize("decoded", [False, True], ids=["mappings", "decoded-vectors"])
def test_assembled_inputs_equal_the_training_columns(decoded: bool):
    video_ids = ["v1", "v2", "v3"]
    topics = ["pets", "cars"]
    keys = feature_keys("u1", video_ids, np.array([0, 1, -1]), topics)
    assert keys.views() == {
        VIEWS["video"]: video_ids,
        VIEWS["user"]: ["u1"],
        VIEWS["user_topic"]: ["u1|pets", "u1|cars"],
    }
    inputs = assemble(keys, store_rows(FeatureDecoder() if decoded else None), CONTEXT)
    frame = inputs.frame()
    assert list(frame.columns) == list(MODEL_INPUT_COLUMNS)
    pd.testing.assert_frame_equal(frame, training_rows(video_ids))


def test_gaps_are_missing_values_not_zeros():
    keys = feature_keys("u1", ["v3"], np.array([-1]), [])
    inputs = assemble(keys, {}, CONTEXT)
    frame = inputs.frame()
    assert frame.loc[0, list(feature_names("video"))].isna().all()
    assert frame.loc[0, list(feature_names("user_topic"))].isna().all()
    assert pd.isna(frame.loc[0, "topic"]) and pd.isna(frame.loc[0, "user_age_group"])
    assert frame.loc[0, "position"] == 0.0 and frame.loc[0, "hour_of_day"] == 17.0


def test_a_ranker_reading_only_video_features_asks_for_nothing_else():
    keys = feature_keys("u1", ["v1"], np.array([0]), ["pets"], entities=("video",))
    assert keys.views() == {VIEWS["video"]: ["v1"]}
    inputs = assemble(keys, store_rows(), CONTEXT)
    assert inputs.column("video_trending_score")[0] == VIDEO["v1"]["video_trending_score"]
    assert np.isnan(inputs.column("user_events_1d")[0])


def test_the_decoder_parses_a_row_once_per_version():
    decoder = FeatureDecoder()
    view = VIEWS["video"]
    first = decoder(view, "v1", 5, orjson.dumps(VIDEO["v1"]))
    assert decoder(view, "v1", 5, b"not even json") is first  # same version: the cached vector
    changed = decoder(view, "v1", 6, orjson.dumps({**VIDEO["v1"], "video_trending_score": 1.5}))
    assert changed is not first and changed[feature_names("video").index("video_trending_score")] == 1.5
    assert decoder("user_seen", "u1", 1, b'{"videos": ["v1"]}') == {"videos": ["v1"]}
    with pytest.raises(ValueError):
        first[0] = 0.0  # shared between requests: read-only
    small = FeatureDecoder(max_rows=2)
    for key in ("a", "b", "c"):
        small(view, key, 1, orjson.dumps(VIDEO["v1"]))
    assert small._size <= 2


def test_a_row_missing_a_newer_feature_gives_nan_for_it():
    old_row = {k: v for k, v in VIDEO["v1"].items() if k != "video_age_s"}
    keys = feature_keys("u1", ["v1"], np.array([0]), ["pets"])
    inputs = assemble(keys, {VIEWS["video"]: {"v1": old_row}}, CONTEXT)
    assert np.isnan(inputs.column("video_age_s")[0])
    assert inputs.column("video_trending_score")[0] == VIDEO["v1"]["video_trending_score"]


def test_categorical_values_use_nan_for_missing():
    column = Categorical(("a", None), np.array([0, 1, 0], dtype=np.int32))
    got = column.values()
    assert got[0] == "a" and got[2] == "a" and isinstance(got[1], float) and np.isnan(got[1])
