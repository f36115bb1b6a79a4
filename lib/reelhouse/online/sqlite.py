"""Embedded online store: SQLite in WAL mode, no server. Good for one machine and for tests.

WAL lets readers (the feed service) run while a materialisation job writes. Every statement
is parameterised; keys are read in chunks below SQLite's parameter limit.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from reelhouse.online.store import FeatureRow, from_epoch_ms, to_epoch_ms

_CHUNK = 500  # keys per SELECT; SQLite allows 32766 parameters, smaller chunks keep plans cheap

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    view TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    feature_time_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    payload BLOB NOT NULL,
    PRIMARY KEY (view, entity_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS online_features_expiry ON online_features (expires_at_ms);
"""

# Versioned upsert: a row is replaced only by a strictly newer version.
_UPSERT = """
INSERT INTO online_features (view, entity_key, version, feature_time_ms, expires_at_ms, payload)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (view, entity_key) DO UPDATE SET
    version = excluded.version,
    feature_time_ms = excluded.feature_time_ms,
    expires_at_ms = excluded.expires_at_ms,
    payload = excluded.payload
WHERE excluded.version > online_features.version
"""


class SqliteOnlineStore:
    def __init__(self, path: str | Path, default_ttl_s: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.default_ttl_s = default_ttl_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def write(self, view: str, rows: Iterable[FeatureRow], ttl_s: float | None = None) -> int:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        records = []
        for row in rows:
            feature_ms = to_epoch_ms(row.feature_time)
            if row.expires_at is not None:
                expires = to_epoch_ms(row.expires_at)
            elif ttl is not None:
                expires = feature_ms + int(ttl * 1000)
            else:
                expires = None
            records.append((view, row.entity_key, row.version, feature_ms, expires, orjson.dumps(dict(row.values))))
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_UPSERT, records)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def read(self, view: str, keys: Sequence[str], now: dt.datetime | None = None) -> dict[str, FeatureRow | None]:
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        found: dict[str, FeatureRow | None] = dict.fromkeys(keys)
        unique = list(found)
        with self._lock:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor = self._db.execute(
                    "SELECT entity_key, version, feature_time_ms, expires_at_ms, payload FROM online_features "
                    f"WHERE view = ? AND entity_key IN ({marks}) AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
                    (view, *chunk, now_ms),
                )
                for key, version, feature_ms, expires_ms, payload in cursor:
                    found[key] = FeatureRow(
                        entity_key=key,
                        values=orjson.loads(payload),
                        feature_time=from_epoch_ms(feature_ms),
                        version=version,
                        expires_at=None if expires_ms is None else from_epoch_ms(expires_ms),
                    )
        return found

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM online_features WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?", (now_ms,)
            )
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
