"""The feed's online-store calls: a small thread pool, a deadline per call and a circuit breaker.

Online store calls from requests go through :class:`StoreClient`: a small thread pool, a deadline
per call (the stage's budget) and a circuit breaker. After a few consecutive failures or
timeouts the breaker answers "unavailable" at once for a short while, so a store that hangs costs
requests nothing but the fallback; the health thread reopens the store and probes it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping, Sequence

from reelhouse.config import OnlineStoreConfig
from reelhouse.features.views import features_view
from reelhouse.online.store import OnlineStore, RowDecoder, open_online_store
from reelhouse.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

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
            close_quietly(old)
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
                close_quietly(old)
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
            close_quietly(store)


def close_quietly(store: OnlineStore) -> None:
    try:
        store.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
        pass
