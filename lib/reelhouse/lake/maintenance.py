"""Delta table maintenance with delta-spark: compaction, VACUUM, checkpoints; safe while streams write.

Every streaming micro-batch commits a few small files to each table it writes, and every reader
pays for each file (an open, a footer, statistics) until they are compacted. Per table, in this
order:

1. **Compaction** (Delta ``OPTIMIZE``) rewrites the files smaller than ``target_file_size_mb`` of
   each partition that holds at least ``min_files_to_compact`` of them (found in the snapshot's
   file list, no data read), with a ``WHERE`` naming exactly those partitions; an unpartitioned
   table qualifies as a whole. OPTIMIZE only moves rows (``dataChange=false``), so a concurrent
   blind append, such as an ingestion micro-batch, does not conflict with it: both commit, and the
   stream's app transactions stay in the table. A writer that removes files of the same partitions
   (``replace_partitions``, MERGE, another OPTIMIZE) does conflict; Delta detects it at commit and
   the step is retried on a fresh snapshot with a short backoff, the table reported failed only
   once the retries run out. So two maintenance runs at once are safe: one of them retries and
   finds nothing left to compact.
2. **VACUUM ... LITE**: deletes the files the log records as removed (by compaction, overwrites,
   MERGE) longer ago than ``vacuum_retention_hours``. A file removed more recently stays, so a
   reader still planning on an older snapshot (a Spark job, a time-travel query) finds its files
   as long as the retention exceeds its age. LITE never touches files the log does not know, such
   as those a running stream has written but not committed yet. (LITE needs the log since the
   last VACUUM; when log cleanup has already dropped part of it, Delta refuses and the run falls
   back to the full VACUUM, which also deletes unreferenced files older than the retention: safe
   as long as the retention exceeds the longest write.) A dry run first keeps runs with nothing
   to delete from adding VACUUM START/END commits to the log.
3. **Checkpoint** of the log at the current version, so readers replay a parquet checkpoint plus a
   few JSON commits instead of every commit, then **log cleanup**: log files older than
   ``delta.logRetentionDuration`` (30 days unless set) and older than a checkpoint are deleted.
   Time travel to versions within that window keeps working.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow.fs as pafs
from pydantic import ValidationError

from reelhouse.config import ReelhouseConfig
from reelhouse.config.models import MaintenanceConfig
from reelhouse.errors import ConfigError, LakeError
from reelhouse.lake.delta import Lake, is_conflict
from reelhouse.lake.storage import filesystem_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_MB = 1024 * 1024
_T = TypeVar("_T")


@dataclass
class TableMaintenance:
    """What maintenance did to one table."""

    table: str
    status: str = "ok"  # ok | missing (no such table yet) | failed
    compaction: str = "skipped"  # compacted | nothing_to_compact | skipped (an earlier step failed)
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
    spark: SparkSession, config: ReelhouseConfig, tables: list[str] | None = None, retention_hours: int | None = None
) -> MaintenanceReport:
    """Maintain the configured lake (``jobs/maintain_tables.py``, ``reelhouse maintain``)."""
    return maintain(spark, Lake(config.lake), maintenance_settings(config, tables, retention_hours))


def discover_tables(lake: Lake) -> list[str]:
    """Names of the Delta tables directly under the lake root (directories with a ``_delta_log``)."""
    fs, root = filesystem_for(lake.config.root, dict(lake.config.storage_options))
    entries = fs.get_file_info(pafs.FileSelector(root.rstrip("/"), allow_not_found=True))
    folders = [
        e.base_name for e in entries if e.type == pafs.FileType.Directory and not e.base_name.startswith((".", "_"))
    ]
    logs = fs.get_file_info([f"{root.rstrip('/')}/{name}/_delta_log" for name in folders])
    return sorted(name for name, info in zip(folders, logs, strict=True) if info.type == pafs.FileType.Directory)


def maintain(spark: SparkSession, lake: Lake, config: MaintenanceConfig) -> MaintenanceReport:
    """Compact, vacuum and checkpoint each table; one table's failure does not stop the others.

    Safe while streams append: compaction does not conflict with appends, and VACUUM deletes
    only files removed from the table longer ago than the retention, never one a running
    reader's snapshot still lists (if it is younger than the retention) nor one a writer has
    not committed yet.
    """
    started = time.monotonic()
    names = config.tables if config.tables is not None else discover_tables(lake)
    # A session of its own: the settings each step changes (file sizes, the retention check)
    # stay out of the caller's session and out of another run's.
    session = spark.newSession()
    report = MaintenanceReport([_maintain_table(session, lake, name, config) for name in names])
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report


def _maintain_table(spark: SparkSession, lake: Lake, name: str, config: MaintenanceConfig) -> TableMaintenance:
    result = TableMaintenance(name)
    started = time.monotonic()
    if not lake.exists(name, spark):
        result.status = "missing"
        log.warning("%s: no Delta table at %s; skipped", name, lake.uri(name))
        return result
    try:
        result.version_before, result.files_before = _state(spark, lake, name)
        _retrying(result, config, lambda: _compact(spark, lake, name, config, result))
        result.files_vacuumed += _retrying(result, config, lambda: _vacuum(spark, lake, name, config))
        if config.checkpoint:
            result.checkpoint_version = _retrying(result, config, lambda: _checkpoint(spark, lake, name))
        result.version_after, result.files_after = _state(spark, lake, name)
    except Exception as e:  # Spark and Delta raise many unrelated types; one table's failure must not stop the rest
        result.status = "failed"
        result.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.error("%s: maintenance failed: %s", name, result.error)
    result.elapsed_s = round(time.monotonic() - started, 3)
    if result.status == "ok":
        log.info(
            "%s: compaction %s (%d files -> %d), %d files vacuumed, checkpoint at %s, versions %s -> %s",
            name,
            result.compaction,
            result.files_removed,
            result.files_added,
            result.files_vacuumed,
            result.checkpoint_version,
            result.version_before,
            result.version_after,
        )
    return result


def _state(spark: SparkSession, lake: Lake, name: str) -> tuple[int, int]:
    """(version, active files) of the table now."""
    from delta.tables import DeltaTable

    detail = DeltaTable.forPath(spark, lake.spark_uri(name)).detail().select("numFiles").first()
    return lake.version(name, spark), int(detail["numFiles"] if detail else 0)


def _retrying(result: TableMaintenance, config: MaintenanceConfig, step: Callable[[], _T]) -> _T:
    """Run ``step``; when its commit conflicts with a concurrent writer, run it again on a fresh snapshot."""
    delay = config.retry_backoff_s
    for attempt in range(config.conflict_retries + 1):
        try:
            return step()
        except Exception as e:
            if not is_conflict(e):
                raise
            result.conflicts += 1
            if attempt == config.conflict_retries:
                raise
            log.warning(
                "%s: commit conflicted with a concurrent writer (%s); retry in %.1fs",
                result.table,
                type(e).__name__,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


@contextmanager
def _session_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Set Spark settings for one maintenance step, then restore them."""
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _sql_path(lake: Lake, name: str) -> str:
    return "delta.`" + lake.spark_uri(name).replace("`", "``") + "`"


