"""Executor-side half of a Delta write: parquet files plus the add actions that describe them.

A :class:`TableFileWriter` is small and picklable: Spark ships it to executors, which write
their rows as parquet under the table's directory (Hive-style partition folders, partition
columns not stored in the files, as the Delta protocol expects) and return one
:class:`FileAction` per file. The driver then commits all of them in one delta-rs transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Committed by the driver; carried back from executors as plain rows.
FILE_ACTION_DDL = (
    "table string, path string, size long, partition_values string, modification_time long, stats string"
)
FILE_ACTION_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("partition_values", pa.string()),
        pa.field("modification_time", pa.int64()),
        pa.field("stats", pa.string()),
    ]
)


@dataclass(frozen=True)
class FileAction:
    table: str
    path: str
    size: int
    partition_values: dict[str, str | None]
    modification_time: int
    stats: str

    def to_row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "path": self.path,
            "size": self.size,
            "partition_values": json.dumps(self.partition_values, sort_keys=True),
            "modification_time": self.modification_time,
            "stats": self.stats,
        }

    @classmethod
    def from_row(cls, row: Any) -> FileAction:
        return cls(
            table=row["table"],
            path=row["path"],
            size=int(row["size"]),
            partition_values=json.loads(row["partition_values"]),
            modification_time=int(row["modification_time"]),
            stats=row["stats"],
        )


def filesystem_for(uri: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a local path or object-store URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    options = storage_options or {}
    if uri.startswith("s3://") and options:
        fs = pafs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            region=options.get("AWS_REGION"),
            endpoint_override=options.get("AWS_ENDPOINT_URL"),
        )
        return fs, uri[len("s3://"):]
    return pafs.FileSystem.from_uri(uri)


# Partition folders hold the raw value; keeping values URI-safe keeps the Delta `path`
# (a URI) and the folder name identical, for every Delta reader.
_SAFE_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _partition_value_text(value: Any) -> str | None:
    if value is None:
        return None
    text = _raw_partition_text(value)
    if not _SAFE_PARTITION_VALUE.match(text):
        raise ValueError(f"partition value {text!r} must match {_SAFE_PARTITION_VALUE.pattern}: partition by a date or id")
    return text


def _raw_partition_text(value: Any) -> str:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _stat_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def file_stats(table: pa.Table) -> str:
    """Delta per-file statistics: record count, per-column min/max (simple types) and null counts."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        nulls[name] = column.null_count
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind)
                or pa.types.is_string(kind)):
            continue
        if column.null_count == len(column):
            continue
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if isinstance(low, str):  # Delta truncates long strings in stats; keep them short
            low, high = low[:32], high[:32]
            if len(bounds["max"].as_py()) > 32:
                continue  # a truncated max would be wrong; omit it
        mins[name], maxs[name] = _stat_value(low), _stat_value(high)
    return json.dumps({"numRecords": table.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})


@dataclass(frozen=True)
class TableFileWriter:
    """Writes rows of one Delta table as parquet files; runs on executors."""

    table: str
    uri: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    storage_options: dict[str, str] = field(default_factory=dict)
    target_file_rows: int = 1_000_000

    def conform(self, data: pa.Table | pa.RecordBatch) -> pa.Table:
        """Select the table's columns in order and cast to its types (e.g. Spark's Etc/UTC to UTC)."""
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        missing = [f.name for f in self.schema if f.name not in data.column_names]
        if missing:
            raise ValueError(f"{self.table}: rows lack columns {missing}")
        return data.select(self.schema.names).cast(self.schema)

    def write(self, data: pa.Table | pa.RecordBatch) -> list[FileAction]:
        table = self.conform(data)
        if table.num_rows == 0:
            return []
        if not self.partition_by:
            return self._write_files(table, {})
        actions = []
        keys = table.select(list(self.partition_by)).group_by(list(self.partition_by)).aggregate([])
        for group in keys.to_pylist():
            mask = None
            for column, value in group.items():
                cond = pc.is_null(table[column]) if value is None else pc.equal(table[column], pa.scalar(value, table.schema.field(column).type))
                mask = cond if mask is None else pc.and_(mask, cond)
            subset = table.filter(mask)
            values = {column: _partition_value_text(group[column]) for column in self.partition_by}
            actions.extend(self._write_files(subset.drop_columns(list(self.partition_by)), values))
        return actions

    def _write_files(self, table: pa.Table, partition_values: dict[str, str | None]) -> list[FileAction]:
        fs, root = filesystem_for(self.uri, self.storage_options)
        folder = "/".join(
            f"{column}={'__HIVE_DEFAULT_PARTITION__' if value is None else value}"
            for column, value in partition_values.items()
        )
        actions = []
        for offset in range(0, table.num_rows, self.target_file_rows):
            chunk = table.slice(offset, self.target_file_rows)
            relative = (folder + "/" if folder else "") + f"part-{uuid.uuid4().hex}.zstd.parquet"
            full = f"{root.rstrip('/')}/{relative}"
            fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(full) as sink:
                pq.write_table(chunk, sink, compression="zstd")
            size = fs.get_file_info(full).size
            actions.append(
                FileAction(
                    table=self.table,
                    path=relative,
                    size=size,
                    partition_values=partition_values,
                    modification_time=int(time.time() * 1000),
                    stats=file_stats(chunk),
                )
            )
        return actions
