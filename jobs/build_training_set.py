"""silver_events + gold features -> the point-in-time training set (training.table), replaced per build.

    spark-submit jobs/build_training_set.py --config conf/local.yaml \
        --start 2026-11-01T00:00:00+00:00 --end 2026-11-22T00:00:00+00:00
    spark-submit jobs/build_training_set.py --config conf/local.yaml --days 2   # the 2 days before this hour

Pass --start and --end for a reproducible build; --end defaults to the start of the current UTC hour.
"""

import datetime as dt
import sys

from reelhouse.arguments import utc_time
from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.training.dataset import build_training_set


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    first = parser.add_mutually_exclusive_group(required=True)
    first.add_argument("--start", type=utc_time, help="first impression time (ISO, UTC)")
    first.add_argument("--days", type=float, help="or: impressions of this many days before --end")
    parser.add_argument("--end", type=utc_time, help="impressions before this time (ISO, UTC)")
    args = parser.parse_args(argv)
    end = args.end or dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start = args.start or end - dt.timedelta(days=args.days)
    return run_spark_job(
        args, "build_training_set", lambda spark, config: build_training_set(spark, config, start, end)
    )


if __name__ == "__main__":
    sys.exit(main())
