"""Delta table maintenance: compaction, VACUUM, checkpoints and log cleanup, safe while streams write.

Every streaming micro-batch commits a few small files to each table it writes, and every reader
pays for each file (an open, a footer, statistics) until they are compacted. Per table, in this
order:

1. **Compaction** (delta-rs ``optimize.compact``) rewrites the small files of each partition
   holding at least ``min_files_to_compact`` of them into files near ``target_file_size_mb``.
   It only moves rows (its actions carry ``dataChange=false``), so a concurrent append, such as
   an ingestion micro-batch, does not conflict with it: both commit, and the stream's app
   transactions stay in the table. A concurrent writer that removes files (an overwrite such
   as ``replace_partitions``, a MERGE) does conflict; the step is retried on a fresh snapshot
   with a short backoff, and the table is reported failed only once the retries run out.
2. **VACUUM**, lite mode: deletes the files the log records as removed (by compaction,
   overwrites, MERGE) longer ago than ``vacuum_retention_hours``. A file removed more recently
   stays, so a reader still planning on an older snapshot (a Spark job, a time-travel query)
   finds its files as long as the retention exceeds its age. Files a running stream has
   written but not committed yet are never touched, whatever the retention: lite mode only
   deletes files the log says were removed. (The *full* mode also deletes files the log never
   referenced once they are older than the retention, which with a short retention includes
   exactly those in-flight files; it is not used here.)
3. **Checkpoint** of the log at the current version, so readers replay a parquet checkpoint
   plus a few JSON commits instead of every commit, then **log cleanup**: log files older than
   ``delta.logRetentionDuration`` (30 days unless set) and older than the checkpoint are deleted.
   Time travel to versions within that window keeps working.

Two compactions must not run on one table at once: delta-rs (1.6) lets two compactions that
removed the same files both commit, because it does not treat removes without a data change
as conflicting, and the rows of those files then appear twice. A run therefore claims a table's
compaction first, with an empty commit carrying the Delta app transaction ``reelhouse.maintenance``
(delta-rs does reject two concurrent commits of the same app id, so only one claim wins), and
releases it afterwards the same way. A claim left by a run that died expires after
``compaction_lease_minutes``. VACUUM and checkpoints need no claim: running them twice at once
is harmless.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from pydantic import ValidationError

from reelhouse.config import ReelhouseConfig
from reelhouse.config.models import MaintenanceConfig
from reelhouse.errors import ConfigError
from reelhouse.lake.delta import Lake
from reelhouse.lake.files import filesystem_for

log = logging.getLogger(__name__)

LEASE_APP_ID = "reelhouse.maintenance"
_MB = 1024 * 1024
_T = TypeVar("_T")


@dataclass
class TableMaintenance:
    """What maintenance did to one table."""

    table: str
    status: str = "ok"  # ok | missing (no such table yet) | failed
    compaction: str = "skipped"  # compacted | nothing_to_compact | busy (another run holds the claim) | skipped
    version_before: int | None = None
    version_after: int | None = None
    files_before: int = 0
    files_after: int = 0
    files_removed: int = 0  # by compaction
    files_added: int = 0  # by compaction
    partitions_compacted: int = 0
    files_vacuumed: int = 0
    checkpoint_version: int | None = None
    conflicts: int = 0  # commits that conflicted with a concurrent writer (retried while retries last)
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass
class MaintenanceReport:
    tables: list[TableMaintenance] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.status != "failed" for t in self.tables)

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, **asdict(self)}, sort_keys=True)


class _Busy(Exception):
    """Another run holds the compaction claim of the table."""


def table_names(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]`` (the ``--tables`` option)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def maintenance_settings(
    config: ReelhouseConfig, tables: list[str] | None = None, retention_hours: int | None = None
) -> MaintenanceConfig:
    """The config's maintenance settings with command-line overrides, validated like the file."""
    overrides: dict[str, Any] = {}
    if tables is not None:
        overrides["tables"] = tables
    if retention_hours is not None:
        overrides["vacuum_retention_hours"] = retention_hours
    try:
        return MaintenanceConfig.model_validate({**config.maintenance.model_dump(), **overrides})
    except ValidationError as e:
        raise ConfigError(f"invalid maintenance override: {e}") from e


def run_maintenance(
    config: ReelhouseConfig, tables: list[str] | None = None, retention_hours: int | None = None
) -> MaintenanceReport:
    """Maintain the configured lake (``jobs/maintain_tables.py``, ``reelhouse maintain``)."""
    return maintain(Lake(config.lake), maintenance_settings(config, tables, retention_hours))


