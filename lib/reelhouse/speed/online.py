"""The tiles that closed in Spark's state live on in the online store; features are computed from them.

Spark's state holds an entity's hourly tile only while late events may still change it (the
watermark). Each micro-batch hands over the tiles it changed, with their absolute sums; this
module merges them into the entity's tile row in the online store (view ``<entity>_tiles``),
recomputes the entity's features as of the end of its latest tile and writes them to the
feature view (``<entity>_features``) that the batch layer's materialisation also fills.

Replaying a micro-batch writes the same absolute tiles again, so the merge is idempotent. One
speed-layer query writes the tile views; nothing else does.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from reelhouse.features.registry import (
    ENTITIES,
    ENTITY_KEYS,
    FEATURES,
    KEY_SEPARATOR,
    SHARES,
    TILE_S,
    tile_measures,
)
from reelhouse.features.tiles import add_shares, features_from_tiles, longest_window_s, prune
from reelhouse.features.views import features_view, tiles_view
from reelhouse.online.store import FeatureRow, OnlineStore, feature_version

# The user measures topic affinities divide by: when a user's tiles change one, all their topics move.
_DENOMINATOR_MEASURES = tuple(
    sorted({m for f in FEATURES if f.name in {s.denominator for s in SHARES} for m in f.measures})
)


def _utc(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC)


class _Entity:
    __slots__ = ("tiles", "topics", "upload_time")

    def __init__(
        self, tiles: dict[int, list[float]], upload_time: float | None, topics: set[str] | None = None
    ) -> None:
        self.tiles = tiles
        self.upload_time = upload_time
        self.topics = topics or set()

    @property
    def as_of(self) -> int:
        return max(self.tiles) + TILE_S


def _decode(row: FeatureRow | None, measures: tuple[str, ...]) -> _Entity:
    if row is None or row.values.get("measures") != list(measures):
        return _Entity({}, None)  # absent, expired, or written under another registry: start afresh
    tiles = {int(t[0]): [float(v) for v in t[1:]] for t in row.values["tiles"]}
    return _Entity(tiles, row.values.get("upload_time"), set(row.values.get("topics") or ()))


class OnlineTiles:
    def __init__(self, store: OnlineStore) -> None:
        self.store = store
        self._engagement_changed: set[str] = set()  # users whose affinity denominators moved

    def apply(self, changed: pa.Table) -> dict[str, list[dict[str, Any]]]:
        """Merge changed tiles (columns ``entity, key, tile_start`` (epoch s), every measure,
        ``upload_time`` (epoch s)) and return each entity's recomputed feature rows.

        A user's topic affinities divide by the user's engagement, so every topic row of a user
        whose tiles changed is recomputed, not only the topics of this batch's events; the user's
        tile row remembers its topics for that.
        """
        incoming: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for row in changed.to_pylist():
            incoming[row["entity"]][row["key"]].append(row)
        topics: dict[str, set[str]] = defaultdict(set)
        for key in incoming.get("user_topic", {}):
            user, topic = key.split(KEY_SEPARATOR, 1)
            topics[user].add(topic)
        merged: dict[str, dict[str, _Entity]] = {}
        # Per batch: a batch without user tiles changes no user's denominators.
        self._engagement_changed = set()
        for entity in ENTITIES:
            if entity in incoming:
                merged[entity] = self._merge(entity, incoming[entity], topics if entity == "user" else None)
        users = merged.setdefault("user", {})
        affected = set(merged.get("user_topic", {}))
        affected |= {
            f"{user}{KEY_SEPARATOR}{topic}" for user in self._engagement_changed for topic in users[user].topics
        }
        unchanged = sorted(affected - set(merged.get("user_topic", {})))
        if unchanged:
            stored = self.store.read(tiles_view("user_topic"), unchanged)
            found = {k: _decode(row, tile_measures("user_topic")) for k, row in stored.items() if row is not None}
            merged.setdefault("user_topic", {}).update({k: s for k, s in found.items() if s.tiles})
        missing = sorted({key.split(KEY_SEPARATOR)[0] for key in merged.get("user_topic", {})} - set(users))
        if missing:
            stored = self.store.read(tiles_view("user"), missing)
            users.update({u: _decode(stored[u], tile_measures("user")) for u in missing})
        return {
            entity: self._features(entity, merged[entity], users)
            for entity in ENTITIES
            if merged.get(entity) and (entity in incoming or entity == "user_topic")
        }

    def _merge(
        self, entity: str, incoming: Mapping[str, list[dict]], topics: Mapping[str, set[str]] | None = None
    ) -> dict[str, _Entity]:
        measures = tile_measures(entity)
        stored = self.store.read(tiles_view(entity), list(incoming))
        states, rows = {}, []
        if entity == "user":
            watched = [measures.index(m) for m in _DENOMINATOR_MEASURES]
        for key, changes in incoming.items():
            state = _decode(stored[key], measures)
            for change in changes:
                start = int(change["tile_start"])
                sums = [float(change[m]) for m in measures]
                if entity == "user":
                    before = state.tiles.get(start)
                    if any((before[i] if before else 0.0) != sums[i] for i in watched):
                        self._engagement_changed.add(key)
                state.tiles[start] = sums
                upload = change.get("upload_time")
                if upload is not None:
                    state.upload_time = upload
            state.tiles = prune(state.tiles, state.as_of, entity)
            if topics is not None:
                state.topics |= topics.get(key, set())
            states[key] = state
            rows.append(
                FeatureRow(
                    entity_key=key,
                    values={
                        "measures": list(measures),
                        "tiles": [[start, *sums] for start, sums in sorted(state.tiles.items())],
                        "upload_time": state.upload_time,
                        "topics": sorted(state.topics),
                    },
                    feature_time=_utc(state.as_of),
                    version=time.time_ns() // 1_000,  # one writer: wall-clock order is write order
                    expires_at=_utc(state.as_of + longest_window_s(entity)),
                )
            )
        self.store.write(tiles_view(entity), rows)
        return states

    def _features(
        self, entity: str, states: Mapping[str, _Entity], users: Mapping[str, _Entity]
    ) -> list[dict[str, Any]]:
        rows, online = [], []
        for key, state in states.items():
            as_of = state.as_of
            values = features_from_tiles(entity, state.tiles, as_of, {"upload_time": state.upload_time})
            # seq grows with every event the values depend on (each adds >= 1 to a count).
            seq = math.floor(sum(sum(sums) for sums in state.tiles.values()))
            if entity == "user_topic":
                user = users[key.split(KEY_SEPARATOR)[0]]
                user_values = features_from_tiles("user", user.tiles, as_of) if user.tiles else {}
                add_shares(entity, values, {"user": user_values})
                seq += math.floor(sum(sum(sums) for start, sums in user.tiles.items() if start < as_of))
            feature_time = _utc(as_of)
            online.append(FeatureRow(key, values, feature_time, feature_version(feature_time, seq)))
            row = dict(zip(ENTITY_KEYS[entity], key.split(KEY_SEPARATOR, len(ENTITY_KEYS[entity]) - 1), strict=True))
            row.update(values)
            row["feature_time"] = feature_time
            rows.append(row)
        self.store.write(features_view(entity), online)
        return rows