# ---------------------------------------------------------------- compaction
def _sql_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compaction_condition(
    partition_columns: list[str], small_files: list[dict[str, str | None]], min_files: int
) -> str | None:
    """The OPTIMIZE ``WHERE`` naming the partitions worth compacting; ``""`` for the whole table; None: none.

    ``small_files``: the partition values of each file below the target size. A partition
    qualifies with ``min_files`` of them; an unpartitioned table qualifies as a whole.
    """
    if len(small_files) < min_files:
        return None
    if not partition_columns:
        return ""
    counts: dict[tuple[str | None, ...], int] = {}
    for values in small_files:
        key = tuple(values.get(c) for c in partition_columns)
        counts[key] = counts.get(key, 0) + 1
    chosen = sorted((k for k, n in counts.items() if n >= min_files), key=lambda k: tuple(v or "" for v in k))
    if not chosen:
        return None

    def equals(column: str, value: str | None) -> str:
        return f"`{column}` IS NULL" if value is None else f"`{column}` = {_sql_literal(value)}"

    return " OR ".join(
        "(" + " AND ".join(equals(c, v) for c, v in zip(partition_columns, key, strict=True)) + ")" for key in chosen
    )


def _small_files(
    spark: SparkSession, lake: Lake, name: str, target_bytes: int
) -> tuple[list[str], list[dict[str, str | None]]]:
    """The table's partition columns, and the partition values of each active file below ``target_bytes``.

    From the snapshot's file list (the log), not from the data: through the JVM, as the Python
    API has no call for the file list.
    """
    from pyspark.sql import DataFrame

    snapshot = Lake._spark_snapshot(spark, lake.spark_uri(name))
    columns = [str(c) for c in snapshot.metadata().partitionColumns().mkString("\u0000").split("\u0000") if c]
    files = DataFrame(snapshot.allFiles().toDF(), spark).where(f"size < {target_bytes}").select("partitionValues")
    return columns, [dict(row["partitionValues"] or {}) for row in files.collect()]


