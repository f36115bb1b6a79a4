"""Recall (candidate generation): a few hundred candidates per user out of the whole catalogue.

Sources (popularity, ALS, co-visitation, topic affinity, embeddings) each learn from the same
:class:`Interactions` and answer top-k per user; :func:`blend` merges them within quotas and
adds exploration; :mod:`reelhouse.recall.candidates` writes the result to Delta per build.
"""

from reelhouse.recall.als import AlsSource
from reelhouse.recall.base import Interactions, RecallSource
from reelhouse.recall.blend import Blended, blend
from reelhouse.recall.content import EmbeddingSource, TopicAffinitySource
from reelhouse.recall.covisit import CovisitationSource
from reelhouse.recall.interactions import (
    interactions_from_events,
    interactions_from_frame,
    with_item_attributes,
    with_item_vectors,
)
from reelhouse.recall.popularity import PopularitySource

__all__ = [
    "AlsSource",
    "Blended",
    "CovisitationSource",
    "EmbeddingSource",
    "Interactions",
    "PopularitySource",
    "RecallSource",
    "TopicAffinitySource",
    "blend",
    "interactions_from_events",
    "interactions_from_frame",
    "with_item_attributes",
    "with_item_vectors",
]
