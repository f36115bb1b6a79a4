"""The Delta tables recall writes; their names come from ``recall`` config.

``user_candidates``: each user's blended candidates of one build, in blend order. Rows with
``user_id`` :data:`ANY_USER` are the popular list: what a user without a row of their own
(a cold-start user, or one who joined after the build) gets.

``item_neighbours``: per video its nearest videos by co-visitation and by embedding, the
item-to-item lookups serving can use for "more like this" and session-based recall.

Both are replaced by every build (the Delta history keeps earlier builds); ``as_of`` says
which interval end the build used.
"""

from __future__ import annotations

import pyarrow as pa

from reelhouse.config import RecallConfig
from reelhouse.lake import TableSpec

ANY_USER = "*"

_UTC = pa.timestamp("us", tz="UTC")

CANDIDATES_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_rank", pa.int32(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("as_of", _UTC, nullable=False),
    ]
)

NEIGHBOURS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("neighbour_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("as_of", _UTC, nullable=False),
    ]
)


def candidates_table(config: RecallConfig) -> TableSpec:
    return TableSpec(
        config.candidates_table,
        CANDIDATES_SCHEMA,
        (),
        f"Recall candidates per user in blend order ({ANY_USER!r}: the popular list for users without a row); "
        "score is null for exploration picks.",
    )


def neighbours_table(config: RecallConfig) -> TableSpec:
    return TableSpec(
        config.neighbours_table,
        NEIGHBOURS_SCHEMA,
        (),
        "Nearest videos per video by co-visitation ('covisit') and embedding ('embedding').",
    )
