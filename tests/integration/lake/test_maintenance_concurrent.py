"""Table maintenance running against the live ingestion stream: no event lost, none duplicated."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from reelhouse.config.models import MaintenanceConfig
from reelhouse.lake import Lake
from reelhouse.lake.delta import commit_metadata
from reelhouse.lake.maintenance import MaintenanceReport, maintain
from reelhouse.streaming.ingest import IngestionJob, run_ingestion
from reelhouse.streaming.tables import BRONZE_EVENTS
from tests.integration.streaming.conftest import produce_events, valid_event

pytestmark = pytest.mark.integration

EVENTS = 3_000
CHUNKS = 12


def test_maintenance_while_the_stream_commits_loses_and_duplicates_nothing(spark, ingest_config):
    # Small micro-batches, so the stream commits many times while maintenance runs.
    ingest_config = ingest_config.model_copy(
        update={"ingest": ingest_config.ingest.model_copy(update={"max_offsets_per_trigger": 250})}
    )
    now_ms = int(time.time() * 1000)
    events = [valid_event(i, now_ms, prefix="mnt") for i in range(EVENTS)]
    size = EVENTS // CHUNKS
    # As aggressive as maintenance gets: compact two small files, vacuum with no retention at all.
    settings = MaintenanceConfig(
        min_files_to_compact=2, vacuum_retention_hours=0, enforce_retention=False, retry_backoff_s=0.2
    )
    lake = Lake(ingest_config.lake)
    reports: list[MaintenanceReport] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def produce_in_chunks() -> None:
        try:
            for start in range(0, EVENTS, size):
                produce_events(ingest_config, events[start : start + size])
                time.sleep(0.7)
        except BaseException as e:  # surfaced by the assertions below
            failures.append(e)

    def maintain_repeatedly() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                reports.append(maintain(spark, lake, settings))
            except BaseException as e:
                failures.append(e)
                return
            maintenance_runs.append((started, time.monotonic()))
            stop.wait(0.3)

    job = IngestionJob(spark, ingest_config)
    batch_runs: list[tuple[float, float]] = []
    maintenance_runs: list[tuple[float, float]] = []
    process_batch = job.process_batch

    def timed_batch(records, batch_id: int) -> None:  # noqa: ANN001 - a Spark DataFrame
        started = time.monotonic()
        process_batch(records, batch_id)
        batch_runs.append((started, time.monotonic()))

    job.process_batch = timed_batch  # type: ignore[method-assign]
    query = job.start("processing_time")
    producer = threading.Thread(target=produce_in_chunks)
    maintainer = threading.Thread(target=maintain_repeatedly)
    try:
        producer.start()
        maintainer.start()
        producer.join(120)
        deadline = time.monotonic() + 180
        # The stream's own count: reading bronze now could plan on files the next vacuum deletes.
        while job.result.bronze_rows < EVENTS and time.monotonic() < deadline and query.isActive:
            time.sleep(0.5)
    finally:
        stop.set()
        maintainer.join(120)
        query.stop()
    assert query.exception() is None, f"the stream failed: {query.exception()}"
    assert not failures, failures

    run_ingestion(spark, ingest_config, trigger="available_now")  # drain whatever is left
    final = maintain(spark, lake, settings)

    ids = lake.to_arrow(BRONZE_EVENTS.name, columns=["event_id"]).column("event_id").to_pylist()
    duplicated = [event_id for event_id, n in Counter(ids).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} events written twice, e.g. {duplicated[:3]}"
    assert set(ids) == {e["event_id"] for e in events}, f"{EVENTS - len(set(ids))} events lost"
    runs = [t for r in reports + [final] for t in r.tables]
    assert all(t.status == "ok" for t in runs), [t for t in runs if t.status != "ok"]
    bronze_runs = [t for t in runs if t.table == BRONZE_EVENTS.name]
    # Maintenance really did rewrite and delete bronze files while the stream was appending.
    assert sum(t.files_removed for t in bronze_runs) > 0
    assert sum(t.files_vacuumed for t in bronze_runs) > 0
    assert job.result.batches >= EVENTS // 250
    # While executors were writing a micro-batch's files and the driver committing them.
    overlapping = [m for m in maintenance_runs if any(m[0] < b[1] and b[0] < m[1] for b in batch_runs)]
    assert overlapping, "maintenance never ran during a micro-batch"
    history = sorted(lake.history(BRONZE_EVENTS.name, spark=spark), key=lambda c: c["version"])
    batches = [c["version"] for c in history if "reelhouse.batch_id" in commit_metadata(c)]
    compactions = [c["version"] for c in history if c["operation"] == "OPTIMIZE"]
    assert any(batches[0] < v < batches[-1] for v in compactions), "no compaction between two stream commits"
