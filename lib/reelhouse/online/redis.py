"""Online store on a Redis server: for several feed replicas and writers sharing one store.

Layout: one hash per (view, entity key), at ``<key_prefix><view>:<entity_key>``, with fields

* ``v``: the version, as a decimal integer,
* ``t``: the feature time, epoch milliseconds,
* ``e``: the expiry, epoch milliseconds (empty when the row never expires),
* ``p``: the feature values, JSON (orjson), as in the SQLite store.

A hash rather than one packed value per key keeps rows readable with ``HGETALL`` when someone
looks at the server, and lets the upsert script compare versions without decoding the payload.
View names may not contain ``:`` so that no (view, key) pair can spell another's Redis key.

The versioned upsert is a Lua script: the version check and the write happen in one step on the
server, so two writers racing on a key cannot leave the older version stored. Versions are
compared as decimal strings, not Lua numbers (doubles), so versions above 2**53 stay exact.
The script is registered once and run for many rows through pipelines of ``_CHUNK`` rows (one
round trip per chunk, after redis-py's ``SCRIPT EXISTS`` check that reloads the script if the
server lost it); each row is its own script call, so rows never need to share a Redis Cluster slot.

Expiry is Redis's own (``PEXPIREAT``), from ``expires_at`` or feature time + TTL, as in the
SQLite store. The script reads the server clock: a row already expired when it arrives is not
stored, and when it is newer than the stored row it deletes that row, just as, on SQLite, it
would replace it with a row no read returns. A replacement without expiry clears the old one.
Reads also drop rows whose expiry is not after ``now``, so ``read(now=...)`` means the same on
both stores. Redis deletes expired keys itself, so :meth:`RedisOnlineStore.purge_expired` has
nothing to do and returns 0.

Needs Redis >= 5: the script writes after reading the server clock (``TIME``), which older
servers refuse without effects replication.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis

from reelhouse.online.store import FeatureRow, RowDecoder, from_epoch_ms, to_epoch_ms

DEFAULT_URL = "redis://127.0.0.1:16379/0"
DEFAULT_KEY_PREFIX = "reelhouse:"

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
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        default_ttl_s: float | None = None,
    ) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self.default_ttl_s = default_ttl_s
        self._pool = redis.ConnectionPool.from_url(url)
        self._client = redis.Redis(connection_pool=self._pool)
        self._upsert = self._client.register_script(_UPSERT)

    def _key(self, view: str, entity_key: str) -> bytes:
        return f"{self.key_prefix}{view}:{entity_key}".encode()

    @staticmethod
    def _check_view(view: str) -> None:
        if ":" in view:
            raise ValueError(f"view name {view!r} contains ':', which separates the view from the key in Redis")

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
        records = [(self._key(view, row.entity_key), self._fields(row, ttl)) for row in rows]
        changed = 0
        for start in range(0, len(records), _CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for key, args in records[start:start + _CHUNK]:
                self._upsert(keys=[key], args=args, client=pipe)
            changed += sum(int(result) for result in pipe.execute())
        return changed

    def read(self, view: str, keys: Sequence[str], now: dt.datetime | None = None) -> dict[str, FeatureRow | None]:
        """The live row of every key: one pipeline of ``HMGET`` (one round trip) per chunk."""
        self._check_view(view)
        now_ms = to_epoch_ms(now or dt.datetime.now(dt.UTC))
        found: dict[str, FeatureRow | None] = dict.fromkeys(keys)
        unique = list(found)
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start:start + _CHUNK]
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

            written += self._client.transaction(step, redis_key, value_from_callable=True)
        return written

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Always 0: Redis deletes a key once its ``PEXPIREAT`` time passes, without being asked."""
        return 0

    def close(self) -> None:
        """Close the client and every pooled connection."""
        self._client.close()
        self._pool.disconnect()
