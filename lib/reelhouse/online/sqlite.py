"""Embedded online store: SQLite in WAL mode, no server. Good for one machine and for tests.

WAL lets readers (the feed service) run while a materialisation job writes. Every statement
is parameterised; keys are read in chunks below SQLite's parameter limit.

Every write stamps its rows with the writer's wall clock (``written_ms``, indexed per view), which
:meth:`SqliteOnlineStore.scan` reads changes by. A file made before that column existed gets it
when a store opens it (old rows are stamped 0: a full scan returns them). Expired rows stay in the
file, unread, until :meth:`SqliteOnlineStore.purge_expired` deletes them (the feed service does
every ``online_store.purge_interval_s``).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from reelhouse.online.store import (
    FeatureRow,
    RowDecoder,
    from_epoch_ms,
    next_scan_cursor,
    to_epoch_ms,
    wall_clock_ms,
)

_CHUNK = 512  # keys per SELECT; SQLite allows 32766 parameters, smaller chunks keep plans cheap
# A chunk of keys is padded up to a power of two with a key no row has, so a few statement texts
# serve every read and sqlite3's statement cache prepares each once (a 300-key IN list changes
# with every request otherwise, and preparing it costs about as much as running it).
_PAD_KEY = "\x00"
# Pages of 8 KiB: a feature row's JSON is about 1 KB, which on 4 KiB pages leaves a leaf a few
# rows and pushes larger rows to overflow pages; reads of a few hundred keys cost about a third
# less. Only a new database takes it (an existing file keeps its page size until VACUUM).
_PAGE_BYTES = 8192
# Reads through a memory map instead of a read() call per page: a feed request looks up a few
# hundred keys spread over the whole file, and this halves what that costs. Address space, not
# memory: the OS pages the file in as it is read.
_MMAP_BYTES = 1 << 30
# Expired rows deleted per transaction by purge_expired: a long delete would hold the write lock
# (other processes' writes wait for it) and this connection's lock (its reads wait) all along.
_PURGE_BATCH = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    view TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    feature_time_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    payload BLOB NOT NULL,
    written_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (view, entity_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS online_features_expiry ON online_features (expires_at_ms);
"""
# After _SCHEMA and the migration of a file made before written_ms existed (see _migrate).
_WRITTEN_INDEX = "CREATE INDEX IF NOT EXISTS online_features_written ON online_features (view, written_ms)"

