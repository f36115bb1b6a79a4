"""Model inputs at request time: the training set's columns, with the training set's meaning.

The training set (lib/reelhouse/training/dataset.py) gives every impression the features of its
video, its user and (user, the video's topic) from the gold rows as of the impression, plus the
context of the request. Serving builds the same MODEL_INPUT_COLUMNS (training/columns.py) from
the online store, whose rows are the same registry features (the batch layer materialises gold
rows, the speed layer writes values computed by the same registry):

* registry features: the values of the online row of ``video_features`` (key: video id),
  ``user_features`` (user id) and ``user_topic_features`` (``user_id|topic``) as stored; an
  entity without a live row has every feature missing (NaN), exactly as an entity without a
  gold row at the impression's as-of time gets nulls in training;
* ``topic``: the video's topic from ``dim_videos`` (silver's join), missing when unknown; with no
  topic there is no user x topic key, so those features are missing too, as in training;
* ``user_country``, ``user_age_group``: from ``dim_users`` (silver's join), not from the request's
  device: training reads them from the user dimension; missing for users not in it;
* ``device_os``, ``device_network``: the request's device, as the impression event carries it;
* ``hour_of_day``: the UTC hour of the request, as training takes the impression's UTC hour;
* ``position``: 0 for every candidate. Training sees the slot an impression was shown in, so the
  model learns how much a video's slot alone (not its content) explains; scoring every candidate
  at the same slot compares candidates without that bias (position-debiased scoring). The real
  slot is known only after ranking, and goes into the impression events for the next training set.

A :class:`ModelInputs` keeps numerics as one float64 matrix in NUMERIC_COLUMNS order and each
categorical column factorised (its distinct values + a code per row), which is what the LightGBM
fast path needs; :meth:`ModelInputs.frame` gives the pandas frame of
:func:`reelhouse.training.models.model_inputs` for any other pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import orjson
import pandas as pd

from reelhouse.features.registry import ENTITIES, KEY_SEPARATOR, feature_names
from reelhouse.features.views import features_view
from reelhouse.online.store import FeatureValue
from reelhouse.training.columns import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

VIEWS = {entity: features_view(entity) for entity in ENTITIES}
NAMES = {entity: feature_names(entity) for entity in ENTITIES}
_GETTERS = {entity: itemgetter(*names) for entity, names in NAMES.items()}
_NUMERIC_INDEX = {name: i for i, name in enumerate(NUMERIC_COLUMNS)}
POSITION = _NUMERIC_INDEX["position"]
HOUR_OF_DAY = _NUMERIC_INDEX["hour_of_day"]
SCORING_POSITION = 0.0  # see the module docstring: position-debiased scoring


def _block(entity: str) -> slice:
    names = NAMES[entity]
    start = _NUMERIC_INDEX[names[0]]
    if tuple(NUMERIC_COLUMNS[start : start + len(names)]) != names:
        raise TypeError(f"training/columns.py no longer lists the {entity} features as one block")
    return slice(start, start + len(names))


BLOCKS = {entity: _block(entity) for entity in ENTITIES}

Values = Mapping[str, FeatureValue]


@dataclass(frozen=True)
class RequestContext:
    """The request's own model inputs (the same for every candidate)."""

    device_os: str
    device_network: str
    user_country: str | None
    user_age_group: str | None
    hour_of_day: int


@dataclass(frozen=True)
class FeatureKeys:
    """What a request reads from the online store, and how the user x topic rows map to candidates."""

    user_id: str
    video_ids: list[str]
    topics: list[str]  # distinct known topics of the candidates
    topic_of: np.ndarray  # int32 per candidate: index into ``topics``, -1 when the topic is unknown
    entities: tuple[str, ...] = ENTITIES

    def views(self) -> dict[str, list[str]]:
        """``{view: keys}`` for :meth:`~reelhouse.online.store.OnlineStore.read_many`."""
        keys: dict[str, list[str]] = {}
        if "video" in self.entities:
            keys[VIEWS["video"]] = self.video_ids
        if "user" in self.entities:
            keys[VIEWS["user"]] = [self.user_id]
        if "user_topic" in self.entities and self.topics:
            keys[VIEWS["user_topic"]] = user_topic_keys(self.user_id, self.topics)
        return keys


def user_topic_keys(user_id: str, topics: Sequence[str]) -> list[str]:
    """The ``user_topic_features`` keys of ``user_id`` for ``topics``."""
    return [f"{user_id}{KEY_SEPARATOR}{topic}" for topic in topics]


def feature_keys(
    user_id: str,
    video_ids: list[str],
    topic_codes: np.ndarray,
    topic_names: Sequence[str],
    entities: tuple[str, ...] = ENTITIES,
) -> FeatureKeys:
    """Keys for ``video_ids`` whose topics are ``topic_names[topic_codes]`` (code -1: unknown)."""
    topic_codes = np.asarray(topic_codes)
    known = topic_codes >= 0
    distinct, inverse = np.unique(topic_codes[known], return_inverse=True)
    topic_of = np.full(len(topic_codes), -1, dtype=np.int32)
    topic_of[known] = inverse
    return FeatureKeys(user_id, video_ids, [topic_names[t] for t in distinct.tolist()], topic_of, entities)


@dataclass(frozen=True)
class Categorical:
    """A factorised categorical column: distinct values (None: missing) and a code per row."""

    levels: tuple[str | None, ...]
    codes: np.ndarray  # int32 per row, into ``levels``

    @classmethod
    def constant(cls, value: str | None, n: int) -> Categorical:
        return cls((value,), np.zeros(n, dtype=np.int32))

    def values(self) -> np.ndarray:
        """Per row value as an object array, NaN for missing (the dtype training uses)."""
        levels = np.array([np.nan if v is None else v for v in self.levels] or [np.nan], dtype=object)
        return levels[self.codes]


