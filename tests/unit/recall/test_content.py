"""Content recall: topic affinity and embedding nearest neighbours (exact and HNSW)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from reelhouse.errors import ReelhouseError
from reelhouse.recall.content import EmbeddingSource, TopicAffinitySource
from reelhouse.recall.interactions import interactions_from_frame, with_item_attributes, with_item_vectors


def names(data, codes):
    return [data.item_ids[c] for c in codes if c >= 0]


def topic_interactions():
    # Topic A: a1 engaged by 5 users, a2 by 3, a3 by 1. Topic B: b1 by 10 (the most popular overall).
    rows = [(f"p{i}", "a1") for i in range(5)] + [(f"p{i}", "a2") for i in range(3)] + [("p0", "a3")]
    rows += [(f"q{i}", "b1") for i in range(10)]
    rows += [("fan", "a1")]  # only watches topic A
    data = interactions_from_frame(pd.DataFrame(rows, columns=["user", "video"]), "user", "video")
    topics = pa.table({"video_id": ["a1", "a2", "a3", "b1"], "topic": ["A", "A", "A", "B"]})
    return with_item_attributes(data, topics)


def test_a_one_topic_user_gets_that_topics_most_popular_unseen_videos():
    data = topic_interactions()
    source = TopicAffinitySource(half_life_h=24).fit(data)
    fan = list(data.user_ids).index("fan")
    items, scores = source.recommend(np.array([fan]), k=3, exclude=data.seen())
    assert names(data, items[0]) == ["a2", "a3"]  # not b1 (other topic), not a1 (seen)
    # Scores: share of the topic (1) x popularity relative to a1 (6 engagements): 3/6, 1/6.
    assert scores[0, :2].tolist() == pytest.approx([3 / 6, 1 / 6])


def test_topics_mix_in_proportion_to_the_users_engagement():
    # "mix" puts 3/4 of their engagement in A, 1/4 in B. Popularity: a1 4, a2 4, b1 9, b2 8.
    rows = [
        ("mix", "a1", 3.0),
        ("mix", "b1", 1.0),
        ("o", "a1", 1.0),
        ("o", "a2", 4.0),
        ("o", "b1", 8.0),
        ("o", "b2", 8.0),
    ]
    data = interactions_from_frame(pd.DataFrame(rows, columns=["user", "video", "w"]), "user", "video", "w")
    data = with_item_attributes(data, pa.table({"video_id": ["a1", "a2", "b1", "b2"], "topic": ["A", "A", "B", "B"]}))
    source = TopicAffinitySource(half_life_h=24).fit(data)
    mix = list(data.user_ids).index("mix")
    items, scores = source.recommend(np.array([mix]), k=3, exclude=data.seen())
    # a2: 3/4 x 4/4; b2: 1/4 x 8/9. The more popular b2 comes second: the user prefers A.
    assert names(data, items[0]) == ["a2", "b2"]
    assert scores[0, :2].tolist() == pytest.approx([0.75, 0.25 * 8 / 9])


def test_a_user_who_saw_all_of_their_topics_gets_nothing():
    data = topic_interactions()
    source = TopicAffinitySource(half_life_h=24).fit(data)
    q0 = list(data.user_ids).index("q0")  # only watched b1, the only video of B
    assert names(data, source.recommend(np.array([q0]), k=3, exclude=data.seen())[0][0]) == []


def test_the_topic_source_needs_topics():
    data = interactions_from_frame(pd.DataFrame({"u": ["x"], "i": ["a"]}), "u", "i")
    with pytest.raises(ReelhouseError, match="topics"):
        TopicAffinitySource(half_life_h=24).fit(data)


def embedded(vectors: dict[str, list[float] | None], rows):
    ids = list(vectors)
    data = interactions_from_frame(pd.DataFrame(rows, columns=["user", "video"]), "user", "video", extra_items=ids)
    table = pa.table({"video_id": ids, "embedding": [vectors[i] for i in ids]})
    return with_item_vectors(data, table, "video_id", "embedding")


VECTORS = {
    "near": [0.9, 0.1, 0.0],
    "seed": [1.0, 0.0, 0.0],
    "side": [0.0, 1.0, 0.0],
    "far": [-1.0, 0.0, 0.0],
    "cold": None,  # no vector: must never come back
}


def test_the_nearest_neighbour_of_a_vector_is_the_closest_item():
    data = embedded(VECTORS, [("u", "seed"), ("v", "cold")])
    source = EmbeddingSource(neighbours=2).fit(data)
    items, scores = source.neighbours()
    seed = list(data.item_ids).index("seed")
    assert names(data, items[seed]) == ["near", "side"]
    assert scores[seed, 0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    cold = list(data.item_ids).index("cold")
    assert items[cold].tolist() == [-1, -1]


def test_a_user_gets_videos_near_what_they_engaged_with_and_never_ones_without_a_vector():
    data = embedded(VECTORS, [("u", "seed"), ("v", "cold")])
    source = EmbeddingSource().fit(data)
    u, v = list(data.user_ids).index("u"), list(data.user_ids).index("v")
    items, _ = source.recommend(np.array([u, v]), k=10, exclude=data.seen())
    assert names(data, items[0]) == ["near", "side", "far"]  # all indexed videos but the seen one
    assert names(data, items[1]) == []  # v engaged only with a video without a vector


def test_the_embedding_source_needs_vectors():
    data = interactions_from_frame(pd.DataFrame({"u": ["x"], "i": ["a"]}), "u", "i")
    with pytest.raises(ReelhouseError, match="embeddings_path"):
        EmbeddingSource().fit(data)


def test_exact_and_hnsw_indexes_agree_on_a_small_catalogue():
    rng = np.random.default_rng(3)
    ids = [f"v{i:03d}" for i in range(300)]
    vectors = {i: rng.normal(size=16).tolist() for i in ids}
    rows = [(f"u{u}", ids[j]) for u in range(40) for j in rng.choice(300, size=5, replace=False)]
    data = embedded(vectors, rows)
    exact = EmbeddingSource(neighbours=5).fit(data)
    hnsw = EmbeddingSource(neighbours=5, hnsw_threshold=10, ef_search=300).fit(data)
    assert exact.exact and not hnsw.exact
    users = np.arange(data.n_users)
    exact_items, _ = exact.recommend(users, k=5, exclude=data.seen())
    hnsw_items, _ = hnsw.recommend(users, k=5, exclude=data.seen())
    agreement = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact_items, hnsw_items)])
    assert agreement >= 0.95
    assert np.mean(exact.neighbours()[0] == hnsw.neighbours()[0]) >= 0.95
