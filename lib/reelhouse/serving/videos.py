"""The videos' online features, held in the service process as one float64 matrix.

Every feed request ranks a few hundred candidates, and every candidate needs its video's row of
``video_features``. Those rows are the same for every user, so instead of reading (and decoding)
them from the online store per request, each service process keeps the whole view in memory:
one ``videos x features`` float64 matrix in registry order, with each row's store version and
expiry. A request gathers its candidates' rows with one numpy fancy index (NaN where a video has
no live row, exactly what a store read that finds no row gives); only the user's own rows
(``user_features``, ``user_topic_features``, the seen/recent state) are read from the store per
request.

Refresh by version: a background thread calls :meth:`VideoFeatureTable.refresh` every
``serving.video_features_refresh_s``; it asks the store for the rows written since its last look
(:meth:`~reelhouse.online.store.OnlineStore.scan`, which returns recent rows again on purpose so
nothing committed late is missed) and decodes only the rows whose version is above the one held.
The first call loads the whole view. A video's values in a response are therefore at most one
refresh interval older than the store's (the speed layer's own latency comes on top; see
docs/serving.md). A row whose expiry passes is treated as missing from then on, as the store's
reads would.

Concurrency: the refresh thread writes rows in place (a row's values, then its version) or, when
the matrix is full, publishes a larger copy in one assignment; a request takes the current
snapshot once and indexes only it. New ids are added to the snapshot's id map only after their
row is written, so a request never sees an id whose row is not there.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from reelhouse.online.store import OnlineStore
from reelhouse.serving.features import NAMES, VIEWS, feature_vector

log = logging.getLogger(__name__)

ENTITY = "video"
NEVER = np.iinfo(np.int64).max  # the expiry of a row that never expires
_INITIAL_ROWS = 1_024


@dataclass(frozen=True)
class _Snapshot:
    ids: dict[str, int]  # video id -> row
    matrix: np.ndarray  # float64, capacity x features
    version: np.ndarray  # int64 per row
    expires_ms: np.ndarray  # int64 per row, NEVER when the row does not expire

    @classmethod
    def empty(cls, capacity: int, width: int) -> _Snapshot:
        return cls(
            {},
            np.full((capacity, width), np.nan),
            np.full(capacity, -1, dtype=np.int64),
            np.full(capacity, -1, dtype=np.int64),  # expired: rows not written yet are never live
        )

    def grown(self, capacity: int) -> _Snapshot:
        bigger = _Snapshot.empty(capacity, self.matrix.shape[1])
        size = len(self.ids)
        bigger.matrix[:size] = self.matrix[:size]
        bigger.version[:size] = self.version[:size]
        bigger.expires_ms[:size] = self.expires_ms[:size]
        bigger.ids.update(self.ids)
        return bigger


class VideoFeatureTable:
    """``video_features`` in memory (module docstring): :meth:`refresh` on a thread, :meth:`lookup` per request."""

    def __init__(self) -> None:
        self.view = VIEWS[ENTITY]
        self.width = len(NAMES[ENTITY])
        self._snapshot = _Snapshot.empty(_INITIAL_ROWS, self.width)
        self._cursor: int | None = None
        self.loaded = False  # True once a full scan of the view succeeded

    def __len__(self) -> int:
        return len(self._snapshot.ids)

    def refresh(self, store: OnlineStore, now: dt.datetime | None = None) -> int:
        """Take the rows written since the last refresh (all rows the first time) that are live at
        ``now`` (default: the current time); returns how many rows changed. One thread at a time."""
        rows, cursor = store.scan(self.view, self._cursor, now)
        snapshot = self._snapshot
        changed: list[tuple[str, int, int, bytes | str]] = []
        for key, (version, expires_ms, payload) in rows.items():
            row = snapshot.ids.get(key)
            if row is None or version > snapshot.version[row]:
                changed.append((key, version, NEVER if expires_ms is None else expires_ms, payload))
        new = [item for item in changed if item[0] not in snapshot.ids]
        needed = len(snapshot.ids) + len(new)
        if needed > len(snapshot.version):
            snapshot = snapshot.grown(max(needed, 2 * len(snapshot.version)))
        size = len(snapshot.ids)
        for key, version, expires_ms, payload in changed:
            row = snapshot.ids.get(key)
            if row is None:
                row, size = size, size + 1
            snapshot.matrix[row] = feature_vector(ENTITY, orjson.loads(payload))
            snapshot.expires_ms[row] = expires_ms
            snapshot.version[row] = version
            if key not in snapshot.ids:
                snapshot.ids[key] = row  # last: the row is complete before a request can find it
        self._snapshot = snapshot
        self._cursor = cursor
        self.loaded = True
        return len(changed)

    def lookup(self, video_ids: Sequence[str], now_ms: int) -> np.ndarray:
        """``len(video_ids) x features``: each video's live values in registry order, NaN when it has
        no live row (absent or expired)."""
        snapshot = self._snapshot
        get = snapshot.ids.get
        rows = np.fromiter((get(video, -1) for video in video_ids), dtype=np.int64, count=len(video_ids))
        values = snapshot.matrix[rows]  # -1 picks the last row of the capacity; masked below
        dead = (rows < 0) | (snapshot.expires_ms[rows] <= now_ms)
        if dead.any():
            values[dead] = np.nan
        return values
