"""The speed layer's arithmetic: features from hourly tiles of measure sums (pure Python).

A tile holds, for one entity and one UTC hour, the sum of each of the entity's measures
(:func:`~reelhouse.features.registry.tile_measures`) over that hour's events. A window of the
registry is a whole number of hours, so a feature as of a whole hour ``t`` is exactly the sum
of the tiles starting in ``[t - window, t)``: the same value the batch layer computes from the
events themselves. The speed layer's Spark state holds the tiles still open to late events;
closed tiles live in the online store's tile rows, from which features are recomputed as the
tiles change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

from reelhouse.features.registry import (
    AGES,
    DECAYED,
    MEASURES,
    SHARES,
    TILE_S,
    WINDOWS,
    features_for,
    tile_measures,
)

Tiles = Mapping[int, Sequence[float]]  # tile start (epoch seconds) -> sums in tile_measures order
FeatureValues = dict[str, float | int | None]


def tile_start(epoch_s: float) -> int:
    return int(epoch_s // TILE_S) * TILE_S


@cache
def longest_window_s(entity: str) -> int:
    windows = [f.window_s for f in features_for(entity)] + [WINDOWS[d.window] for d in DECAYED if d.entity == entity]
    return max(windows)


def prune(tiles: Tiles, as_of_s: int, entity: str) -> dict[int, Sequence[float]]:
    """The tiles that can still count in a feature as of ``as_of_s`` or later."""
    oldest = as_of_s - longest_window_s(entity)
    return {start: sums for start, sums in tiles.items() if start >= oldest}


def features_from_tiles(
    entity: str, tiles: Tiles, as_of_s: int, attributes: Mapping[str, float | None] | None = None
) -> FeatureValues:
    """Every windowed, decayed and age feature of ``entity`` as of ``as_of_s`` (a whole hour).

    ``attributes`` holds epoch seconds of the attributes age features read (``upload_time``).
    """
    if as_of_s % TILE_S:
        raise ValueError(f"feature time {as_of_s} is not on a whole hour")
    names = tile_measures(entity)
    index = {name: i for i, name in enumerate(names)}
    by_window: dict[int, list[float]] = {}
    for spec in features_for(entity):
        by_window.setdefault(spec.window_s, [0.0] * len(names))
    decayed = [d for d in DECAYED if d.entity == entity]
    decayed_sums = dict.fromkeys((d.name for d in decayed), 0.0)
    for start, sums in tiles.items():
        if start >= as_of_s:
            continue
        age = as_of_s - start
        for window_s, totals in by_window.items():
            if age <= window_s:
                for i, value in enumerate(sums):
                    totals[i] += value
        for feature in decayed:
            if age <= WINDOWS[feature.window]:
                weight = 0.5 ** ((as_of_s - (start + TILE_S)) / feature.half_life_s)
                decayed_sums[feature.name] += sums[index[feature.measure]] * weight
    values: FeatureValues = {}
    for spec in features_for(entity):
        totals = by_window[spec.window_s]
        numerator = totals[index[spec.numerator]]
        if spec.denominator is None:
            values[spec.name] = int(round(numerator)) if MEASURES[spec.numerator].value == "1" else numerator
        else:
            denominator = totals[index[spec.denominator]]
            values[spec.name] = numerator / denominator if denominator > 0 else None
    values.update(decayed_sums)
    for age in (a for a in AGES if a.entity == entity):
        stamp = (attributes or {}).get(age.attribute)
        values[age.name] = None if stamp is None else int(as_of_s - stamp)
    return values


def add_shares(entity: str, values: FeatureValues, others: Mapping[str, Mapping[str, float | int | None]]) -> None:
    """Fill ``entity``'s share features in place from the other entities' values."""
    for share in (s for s in SHARES if s.entity == entity):
        denominator = (others.get(share.denominator_entity) or {}).get(share.denominator)
        numerator = values.get(share.numerator)
        values[share.name] = numerator / denominator if numerator is not None and denominator else None
