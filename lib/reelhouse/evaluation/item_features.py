"""Item attributes and content vectors of an interaction log (CSV or Parquet), joined to its codes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from reelhouse.errors import InteractionLogError
from reelhouse.evaluation.logfile import epoch_seconds, is_parquet, text_column
from reelhouse.recall.base import Interactions
from reelhouse.recall.interactions import with_item_vectors

log = logging.getLogger(__name__)


def read_item_features(path: str | Path, item_col: str, vector_col: str | None = None) -> pa.Table:
    """An item-features file (CSV or Parquet): ``item_id`` (string) first, then its other columns.

    Rows without an item id, and repeats of an item after its first row, are dropped with a
    warning that counts them (attributes are per item, so there is nothing to keep of them).
    """
    path = Path(path)
    if not path.exists():
        raise InteractionLogError(f"item features {path} do not exist")
    if is_parquet(path):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    else:
        import pyarrow.csv as csv

        table = csv.read_csv(path)
    for column in (item_col, vector_col):
        if column is not None and column not in table.column_names:
            raise InteractionLogError(f"{path}: column {column!r} not found (columns: {table.column_names})")
    if vector_col is not None and not (
        pa.types.is_list(table.schema.field(vector_col).type)
        or pa.types.is_fixed_size_list(table.schema.field(vector_col).type)
    ):
        raise InteractionLogError(f"{path}: {vector_col!r} must be a list of floats (a Parquet list column)")
    ids = text_column(table.column(item_col))
    keep = ids.notna().to_numpy() & ~ids.duplicated().to_numpy()
    dropped = int((~keep).sum())
    if dropped:
        log.warning("%s: %d rows without an item id or repeating an item were dropped", path, dropped)
    rest = table.drop_columns([item_col]).filter(pa.array(keep))
    return pa.table(
        {
            "item_id": pa.array(ids.to_numpy(dtype=object)[keep], pa.string()),
            **{name: rest.column(name) for name in rest.column_names},
        }
    )


def with_item_features(interactions: Interactions, features: pa.Table, vector_col: str | None = None) -> Interactions:
    """Attach each feature column as an item attribute by item code (and ``vector_col`` as vectors).

    Numbers and booleans become float arrays (NaN when unknown), timestamps ``<name>_s`` epoch
    seconds, anything else object arrays (None when unknown).
    """
    position = {item: row for row, item in enumerate(features.column("item_id").to_pylist())}
    rows = np.array([position.get(item, -1) for item in interactions.item_ids], dtype=np.int64)
    known = rows >= 0
    attributes = dict(interactions.item_attributes)
    for name in features.column_names:
        if name in ("item_id", vector_col):
            continue
        column = features.column(name)
        kind = column.type
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            name, values, fill = f"{name}_s", epoch_seconds(column), np.nan
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values, fill = column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False), np.nan
        else:
            values, fill = np.asarray(column.cast(pa.string()).to_pylist(), dtype=object), None
        out = np.full(interactions.n_items, fill, dtype=values.dtype)
        out[known] = values[rows[known]]
        attributes[name] = out
    interactions.item_attributes = attributes
    if vector_col is not None:
        interactions = with_item_vectors(interactions, features, "item_id", vector_col)
    return interactions
