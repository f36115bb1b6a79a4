"""Video attributes the speed layer needs per event (topic, upload time), from ``dim_videos``.

Each process keeps one copy, loaded with delta-rs and reloaded when the table has a new version
(checked at most every ``refresh_s``). Videos missing from the table have no topic: their events
count for the video and the user but not for a user x topic, exactly as in silver.
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

from reelhouse.config import LakeConfig
from reelhouse.lake import Lake
from reelhouse.silver.tables import DIM_VIDEOS

log = logging.getLogger(__name__)

_EMPTY = pa.table(
    {
        "video_id": pa.array([], pa.string()),
        "topic": pa.array([], pa.string()),
        "upload_time": pa.array([], pa.timestamp("us", tz="UTC")),
    }
)


class VideoAttributes:
    def __init__(self, lake_config: LakeConfig, refresh_s: float) -> None:
        self.lake = Lake(lake_config)
        self.refresh_s = refresh_s
        self._version: int | None = None
        self._table = _EMPTY
        self._checked = 0.0

    def table(self) -> pa.Table:
        """``video_id, topic, upload_time`` of every known video, current within ``refresh_s``."""
        now = time.monotonic()
        if now - self._checked >= self.refresh_s or self._version is None:
            self._checked = now
            if self.lake.exists(DIM_VIDEOS.name):
                version = self.lake.version(DIM_VIDEOS.name)
                if version != self._version:
                    self._table = self.lake.to_arrow(DIM_VIDEOS.name, columns=["video_id", "topic", "upload_time"])
                    self._table = self._table.cast(_EMPTY.schema)
                    self._version = version
                    log.info("dim_videos v%d loaded: %d videos", version, self._table.num_rows)
        return self._table

    def attach(self, events: pa.Table) -> pa.Table:
        """``events`` with ``topic`` and ``upload_time`` columns (null for unknown videos), in order."""
        known = self.table()
        index = pc.index_in(events.column("video_id"), value_set=known.column("video_id"))
        return events.append_column("topic", pc.take(known.column("topic"), index)).append_column(
            "upload_time", pc.take(known.column("upload_time"), index)
        )


_shared: dict[tuple, VideoAttributes] = {}
_lock = threading.Lock()


def shared_video_attributes(lake_config: LakeConfig, refresh_s: float) -> VideoAttributes:
    """One :class:`VideoAttributes` per process and lake (Python workers are reused across tasks)."""
    key = (lake_config.root, tuple(sorted(lake_config.storage_options.items())), refresh_s)
    with _lock:
        if key not in _shared:
            _shared[key] = VideoAttributes(lake_config, refresh_s)
        return _shared[key]
