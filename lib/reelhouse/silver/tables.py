"""Silver-layer tables: the dimensions and the cleaned events."""

from __future__ import annotations

import pyarrow as pa

from reelhouse.events.contract import EVENT_COLUMNS
from reelhouse.lake import TableSpec

_UTC = pa.timestamp("us", tz="UTC")

DIM_USERS = TableSpec(
    "dim_users",
    pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("country", pa.string()),
            pa.field("os", pa.string()),
            pa.field("app_version", pa.string()),
            pa.field("age_group", pa.string()),
            pa.field("signup_time", _UTC),
            pa.field("updated_at", _UTC),
        ]
    ),
    (),
    "Users, one row each (SCD type 1: a changed attribute overwrites; Delta versions keep history).",
)
DIM_VIDEOS = TableSpec(
    "dim_videos",
    pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("creator_id", pa.string()),
            pa.field("topic", pa.string()),
            pa.field("duration_ms", pa.int64()),
            pa.field("upload_time", _UTC),
            pa.field("updated_at", _UTC),
        ]
    ),
    (),
    "Videos, one row each (SCD type 1: a changed attribute overwrites; Delta versions keep history).",
)

SILVER_EVENTS = TableSpec(
    "silver_events",
    pa.schema(
        list(EVENT_COLUMNS)
        + [
            pa.field("received_at", _UTC, nullable=False),
            pa.field("session_key", pa.string(), nullable=False),
            pa.field("session_start", _UTC, nullable=False),
            pa.field("known_user", pa.bool_(), nullable=False),
            pa.field("known_video", pa.bool_(), nullable=False),
            pa.field("user_country", pa.string()),
            pa.field("user_age_group", pa.string()),
            pa.field("creator_id", pa.string()),
            pa.field("topic", pa.string()),
            pa.field("upload_time", _UTC),
            pa.field("event_date", pa.date32(), nullable=False),
            pa.field("event_hour", pa.string(), nullable=False),
        ]
    ),
    ("event_hour",),
    "Each valid event once, sessionised, with user and video attributes; partitioned by UTC hour.",
)
