"""The user state the feed keeps in the online store: what each user has seen and recently engaged with.

User state ("seen" and recent engagement) lives in the online store, so it is shared by every
service process and survives restarts: view ``user_seen`` holds the videos shown to (impressions
served) or watched by a user, at most ``serving.seen_max``, each for ``serving.seen_ttl_h``;
view ``user_recent`` the videos the user engaged with most recently (the seeds of realtime
recall), at most ``recall.covisit_recent_items``. Rows are ``{"videos": [...], "ms": [...]}``,
oldest first. :class:`StateWriter` writes them from a background thread, batched, with the
store's atomic :meth:`~reelhouse.online.store.OnlineStore.read_modify_write` (two processes
appending to one user's list never lose each other's videos); until a write has landed (and a
few seconds after), the process's own requests see the pending videos through an in-memory
overlay, so a client paging quickly never gets a page's videos again.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reelhouse.clock import WallClock
from reelhouse.online.store import FeatureRow, OnlineStore, from_epoch_ms
from reelhouse.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

SEEN_VIEW = "user_seen"
RECENT_VIEW = "user_recent"
FLUSH_S = 0.02  # how often the state writer writes what requests recorded
OVERLAY_GRACE_S = 5.0  # how long written entries stay in the overlay (covers reads begun before the write)
MAX_PENDING_USERS = 100_000  # users with unwritten state kept while the store is down; beyond, the oldest go
# Videos the state writer holds, written (still in the overlay) or not: about 80 bytes each, so
# about 80 MB. At 200 feeds of 10 videos a second that is some 8 minutes of a store outage; beyond,
# the least recently active users' videos go (reelhouse_state_dropped_videos{reason="evicted"}).
MAX_PENDING_VIDEOS = 1_000_000
MAX_USERS_PER_WRITE = 1_000  # users per store call of the state writer (bounds a write transaction)
RETRY_MAX_S = 5.0  # longest wait between the state writer's attempts while the store is down


def merged_list(
    row: FeatureRow | None, key: str, items: Sequence[tuple[str, int]], now_ms: int, max_items: int, ttl_ms: int
) -> FeatureRow:
    """``row``'s videos plus ``items`` ((video, epoch ms), oldest first): a video seen again moves to
    the end with its new time, videos older than ``ttl_ms`` go, the newest ``max_items`` stay."""
    latest: dict[str, int] = {}
    if row is not None:
        cutoff = now_ms - ttl_ms
        for video, at in zip(row.values.get("videos") or (), row.values.get("ms") or (), strict=False):
            if at > cutoff:
                latest.pop(video, None)
                latest[video] = at
    for video, at in items:
        latest.pop(video, None)
        latest[video] = at
    videos = list(latest)[-max_items:]
    times = list(latest.values())[-max_items:]
    return FeatureRow(
        entity_key=key,
        values={"videos": videos, "ms": times},
        feature_time=from_epoch_ms(now_ms),
        version=(row.version + 1) if row is not None else 1,
        expires_at=from_epoch_ms(now_ms + ttl_ms),
    )


def live_videos(values: Mapping[str, Any] | None, now_ms: int, ttl_ms: int) -> list[str]:
    """The videos of a state row that are younger than ``ttl_ms``, oldest first."""
    if not values:
        return []
    cutoff = now_ms - ttl_ms
    return [video for video, at in zip(values.get("videos") or (), values.get("ms") or (), strict=False) if at > cutoff]


@dataclass
class _Videos:
    """One of a user's pending lists, oldest first.

    Positions count every video ever appended to the list, trimmed ones included, so the writer's
    "written up to position p" stays right while requests append and the bound trims the front.
    """

    items: list[tuple[str, int]] = field(default_factory=list)
    start: int = 0  # position of items[0]
    written: int = 0  # the videos before this position reached the store (or were trimmed)

    @property
    def end(self) -> int:
        return self.start + len(self.items)

    @property
    def unwritten(self) -> int:
        return self.end - self.written

    def unwritten_items(self) -> list[tuple[str, int]]:
        return self.items[self.written - self.start :]

    def trim(self, keep: int) -> int:
        """Keep the newest ``keep`` videos; returns how many unwritten ones went."""
        extra = len(self.items) - keep
        if extra <= 0:
            return 0
        del self.items[:extra]
        self.start += extra
        lost = max(0, self.start - self.written)
        self.written = max(self.written, self.start)
        return lost

    def forget_written(self) -> None:
        """Drop the videos the store has."""
        del self.items[: self.written - self.start]
        self.start = self.written


@dataclass
class _Pending:
    """A user's videos recorded by this process (``seen``, ``engaged``)."""

    seen: _Videos = field(default_factory=_Videos)
    engaged: _Videos = field(default_factory=_Videos)
    expires: float = float("inf")  # monotonic time after which a fully written entry is dropped

    @property
    def size(self) -> int:
        return len(self.seen.items) + len(self.engaged.items)

    @property
    def unwritten(self) -> int:
        return self.seen.unwritten + self.engaged.unwritten