def discover_tables(lake: Lake) -> list[str]:
    """Names of the Delta tables directly under the lake root (directories with a ``_delta_log``)."""
    fs, root = filesystem_for(lake.config.root, dict(lake.config.storage_options))
    entries = fs.get_file_info(pafs.FileSelector(root.rstrip("/"), allow_not_found=True))
    folders = [e.base_name for e in entries if e.type == pafs.FileType.Directory]
    return sorted(name for name in folders if not name.startswith((".", "_")) and lake.exists(name))


def maintain(lake: Lake, config: MaintenanceConfig) -> MaintenanceReport:
    """Compact, vacuum and checkpoint each table; one table's failure does not stop the others.

    Safe while streams append: compaction does not conflict with appends, and VACUUM deletes
    only files removed from the table longer ago than the retention, never one a running
    reader's snapshot still lists (if it is younger than the retention) nor one a writer has
    not committed yet.
    """
    started = time.monotonic()
    names = config.tables if config.tables is not None else discover_tables(lake)
    report = MaintenanceReport([_maintain_table(lake, name, config) for name in names])
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report


def _maintain_table(lake: Lake, name: str, config: MaintenanceConfig) -> TableMaintenance:
    result = TableMaintenance(name)
    started = time.monotonic()
    if not lake.exists(name):
        result.status = "missing"
        log.warning("%s: no Delta table at %s; skipped", name, lake.uri(name))
        return result
    try:
        table = lake.snapshot(name)
        result.version_before = table.version()
        result.files_before = table.get_add_actions().num_rows
        _retrying(result, config, lambda: _compact(lake, name, config, result))
        result.files_vacuumed += _retrying(result, config, lambda: _vacuum(lake, name, config))
        if config.checkpoint:
            result.checkpoint_version = _retrying(result, config, lambda: _checkpoint(lake, name))
        table = lake.snapshot(name)
        result.version_after = table.version()
        result.files_after = table.get_add_actions().num_rows
    except Exception as e:  # delta-rs raises several unrelated types; one table's failure must not stop the rest
        result.status = "failed"
        result.error = f"{type(e).__name__}: {e}"
        log.error("%s: maintenance failed: %s", name, result.error)
    result.elapsed_s = round(time.monotonic() - started, 3)
    if result.status == "ok":
        log.info(
            "%s: compaction %s (%d files -> %d), %d files vacuumed, checkpoint at %s, versions %s -> %s",
            name, result.compaction, result.files_removed, result.files_added, result.files_vacuumed,
            result.checkpoint_version, result.version_before, result.version_after,
        )
    return result


