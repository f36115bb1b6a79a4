"""The speed layer: Kafka -> hourly feature tiles (Spark state) -> online store + `<entity>_features_rt`.

spark-submit jobs/stream_features.py --config conf/local.yaml [--trigger available_now]
"""

import sys

from reelhouse.arguments import add_trigger_argument
from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.speed.job import run_speed_layer


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    add_trigger_argument(parser)
    args = parser.parse_args(argv)
    return run_spark_job(args, "stream_features", lambda spark, config: run_speed_layer(spark, config, args.trigger))


if __name__ == "__main__":
    sys.exit(main())
