"""Compact, vacuum and checkpoint the lake's Delta tables with delta-spark; safe while the streaming jobs run.

    python jobs/maintain_tables.py --config conf/local.yaml [--tables bronze_events,quarantine_events] [--retention-hours 168]

Prints the report as JSON on the last line; exits 1 when a table failed (the others are still
maintained), 2 on a configuration error.
"""

import sys

from reelhouse.arguments import add_maintenance_arguments
from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.lake.maintenance import run_maintenance


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    add_maintenance_arguments(parser)
    args = parser.parse_args(argv)
    return run_spark_job(
        args,
        "maintain_tables",
        lambda spark, config: run_maintenance(spark, config, args.tables, args.retention_hours),
    )


if __name__ == "__main__":
    sys.exit(main())
