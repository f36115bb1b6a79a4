"""Table maintenance (compaction, VACUUM, checkpoints) on real Delta tables written through the lake API."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from reelhouse.config import LakeConfig
from reelhouse.config.models import MaintenanceConfig
from reelhouse.lake import AppTransaction, Lake, TableSpec, maintenance
from reelhouse.lake.maintenance import LEASE_APP_ID, _claim, discover_tables, maintain

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[3]
DAYS = (dt.date(2026, 11, 20), dt.date(2026, 11, 21))
SPEC = TableSpec(
    "clicks",
    pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("day", pa.date32(), nullable=False)]),
    ("day",),
)


def _append(lake: Lake, commits: int, rows: int = 20, days: tuple[dt.date, ...] = DAYS, spec: TableSpec = SPEC) -> None:
    """``commits`` small commits, as a stream makes them, each with its app transaction."""
    writer = lake.file_writer(spec)
    start = lake.to_arrow(spec.name).num_rows if lake.exists(spec.name) else 0
    batch_id = (lake.committed_version(spec.name, "stream") or -1) + 1
    for n in range(commits):
        ids = range(start + n * rows, start + (n + 1) * rows)
        batch = pa.table({"id": list(ids), "day": [days[n % len(days)]] * rows}, schema=spec.schema)
        lake.commit(spec, writer.write(batch), txn=AppTransaction("stream", batch_id + n))


def _ids(lake: Lake, name: str = SPEC.name, version: int | None = None) -> list[int]:
    return sorted(lake.to_arrow(name, version=version, columns=["id"]).column("id").to_pylist())


def _data_files(lake: Lake, name: str = SPEC.name) -> set[str]:
    root = Path(lake.uri(name))
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


def test_compaction_then_vacuum_keeps_every_row_and_time_travel_until_the_retention(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 30)
    before_ids, old_version = _ids(lake), lake.version(SPEC.name)
    old_files = _data_files(lake)
    assert len(old_files) == 30

    first = maintain(lake, MaintenanceConfig()).tables[0]

    assert first.status == "ok" and first.compaction == "compacted"
    assert (first.files_before, first.files_removed, first.files_added, first.files_after) == (30, 30, 2, 2)
    assert first.partitions_compacted == 2
    assert _ids(lake) == before_ids
    # Within the retention nothing is deleted: the version before compaction still reads.
    assert first.files_vacuumed == 0 and _data_files(lake) >= old_files
    assert _ids(lake, version=old_version) == before_ids
    assert (Path(lake.uri(SPEC.name)) / "_delta_log" / f"{first.checkpoint_version:020d}.checkpoint.parquet").exists()
    assert first.checkpoint_version == first.version_after
    # The stream's idempotency survives compaction, checkpoint and log cleanup.
    assert lake.committed_version(SPEC.name, "stream") == 29

    second = maintain(lake, MaintenanceConfig(vacuum_retention_hours=0, enforce_retention=False)).tables[0]

    assert second.compaction == "nothing_to_compact"
    assert second.files_vacuumed == 30
    assert not (_data_files(lake) & old_files), "the compacted-away files are gone"
    assert _ids(lake) == before_ids
    with pytest.raises(Exception):  # noqa: B017 - delta-rs raises various types: their version can no longer be read
        _ids(lake, version=old_version)

    third = maintain(lake, MaintenanceConfig(vacuum_retention_hours=0, enforce_retention=False)).tables[0]

    # The log still holds the tombstones; files already gone are neither counted nor committed again.
    assert third.files_vacuumed == 0 and third.version_after == third.version_before


def test_only_partitions_with_enough_small_files_are_compacted(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 12, days=DAYS[:1])
    _append(lake, 3, days=DAYS[1:])
    before = lake.version(SPEC.name)

    result = maintain(lake, MaintenanceConfig(min_files_to_compact=5)).tables[0]

    assert (result.files_removed, result.files_added, result.partitions_compacted) == (12, 1, 1)
    table = lake.snapshot(SPEC.name)
    per_day = pa.table(table.get_add_actions(flatten=True)).column("partition.day").to_pylist()
    assert sorted(per_day) == [DAYS[0]] + [DAYS[1]] * 3
    assert _ids(lake) == list(range(15 * 20))

    untouched = maintain(lake, MaintenanceConfig(min_files_to_compact=5)).tables[0]

    assert untouched.compaction == "nothing_to_compact"
    assert untouched.version_after == untouched.version_before, "nothing to do commits nothing"
    assert before < untouched.version_before


def test_a_stream_commit_between_planning_and_committing_a_compaction_is_kept(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 12, days=DAYS[:1])
    planned = lake.snapshot(SPEC.name)
    _append(lake, 1, days=DAYS[:1])  # the stream's next micro-batch, committed meanwhile

    metrics = planned.optimize.compact()

    assert metrics["numFilesRemoved"] == 12
    assert _ids(lake) == list(range(13 * 20))
    assert len(lake.snapshot(SPEC.name).file_uris()) == 2
    assert lake.committed_version(SPEC.name, "stream") == 12


def test_every_delta_table_under_the_root_is_found_and_a_bad_setting_fails_only_its_table(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    other = TableSpec("views", SPEC.schema, ())
    _append(lake, 3)
    _append(lake, 3, spec=other)
    (tmp_path / "not_a_table").mkdir()
    (tmp_path / "not_a_table" / "x.parquet").write_bytes(b"")

    assert discover_tables(lake) == ["clicks", "views"]
    assert discover_tables(Lake(LakeConfig(root=str(tmp_path / "nothing-here")))) == []

    # delta-rs refuses a retention below the table's deletedFileRetentionDuration (7 days).
    report = maintain(lake, MaintenanceConfig(tables=["clicks", "views", "later"], vacuum_retention_hours=1))

    statuses = {t.table: t.status for t in report.tables}
    assert statuses == {"clicks": "failed", "views": "failed", "later": "missing"}
    assert "retention" in report.tables[0].error
    assert not report.ok and json.loads(report.to_json())["ok"] is False


def test_a_conflicting_commit_is_retried_and_fails_only_its_table_once_retries_run_out(tmp_path, monkeypatch):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 3)
    _append(lake, 3, spec=TableSpec("views", SPEC.schema, ()))
    vacuum = maintenance._vacuum
    conflicts = {"clicks": 1, "views": 10}

    def conflicting_vacuum(lake: Lake, name: str, config: MaintenanceConfig) -> int:
        if conflicts[name]:
            conflicts[name] -= 1
            raise CommitFailedError("Failed to commit transaction: a concurrent transaction deleted data")
        return vacuum(lake, name, config)

    monkeypatch.setattr(maintenance, "_vacuum", conflicting_vacuum)

    report = maintain(lake, MaintenanceConfig(conflict_retries=2, retry_backoff_s=0.01))

    clicks, views = report.tables
    assert (clicks.status, clicks.conflicts, clicks.checkpoint_version) == ("ok", 1, clicks.version_after)
    assert (views.status, views.conflicts) == ("failed", 3) and "concurrent" in views.error
    assert not report.ok


def test_a_held_compaction_claim_makes_another_run_skip_compaction_until_it_expires(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 12)
    claim = _claim(lake.snapshot(SPEC.name), lease_minutes=60)

    busy = maintain(lake, MaintenanceConfig(min_files_to_compact=2)).tables[0]

    assert busy.status == "ok" and busy.compaction == "busy" and busy.files_removed == 0
    assert lake.snapshot(SPEC.name).transaction_version(LEASE_APP_ID) == claim, "someone else's claim is left alone"

    # A claim older than the lease (its holder died) is taken over.
    taken = maintain(lake, MaintenanceConfig(min_files_to_compact=2, compaction_lease_minutes=1e-6)).tables[0]

    assert taken.compaction == "compacted"
    released = lake.snapshot(SPEC.name).transaction_version(LEASE_APP_ID)
    assert released is not None and released % 2 == 0 and released > claim
    assert _ids(lake) == list(range(12 * 20))


def test_two_runs_at_once_never_duplicate_rows(tmp_path):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 24)
    start = threading.Barrier(2)
    results = []

    def run() -> None:
        start.wait()
        results.append(maintain(Lake(lake.config), MaintenanceConfig(min_files_to_compact=2)).tables[0])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert sorted(r.compaction for r in results) in (["busy", "compacted"], ["compacted", "nothing_to_compact"])
    assert all(r.status == "ok" for r in results)
    assert _ids(lake) == list(range(24 * 20))


def test_delta_rs_lets_two_stale_compactions_of_the_same_files_both_commit(tmp_path):
    # Why maintenance claims a table before compacting: without the claim, two overlapping
    # runs duplicate rows. If this starts failing, delta-rs detects the conflict itself.
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 4, days=DAYS[:1])
    first, second = lake.snapshot(SPEC.name), lake.snapshot(SPEC.name)

    first.optimize.compact()
    second.optimize.compact()

    assert len(_ids(lake)) == 2 * 4 * 20


def test_the_job_prints_the_report_last_and_fails_when_a_table_failed(tmp_path, monkeypatch, capsys):
    lake = Lake(LakeConfig(root=str(tmp_path)))
    _append(lake, 12, days=DAYS[:1])
    monkeypatch.setenv("REELHOUSE__LAKE__ROOT", str(tmp_path))
    spec = importlib.util.spec_from_file_location("maintain_tables", PROJECT_DIR / "jobs" / "maintain_tables.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    config = str(PROJECT_DIR / "conf" / "local.yaml")

    assert job.main(["--config", config, "--tables", "clicks", "--retention-hours", "0"]) == 1
    refused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert refused["tables"][0]["status"] == "failed" and refused["tables"][0]["compaction"] == "compacted"

    assert job.main(["--config", config, "--tables", "clicks, missing"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [t["status"] for t in report["tables"]] == ["ok", "missing"]
    assert DeltaTable(lake.uri("clicks")).version() == report["tables"][0]["version_after"]

    from reelhouse.cli import main as cli

    assert cli(["maintain", "--config", config, "--retention-hours", "-1"]) == 2