@dataclass
class ModelInputs:
    numeric: np.ndarray  # float64, rows x NUMERIC_COLUMNS
    categorical: dict[str, Categorical]  # CATEGORICAL_COLUMNS, in that order

    def __len__(self) -> int:
        return len(self.numeric)

    def column(self, name: str) -> np.ndarray:
        return self.numeric[:, _NUMERIC_INDEX[name]]

    def frame(self) -> pd.DataFrame:
        """MODEL_INPUT_COLUMNS as :func:`reelhouse.training.models.model_inputs` returns them."""
        from reelhouse.training.models import model_inputs

        data: dict[str, np.ndarray] = {name: self.numeric[:, i] for i, name in enumerate(NUMERIC_COLUMNS)}
        data.update({name: self.categorical[name].values() for name in CATEGORICAL_COLUMNS})
        return model_inputs(pd.DataFrame(data))


def feature_vector(entity: str, values: Values) -> np.ndarray:
    """The stored values of one row as float64 in registry order; NaN for missing ones."""
    try:
        ordered = _GETTERS[entity](values)
    except KeyError:  # a row written before a feature was added to the registry
        ordered = tuple(values.get(name) for name in NAMES[entity])
    return np.array(ordered, dtype=np.float64)  # None becomes NaN


class FeatureDecoder:
    """The ``decode`` of :meth:`~reelhouse.online.store.OnlineStore.read_many` for a feed request.

    Feature rows become float64 vectors in registry order, kept per (view, key) while the row's
    version is unchanged: a video's row is the same for every request until the batch or speed
    layer writes a new version, so its JSON is parsed once, not once per request that recalls
    it. The store is still read for every row; only the decoding is saved. Other views (the
    user state rows) are decoded as plain JSON. At most ``max_rows`` vectors are kept; beyond
    that the cache starts afresh.
    """

    def __init__(self, max_rows: int = 250_000) -> None:
        self.max_rows = max_rows
        self._entity = {view: entity for entity, view in VIEWS.items()}
        self._cache: dict[str, dict[str, tuple[int, np.ndarray]]] = {view: {} for view in VIEWS.values()}
        self._size = 0

    def __call__(self, view: str, key: str, version: int, payload: bytes | str) -> object:
        entity = self._entity.get(view)
        if entity is None:
            return orjson.loads(payload)
        cache = self._cache[view]
        hit = cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        vector = feature_vector(entity, orjson.loads(payload))
        vector.flags.writeable = False  # shared by every request that reads this row
        if hit is None:
            self._size += 1
            if self._size > self.max_rows:
                for per_view in self._cache.values():
                    per_view.clear()
                self._size = 1
        cache[key] = (version, vector)
        return vector


_MISSING = {entity: np.full(len(names), np.nan) for entity, names in NAMES.items()}


def _vectors(entity: str, rows: Mapping[str, Values | np.ndarray], keys: Sequence[str]) -> np.ndarray:
    """``len(keys) x features`` of ``entity``: the stored values, NaN where a row or value is missing.

    Rows are vectors (:class:`FeatureDecoder`) or the stored mappings (plain ``read_many``)."""
    if not keys:
        return np.zeros((0, len(NAMES[entity])))
    missing = _MISSING[entity]
    found = [rows.get(key, missing) for key in keys]
    if not all(isinstance(row, np.ndarray) for row in found):
        found = [row if isinstance(row, np.ndarray) else feature_vector(entity, row) for row in found]
    return np.vstack(found)


def assemble(
    keys: FeatureKeys,
    rows: Mapping[str, Mapping[str, Values]],
    context: RequestContext,
    videos: np.ndarray | None = None,
) -> ModelInputs:
    """The model inputs of every candidate of ``keys`` from ``read_many`` rows (module docstring).

    ``videos``: the candidates' video features as :meth:`~reelhouse.serving.videos.VideoFeatureTable.lookup`
    gives them (the service's path); without it they come from ``rows`` like the other entities."""
    n = len(keys.video_ids)
    numeric = np.full((n, len(NUMERIC_COLUMNS)), np.nan)
    if "video" in keys.entities:
        if videos is None:
            videos = _vectors("video", rows.get(VIEWS["video"], {}), keys.video_ids)
        numeric[:, BLOCKS["video"]] = videos
    if "user" in keys.entities:
        numeric[:, BLOCKS["user"]] = _vectors("user", rows.get(VIEWS["user"], {}), [keys.user_id])
    if "user_topic" in keys.entities and keys.topics:
        per_topic = _vectors(
            "user_topic",
            rows.get(VIEWS["user_topic"], {}),
            user_topic_keys(keys.user_id, keys.topics),
        )
        known = keys.topic_of >= 0
        numeric[np.flatnonzero(known), BLOCKS["user_topic"]] = per_topic[keys.topic_of[known]]
    numeric[:, POSITION] = SCORING_POSITION
    numeric[:, HOUR_OF_DAY] = float(context.hour_of_day)
    topics = tuple(keys.topics) + (None,)
    categorical = {
        "device_os": Categorical.constant(context.device_os, n),
        "device_network": Categorical.constant(context.device_network, n),
        # -1 (unknown topic) indexes the trailing None.
        "topic": Categorical(topics, np.where(keys.topic_of >= 0, keys.topic_of, len(topics) - 1).astype(np.int32)),
        "user_country": Categorical.constant(context.user_country, n),
        "user_age_group": Categorical.constant(context.user_age_group, n),
    }
    return ModelInputs(numeric, {name: categorical[name] for name in CATEGORICAL_COLUMNS})
