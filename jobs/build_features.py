"""silver_events -> video/user/user_topic feature tables as of the end of a data interval.

spark-submit jobs/build_features.py --config conf/local.yaml --end 2026-11-22T00:00:00+00:00
"""

import sys

from reelhouse.arguments import utc_time
from reelhouse.features.gold import build_features
from reelhouse.jobs import job_parser, run_spark_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--end", required=True, type=utc_time, help="interval end = feature time (ISO, UTC)")
    args = parser.parse_args(argv)
    return run_spark_job(args, "build_features", lambda spark, config: build_features(spark, config, args.end))


if __name__ == "__main__":
    sys.exit(main())