class StateWriter:
    """Background writer of the ``user_seen`` / ``user_recent`` rows, with an in-process overlay.

    Requests only append to memory (:meth:`record`); the thread writes the users with unwritten
    videos every ``FLUSH_S``, at most ``MAX_USERS_PER_WRITE`` per store call. When the store fails
    the videos stay pending and the thread waits longer before each new attempt (up to
    ``RETRY_MAX_S``), so a store that is down is not hammered.

    The buffer is bounded, so a store down for long costs state, not memory: a user's lists keep
    their newest ``seen_max`` / ``recent_max`` videos (the row keeps no more), and beyond
    ``max_pending_users`` users or ``max_pending_videos`` videos the least recently active users
    go, each counted in ``state_writes{outcome="dropped"}`` and their unwritten videos in
    ``state_dropped_videos``.
    """

    def __init__(
        self,
        open_store: Callable[[], OnlineStore],
        seen_max: int,
        recent_max: int,
        ttl_ms: int,
        metrics: ServingMetrics | None = None,
        max_pending_users: int = MAX_PENDING_USERS,
        max_pending_videos: int = MAX_PENDING_VIDEOS,
        now_ms: Callable[[], int] = WallClock().now_ms,
    ) -> None:
        self._open_store = open_store
        self._now_ms = now_ms  # the service's clock (reelhouse/clock.py): rows expire in its time
        self._store: OnlineStore | None = None
        self.seen_max, self.recent_max, self.ttl_ms = seen_max, recent_max, ttl_ms
        self.metrics = metrics
        self.max_pending_users, self.max_pending_videos = max_pending_users, max_pending_videos
        # In order of last activity: fully written entries expire from the front, eviction takes the front.
        self._pending: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self._dirty: set[str] = set()  # users with videos not written yet
        self._held = 0  # videos in self._pending, written or not
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._retry_s = 0.0
        self._thread = threading.Thread(target=self._run, name="reelhouse-state-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def held_videos(self) -> int:
        """Videos in the buffer, written (still in the overlay) or not."""
        return self._held

    def record(self, user_id: str, seen: Sequence[str], engaged: Sequence[str], at_ms: int) -> None:
        """Remember that ``user_id`` was shown / watched ``seen`` and engaged with ``engaged``."""
        if not seen and not engaged:
            return
        with self._lock:
            entry = self._pending.get(user_id)
            if entry is None:
                entry = self._pending[user_id] = _Pending()
            else:
                self._pending.move_to_end(user_id)
            before = entry.size
            entry.seen.items.extend((video, at_ms) for video in seen)
            entry.engaged.items.extend((video, at_ms) for video in engaged)
            trimmed = entry.seen.trim(self.seen_max) + entry.engaged.trim(self.recent_max)
            self._held += entry.size - before
            entry.expires = float("inf")
            self._dirty.add(user_id)
            if trimmed:
                self._count_dropped("trimmed", trimmed)
            while len(self._pending) > 1 and (
                len(self._pending) > self.max_pending_users or self._held > self.max_pending_videos
            ):
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        """Drop the least recently active user; the caller holds the lock."""
        user, entry = self._pending.popitem(last=False)
        self._held -= entry.size
        self._dirty.discard(user)
        if entry.unwritten:
            if self.metrics is not None:
                self.metrics.state_writes.labels("dropped").inc()
            self._count_dropped("evicted", entry.unwritten)

    def _count_dropped(self, reason: str, videos: int) -> None:
        if self.metrics is not None:
            self.metrics.state_dropped_videos.labels(reason).inc(videos)

    def overlay(self, user_id: str) -> tuple[list[str], list[str]]:
        """This process's recent videos of ``user_id`` (seen, engaged; oldest first), written or not."""
        with self._lock:
            entry = self._pending.get(user_id)
            if entry is None:
                return [], []
            return [v for v, _ in entry.seen.items], [v for v, _ in entry.engaged.items]

    def _run(self) -> None:
        while not self._stop.wait(max(FLUSH_S, self._retry_s)):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must survive anything
                log.exception("state writer failed")

    def _expire(self, now: float) -> None:
        while self._pending:
            user, entry = next(iter(self._pending.items()))
            if entry.expires > now:
                return
            del self._pending[user]
            self._held -= entry.size

    def flush(self) -> bool:
        """Write the users' unwritten videos; False when the store could not take them (they stay)."""
        with self._lock:
            self._expire(time.monotonic())
            users = list(self._dirty)[:MAX_USERS_PER_WRITE]
            work = {}
            for user in users:
                entry = self._pending[user]
                work[user] = (
                    entry,
                    entry.seen.unwritten_items(),
                    entry.engaged.unwritten_items(),
                    entry.seen.end,
                    entry.engaged.end,
                )
        if not work:
            return True
        now_ms = self._now_ms()
        try:
            store = self._store = self._store or self._open_store()
            seen = {u: w[1] for u, w in work.items() if w[1]}
            engaged = {u: w[2] for u, w in work.items() if w[2]}
            if seen:
                store.read_modify_write(
                    SEEN_VIEW,
                    list(seen),
                    lambda key, row: merged_list(row, key, seen[key], now_ms, self.seen_max, self.ttl_ms),
                )
            if engaged:
                store.read_modify_write(
                    RECENT_VIEW,
                    list(engaged),
                    lambda key, row: merged_list(row, key, engaged[key], now_ms, self.recent_max, self.ttl_ms),
                )
        except Exception as e:  # noqa: BLE001 - keep the videos pending; reopen the store next time
            if not self._retry_s:
                log.warning(
                    "user state not written (%d users pending), retrying with backoff: %s: %s",
                    len(self._dirty),
                    type(e).__name__,
                    e,
                )
            self._retry_s = min(RETRY_MAX_S, max(FLUSH_S, self._retry_s * 2))
            if self.metrics is not None:
                self.metrics.state_writes.labels("failed").inc()
            store, self._store = self._store, None
            if store is not None:
                try:
                    store.close()
                except Exception:  # noqa: BLE001 - a broken store may fail to close; it is dropped anyway
                    pass
            return False
        if self._retry_s:
            log.info("user state written again")
            self._retry_s = 0.0
        with self._lock:
            expires = time.monotonic() + OVERLAY_GRACE_S
            for user, (entry, _, _, seen_until, engaged_until) in work.items():
                if self._pending.get(user) is not entry:  # evicted meanwhile (and maybe recorded again)
                    continue
                entry.seen.written = max(entry.seen.written, seen_until)
                entry.engaged.written = max(entry.engaged.written, engaged_until)
                if not entry.unwritten:
                    entry.expires = expires
                    self._dirty.discard(user)
                else:  # more arrived meanwhile: the written part is in the store, keep the rest
                    before = entry.size
                    entry.seen.forget_written()
                    entry.engaged.forget_written()
                    self._held += entry.size - before
        if self.metrics is not None:
            self.metrics.state_writes.labels("written").inc(len(work))
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread, then write what is pending (a few attempts, as the store allows)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        try:
            for _ in range(10):
                if not self._dirty or not self.flush():
                    break
        except Exception:  # noqa: BLE001
            log.exception("final state flush failed")
        with self._lock:
            lost = sum(self._pending[user].unwritten for user in self._dirty)
        if lost:
            log.warning("%d seen / engaged videos of %d users were not written before shutdown", lost, len(self._dirty))
        if self._store is not None:
            self._store.close()
