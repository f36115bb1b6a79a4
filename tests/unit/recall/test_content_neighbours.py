"""Content neighbours: item-to-item by embedding cosine, seeded by each user's latest videos."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from reelhouse.recall.content import ContentNeighboursSource
from reelhouse.recall.interactions import interactions_from_frame, with_item_vectors

# Cosines to "seed" ([1, 0, 0]): near 0.9/|(0.9, 0.1)| ≈ 0.9939, mid 0.6 (|(0.6, 0.8)| = 1),
# ortho 0, far -1. "old" is orthogonal to "seed" and its only positive-cosine videos are
# "old_near" (≈ 0.9939) and "mid" (0.8). "cold" has no vector.
VECTORS = {
    "seed": [1.0, 0.0, 0.0],
    "near": [0.9, 0.1, 0.0],
    "mid": [0.6, 0.8, 0.0],
    "ortho": [0.0, 0.0, 1.0],
    "far": [-1.0, 0.0, 0.0],
    "old": [0.0, 1.0, 0.0],
    "old_near": [0.0, 0.9, -0.1],
    "cold": None,
}


def embedded(rows):
    """Interactions of (user, video, time) rows over every video of VECTORS, with their vectors."""
    ids = list(VECTORS)
    frame = pd.DataFrame(rows, columns=["user", "video", "t"])
    data = interactions_from_frame(frame, "user", "video", time_col="t", extra_items=ids)
    table = pa.table({"video_id": ids, "embedding": [VECTORS[i] for i in ids]})
    return with_item_vectors(data, table, "video_id", "embedding")


def names(data, codes):
    return [data.item_ids[c] for c in codes if c >= 0]


def cosine(a, b):
    a, b = np.asarray(VECTORS[a]), np.asarray(VECTORS[b])
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_latest_item_seeds_its_nearest_neighbours_and_nothing_negative():
    # u watched "old" first and "seed" last; with one seed item only seed's neighbours count:
    # near, then mid, by cosine. ortho (cosine 0) and far (-1) are no evidence; old_near is
    # close to the older "old" only (cosine 0 to seed); cold has no vector.
    data = embedded([("u", "old", 1), ("u", "seed", 2)])
    source = ContentNeighboursSource(neighbours=10, recent_items=1).fit(data)
    u = list(data.user_ids).index("u")
    items, scores = source.recommend(np.array([u]), k=10, exclude=data.seen())
    assert names(data, items[0]) == ["near", "mid"]
    assert scores[0, :2].tolist() == pytest.approx([cosine("seed", "near"), cosine("seed", "mid")], abs=1e-6)


def test_two_seeds_sum_their_cosines():
    # With both items as seeds, a candidate's score is its summed cosine to them: mid is 0.6 from
    # seed + 0.8 from old = 1.4, above near (0.9939 + 0.1104) and old_near (0.9939 + 0). Seen
    # items (seed, old) are masked; negative and zero cosines never add a candidate.
    data = embedded([("u", "old", 1), ("u", "seed", 2)])
    source = ContentNeighboursSource(neighbours=10, recent_items=2).fit(data)
    items, scores = source.recommend(np.array([0]), k=10, exclude=data.seen())
    expected = {
        name: cosine("seed", name) * (cosine("seed", name) > 0) + cosine("old", name) * (cosine("old", name) > 0)
        for name in ("near", "mid", "old_near")
    }
    assert names(data, items[0]) == ["mid", "near", "old_near"]
    assert scores[0, :3].tolist() == pytest.approx([expected["mid"], expected["near"], expected["old_near"]], abs=1e-5)


def test_negative_cosines_are_not_links():
    data = embedded([("u", "seed", 1)])
    source = ContentNeighboursSource(neighbours=10, recent_items=1).fit(data)
    ids = list(data.item_ids)
    graph = source.graph.toarray()
    # far is opposite seed (cosine -1): no link either way; nor with the orthogonal ortho (0).
    assert graph[ids.index("seed"), ids.index("far")] == 0
    assert graph[ids.index("far"), ids.index("seed")] == 0
    assert graph[ids.index("seed"), ids.index("ortho")] == 0
    assert np.all(graph >= 0)
    assert np.all(np.diag(graph) == 0)  # an item is not its own neighbour
    assert graph[ids.index("seed"), ids.index("near")] == pytest.approx(cosine("seed", "near"), abs=1e-6)


def test_videos_without_a_vector_neither_seed_nor_get_recommended():
    # v's only video has no vector: no seed with a neighbour, so no answer. Nobody ever gets cold.
    data = embedded([("u", "seed", 1), ("v", "cold", 1), ("w", "mid", 1), ("w", "old", 2)])
    source = ContentNeighboursSource(neighbours=10, recent_items=3).fit(data)
    users = np.arange(data.n_users)
    items, _ = source.recommend(users, k=10, exclude=data.seen())
    cold = list(data.item_ids).index("cold")
    assert cold not in items
    v = list(data.user_ids).index("v")
    assert items[v].tolist() == [-1] * 10
    assert source.graph[cold].nnz == 0 and source.graph[:, cold].nnz == 0


def test_the_neighbour_count_bounds_each_items_links():
    # With one neighbour per item, seed links only to near, so a seed-only user gets near alone.
    data = embedded([("u", "seed", 1)])
    source = ContentNeighboursSource(neighbours=1, recent_items=1).fit(data)
    assert np.all(np.diff(source.graph.indptr) <= 1)
    items, _ = source.recommend(np.array([0]), k=5, exclude=data.seen())
    assert names(data, items[0]) == ["near"]
