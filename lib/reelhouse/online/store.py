"""The online store interface and its factory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reelhouse.config import OnlineStoreConfig

FeatureValue = float | int | str | None
# Turns one stored row into what read_many returns for it: (view, key, version, JSON payload as
# bytes or str, whichever the store has at hand; orjson.loads takes both).
RowDecoder = Callable[[str, str, int, bytes | str], Any]


@dataclass(frozen=True)
class FeatureRow:
    """The feature values of one entity (a user, a video, a user x topic) in one feature view.

    ``version`` orders writes of the same key: a write with a version not above the stored one
    is ignored, so a late or replayed backfill cannot overwrite fresher values.
    """

    entity_key: str
    values: Mapping[str, FeatureValue]
    feature_time: dt.datetime
    version: int
    expires_at: dt.datetime | None = field(default=None, compare=False)


class OnlineStore(Protocol):
    def write(self, view: str, rows: Iterable[FeatureRow], ttl_s: float | None = None) -> int:
        """Upsert rows; returns how many replaced or created a stored row."""

    def read(self, view: str, keys: Sequence[str], now: dt.datetime | None = None) -> dict[str, FeatureRow | None]:
        """The live row of every key (None when absent or expired), in one round trip."""

    def read_many(
        self, keys: Mapping[str, Sequence[str]], now: dt.datetime | None = None, decode: RowDecoder | None = None
    ) -> dict[str, dict[str, Any]]:
        """The values of the live rows of several views at once: ``{view: {key: values}}``.

        One read transaction (SQLite) or one pipeline (Redis) for everything, so a feed request
        reads its user and all its candidates in one step. Absent and expired keys are left out;
        only values come back (no :class:`FeatureRow`, no datetimes), which keeps the per-request
        cost of a few hundred rows down. ``decode(view, key, version, payload)`` replaces the
        default JSON decoding of a row's values: a caller can then skip rows whose version it has
        already decoded (the version identifies a row's values, see :class:`FeatureRow`).
        """

    def read_modify_write(
        self,
        view: str,
        keys: Sequence[str],
        update: Callable[[str, FeatureRow | None], FeatureRow | None],
        now: dt.datetime | None = None,
    ) -> int:
        """Replace each key's live row (None when absent or expired) with ``update(key, row)``.

        Atomic per key across processes: no other writer's change lands between the read and the
        write, so concurrent appends to the same row are never lost (e.g. the feed's "seen" lists,
        updated by several service processes). ``update`` returns the new row (its ``entity_key``
        must be ``key``), or None to leave the key alone; it may be called again if a concurrent
        write forced a retry, so it must not have side effects. The new row is stored whatever its
        version, since read and write are one step. Returns how many rows were written.
        """

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Delete expired rows; returns how many."""

    def close(self) -> None: ...


def open_online_store(config: OnlineStoreConfig) -> OnlineStore:
    """The store ``online_store.type`` names."""
    if config.type == "sqlite":
        from reelhouse.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(config.path, default_ttl_s=config.ttl_s)
    if config.type == "redis":
        from reelhouse.online.redis import RedisOnlineStore

        return RedisOnlineStore(config.redis_url, key_prefix=config.key_prefix, default_ttl_s=config.ttl_s)
    raise AssertionError(f"unhandled online store type {config.type!r}")  # config validation prevents it


_SEQ_BITS = 43
BATCH_SEQ = (1 << _SEQ_BITS) - 1


def feature_version(feature_time: dt.datetime, seq: int | None = None) -> int:
    """The version of a feature row: its feature time (in hours) first, then ``seq``.

    A row with a later feature time always wins. For the same feature time, the speed layer
    passes a ``seq`` that grows with every event its tiles absorbed, and the batch layer passes
    nothing, which ranks above any speed value: once the batch layer has computed an hour, its
    value (complete, deduplicated across runs) stands.
    """
    hours = to_epoch_ms(feature_time) // 3_600_000
    rank = BATCH_SEQ if seq is None else min(max(seq, 0), BATCH_SEQ - 1)
    return (hours << _SEQ_BITS) | rank


def to_epoch_ms(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: feature times are UTC-aware")
    return int(moment.timestamp() * 1000)


def from_epoch_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