def _retrying(result: TableMaintenance, config: MaintenanceConfig, step: Callable[[], _T]) -> _T:
    """Run ``step``; when its commit conflicts with a concurrent writer, run it again on a fresh snapshot."""
    delay = config.retry_backoff_s
    for attempt in range(config.conflict_retries + 1):
        try:
            return step()
        except CommitFailedError as e:
            result.conflicts += 1
            if attempt == config.conflict_retries:
                raise
            log.warning("%s: commit conflicted with a concurrent writer (%s); retry in %.1fs", result.table, e, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- compaction
def _compaction_filters(table: DeltaTable, config: MaintenanceConfig) -> list[tuple[str, str, Any]] | None:
    """Partition filters selecting the partitions worth compacting; ``[]`` for the whole table; None: none.

    A partition qualifies with ``min_files_to_compact`` files below the target size. The filter
    is one ``col IN (values)`` per partition column, so with several partition columns it may
    select a few more partitions than qualify (compaction leaves those alone if they are fine).
    """
    files = pa.table(table.get_add_actions(flatten=True))
    partition_columns = list(table.metadata().partition_columns)
    small = files.filter(pc.less(files.column("size_bytes"), config.target_file_size_mb * _MB))
    if small.num_rows < config.min_files_to_compact:
        return None
    if not partition_columns:
        return []
    keys = [f"partition.{c}" for c in partition_columns]
    counts = small.group_by(keys).aggregate([("path", "count")])
    chosen = counts.filter(pc.greater_equal(counts.column("path_count"), config.min_files_to_compact))
    if chosen.num_rows == 0:
        return None
    filters: list[tuple[str, str, Any]] = []
    for column, key in zip(partition_columns, keys):
        values = chosen.column(key).to_pylist()
        if any(v is None for v in values):
            continue  # a null partition cannot be named by IN; leave that column unfiltered
        filters.append((column, "in", sorted(set(values))))  # delta-rs encodes typed values itself
    return filters


def _compact(lake: Lake, name: str, config: MaintenanceConfig, result: TableMaintenance) -> None:
    table = lake.snapshot(name)
    if _compaction_filters(table, config) is None:
        result.compaction = "nothing_to_compact"
        return
    try:
        claim = _claim(table, config.compaction_lease_minutes)
    except _Busy as e:
        result.compaction = "busy"
        log.info("%s: compaction skipped: %s", name, e)
        return
    try:
        # Planned after the claim commit: a compaction the previous holder committed is in this snapshot.
        table = lake.snapshot(name)
        filters = _compaction_filters(table, config)
        if filters is None:
            result.compaction = "nothing_to_compact"
            return
        metrics = table.optimize.compact(
            partition_filters=filters or None,
            target_size=config.target_file_size_mb * _MB,
            max_concurrent_tasks=config.max_concurrent_tasks,
            commit_properties=CommitProperties(custom_metadata={"reelhouse.maintenance": "compact"}),
        )
    finally:
        _release(lake.snapshot(name), claim)
    result.files_removed += metrics["numFilesRemoved"]
    result.files_added += metrics["numFilesAdded"]
    result.partitions_compacted += metrics["partitionsOptimized"]
    result.compaction = "compacted" if metrics["numFilesRemoved"] else "nothing_to_compact"


def _lease_commit(table: DeltaTable, version: int, what: str) -> None:
    """An empty commit that records ``version`` for the maintenance app id (and nothing else)."""
    table.create_write_transaction(
        [],
        mode="append",
        schema=table.schema(),
        partition_by=list(table.metadata().partition_columns) or None,
        commit_properties=CommitProperties(
            custom_metadata={"reelhouse.maintenance": what},
            app_transactions=[Transaction(LEASE_APP_ID, version)],
        ),
    )


def _claim(table: DeltaTable, lease_minutes: float) -> int:
    """Claim the table's compaction; raise :class:`_Busy` when another run holds it.

    The app-transaction version encodes the claim: ``milliseconds * 2 + 1`` while held,
    ``milliseconds * 2`` once released.
    """
    now_ms = int(time.time() * 1000)
    current = table.transaction_version(LEASE_APP_ID)
    if current is not None and current % 2 == 1:
        held_for_ms = now_ms - current // 2
        if held_for_ms < lease_minutes * 60_000:
            raise _Busy(f"another maintenance run has held the compaction claim for {held_for_ms / 1000:.0f}s")
        log.warning("%s: taking over a compaction claim %.0f minutes old", table.table_uri, held_for_ms / 60_000)
    claim = now_ms * 2 + 1
    try:
        _lease_commit(table, claim, "claim compaction")
    except CommitFailedError as e:
        # The only commit an empty one conflicts with is another of the same app id: a concurrent claim.
        raise _Busy(f"another maintenance run claimed the compaction at the same time ({e})") from e
    return claim


def _release(table: DeltaTable, claim: int) -> None:
    """Release the claim, unless it is no longer ours (it expired and another run took it over)."""
    if table.transaction_version(LEASE_APP_ID) != claim:
        log.warning("%s: compaction claim was taken over by another run; not releasing it", table.table_uri)
        return
    try:
        _lease_commit(table, (claim // 2 + 1) * 2, "release compaction")
    except CommitFailedError:
        log.warning("%s: compaction claim was taken over by another run while releasing it", table.table_uri)


# ------------------------------------------------------------ vacuum, checkpoint
def _vacuum(lake: Lake, name: str, config: MaintenanceConfig) -> int:
    """Delete expired removed files; return how many were still in storage.

    delta-rs (1.6) lists a removed file as vacuumable for as long as the log keeps its
    tombstone, which is until a checkpoint drops it after ``delta.deletedFileRetentionDuration``,
    and every real run commits a VACUUM START and END even when those files are long gone. A
    dry run first, checked against storage, keeps repeated runs from filling the log with
    empty VACUUM commits and from counting the same files again.
    """
    table = lake.snapshot(name)
    candidates = table.vacuum(
        retention_hours=config.vacuum_retention_hours,
        dry_run=True,
        enforce_retention_duration=config.enforce_retention,
        full=False,
    )
    if not candidates:
        return 0
    present = _stored_files(lake, name) & {unquote(path) for path in candidates}
    if not present:
        return 0
    deleted = table.vacuum(
        retention_hours=config.vacuum_retention_hours,
        dry_run=False,
        enforce_retention_duration=config.enforce_retention,
        full=False,
        commit_properties=CommitProperties(custom_metadata={"reelhouse.maintenance": "vacuum"}),
    )
    return len(present & {unquote(path) for path in deleted})


def _stored_files(lake: Lake, name: str) -> set[str]:
    """Paths, relative to the table root, of the data files in storage (one listing)."""
    fs, root = filesystem_for(lake.uri(name), dict(lake.config.storage_options))
    prefix = root.rstrip("/") + "/"
    files = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    relative = (f.path[len(prefix):] for f in files if f.type == pafs.FileType.File and f.path.startswith(prefix))
    return {path for path in relative if not path.startswith("_delta_log/")}


def _checkpoint(lake: Lake, name: str) -> int:
    table = lake.snapshot(name)
    table.create_checkpoint()
    table.cleanup_metadata()
    return table.version()
