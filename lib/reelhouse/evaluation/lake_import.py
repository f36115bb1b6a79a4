"""``jobs/import_interactions.py``'s work: a validated, split log (and its item attributes) into the lake."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from reelhouse.config import ReelhouseConfig
from reelhouse.evaluation.item_features import read_item_features
from reelhouse.evaluation.logfile import (
    CLEAN_SCHEMA,
    ImportReport,
    LogColumns,
    SplitPolicy,
    read_interaction_log,
    write_quarantine,
)
from reelhouse.lake import Lake, TableSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

IMPORTED_INTERACTIONS = "imported_interactions"
IMPORTED_ITEM_FEATURES = "imported_item_features"


def imported_interactions_spec() -> TableSpec:
    return TableSpec(
        IMPORTED_INTERACTIONS,
        CLEAN_SCHEMA,
        ("split",),
        "An imported interaction log, validated and split (replaced by every import).",
    )


def _replace_table(spark: SparkSession, lake: Lake, spec: TableSpec, rows: pa.Table) -> int | None:
    metadata = {"reelhouse.rows": rows.num_rows}
    return lake.write_arrow(spark, rows, spec, mode="overwrite", metadata=metadata).version


def import_interactions(
    spark: SparkSession,
    config: ReelhouseConfig,
    path: str | Path,
    columns: LogColumns,
    policy: SplitPolicy = SplitPolicy(),
    item_features: str | Path | None = None,
    item_features_col: str | None = None,
) -> ImportReport:
    """Validate and split a log, replace ``imported_interactions`` (and ``imported_item_features``).

    The quarantined rows go to ``imported_interactions_quarantine.parquet`` beside the table
    (written on every import, empty when nothing was malformed, so it always matches the table).
    Rerunning on the same file leaves the same tables.
    """
    log_ = read_interaction_log(path, columns, policy)
    lake = Lake(config.lake)
    version = _replace_table(spark, lake, imported_interactions_spec(), log_.rows)
    report = log_.report
    report.output = f"{lake.uri(IMPORTED_INTERACTIONS)} (version {version})"
    report.quarantine = write_quarantine(
        log_.quarantine, lake.uri(f"{IMPORTED_INTERACTIONS}_quarantine.parquet"), dict(config.lake.storage_options)
    )
    if item_features is not None:
        features = read_item_features(item_features, item_features_col or columns.item)
        spec = TableSpec(
            IMPORTED_ITEM_FEATURES, features.schema, (), "Item attributes (and vectors) of an imported log."
        )
        _replace_table(spark, lake, spec, features)
        report.item_features = features.num_rows
    return report
