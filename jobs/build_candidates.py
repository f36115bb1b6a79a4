"""silver_events (+ dim_videos, embeddings) -> user_candidates and item_neighbours as of an interval end.

spark-submit jobs/build_candidates.py --config conf/local.yaml --as-of 2026-11-22T00:00:00+00:00
"""

import sys

from reelhouse.arguments import utc_time
from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.recall.candidates import build_candidates


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--as-of", required=True, type=utc_time, help="interval end (ISO, with a UTC offset)")
    args = parser.parse_args(argv)
    return run_spark_job(args, "build_candidates", lambda spark, config: build_candidates(spark, config, args.as_of))


if __name__ == "__main__":
    sys.exit(main())