def _compact(spark: SparkSession, lake: Lake, name: str, config: MaintenanceConfig, result: TableMaintenance) -> None:
    from delta.tables import DeltaTable

    target = config.target_file_size_mb * _MB
    columns, small = _small_files(spark, lake, name, target)
    condition = compaction_condition(columns, small, config.min_files_to_compact)
    if condition is None:
        result.compaction = "nothing_to_compact"
        return
    settings = {
        "spark.databricks.delta.optimize.maxFileSize": str(target),
        "spark.databricks.delta.optimize.minFileSize": str(target),
    }
    if config.max_concurrent_tasks is not None:
        settings["spark.databricks.delta.optimize.maxThreads"] = str(config.max_concurrent_tasks)
    with _session_conf(spark, settings):
        builder = DeltaTable.forPath(spark, lake.spark_uri(name)).optimize()
        if condition:
            builder = builder.where(condition)
        metrics = builder.executeCompaction().first()["metrics"]
    result.files_removed += int(metrics["numFilesRemoved"])
    result.files_added += int(metrics["numFilesAdded"])
    result.partitions_compacted += int(metrics["partitionsOptimized"])
    result.compaction = "compacted" if metrics["numFilesRemoved"] else "nothing_to_compact"


# ------------------------------------------------------------ vacuum, checkpoint
_DEFAULT_DELETED_FILE_RETENTION = "interval 1 week"  # Delta's default delta.deletedFileRetentionDuration


def deleted_file_retention_hours(spark: SparkSession, lake: Lake, name: str) -> float:
    """The table's ``delta.deletedFileRetentionDuration`` in hours (Spark parses the interval)."""
    from delta.tables import DeltaTable

    detail = DeltaTable.forPath(spark, lake.spark_uri(name)).detail().select("properties").first()
    properties = (detail["properties"] if detail else None) or {}
    interval = properties.get("delta.deletedFileRetentionDuration", _DEFAULT_DELETED_FILE_RETENTION)
    if not interval.strip().lower().startswith("interval "):
        raise LakeError(
            f"{name}: delta.deletedFileRetentionDuration {interval!r} is not an interval such as 'interval 7 days'"
        )
    value = spark.sql(f"SELECT {interval} AS retention").first()["retention"]
    return value.total_seconds() / 3600


def _vacuum(spark: SparkSession, lake: Lake, name: str, config: MaintenanceConfig) -> int:
    """Delete expired removed files; return how many were deleted."""
    if config.enforce_retention:
        # Our rule, not only Delta's: delta-spark 4.4 refuses RETAIN 0 HOURS but lets 1 hour pass.
        floor = deleted_file_retention_hours(spark, lake, name)
        if config.vacuum_retention_hours < floor:
            raise LakeError(
                f"{name}: VACUUM retention {config.vacuum_retention_hours} h is shorter than the table's "
                f"delta.deletedFileRetentionDuration ({floor:g} h); running readers and time travel may need those "
                "files. Raise maintenance.vacuum_retention_hours, or set enforce_retention: false if nothing reads them"
            )
    settings = {} if config.enforce_retention else {"spark.databricks.delta.retentionDurationCheck.enabled": "false"}
    retain = f"RETAIN {config.vacuum_retention_hours} HOURS"
    with _session_conf(spark, settings):
        try:
            mode = "LITE"
            due = spark.sql(f"VACUUM {_sql_path(lake, name)} LITE {retain} DRY RUN").count()
        except Exception as e:
            if "VACUUM_LITE" not in str(e):
                raise
            log.warning("%s: the log no longer holds what VACUUM LITE needs; running the full VACUUM", name)
            mode = "FULL"
            due = spark.sql(f"VACUUM {_sql_path(lake, name)} FULL {retain} DRY RUN").count()
        if not due:
            return 0
        spark.sql(f"VACUUM {_sql_path(lake, name)} {mode} {retain}").collect()
    for commit in lake.history(name, limit=10, spark=spark):
        if commit.get("operation") == "VACUUM END":
            return int((commit.get("operationMetrics") or {}).get("numDeletedFiles", due))
    return due


def _checkpoint(spark: SparkSession, lake: Lake, name: str) -> int:
    """Checkpoint the log at its current version, then drop expired log files; return that version.

    Through the JVM: delta-spark has no Python or SQL call for a checkpoint.
    """
    jvm = spark._jvm  # type: ignore[attr-defined]
    delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, lake.spark_uri(name))  # type: ignore[attr-defined]
    snapshot = Lake._spark_snapshot(spark, lake.spark_uri(name))
    delta_log.checkpointAndCleanUpDeltaLog(snapshot, jvm.scala.Option.apply(None))
    return int(snapshot.version())
