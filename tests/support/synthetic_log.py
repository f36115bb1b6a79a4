"""A synthetic interaction log with the structure recommenders exploit, for evaluation tests.

Items have a topic and a Zipf popularity; each user prefers one topic. An interaction picks the
user's topic with probability ``focus`` (else any topic), then an item of that topic by
popularity. Times are uniform over ``days``; the watch ratio is positive. So popularity beats
random, and knowing a user's topic beats popularity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

START_S = 1_790_000_000  # 2026-09-21, a fixed epoch so logs are reproducible


def synthetic_log(
    n_users: int = 400,
    n_items: int = 300,
    n_interactions: int = 12_000,
    n_topics: int = 8,
    focus: float = 0.8,
    days: float = 30.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(log, items)``: log columns ``user_id, item_id, ts`` (epoch s), ``watch_ratio``; items ``item_id, topic``."""
    rng = np.random.default_rng(seed)
    item_topic = rng.integers(0, n_topics, size=n_items)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 1.0
    user_topic = rng.integers(0, n_topics, size=n_users)
    activity = rng.lognormal(0.0, 0.8, size=n_users)
    users = rng.choice(n_users, size=n_interactions, p=activity / activity.sum())
    topics = np.where(rng.random(n_interactions) < focus, user_topic[users], rng.integers(0, n_topics, n_interactions))

    items = np.empty(n_interactions, dtype=np.int64)
    for topic in range(n_topics):
        rows = np.flatnonzero(topics == topic)
        pool = np.flatnonzero(item_topic == topic)
        if len(rows) == 0:
            continue
        if len(pool) == 0:
            pool = np.arange(n_items)
        weights = popularity[pool] / popularity[pool].sum()
        items[rows] = rng.choice(pool, size=len(rows), p=weights)

    log = pd.DataFrame(
        {
            "user_id": np.char.add("u", users.astype(str)),
            "item_id": np.char.add("i", items.astype(str)),
            "ts": START_S + np.round(rng.random(n_interactions) * days * 86_400).astype(np.int64),
            "watch_ratio": np.round(rng.uniform(0.05, 1.5, size=n_interactions), 3),
        }
    )
    catalogue = pd.DataFrame(
        {"item_id": np.char.add("i", np.arange(n_items).astype(str)), "topic": np.char.add("t", item_topic.astype(str))}
    )
    return log, catalogue
