"""gold feature tables -> online store: one feature time per entity, written by the executors.

spark-submit jobs/materialize_online.py --config conf/local.yaml                 # the latest feature time
spark-submit jobs/materialize_online.py --feature-time 2026-11-22T00:00:00+00:00 --entities video,user
"""

import sys

from reelhouse.arguments import add_materialize_arguments
from reelhouse.jobs import job_parser, run_spark_job
from reelhouse.online.materialize import materialize_online, parse_entities


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    add_materialize_arguments(parser)
    args = parser.parse_args(argv)
    entities = parse_entities(args.entities)
    return run_spark_job(
        args, "materialize_online", lambda spark, config: materialize_online(spark, config, args.feature_time, entities)
    )


if __name__ == "__main__":
    sys.exit(main())
