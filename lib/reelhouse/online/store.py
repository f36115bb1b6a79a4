"""The online store interface and its factory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reelhouse.config import OnlineStoreConfig

# How far behind the scanning machine's clock a scan's next cursor stays at least (see
# next_scan_cursor): rows stamped that recently may still land after the scan, from a writer whose
# clock is slightly behind the others', whose clock was stepped back, or whose write was sent just
# before the scan and arrived after it. Rows within the overlap come back on the next scan; callers
# keep the highest version per key.
SCAN_OVERLAP_MS = 2_000

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

    def scan(
        self, view: str, since: int | None = None, now: dt.datetime | None = None
    ) -> tuple[dict[str, tuple[int, int | None, bytes | str]], int]:
        """Live rows of ``view`` written since the cursor ``since`` (every live row when None):
        ``{entity_key: (version, expires_at_ms or None, JSON payload)}``, and the cursor for the next call.

        A row written after a scan began is returned by a later scan; rows may be returned again
        (callers keep the highest version per key). Expired rows are left out. Cursors are write
        stamps (the writers' wall-clock milliseconds), see :func:`next_scan_cursor`.
        """

    def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Delete what expired rows leave behind; returns how many rows (SQLite) or change-log entries (Redis)."""

    def close(self) -> None: ...


def open_online_store(config: OnlineStoreConfig) -> OnlineStore:
    """The store ``online_store.type`` names."""
    if config.type == "sqlite":
        from reelhouse.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(config.path, default_ttl_s=config.ttl_s)
    if config.type == "redis":
        from reelhouse.online.redis import RedisOnlineStore

        return RedisOnlineStore(
            config.redis_url,
            key_prefix=config.key_prefix,
            default_ttl_s=config.ttl_s,
            socket_timeout_s=config.redis_socket_timeout_s,
            connect_timeout_s=config.redis_connect_timeout_s,
        )
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


def wall_clock_ms() -> int:
    """This machine's clock in epoch milliseconds: the stamp a write leaves for :meth:`OnlineStore.scan`."""
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def next_scan_cursor(since: int | None, newest_stamp: int | None) -> int:
    """The cursor after a scan from ``since`` that met write stamps up to ``newest_stamp`` (None: none).

    Just past the newest stamp, but never after this machine's clock less ``SCAN_OVERLAP_MS``: rows
    stamped within the overlap are read again by the next scans, which catches a write that committed
    after a later-stamped one, or came from a writer whose clock runs a little behind (or ahead: it
    must not make the scan skip everyone else's rows). Once the clock has moved past the overlap the
    cursor passes the newest stamp, so a quiet view costs nothing to scan. Never before ``since``.
    """
    start = since or 0
    if newest_stamp is None:
        return start
    return max(start, min(newest_stamp + 1, wall_clock_ms() - SCAN_OVERLAP_MS))
