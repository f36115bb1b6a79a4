"""Kafka activity logs -> Delta `bronze_events` (valid) and `quarantine_events` (invalid), exactly once.

spark-submit jobs/ingest_events.py --config conf/local.yaml [--trigger available_now]
"""

import sys

from reelhouse.arguments import add_trigger_argument
from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.streaming.ingest import run_ingestion


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    add_trigger_argument(parser)
    args = parser.parse_args(argv)
    return run_spark_job(args, "ingest_events", lambda spark, config: run_ingestion(spark, config, args.trigger))


if __name__ == "__main__":
    sys.exit(main())
