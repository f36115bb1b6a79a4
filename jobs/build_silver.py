"""bronze_events -> silver_events for one data interval, after MERGE-ing the dimensions.

spark-submit jobs/build_silver.py --config conf/local.yaml --start 2026-11-21T00:00:00+00:00 --end 2026-11-22T00:00:00+00:00
"""

import sys

from reelhouse.arguments import utc_time
from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.silver.build import build_silver


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--start", required=True, type=utc_time, help="interval start (ISO, UTC)")
    parser.add_argument("--end", required=True, type=utc_time, help="interval end, exclusive")
    args = parser.parse_args(argv)
    return run_spark_job(args, "build_silver", lambda spark, config: build_silver(spark, config, args.start, args.end))


if __name__ == "__main__":
    sys.exit(main())
