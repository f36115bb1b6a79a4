"""What the service holds between requests: the loaded resources, their reload threads, the user state.

:class:`ServingState` owns the recall index (recall.py), the rankers (ranking.py), the online
store, the Kafka producer (collector.py) and the metrics, starts them (loading what it can; the
service starts even when the store, the registry or a table is unavailable, and says so in
``/readyz``) and runs the background threads: table and alias polling, store health, Kafka
polling and the state writer.

Online store calls from requests go through :class:`StoreClient`: a small thread pool, a deadline
per call (the stage's budget) and a circuit breaker. After a few consecutive failures or
timeouts the breaker answers "unavailable" at once for a short while, so a store that hangs costs
requests nothing but the fallback; the health thread reopens the store and probes it.

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

import asyncio
import collections
import concurrent.futures
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reelhouse.config import OnlineStoreConfig, ReelhouseConfig
from reelhouse.experiments.bucketing import Bucketing
from reelhouse.features.views import features_view
from reelhouse.lake import Lake
from reelhouse.online.store import FeatureRow, OnlineStore, RowDecoder, from_epoch_ms, open_online_store
from reelhouse.serving.collector import EventProducer
from reelhouse.serving.metrics import ServingMetrics
from reelhouse.serving.ranking import RankerRegistry
from reelhouse.serving.recall import RecallIndex, RecallTables
from reelhouse.serving.videos import VideoFeatureTable

log = logging.getLogger(__name__)

SEEN_VIEW = "user_seen"
RECENT_VIEW = "user_recent"
PROBE_VIEW, PROBE_KEY = features_view("user"), "__reelhouse_probe__"
STORE_WORKERS = 2  # a request reads twice; more threads only fight over the GIL (measured: 2 beats 4)
# The breaker opens when the store fails (at least half of the last 10 calls raised), or when it
# is late for nearly every call (36 of the last 40): a store that is down or hangs. Calls late now
# and then, as they are when the machine is busy, do not open it: those requests fall back on
# their own, and the others keep the store's answers.
BREAKER_ERRORS = (5, 10)
BREAKER_LATE = (36, 40)
BREAKER_OPEN_S = 1.0  # how long it stays open before requests try the store again
_OK, _LATE, _ERROR = 0, 1, 2
HEALTH_S = 2.0  # how often the health thread probes (and, when down, reopens) the store
FLUSH_S = 0.02  # how often the state writer writes what requests recorded
OVERLAY_GRACE_S = 5.0  # how long written entries stay in the overlay (covers reads begun before the write)
MAX_PENDING_USERS = 100_000  # users with unwritten state kept while the store is down; beyond, the oldest go
# Videos the state writer holds, written (still in the overlay) or not: about 80 bytes each, so
# about 80 MB. At 200 feeds of 10 videos a second that is some 8 minutes of a store outage; beyond,
# the least recently active users' videos go (reelhouse_state_dropped_videos{reason="evicted"}).
MAX_PENDING_VIDEOS = 1_000_000
MAX_USERS_PER_WRITE = 1_000  # users per store call of the state writer (bounds a write transaction)
RETRY_MAX_S = 5.0  # longest wait between the state writer's attempts while the store is down


# ----------------------------------------------------------------------------- store calls
# Control flow of the request path (it becomes a degraded answer), hence not in errors.py.
class StoreUnavailable(Exception):
    """The online store could not answer within the deadline (or is known to be down)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class StoreClient:
    """Request-side access to the online store: a thread pool, deadlines, a circuit breaker.

    Each pool thread reads through its own client (for SQLite its own connection: WAL readers do
    not wait for each other, where one shared connection would queue every request's read behind
    the others). The circuit breaker (``BREAKER_*``) opens when the store fails or hangs: requests
    then skip it for ``BREAKER_OPEN_S`` at a time instead of each waiting for its deadline. The
    health thread probes the store every few seconds through a client of its own and, when the
    probe fails, has every thread reconnect once it answers again; the probe is what ``/readyz``
    reports.
    """

    def __init__(self, config: OnlineStoreConfig, metrics: ServingMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self._probe: OnlineStore | None = None  # the health thread's client; None until the store answered
        self._generation = 0  # bumped on every reconnect: threads then open a new client
        self._local = threading.local()
        self._clients: list[OnlineStore] = []  # every thread's client, closed with the service
        self._pool = concurrent.futures.ThreadPoolExecutor(STORE_WORKERS, thread_name_prefix="reelhouse-store")
        self._outcomes: collections.deque[int] = collections.deque(maxlen=BREAKER_LATE[1])  # _OK, _LATE, _ERROR
        self._open_until = 0.0
        self._logged_at = 0.0
        self.reachable = False
        self.last_error: str | None = "not opened yet"
        self._lock = threading.Lock()

    def open(self) -> bool:
        """Connect and probe; on success request threads reconnect on their next call."""
        with self._lock:
            try:
                store = open_online_store(self.config)
                store.read_many({PROBE_VIEW: [PROBE_KEY]})
            except Exception as e:  # noqa: BLE001 - any failure means "unavailable"; requests fall back
                self.reachable, self.last_error = False, f"{type(e).__name__}: {e}"
                log.warning("online store (%s) unavailable: %s", self.config.type, self.last_error)
                return False
            old, self._probe = self._probe, store
            self._generation += 1
            self._outcomes.clear()
            self._open_until = 0.0
            self.reachable, self.last_error = True, None
        if old is not None:
            _close_quietly(old)
        return True

    def warm(self, timeout_s: float = 10.0) -> None:
        """Open every pool thread's client now, so no request pays for a connection."""
        if self._probe is None:
            return
        barrier = threading.Barrier(STORE_WORKERS)

        def connect() -> None:
            self._thread_client()
            barrier.wait(timeout_s)  # holds this thread, so the next task goes to another one

        for future in [self._pool.submit(connect) for _ in range(STORE_WORKERS)]:
            try:
                future.result(timeout_s)
            except Exception as e:  # noqa: BLE001 - requests will connect on their own
                log.warning("could not open the store clients ahead of requests: %s", e)
                return

    def check(self) -> None:
        """Health thread: probe the store; reconnect everything when the probe fails."""
        probe = self._probe
        if probe is not None:
            try:
                probe.read_many({PROBE_VIEW: [PROBE_KEY]})
            except Exception as e:  # noqa: BLE001
                self.reachable, self.last_error = False, f"{type(e).__name__}: {e}"
                log.warning("online store probe failed (%s); reconnecting", self.last_error)
            else:
                if not self.reachable:
                    log.info("online store (%s) reachable again", self.config.type)
                self.reachable, self.last_error = True, None
                return
        if self.open():
            log.info("online store (%s) reconnected", self.config.type)

    def _thread_client(self) -> OnlineStore:
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            old = getattr(local, "store", None)
            local.store, local.generation = open_online_store(self.config), self._generation
            with self._lock:
                self._clients.append(local.store)
                if old is not None:
                    self._clients.remove(old)
            if old is not None:
                _close_quietly(old)
        return local.store

    def _read(self, keys: Mapping[str, Sequence[str]], decode: RowDecoder | None) -> dict[str, dict]:
        return self._thread_client().read_many(keys, None, decode)

    async def read_many(
        self, keys: Mapping[str, Sequence[str]], timeout_s: float, call: str, decode: RowDecoder | None = None
    ) -> dict[str, dict]:
        """``store.read_many(keys, decode=decode)`` within ``timeout_s``; raises :class:`StoreUnavailable`."""
        if self._probe is None:
            self._count(call, "down")
            raise StoreUnavailable("down", self.last_error or "")
        if time.monotonic() < self._open_until:
            self._count(call, "circuit_open")
            raise StoreUnavailable("circuit_open", self.last_error or "")
        future = asyncio.wrap_future(self._pool.submit(self._read, keys, decode))
        try:
            rows = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            self._outcome(call, "timeout")
            raise StoreUnavailable("timeout", f"{call} took longer than {timeout_s * 1000:.0f} ms") from None
        except Exception as e:  # noqa: BLE001
            self.last_error = f"{type(e).__name__}: {e}"
            self._outcome(call, "error")
            raise StoreUnavailable("error", self.last_error) from e
        self._outcome(call, None)
        return rows

    def _outcome(self, call: str, failure: str | None) -> None:
        outcomes = self._outcomes
        outcomes.append(_OK if failure is None else _ERROR if failure == "error" else _LATE)
        if failure is None:
            return
        self._count(call, failure)
        recent = list(outcomes)
        errors = recent[-BREAKER_ERRORS[1] :].count(_ERROR)
        failed = len(recent) - recent.count(_OK)
        if errors >= BREAKER_ERRORS[0] or (len(recent) >= BREAKER_LATE[1] and failed >= BREAKER_LATE[0]):
            now = time.monotonic()
            self._open_until = now + BREAKER_OPEN_S
            outcomes.clear()
            if now - self._logged_at > 10.0:
                self._logged_at = now
                log.warning(
                    "online store failing (%s: %s, %s): calls skipped for %.1f s at a time",
                    call,
                    failure,
                    self.last_error,
                    BREAKER_OPEN_S,
                )

    def _count(self, call: str, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.store_failures.labels(call, kind).inc()

    def purge(self) -> int:
        """Purge poller: delete expired rows through the health thread's client (SQLite keeps them until
        asked; Redis drops the change-log entries of rows it expired); returns how many went."""
        probe = self._probe
        if probe is None:
            return 0
        try:
            purged = probe.purge_expired()
        except Exception as e:  # noqa: BLE001 - the store is down or was just reopened: the next purge will do
            log.warning("online store purge failed: %s: %s", type(e).__name__, e)
            return 0
        if purged:
            log.info("purged %d expired rows (or their change-log entries) from the online store", purged)
        if self.metrics is not None:
            self.metrics.store_purged.inc(purged)
        return purged

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for store in [*self._clients, *([self._probe] if self._probe is not None else [])]:
            _close_quietly(store)


def _close_quietly(store: OnlineStore) -> None:
    try:
        store.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
        pass


# ----------------------------------------------------------------------------- user state rows
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
    ) -> None:
        self._open_store = open_store
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
        now_ms = int(time.time() * 1000)
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


# ----------------------------------------------------------------------------- threads
class Poller:
    """Runs ``task`` every ``interval_s`` on a daemon thread until stopped; failures are logged."""

    def __init__(self, name: str, interval_s: float, task: Callable[[], object]) -> None:
        self.name, self.interval_s, self.task = name, interval_s, task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reelhouse-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.task()
            except Exception:  # noqa: BLE001 - a poller must survive anything
                log.exception("%s failed", self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


# ----------------------------------------------------------------------------- the whole state
def ranker_refs(config: ReelhouseConfig) -> list[str]:
    """Every ranker reference the config can route a request to (default feed first)."""
    refs = [f"alias:{config.serving.ranker_alias}"]
    refs += [variant.ranker for experiment in config.experiments for variant in experiment.variants]
    return list(dict.fromkeys(refs))


class ServingState:
    """Everything a request reads, loaded and kept current (module docstring)."""

    def __init__(self, config: ReelhouseConfig) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.bucketing = Bucketing(config.experiments)
        self.recall = RecallTables(Lake(config.lake), config.recall, on_reload=self._recall_reloaded)
        self.rankers = RankerRegistry(
            config.mlflow, config.training.registered_model, ranker_refs(config), on_event=self._ranker_event
        )
        self.store = StoreClient(config.online_store, self.metrics)
        self.videos = VideoFeatureTable()
        self._video_store: OnlineStore | None = None  # the video refresh thread's client
        self._video_failing = False
        self.writer = StateWriter(
            lambda: open_online_store(config.online_store),
            seen_max=config.serving.seen_max,
            recent_max=config.recall.covisit_recent_items,
            ttl_ms=int(config.serving.seen_ttl_h * 3_600_000),
            metrics=self.metrics,
        )
        self.producer: EventProducer | None = None
        self.producer_error: str | None = None
        self.started_at: dt.datetime | None = None
        self._pollers: list[Poller] = []

    def _recall_reloaded(self, index: RecallIndex | None, error: Exception | None) -> None:
        self.metrics.table_reloads.labels("loaded" if index is not None else "failed").inc()
        if index is not None:
            for role, version in index.versions.items():
                self.metrics.table_version.labels(role).set(-1 if version is None else version)

    def _ranker_event(self, kind: str, ref: str, version: int) -> None:
        self.metrics.model_loads.labels(kind).inc()
        if kind == "loaded":  # a failed load leaves the reference on the version it had
            self.metrics.ranker_version.labels(ref).set(version)

    def _kafka_outcome(self, kind: str, ok: bool) -> None:
        (self.metrics.produced if ok else self.metrics.produce_failed).labels(kind).inc()

    @property
    def index(self) -> RecallIndex:
        return self.recall.current

    def refresh_videos(self) -> None:
        """Take the video feature rows written since the last refresh (videos.py); on failure the
        values held stay in use and the next refresh reconnects."""
        try:
            store = self._video_store = self._video_store or open_online_store(self.config.online_store)
            self.videos.refresh(store)
        except Exception as e:  # noqa: BLE001 - keep serving the values held
            self.metrics.video_refreshes.labels("failed").inc()
            if not self._video_failing:
                log.warning("video features not refreshed (%d held): %s: %s", len(self.videos), type(e).__name__, e)
            self._video_failing = True
            store, self._video_store = self._video_store, None
            if store is not None:
                _close_quietly(store)
            return
        if self._video_failing:
            log.info("video features refreshed again")
        self._video_failing = False
        self.metrics.video_refreshes.labels("ok").inc()
        self.metrics.video_rows.set(len(self.videos))

    def start(self) -> None:
        """Load what can be loaded (each part may fail on its own), then start the threads."""
        serving = self.config.serving
        self.started_at = dt.datetime.now(dt.UTC)
        self.recall.refresh()
        self.rankers.refresh()
        self.store.open()
        self.store.warm()
        self.refresh_videos()
        try:
            self.producer = EventProducer(self.config.kafka, serving, self._kafka_outcome)
            self.producer.start()
        except Exception as e:  # noqa: BLE001 - bad client settings: serve feeds, count impressions as failed
            self.producer_error = f"{type(e).__name__}: {e}"
            log.error("Kafka producer could not be created (%s): impressions and events will be refused", e)
        self.writer.start()
        self._pollers = [
            Poller("recall-tables", serving.tables_poll_s, self.recall.refresh),
            Poller("ranker-aliases", serving.alias_poll_s, self.rankers.refresh),
            Poller("store-health", HEALTH_S, self.store.check),
            Poller("store-purge", self.config.online_store.purge_interval_s, self.store.purge),
            Poller("video-features", serving.video_features_refresh_s, self.refresh_videos),
        ]
        for poller in self._pollers:
            poller.start()

    def stop(self) -> None:
        for poller in self._pollers:
            poller.stop()
        self.writer.close()
        if self.producer is not None:
            self.producer.close()  # logs and counts, per kind, what was not delivered
        self.store.close()
        if self._video_store is not None:
            _close_quietly(self._video_store)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the default ranker is loaded, the online store answers, recall is loaded and
        the video features are in memory.

        The checks hold only facts safe to show whoever reaches ``/readyz`` (the ref, the serving
        label, table versions, the store type): why a part fails is exception text that names
        hosts, paths and URIs, so it goes to the log where the failure happens, not here."""
        default = f"alias:{self.config.serving.ranker_alias}"
        ranker, _ = self.rankers.get(default)
        checks = {
            "ranker": {"ok": ranker is not None, "ref": default, "serving": getattr(ranker, "label", None)},
            "online_store": {"ok": self.store.reachable, "type": self.config.online_store.type},
            "recall": {"ok": self.recall.loaded and self.index.has_candidates, "versions": self.index.versions},
            "video_features": {"ok": self.videos.loaded, "rows": len(self.videos)},
            "kafka": {"ok": self.producer is not None},
        }
        ready = all(checks[name]["ok"] for name in ("ranker", "online_store", "recall", "video_features"))
        return ready, checks