# Versioned upsert: a row is replaced only by a strictly newer version.
_UPSERT = """
INSERT INTO online_features (view, entity_key, version, feature_time_ms, expires_at_ms, payload, written_ms)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (view, entity_key) DO UPDATE SET
    version = excluded.version,
    feature_time_ms = excluded.feature_time_ms,
    expires_at_ms = excluded.expires_at_ms,
    payload = excluded.payload,
    written_ms = excluded.written_ms
WHERE excluded.version > online_features.version
"""
# Unconditional replace, for read_modify_write: its read and write are one transaction.
_REPLACE = """
INSERT OR REPLACE INTO online_features (view, entity_key, version, feature_time_ms, expires_at_ms, payload, written_ms)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


class SqliteOnlineStore:
    def __init__(self, path: str | Path, default_ttl_s: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.default_ttl_s = default_ttl_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA page_size={_PAGE_BYTES}")
        self._wal_mode()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _wal_mode(self, timeout_s: float = 30.0) -> None:
        """Switch the file to WAL. The first switch of a new file needs it exclusively, and SQLite
        answers "database is locked" at once, without its busy timeout, while another process
        (e.g. a parallel materialisation task opening the same new file) holds a lock: retry."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        """Bring a file made by an older version of this store to the current schema.

        In one IMMEDIATE transaction, so two processes opening the same old file do not both add
        the column (the second one finds it there)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {name for _, name, *_ in self._db.execute("PRAGMA table_info(online_features)")}
            if "written_ms" not in columns:
                self._db.execute("ALTER TABLE online_features ADD COLUMN written_ms INTEGER NOT NULL DEFAULT 0")
            self._db.execute(_WRITTEN_INDEX)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @staticmethod
    def _record(view: str, row: FeatureRow, ttl: float | None) -> tuple[Any, ...]:
        feature_ms = to_epoch_ms(row.feature_time)
        if row.expires_at is not None:
            expires = to_epoch_ms(row.expires_at)
        elif ttl is not None:
            expires = feature_ms + int(ttl * 1000)
        else:
            expires = None
        return (view, row.entity_key, row.version, feature_ms, expires, orjson.dumps(dict(row.values)))

    # Writes stamp their rows (written_ms) once they hold SQLite's write lock (BEGIN IMMEDIATE), so
    # writers, which take that lock one at a time, commit in the order of their stamps. A write that
    # stamped its rows before waiting for the lock could commit after a later-stamped one, and a scan
    # in between would move its cursor past the earlier stamp. SCAN_OVERLAP_MS still covers a clock
    # stepped back between two writes.
    def write(self, view: str, rows: Iterable[FeatureRow], ttl_s: float | None = None) -> int:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        records = [self._record(view, row, ttl) for row in rows]
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stamp = wall_clock_ms()
                self._db.executemany(_UPSERT, [(*record, stamp) for record in records])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def read(self, view: str, keys: Sequence[str], now: dt.datetime | None = None) -> dict[str, FeatureRow | None]:
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        with self._lock:
            return self._rows(view, keys, now_ms)

    def _select(self, columns: str, view: str, keys: Sequence[str], now_ms: int) -> Iterable[tuple[Any, ...]]:
        """The live rows of ``keys`` (unique), chunk by chunk; the caller holds the lock."""
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()
            chunk = [*chunk, *[_PAD_KEY] * (size - len(chunk))]
            marks = ",".join("?" * size)
            yield from self._db.execute(
                f"SELECT {columns} FROM online_features "
                f"WHERE view = ? AND entity_key IN ({marks}) AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
                (view, *chunk, now_ms),
            )

    def _packed(self, view: str, keys: Sequence[str], now_ms: int) -> list[tuple[str, int, bytes | str]]:
        """``(key, version, payload)`` of the live rows of ``keys``, fetched as one aggregated value per
        chunk: SQLite does every lookup inside one step, during which Python's other threads run,
        where a row-by-row cursor gives the GIL back and waits for it once per row (a few hundred
        times per read, each possibly behind a busy thread). Keys and orjson's output cannot hold
        the separators (control characters); a chunk that splits otherwise is read row by row."""
        found: list[tuple[str, int, bytes | str]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()
            marks = ",".join("?" * size)
            (packed,) = self._db.execute(
                "SELECT group_concat(entity_key || char(31) || version || char(31) || CAST(payload AS TEXT), char(30)) "
                f"FROM online_features WHERE view = ? AND entity_key IN ({marks}) "
                "AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
                (view, *chunk, *[_PAD_KEY] * (size - len(chunk)), now_ms),
            ).fetchone()
            if not packed:
                continue
            rows = [row.split("\x1f", 2) for row in packed.split("\x1e")]
            if any(len(row) != 3 for row in rows):
                found += self._select("entity_key, version, payload", view, chunk, now_ms)
                continue
            found += [(key, int(version), payload) for key, version, payload in rows]
        return found

    def _rows(self, view: str, keys: Sequence[str], now_ms: int) -> dict[str, FeatureRow | None]:
        found: dict[str, FeatureRow | None] = dict.fromkeys(keys)
        columns = "entity_key, version, feature_time_ms, expires_at_ms, payload"
        for key, version, feature_ms, expires_ms, payload in self._select(columns, view, list(found), now_ms):
            found[key] = FeatureRow(
                entity_key=key,
                values=orjson.loads(payload),
                feature_time=from_epoch_ms(feature_ms),
                version=version,
                expires_at=None if expires_ms is None else from_epoch_ms(expires_ms),
            )
        return found

    def read_many(
        self, keys: Mapping[str, Sequence[str]], now: dt.datetime | None = None, decode: RowDecoder | None = None
    ) -> dict[str, dict[str, Any]]:
        """Values of the live rows of several views, in one read transaction (one consistent snapshot)."""
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        fetched: dict[str, list[tuple[Any, ...]]] = {}
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for view, wanted in keys.items():
                    fetched[view] = self._packed(view, list(dict.fromkeys(wanted)), now_ms)
            finally:
                self._db.execute("COMMIT")
        # Decoded after the connection is free: another thread's read need not wait for it.
        if decode is None:
            loads = orjson.loads
            return {view: {k: loads(p) for k, _, p in rows} for view, rows in fetched.items()}
        return {view: {k: decode(view, k, version, p) for k, version, p in rows} for view, rows in fetched.items()}

    def read_modify_write(
        self,
        view: str,
        keys: Sequence[str],
        update: Callable[[str, FeatureRow | None], FeatureRow | None],
        now: dt.datetime | None = None,
    ) -> int:
        """One IMMEDIATE transaction for every key: SQLite's write lock is taken before the read, so
        no other connection (or process) writes in between."""
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stamp = wall_clock_ms()
                records = []
                for key, row in self._rows(view, keys, now_ms).items():
                    new = update(key, row)
                    if new is None:
                        continue
                    if new.entity_key != key:
                        raise ValueError(f"update of {key!r} returned a row of {new.entity_key!r}")
                    records.append((*self._record(view, new, self.default_ttl_s), stamp))
                self._db.executemany(_REPLACE, records)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(records)

    def scan(
        self, view: str, since: int | None = None, now: dt.datetime | None = None
    ) -> tuple[dict[str, tuple[int, int | None, bytes | str]], int]:
        """Live rows of ``view`` stamped at or after ``since`` (see ``OnlineStore.scan``), through the
        ``(view, written_ms)`` index. Expired rows are read too, so the cursor moves past them."""
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        with self._lock:
            stamped = self._db.execute(
                "SELECT entity_key, version, expires_at_ms, payload, written_ms FROM online_features "
                "WHERE view = ? AND written_ms >= ?",
                (view, since or 0),
            ).fetchall()
        live = {
            key: (version, expires_ms, payload)
            for key, version, expires_ms, payload, _ in stamped
            if expires_ms is None or expires_ms > now_ms
        }
        return live, next_scan_cursor(since, max((row[4] for row in stamped), default=None))

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Delete rows expired at ``now``, ``_PURGE_BATCH`` per transaction; returns how many."""
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        purged = 0
        while True:
            with self._lock:
                deleted = self._db.execute(
                    "DELETE FROM online_features WHERE (view, entity_key) IN ("
                    "SELECT view, entity_key FROM online_features "
                    "WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ? LIMIT ?)",
                    (now_ms, _PURGE_BATCH),
                ).rowcount
            purged += deleted
            if deleted < _PURGE_BATCH:
                return purged

    def close(self) -> None:
        with self._lock:
            self._db.close()
