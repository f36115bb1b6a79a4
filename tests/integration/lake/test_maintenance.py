"""Table maintenance (OPTIMIZE, VACUUM, checkpoints) with delta-spark on real Delta tables written through the lake API."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from delta.exceptions import ConcurrentAppendException

from reelhouse.config import LakeConfig
from reelhouse.config.models import MaintenanceConfig
from reelhouse.lake import AppTransaction, Lake, TableSpec, maintenance
from reelhouse.lake.maintenance import discover_tables, maintain

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[3]
DAYS = (dt.date(2026, 11, 20), dt.date(2026, 11, 21))
SPEC = TableSpec(
    "clicks",
    pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("day", pa.date32(), nullable=False)]),
    ("day",),
)
# Compact at 4 small files: the default (10) would need more commits than a test should make.
COMPACT_AT_4 = MaintenanceConfig(min_files_to_compact=4)


def _append(
    spark, lake: Lake, commits: int, rows: int = 20, days: tuple[dt.date, ...] = DAYS, spec: TableSpec = SPEC
) -> None:
    """``commits`` commits of one file each, as a stream makes them, each with its app transaction."""
    start = lake.read(spark, spec.name).count() if lake.exists(spec.name, spark) else 0
    batch_id = (lake.committed_version(spec.name, "stream", spark) or -1) + 1
    for n in range(commits):
        ids = range(start + n * rows, start + (n + 1) * rows)
        batch = pa.table({"id": list(ids), "day": [days[n % len(days)]] * rows}, schema=spec.schema)
        frame = lake.arrow_frame(spark, batch, spec).coalesce(1)  # one file per commit
        lake.append(frame, spec, AppTransaction("stream", batch_id + n))


def _ids(lake: Lake, name: str = SPEC.name, version: int | None = None) -> list[int]:
    return sorted(lake.to_arrow(name, version=version, columns=["id"]).column("id").to_pylist())


def _data_files(lake: Lake, name: str = SPEC.name) -> set[str]:
    root = Path(lake.uri(name))
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(LakeConfig(root=str(tmp_path)))


def test_compaction_then_vacuum_keeps_every_row_and_time_travel_until_the_retention(spark, lake):
    _append(spark, lake, 12)
    before_ids, old_version = _ids(lake), lake.version(SPEC.name)
    old_files = _data_files(lake)
    assert len(old_files) == 12

    first = maintain(spark, lake, COMPACT_AT_4).tables[0]

    assert first.status == "ok" and first.compaction == "compacted"
    assert (first.files_before, first.files_removed, first.files_added, first.files_after) == (12, 12, 2, 2)
    assert first.partitions_compacted == 2
    assert _ids(lake) == before_ids
    # Within the retention nothing is deleted: the version before compaction still reads.
    assert first.files_vacuumed == 0 and _data_files(lake) >= old_files
    assert _ids(lake, version=old_version) == before_ids
    assert (Path(lake.uri(SPEC.name)) / "_delta_log" / f"{first.checkpoint_version:020d}.checkpoint.parquet").exists()
    assert first.checkpoint_version == first.version_after
    # The stream's idempotency survives compaction and checkpoint, for both engines.
    assert lake.committed_version(SPEC.name, "stream", spark) == 11
    assert lake.committed_version(SPEC.name, "stream") == 11

    second = maintain(
        spark, lake, COMPACT_AT_4.model_copy(update={"vacuum_retention_hours": 0, "enforce_retention": False})
    ).tables[0]

    assert second.compaction == "nothing_to_compact"
    assert second.files_vacuumed == 12
    assert not (_data_files(lake) & old_files), "the compacted-away files are gone"
    assert _ids(lake) == before_ids
    with pytest.raises(Exception):  # noqa: B017 - delta-rs raises various types: that version can no longer be read
        _ids(lake, version=old_version)

    third = maintain(spark, lake, MaintenanceConfig(vacuum_retention_hours=0, enforce_retention=False)).tables[0]

    # Nothing left to delete: no VACUUM commits either.
    assert third.files_vacuumed == 0 and third.version_after == third.version_before


def test_only_partitions_with_enough_small_files_are_compacted(spark, lake):
    _append(spark, lake, 6, days=DAYS[:1])
    _append(spark, lake, 2, days=DAYS[1:])
    before = lake.version(SPEC.name)

    result = maintain(spark, lake, COMPACT_AT_4).tables[0]

    assert (result.files_removed, result.files_added, result.partitions_compacted) == (6, 1, 1)
    per_day = pa.table(lake.snapshot(SPEC.name).get_add_actions(flatten=True)).column("partition.day").to_pylist()
    assert sorted(per_day) == [DAYS[0]] + [DAYS[1]] * 2
    assert _ids(lake) == list(range(8 * 20))

    untouched = maintain(spark, lake, COMPACT_AT_4).tables[0]

    assert untouched.compaction == "nothing_to_compact"
    assert untouched.version_after == untouched.version_before, "nothing to do commits nothing"
    assert before < untouched.version_before


def test_a_stream_appending_during_maintenance_keeps_every_row_once(spark, lake):
    _append(spark, lake, 8)
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            _append(spark, lake, 4)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    writer = threading.Thread(target=stream)
    writer.start()
    report = maintain(spark, lake, COMPACT_AT_4)
    writer.join(300)

    assert not errors and report.ok
    # OPTIMIZE does not conflict with blind appends: every row once, every micro-batch recorded.
    assert _ids(lake) == list(range(12 * 20))
    assert lake.committed_version(SPEC.name, "stream", spark) == 11


def test_every_delta_table_under_the_root_is_found_and_a_bad_setting_fails_only_its_table(spark, lake, tmp_path):
    other = TableSpec("views", SPEC.schema, ())
    _append(spark, lake, 2)
    _append(spark, lake, 2, spec=other)
    (tmp_path / "not_a_table").mkdir()
    (tmp_path / "not_a_table" / "x.parquet").write_bytes(b"")

    assert discover_tables(lake) == ["clicks", "views"]
    assert discover_tables(Lake(LakeConfig(root=str(tmp_path / "nothing-here")))) == []

    # Delta refuses a retention below the table's deletedFileRetentionDuration (7 days).
    report = maintain(spark, lake, MaintenanceConfig(tables=["clicks", "views", "later"], vacuum_retention_hours=1))

    statuses = {t.table: t.status for t in report.tables}
    assert statuses == {"clicks": "failed", "views": "failed", "later": "missing"}
    assert "retention" in report.tables[0].error
    assert not report.ok and json.loads(report.to_json())["ok"] is False


def test_a_conflicting_commit_is_retried_and_fails_only_its_table_once_retries_run_out(spark, lake, monkeypatch):
    _append(spark, lake, 2)
    _append(spark, lake, 2, spec=TableSpec("views", SPEC.schema, ()))
    vacuum = maintenance._vacuum
    conflicts = {"clicks": 1, "views": 10}

    def conflicting_vacuum(session, lake: Lake, name: str, config: MaintenanceConfig) -> int:
        if conflicts[name]:
            conflicts[name] -= 1
            raise ConcurrentAppendException(message="a concurrent transaction added files")
        return vacuum(session, lake, name, config)

    monkeypatch.setattr(maintenance, "_vacuum", conflicting_vacuum)

    report = maintain(spark, lake, MaintenanceConfig(conflict_retries=2, retry_backoff_s=0.01))

    clicks, views = report.tables
    assert (clicks.status, clicks.conflicts, clicks.checkpoint_version) == ("ok", 1, clicks.version_after)
    assert (views.status, views.conflicts) == ("failed", 3) and "ConcurrentAppendException" in views.error
    assert not report.ok


def test_two_runs_at_once_never_duplicate_rows(spark, lake):
    _append(spark, lake, 8)
    start = threading.Barrier(2)
    results = []

    def run() -> None:
        start.wait()
        results.append(maintain(spark, Lake(lake.config), COMPACT_AT_4).tables[0])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)

    # Delta detects two compactions of the same files: the loser retries and finds nothing to do.
    assert sorted(r.compaction for r in results) == ["compacted", "nothing_to_compact"]
    assert all(r.status == "ok" for r in results)
    assert _ids(lake) == list(range(8 * 20))


def test_the_job_prints_the_report_last_and_fails_when_a_table_failed(spark, lake, tmp_path):
    _append(spark, lake, 4, days=DAYS[:1])
    # The job builds (and stops) its own SparkSession: run it as the scheduler does, in its own process.
    env = {
        **os.environ,
        "REELHOUSE__LAKE__ROOT": str(tmp_path),
        "REELHOUSE__MAINTENANCE__MIN_FILES_TO_COMPACT": "4",
        "REELHOUSE__SPARK__CONF__SPARK.DRIVER.MEMORY": "1g",
    }
    command = [
        sys.executable,
        str(PROJECT_DIR / "jobs" / "maintain_tables.py"),
        "--config",
        str(PROJECT_DIR / "conf" / "local.yaml"),
    ]

    refused = subprocess.run(
        [*command, "--tables", "clicks, missing", "--retention-hours", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert refused.returncode == 1, refused.stderr[-2000:]
    report = json.loads(refused.stdout.strip().splitlines()[-1])
    assert [t["status"] for t in report["tables"]] == ["failed", "missing"]
    assert report["tables"][0]["compaction"] == "compacted", "compaction ran before the refused VACUUM"
    assert lake.version(SPEC.name) > report["tables"][0]["version_before"]

    from reelhouse.cli import main as cli

    assert cli(["maintain", "--config", str(PROJECT_DIR / "conf" / "local.yaml"), "--retention-hours", "-1"]) == 2
