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
from collections.abc import Iterable, Sequence

import orjson
import redis

from reelhouse.online.store import FeatureRow, from_epoch_ms, to_epoch_ms

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

    def write(self, view: str, rows: Iterable[FeatureRow], ttl_s: float | None = None) -> int:
        """Upsert rows; returns how many created, replaced or deleted a stored row.

        Every row is encoded before anything is sent, so a bad row (a naive time) fails the
        call without a partial write.
        """
        self._check_view(view)
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        records: list[tuple[bytes, list[bytes | str]]] = []
        for row in rows:
            feature_ms = to_epoch_ms(row.feature_time)
            if row.expires_at is not None:
                expires: int | None = to_epoch_ms(row.expires_at)
            elif ttl is not None:
                expires = feature_ms + int(ttl * 1000)
            else:
                expires = None
            args: list[bytes | str] = [
                str(int(row.version)),
                str(feature_ms),
                "" if expires is None else str(expires),
                orjson.dumps(dict(row.values)),
            ]
            records.append((self._key(view, row.entity_key), args))
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

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Always 0: Redis deletes a key once its ``PEXPIREAT`` time passes, without being asked."""
        return 0

    def close(self) -> None:
        """Close the client and every pooled connection."""
        self._client.close()
        self._pool.disconnect()
