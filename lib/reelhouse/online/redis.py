"""Online store on a Redis server: for several feed replicas and writers sharing one store.

Layout: one hash per (view, entity key), at ``<key_prefix><view>:<entity_key>``, with fields

* ``v``: the version, as a decimal integer,
* ``t``: the feature time, epoch milliseconds,
* ``e``: the expiry, epoch milliseconds (empty when the row never expires),
* ``p``: the feature values, JSON (orjson), as in the SQLite store.

A hash rather than one packed value per key keeps rows readable with ``HGETALL`` when someone
looks at the server, and lets the upsert script compare versions without decoding the payload.

Beside the rows, a change log per view, for :meth:`RedisOnlineStore.scan`: a sorted set at
``<key_prefix>~changes:<view>`` whose members are entity keys, scored with the wall clock (epoch
milliseconds) of the writer that last wrote them. View names may not contain ``:``, so that no
(view, key) pair can spell another's Redis key, nor start with ``~``, which is kept for the
store's own keys: the change log of view ``v`` cannot be the row of a view ``~changes``.

The versioned upsert is a Lua script: the version check and the write happen in one step on the
server, so two writers racing on a key cannot leave the older version stored. Versions are
compared as decimal strings, not Lua numbers (doubles), so versions above 2**53 stay exact.
The script is registered once and run for many rows through pipelines of ``_CHUNK`` rows (one
round trip per chunk, after redis-py's ``SCRIPT EXISTS`` check that reloads the script if the
server lost it); each row is its own script call, so rows never need to share a Redis Cluster slot.
For the same reason the change log is written by a command of its own, after the chunk's scripts
in the same pipeline (a ``ZADD`` of the chunk's keys), not by the script: the log entry lands after
the row, so a scan that finds it finds the row. Every write attempt stamps its keys, applied or
not (the script's answer is not known when the pipeline is sent): a scan may return a row again,
which the interface allows. A write that dies between a row and its log entry leaves a row that
scans miss until its next write.

Expiry is Redis's own (``PEXPIREAT``), from ``expires_at`` or feature time + TTL, as in the
SQLite store. The script reads the server clock: a row already expired when it arrives is not
stored, and when it is newer than the stored row it deletes that row, just as, on SQLite, it
would replace it with a row no read returns. A replacement without expiry clears the old one.
Reads also drop rows whose expiry is not after ``now``, so ``read(now=...)`` means the same on
both stores. Redis deletes expired keys itself; a change log does not follow them, so
:meth:`RedisOnlineStore.purge_expired` removes the log entries of rows that no longer exist.

Every call fails after ``socket_timeout_s`` without a reply (``connect_timeout_s`` to connect),
so a server that hangs fails its callers instead of blocking them.

Needs Redis >= 5: the script writes after reading the server clock (``TIME``), which older
servers refuse without effects replication.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis

from reelhouse.config import OnlineStoreConfig
from reelhouse.online.store import (
    FeatureRow,
    RowDecoder,
    from_epoch_ms,
    next_scan_cursor,
    to_epoch_ms,
    wall_clock_ms,
)

DEFAULT_URL = "redis://127.0.0.1:16379/0"
DEFAULT_KEY_PREFIX = "reelhouse:"
_CONFIG_FIELDS = OnlineStoreConfig.model_fields
DEFAULT_SOCKET_TIMEOUT_S: float = _CONFIG_FIELDS["redis_socket_timeout_s"].default
DEFAULT_CONNECT_TIMEOUT_S: float = _CONFIG_FIELDS["redis_connect_timeout_s"].default
_CHANGES = "~changes:"  # after the key prefix, before the view: the change log's key (module docstring)

_CHUNK = 500  # rows or keys per pipeline: one round trip each, replies small enough to buffer

_FIELDS = ("v", "t", "e", "p")

# KEYS[1]: the row's key; ARGV: version, feature time ms, expiry ms ("" for none), payload.
# Returns 1 when the stored row was created, replaced or (by an expired newer row) deleted.
_UPSERT = """
local function newer(a, b)
    local a_negative, b_negative = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
    if a_negative ~= b_negative then return b_negative end
    if a_negative then a, b = b:sub(2), a:sub(2) end
    if #a ~= #b then return #a > #b end
    return a > b
end

local stored = redis.call('HGET', KEYS[1], 'v')
if stored and not newer(ARGV[1], stored) then return 0 end

local expires = ARGV[3]
if expires ~= '' then
    local time = redis.call('TIME')
    local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    if tonumber(expires) <= now_ms then
        return redis.call('DEL', KEYS[1])
    end
end

redis.call('HSET', KEYS[1], 'v', ARGV[1], 't', ARGV[2], 'e', expires, 'p', ARGV[4])
if expires ~= '' then
    redis.call('PEXPIREAT', KEYS[1], expires)
else
    redis.call('PERSIST', KEYS[1])
