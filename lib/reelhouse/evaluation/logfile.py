"""Interaction log files (CSV or Parquet): read, parse, quarantine and split.

A log has a user column, an item column and optionally a time, a rating (or watch ratio) and a
split column; their names are options. Every row either becomes a clean row or lands in the
quarantine with the first reason that applies, in this order:

- ``malformed_line``: a CSV line whose field count differs from the header's
- ``missing_user`` / ``missing_item``: null, empty or blank id
- ``unparseable_time``: a time column is given and the value is null, not a number and not ISO 8601
- ``non_numeric_rating``: a rating column is given and the value is null, not a number or not finite
- ``unknown_split``: a split column is given and the value is not ``train``, ``valid`` or ``test``
  (case and surrounding blanks are ignored)

Times may be epoch numbers or ISO strings (without an offset: UTC). The unit of an epoch number
follows from its magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17
microseconds, else nanoseconds (1e11 s is the year 5138, 1e11 ms is 1973), so a column mixing
seconds and milliseconds still reads right.

Without a split column the split is a global time cut when there is a time column: the latest
``test_fraction`` of the rows by time are ``test``, the ``valid_fraction`` before them ``valid``
(every row at or after a cut time is on the later side, so no test interaction precedes a
training one; per-user "leave the last out" splits would train on other users' future). Without
a time column it is a seeded random split of the rows with the same fractions. ``--split-method
user`` stratifies by user instead (each user's rows split in the same proportions, the protocol
of Microsoft Recommenders' MovieLens benchmark), with or without a time column.

Evaluation data are built from the clean rows by :mod:`reelhouse.evaluation.data`; item
attributes come from :mod:`reelhouse.evaluation.item_features`; ``jobs/import_interactions.py``
writes both to the lake (:mod:`reelhouse.evaluation.lake_import`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reelhouse.errors import InteractionLogError

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")

REASON_LINE = "malformed_line"
REASON_USER = "missing_user"
REASON_ITEM = "missing_item"
REASON_TIME = "unparseable_time"
REASON_RATING = "non_numeric_rating"
REASON_SPLIT = "unknown_split"
REASONS: tuple[str, ...] = (REASON_LINE, REASON_USER, REASON_ITEM, REASON_TIME, REASON_RATING, REASON_SPLIT)

_UTC = pa.timestamp("us", tz="UTC")

CLEAN_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_time", _UTC),
        pa.field("rating", pa.float64()),
        pa.field("split", pa.string(), nullable=False),
    ]
)

# The raw text of the named columns; ``row`` is the record's position among the parsed records
# (null for a CSV line that could not be parsed, whose text is in ``raw_line``).
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("row", pa.int64()),
        pa.field("raw_user", pa.string()),
        pa.field("raw_item", pa.string()),
        pa.field("raw_time", pa.string()),
        pa.field("raw_rating", pa.string()),
        pa.field("raw_split", pa.string()),
        pa.field("raw_line", pa.string()),
    ]
)


@dataclass(frozen=True)
class LogColumns:
    """Column names of an interaction log; only ``user`` and ``item`` are required."""

    user: str
    item: str
    time: str | None = None
    rating: str | None = None
    split: str | None = None

    def named(self) -> dict[str, str]:
        """Role -> column name, for the columns given."""
        roles = {"user": self.user, "item": self.item, "time": self.time, "rating": self.rating, "split": self.split}
        return {role: name for role, name in roles.items() if name is not None}


@dataclass(frozen=True)
class SplitPolicy:
    """How rows are split when the log has no split column.

    ``method``: ``time`` (a global time cut), ``random`` (rows at random), ``user`` (stratified
    by user, as Microsoft Recommenders' ``python_stratified_split``: each user's rows in a
    seeded random order, the first ``round((1 - valid - test) n)`` train, the next
    ``round(valid n)`` valid, the rest test), or ``auto`` (time with a time column, else random).
    """

    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 7
    method: Literal["auto", "time", "random", "user"] = "auto"

    def __post_init__(self) -> None:
        if not (
            0 <= self.valid_fraction < 1 and 0 < self.test_fraction < 1 and self.valid_fraction + self.test_fraction < 1
        ):
            raise InteractionLogError(
                f"split fractions valid={self.valid_fraction} test={self.test_fraction}: need 0 <= valid, "
                "0 < test and valid + test < 1"
            )


@dataclass
class ImportReport:
    """What an import read, kept and set aside; printed as JSON."""

    source: str
    rows_read: int
    valid: int
    malformed: dict[str, int]
    split_method: str  # "column", "time", "random" or "user"
    splits: dict[str, int]
    users: int
    items: int
    split_times: dict[str, str] = field(default_factory=dict)  # first time of valid/test for a time split
    item_features: int | None = None
    output: str | None = None
    quarantine: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


@dataclass
class InteractionLog:
    """Clean rows (:data:`CLEAN_SCHEMA`), quarantined rows (:data:`QUARANTINE_SCHEMA`) and the report."""

    rows: pa.Table
    quarantine: pa.Table
    report: ImportReport


# ------------------------------------------------------------------------------------------ reading
def is_parquet(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in {".parquet", ".pq"}


def _read_csv(path: Path, columns: list[str]) -> tuple[pa.Table, list[str]]:
    import pyarrow.csv as csv

    bad_lines: list[str] = []

    def skip(row: csv.InvalidRow) -> str:
        bad_lines.append(row.text)
        return "skip"

    try:
        header = csv.open_csv(path, parse_options=csv.ParseOptions(invalid_row_handler=lambda row: "skip")).schema.names
    except (OSError, pa.ArrowInvalid) as e:
        raise InteractionLogError(f"cannot read {path} as CSV: {e}") from e
    missing = [c for c in columns if c not in header]
    if missing:
        raise InteractionLogError(f"{path}: columns {missing} not found (columns: {header}); check the column options")
    table = csv.read_csv(
        path,
        parse_options=csv.ParseOptions(invalid_row_handler=skip),
        convert_options=csv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            include_columns=columns,
            strings_can_be_null=True,
        ),
    )
    return table, bad_lines


def _read_parquet(path: Path, columns: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names if path.is_file() else pq.ParquetDataset(path).schema.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise InteractionLogError(
                f"{path}: columns {missing} not found (columns: {names}); check the column options"
            )
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowInvalid) as e:
        raise InteractionLogError(f"cannot read {path} as Parquet: {e}") from e


def _read_rows(path: Path, columns: list[str]) -> tuple[pa.Table, list[str]]:
    if not path.exists():
        raise InteractionLogError(f"interaction log {path} does not exist")
    if is_parquet(path):
        return _read_parquet(path, columns), []
    return _read_csv(path, columns)


# ------------------------------------------------------------------------------------------ parsing
def text_column(column: pa.ChunkedArray) -> pd.Series:
    """The column as stripped strings (None for null or blank)."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    text = pc.utf8_trim_whitespace(column)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return text.to_pandas()


