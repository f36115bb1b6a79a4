"""The blend: each user's candidates from every source, deduplicated, within quotas, plus exploration.

Selection goes source by source in the order of ``quotas`` (its priority): a source
contributes its best items that no earlier source already gave, at most its quota. A source
should therefore answer with more than its quota, so duplicates do not leave its share empty.
Then ``exploration_slots`` new videos the user has not seen are drawn at random (seeded).

The blended order is round robin: every source's first pick, then every source's second, and
so on (exploration last in each round), so a list cut short still mixes all sources. Each
candidate keeps its source and its rank in that source's own list; ranking re-orders anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from reelhouse.recall.topk import excluded_mask, row_batches

EXPLORATION = "exploration"


@dataclass
class Blended:
    """Blended candidates, one entry per (row, item), sorted by row then position.

    ``row`` indexes the users given to :func:`blend`; ``item`` is an item code; ``source_rank``
    the 0-based rank in the source's own answer (for exploration: the draw order); ``score``
    the source's score (NaN for exploration); ``position`` the 0-based place in the row's list.
    """

    row: np.ndarray
    item: np.ndarray
    source: np.ndarray
    source_rank: np.ndarray
    score: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    def counts(self) -> dict[str, int]:
        """Candidates per source."""
        names, counts = np.unique(self.source.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}

    def lists(self, n_rows: int) -> np.ndarray:
        """``n_rows x longest`` item codes in blended order, padded with ``-1``."""
        width = int(self.position.max(initial=-1)) + 1
        out = np.full((n_rows, width), -1, dtype=np.int64)
        out[self.row, self.position] = self.item
        return out


def _member(candidates: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """``candidates[i, j]`` is among ``taken[i]`` (both rows of item codes; ``-1`` is nothing)."""
    n = len(candidates)
    if taken.size == 0 or candidates.size == 0:
        return np.zeros(candidates.shape, dtype=bool)
    width = np.int64(max(int(candidates.max(initial=0)), int(taken.max(initial=0))) + 2)
    rows = np.arange(n, dtype=np.int64)[:, None]
    stored = np.sort((rows * width + taken + 1)[taken >= 0])
    if stored.size == 0:
        return np.zeros(candidates.shape, dtype=bool)
    keys = rows * width + candidates + 1
    at = np.minimum(np.searchsorted(stored, keys), stored.size - 1)
    return (candidates >= 0) & (stored[at] == keys)


def _repeated(items: np.ndarray) -> np.ndarray:
    """True at every occurrence of an item in its row after the first."""
    order = np.argsort(items, axis=1, kind="stable")
    ordered = np.take_along_axis(items, order, axis=1)
    again = np.zeros(items.shape, dtype=bool)
    again[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    out = np.zeros(items.shape, dtype=bool)
    np.put_along_axis(out, order, again, axis=1)
    return out


def _explore(
    n: int,
    taken: np.ndarray,
    slots: int,
    new_items: np.ndarray,
    seen: sp.csr_matrix | None,
    users: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n x slots`` new items per row, not seen, not taken, no repeats; ``-1`` when the pool runs out."""
    picks = np.full((n, slots), -1, dtype=np.int64)
    if slots == 0 or len(new_items) == 0 or n == 0:
        return picks
    # Small pools: a full random order per row. Large pools: a few draws with replacement per
    # slot; repeats, seen and taken items are skipped (a row may come up short, rarely).
    draws = slots * 4 + 16
    exhaustive = len(new_items) <= draws
    width = len(new_items) if exhaustive else draws
    for rows in row_batches(n, width):
        count = rows.stop - rows.start
        if exhaustive:
            drawn = rng.permuted(np.broadcast_to(new_items, (count, width)), axis=1)
        else:
            drawn = rng.choice(new_items, size=(count, width))
        drop = _repeated(drawn) | _member(drawn, taken[rows])
        if seen is not None and users is not None:
            drop |= excluded_mask(seen, users[rows], drawn)
        order = np.argsort(drop, axis=1, kind="stable")[:, :slots]
        chosen = np.take_along_axis(drawn, order, axis=1)
        chosen[np.take_along_axis(drop, order, axis=1)] = -1
        picks[rows, : chosen.shape[1]] = chosen
    return picks


def blend(
    results: Mapping[str, tuple[np.ndarray, np.ndarray]],
    quotas: Mapping[str, int],
    exploration_slots: int = 0,
    new_items: np.ndarray | None = None,
    seed: int | Sequence[int] = 7,
    *,
    seen: sp.csr_matrix | None = None,
    users: np.ndarray | None = None,
) -> Blended:
    """Merge per-source ``(items, scores)`` answers (same rows, best first, ``-1`` padded).

    ``quotas`` orders and caps the sources (a source without a positive quota is left out);
    ``new_items`` are the item codes exploration draws from, skipping those ``seen`` marks for
    the row's user code in ``users``. The same inputs and ``seed`` give the same blend; a caller
    blending users in batches passes ``(seed, batch number)`` so batches draw differently.
    """
    sources = [name for name, quota in quotas.items() if quota > 0 and name in results]
    n = len(next(iter(results.values()))[0]) if results else (0 if users is None else len(users))
    parts: list[tuple[np.ndarray, ...]] = []
    taken = np.full((n, 0), -1, dtype=np.int64)
    for priority, name in enumerate(sources):
        items, scores = results[name]
        items = np.asarray(items, dtype=np.int64)
        eligible = (items >= 0) & ~_repeated(items) & ~_member(items, taken)
        within = np.cumsum(eligible, axis=1)
        chosen = eligible & (within <= quotas[name])
        rows, ranks = np.nonzero(chosen)
        parts.append(
            (
                rows,
                items[rows, ranks],
                np.full(len(rows), priority),
                ranks,
                np.asarray(scores, dtype=np.float64)[rows, ranks],
                within[rows, ranks] - 1,
            )
        )
        keep = np.argsort(~chosen, axis=1, kind="stable")[:, : quotas[name]]
        taken = np.hstack([taken, np.take_along_axis(np.where(chosen, items, -1), keep, axis=1)])
    if exploration_slots and new_items is not None:
        rng = np.random.default_rng(seed)
        picks = _explore(n, taken, exploration_slots, np.asarray(new_items, dtype=np.int64), seen, users, rng)
        rows, ranks = np.nonzero(picks >= 0)
        parts.append(
            (rows, picks[rows, ranks], np.full(len(rows), len(sources)), ranks, np.full(len(rows), np.nan), ranks)
        )
    names = np.array([*sources, EXPLORATION], dtype=object)
    if not parts:
        nothing = np.zeros(0, dtype=np.int64)
        return Blended(nothing, nothing, np.zeros(0, dtype=object), nothing, np.zeros(0), nothing)
    row, item, source, rank, score, rounds = (np.concatenate(column) for column in zip(*parts, strict=True))
    order = np.lexsort((source, rounds, row))  # round robin: by row, then round, then source priority
    row, item, source, rank, score = row[order], item[order], source[order], rank[order], score[order]
    position = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    return Blended(row.astype(np.int64), item, names[source], rank.astype(np.int64), score, position.astype(np.int64))
