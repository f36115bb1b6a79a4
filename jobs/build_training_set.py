"""silver_events + gold features -> the point-in-time training set (training.table), replaced per build.

    spark-submit jobs/build_training_set.py --config conf/local.yaml \
        --start 2026-11-01T00:00:00+00:00 --end 2026-11-22T00:00:00+00:00
"""

import datetime as dt
import sys

from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.training.dataset import build_training_set


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--start", required=True, type=dt.datetime.fromisoformat, help="first impression time (ISO, UTC)")
    parser.add_argument("--end", required=True, type=dt.datetime.fromisoformat, help="impressions before this time (ISO, UTC)")
    args = parser.parse_args(argv)
    return run_spark_job(
        args, "build_training_set", lambda spark, config: build_training_set(spark, config, args.start, args.end)
    )


if __name__ == "__main__":
    sys.exit(main())