def _raw(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


def _epoch_scale(values: np.ndarray) -> np.ndarray:
    """Seconds per unit of each epoch number, from its magnitude (see the module docstring)."""
    magnitude = np.abs(values)
    return np.select([magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [1.0, 1e-3, 1e-6], default=1e-9)


def epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    """Epoch seconds of timestamps, epoch numbers or ISO 8601 strings; NaN where unparseable."""
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        micros = column.cast(_UTC if pa.types.is_timestamp(kind) else pa.timestamp("us")).cast(pa.int64())
        return (
            micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
            if micros.null_count == 0
            else (pc.divide(micros.cast(pa.float64()), 1e6).fill_null(np.nan).to_numpy(zero_copy_only=False))
        )
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        return values * _epoch_scale(values)
    text = text_column(column)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    seconds = numbers * _epoch_scale(numbers)
    rest = np.isnan(numbers) & text.notna().to_numpy()
    if rest.any():
        stamps = pd.to_datetime(text[rest], utc=True, errors="coerce", format="ISO8601")
        parsed = stamps.notna().to_numpy()
        values = np.full(len(stamps), np.nan)
        values[parsed] = ((stamps[parsed] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(np.float64)
        seconds[rest] = values
    seconds[~np.isfinite(seconds)] = np.nan
    return seconds


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """Floats, NaN where null, not a number or not finite."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        values = column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    else:
        values = pd.to_numeric(text_column(column), errors="coerce").to_numpy(np.float64)
    values = values.astype(np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _split_rows(
    time_s: np.ndarray | None, users: np.ndarray, n: int, policy: SplitPolicy
) -> tuple[np.ndarray, str, dict[str, str]]:
    split = np.full(n, "train", dtype=object)
    method = policy.method if policy.method != "auto" else ("time" if time_s is not None else "random")
    if method == "time" and time_s is None:
        raise InteractionLogError("a time split needs a time column (--time-col)")
    if n == 0:
        return split, method, {}
    if method == "time":
        test_cut = float(np.quantile(time_s, 1 - policy.test_fraction, method="higher"))
        valid_cut = float(np.quantile(time_s, 1 - policy.test_fraction - policy.valid_fraction, method="higher"))
        if policy.valid_fraction > 0:
            split[time_s >= valid_cut] = "valid"
        split[time_s >= test_cut] = "test"
        cuts = {"test": pd.Timestamp(test_cut, unit="s", tz="UTC").isoformat()}
        if policy.valid_fraction > 0:
            cuts["valid"] = pd.Timestamp(valid_cut, unit="s", tz="UTC").isoformat()
        return split, "time", cuts
    draw = np.random.default_rng(policy.seed).random(n)
    if method == "user":
        codes = pd.factorize(pd.Series(users, dtype=object))[0]
        order = np.lexsort((draw, codes))
        ordered = codes[order]
        rank = np.arange(n) - np.searchsorted(ordered, ordered, side="left")
        size = np.bincount(ordered)[ordered]
        train_end = np.round((1 - policy.valid_fraction - policy.test_fraction) * size)
        valid_end = train_end + np.round(policy.valid_fraction * size)
        split[order[rank >= train_end]] = "valid"
        split[order[rank >= valid_end]] = "test"
        return split, "user", {}
    split[draw < policy.test_fraction + policy.valid_fraction] = "valid"
    split[draw < policy.test_fraction] = "test"
    return split, "random", {}


def parse_interaction_log(
    raw: pa.Table,
    columns: LogColumns,
    policy: SplitPolicy = SplitPolicy(),
    bad_lines: list[str] | None = None,
    source: str = "",
) -> InteractionLog:
    """Clean rows and quarantine of a raw table holding (at least) the named columns."""
    bad_lines = bad_lines or []
    n = raw.num_rows
    reason = np.full(n, None, dtype=object)

    def flag(bad: np.ndarray, why: str) -> None:
        reason[bad & pd.isna(reason)] = why

    users = text_column(raw.column(columns.user))
    items = text_column(raw.column(columns.item))
    flag(users.isna().to_numpy(), REASON_USER)
    flag(items.isna().to_numpy(), REASON_ITEM)
    time_s = None
    if columns.time is not None:
        time_s = epoch_seconds(raw.column(columns.time))
        flag(np.isnan(time_s), REASON_TIME)
    rating = None
    if columns.rating is not None:
        rating = _numbers(raw.column(columns.rating))
        flag(np.isnan(rating), REASON_RATING)
    given_split = None
    if columns.split is not None:
        given_split = text_column(raw.column(columns.split)).str.lower()
        flag(~given_split.isin(SPLITS).to_numpy(), REASON_SPLIT)

    good = pd.isna(reason)
    if given_split is not None:
        split, method, cuts = given_split.to_numpy(dtype=object)[good], "column", {}
    else:
        split, method, cuts = _split_rows(
            time_s[good] if time_s is not None else None, users.to_numpy()[good], int(good.sum()), policy
        )

    event_time = (
        pa.array(np.round(time_s[good] * 1e6).astype(np.int64), pa.int64()).cast(_UTC)
        if time_s is not None
        else pa.nulls(int(good.sum()), _UTC)
    )
    rows = pa.table(
        {
            "user_id": pa.array(users.to_numpy(dtype=object)[good], pa.string()),
            "item_id": pa.array(items.to_numpy(dtype=object)[good], pa.string()),
            "event_time": event_time,
            "rating": pa.array(rating[good], pa.float64())
            if rating is not None
            else pa.nulls(int(good.sum()), pa.float64()),
            "split": pa.array(split, pa.string()),
        }
    ).cast(CLEAN_SCHEMA)
    quarantine = _quarantine(raw, columns, reason, bad_lines)

    counts = pd.Series(reason[~good]).value_counts().to_dict()
    malformed = {why: int(counts.get(why, 0)) for why in REASONS if counts.get(why, 0)}
    if bad_lines:
        malformed = {REASON_LINE: len(bad_lines), **malformed}
    split_counts = pd.Series(split).value_counts()
    report = ImportReport(
        source=source,
        rows_read=n + len(bad_lines),
        valid=rows.num_rows,
        malformed=malformed,
        split_method=method,
        splits={s: int(split_counts.get(s, 0)) for s in SPLITS},
        users=int(pc.count_distinct(rows.column("user_id")).as_py()),
        items=int(pc.count_distinct(rows.column("item_id")).as_py()),
        split_times=cuts,
    )
    if report.malformed:
        log.warning(
            "%s: %d of %d rows malformed %s (see the quarantine)",
            source,
            sum(malformed.values()),
            report.rows_read,
            malformed,
        )
    return InteractionLog(rows, quarantine, report)


def _quarantine(raw: pa.Table, columns: LogColumns, reason: np.ndarray, bad_lines: list[str]) -> pa.Table:
    bad = np.flatnonzero(~pd.isna(reason))
    picked = raw.take(pa.array(bad, pa.int64()))

    def raw_column(name: str | None) -> pa.Array:
        if name is None:
            return pa.nulls(len(bad), pa.string())
        return pa.concat_arrays(_raw(picked.column(name)).chunks) if len(bad) else pa.array([], pa.string())

    parsed = pa.table(
        {
            "reason": pa.array(reason[bad].astype(str), pa.string()),
            "row": pa.array(bad, pa.int64()),
            "raw_user": raw_column(columns.user),
            "raw_item": raw_column(columns.item),
            "raw_time": raw_column(columns.time),
            "raw_rating": raw_column(columns.rating),
            "raw_split": raw_column(columns.split),
            "raw_line": pa.nulls(len(bad), pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )
    if not bad_lines:
        return parsed
    lines = pa.table(
        {
            "reason": pa.array([REASON_LINE] * len(bad_lines), pa.string()),
            **{
                name: pa.nulls(len(bad_lines), QUARANTINE_SCHEMA.field(name).type)
                for name in QUARANTINE_SCHEMA.names[1:-1]
            },
            "raw_line": pa.array(bad_lines, pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )
    return pa.concat_tables([lines, parsed])


def read_interaction_log(path: str | Path, columns: LogColumns, policy: SplitPolicy = SplitPolicy()) -> InteractionLog:
    """Read, validate and split a CSV or Parquet interaction log (see the module docstring)."""
    path = Path(path)
    wanted = list(dict.fromkeys(columns.named().values()))
    raw, bad_lines = _read_rows(path, wanted)
    return parse_interaction_log(raw, columns, policy, bad_lines, source=str(path))


def write_quarantine(quarantine: pa.Table, path: str, storage_options: dict[str, str] | None = None) -> str:
    """Write the quarantined rows as one Parquet file (local path or object-store URI)."""
    import pyarrow.parquet as pq

    from reelhouse.lake.storage import filesystem_for

    fs, inner = filesystem_for(path, storage_options)
    parent = inner.rsplit("/", 1)[0] if "/" in inner else ""
    if parent:
        fs.create_dir(parent, recursive=True)
    pq.write_table(quarantine, inner, filesystem=fs, compression="zstd")
    return path