end
return 1
"""


class RedisOnlineStore:
    """The :class:`~reelhouse.online.store.OnlineStore` on a Redis server (layout: module docstring).

    The client connects lazily: constructing the store needs no server, the first read or
    write does. It is safe to share between threads; each call takes a pooled connection.
    The timeouts default to the config's (``online_store.redis_*_timeout_s``); None waits forever.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        default_ttl_s: float | None = None,
        socket_timeout_s: float | None = DEFAULT_SOCKET_TIMEOUT_S,
        connect_timeout_s: float | None = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self.default_ttl_s = default_ttl_s
        self._pool = redis.ConnectionPool.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=connect_timeout_s
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._upsert = self._client.register_script(_UPSERT)

    def _key(self, view: str, entity_key: str) -> bytes:
        return f"{self.key_prefix}{view}:{entity_key}".encode()

    def _changes_key(self, view: str) -> bytes:
        return f"{self.key_prefix}{_CHANGES}{view}".encode()

    @staticmethod
    def _check_view(view: str) -> None:
        if ":" in view:
            raise ValueError(f"view name {view!r} contains ':', which separates the view from the key in Redis")
        if view.startswith("~"):
            raise ValueError(f"view name {view!r} starts with '~', which the store keeps for its own keys")

    @staticmethod
    def _fields(row: FeatureRow, ttl: float | None) -> list[bytes | str]:
        """The hash fields ``v``, ``t``, ``e``, ``p`` of a row, as the upsert script takes them."""
        feature_ms = to_epoch_ms(row.feature_time)
        if row.expires_at is not None:
            expires: int | None = to_epoch_ms(row.expires_at)
        elif ttl is not None:
            expires = feature_ms + int(ttl * 1000)
        else:
            expires = None
        return [
            str(int(row.version)),
            str(feature_ms),
            "" if expires is None else str(expires),
            orjson.dumps(dict(row.values)),
        ]

    def write(self, view: str, rows: Iterable[FeatureRow], ttl_s: float | None = None) -> int:
        """Upsert rows; returns how many created, replaced or deleted a stored row.

        Every row is encoded before anything is sent, so a bad row (a naive time) fails the
        call without a partial write.
        """
        self._check_view(view)
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        records = [(row.entity_key, self._key(view, row.entity_key), self._fields(row, ttl)) for row in rows]
        changes = self._changes_key(view)
        changed = 0
        for start in range(0, len(records), _CHUNK):
            chunk = records[start : start + _CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for _, key, args in chunk:
                self._upsert(keys=[key], args=args, client=pipe)
            stamp = wall_clock_ms()
            pipe.zadd(changes, dict.fromkeys((entity_key for entity_key, _, _ in chunk), stamp))
            *upserts, _ = pipe.execute()
            changed += sum(int(result) for result in upserts)
        return changed

    def read(self, view: str, keys: Sequence[str], now: dt.datetime | None = None) -> dict[str, FeatureRow | None]:
        """The live row of every key: one pipeline of ``HMGET`` (one round trip) per chunk."""
        self._check_view(view)
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        found: dict[str, FeatureRow | None] = dict.fromkeys(keys)
        unique = list(found)
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for key in chunk:
                pipe.hmget(self._key(view, key), _FIELDS)
            for key, (version, feature_ms, expires_ms, payload) in zip(chunk, pipe.execute(), strict=True):
                if version is None or payload is None:
                    continue
                expires = int(expires_ms) if expires_ms else None
                if expires is not None and expires <= now_ms:
                    continue
                found[key] = FeatureRow(
                    entity_key=key,
                    values=orjson.loads(payload),
                    feature_time=from_epoch_ms(int(feature_ms)),
                    version=int(version),
                    expires_at=None if expires is None else from_epoch_ms(expires),
                )
        return found

    def read_many(
        self, keys: Mapping[str, Sequence[str]], now: dt.datetime | None = None, decode: RowDecoder | None = None
    ) -> dict[str, dict[str, Any]]:
        """Values of the live rows of several views: one pipeline of ``HMGET v e p`` for every key."""
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        wanted = {view: list(dict.fromkeys(view_keys)) for view, view_keys in keys.items()}
        pipe = self._client.pipeline(transaction=False)
        for view, view_keys in wanted.items():
            self._check_view(view)
            for key in view_keys:
                pipe.hmget(self._key(view, key), ("v", "e", "p"))
        replies = iter(pipe.execute() if any(wanted.values()) else ())
        found: dict[str, dict[str, Any]] = {}
        for view, view_keys in wanted.items():
            values = found.setdefault(view, {})
            for key in view_keys:
                version, expires_ms, payload = next(replies)
                if version is None or payload is None or (expires_ms and int(expires_ms) <= now_ms):
                    continue
                values[key] = orjson.loads(payload) if decode is None else decode(view, key, int(version), payload)
        return found

    def read_modify_write(
        self,
        view: str,
        keys: Sequence[str],
        update: Callable[[str, FeatureRow | None], FeatureRow | None],
        now: dt.datetime | None = None,
    ) -> int:
        """Per key, an optimistic transaction: ``WATCH`` the key, read it, ``MULTI``/``EXEC`` the new
        row; a concurrent change of the key aborts the ``EXEC`` and the step is retried with a
        fresh read. One key per transaction, so keys never need to share a Redis Cluster slot."""
        self._check_view(view)
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        written = 0
        changed: list[str] = []
        for key in dict.fromkeys(keys):
            redis_key = self._key(view, key)

            def step(pipe: redis.client.Pipeline, key: str = key, redis_key: bytes = redis_key) -> int:
                version, feature_ms, expires_ms, payload = pipe.hmget(redis_key, _FIELDS)
                current = None
                expires = int(expires_ms) if expires_ms else None
                if version is not None and payload is not None and (expires is None or expires > now_ms):
                    current = FeatureRow(
                        entity_key=key,
                        values=orjson.loads(payload),
                        feature_time=from_epoch_ms(int(feature_ms)),
                        version=int(version),
                        expires_at=None if expires is None else from_epoch_ms(expires),
                    )
                new = update(key, current)
                if new is None:
                    return 0
                if new.entity_key != key:
                    raise ValueError(f"update of {key!r} returned a row of {new.entity_key!r}")
                fields = self._fields(new, self.default_ttl_s)
                pipe.multi()
                pipe.delete(redis_key)
                pipe.hset(redis_key, mapping=dict(zip(_FIELDS, fields, strict=True)))
                if fields[2]:
                    pipe.pexpireat(redis_key, int(fields[2]))
                return 1

            if self._client.transaction(step, redis_key, value_from_callable=True):
                written += 1
                changed.append(key)
        if changed:  # after the rows, as in write(); not in their transactions, which touch one key each
            self._client.zadd(self._changes_key(view), dict.fromkeys(changed, wall_clock_ms()))
        return written

    def scan(
        self, view: str, since: int | None = None, now: dt.datetime | None = None
    ) -> tuple[dict[str, tuple[int, int | None, bytes | str]], int]:
        """Live rows of ``view`` logged at or after ``since`` (see ``OnlineStore.scan``): the change
        log's keys from that score (one ``ZRANGEBYSCORE``), then ``HMGET v e p`` of those rows in
        pipelines of ``_CHUNK``; rows gone (expired, deleted) or expired at ``now`` are left out."""
        self._check_view(view)
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        logged = self._client.zrangebyscore(self._changes_key(view), since or 0, "+inf", withscores=True)
        live: dict[str, tuple[int, int | None, bytes | str]] = {}
        for start in range(0, len(logged), _CHUNK):
            keys = [member.decode() for member, _ in logged[start : start + _CHUNK]]
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._key(view, key), ("v", "e", "p"))
            for key, (version, expires_ms, payload) in zip(keys, pipe.execute(), strict=True):
                if version is None or payload is None or (expires_ms and int(expires_ms) <= now_ms):
                    continue
                live[key] = (int(version), int(expires_ms) if expires_ms else None, payload)
        newest = int(logged[-1][1]) if logged else None  # ascending scores
        return live, next_scan_cursor(since, newest)

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Remove the change-log entries of rows that no longer exist; returns how many.

        Redis deletes a row itself once its ``PEXPIREAT`` time passes (``now`` changes nothing), but
        not the row's entry in its view's change log. A row written again between the check and the
        removal of its entry is logged again (a write adds its entry after the row, and the row is
        checked once more after the removal), so a scan never loses a live row to a purge.
        """
        pattern = _glob_escape(f"{self.key_prefix}{_CHANGES}").encode() + b"*"
        prefix_length = len(f"{self.key_prefix}{_CHANGES}".encode())
        removed = 0
        for changes in self._client.scan_iter(match=pattern, count=_CHUNK):
            view = changes[prefix_length:].decode()
            members = (member for member, _ in self._client.zscan_iter(changes, count=_CHUNK))
            while chunk := [member.decode() for member in itertools.islice(members, _CHUNK)]:
                removed += self._purge_log_chunk(changes, view, chunk)
        return removed

    def _purge_log_chunk(self, changes: bytes, view: str, keys: list[str]) -> int:
        """Remove the entries of ``keys`` whose rows are gone from the log ``changes``; how many went."""
        gone = [key for key, exists in zip(keys, self._exists(view, keys), strict=True) if not exists]
        if not gone:
            return 0
        self._client.zrem(changes, *gone)
        back = [key for key, exists in zip(gone, self._exists(view, gone), strict=True) if exists]
        if back:
            self._client.zadd(changes, dict.fromkeys(back, wall_clock_ms()))
        return len(gone) - len(back)

    def _exists(self, view: str, keys: list[str]) -> list[bool]:
        """Whether the row of each key exists: one pipeline of ``EXISTS``."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(self._key(view, key))
        return [bool(found) for found in pipe.execute()]

    def close(self) -> None:
        """Close the client and every pooled connection."""
        self._client.close()
        self._pool.disconnect()


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern (a key prefix may hold ``*``, ``?``, ``[``)."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
