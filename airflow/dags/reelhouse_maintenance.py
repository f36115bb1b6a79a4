"""
# reelhouse_maintenance — compaction, VACUUM and checkpoints of the lake

Runs `jobs/maintain_tables.py` once a day, after the daily rebuild: small files are compacted,
files removed longer ago than `maintenance.vacuum_retention_hours` are vacuumed, and each table's
log is checkpointed. Safe while the streams and other jobs write (conflicting commits are retried
by the job). The job's JSON report is the task's result; a table that failed fails the task,
after the others were maintained.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag, task

from reelhouse.orchestration.settings import START_DATE, default_args


@dag(
    dag_id="reelhouse_maintenance",
    schedule=CronDataIntervalTimetable("30 3 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["reelhouse", "maintenance"],
    doc_md=__doc__,
)
def reelhouse_maintenance() -> None:
    @task.bash(task_id="maintain_tables")
    def maintain_tables() -> str:
        from reelhouse.orchestration.commands import maintain_command
        from reelhouse.orchestration.settings import config_path

        return maintain_command(config_path())

    maintain_tables()


reelhouse_maintenance()
