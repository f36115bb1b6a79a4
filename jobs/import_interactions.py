"""Import an interaction log (CSV or Parquet) into the lake as the Delta table `imported_interactions`.

Malformed rows are counted per reason and kept in imported_interactions_quarantine.parquet beside
the table; the JSON report is printed. The log is read and validated in this process; the tables
are written by delta-spark.

    python jobs/import_interactions.py --config conf/local.yaml --path ratings.csv \\
        --user-col userId --item-col movieId --time-col timestamp --rating-col rating
"""

import sys

from reelhouse.arguments import add_interaction_log_arguments
from reelhouse.config import ReelhouseConfig
from reelhouse.evaluation.lake_import import import_interactions
from reelhouse.evaluation.logfile import ImportReport, LogColumns, SplitPolicy
from reelhouse.jobs import job_parser, run_spark_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--path", required=True, help="the interaction log (.csv, .parquet or a Parquet directory)")
    add_interaction_log_arguments(parser)
    args = parser.parse_args(argv)
    columns = LogColumns(args.user_col, args.item_col, args.time_col, args.rating_col, args.split_col)

    def body(spark, config: ReelhouseConfig) -> ImportReport:
        policy = SplitPolicy(args.valid_fraction, args.test_fraction, args.split_seed, method=args.split_method)
        return import_interactions(
            spark, config, args.path, columns, policy, args.item_features, args.item_features_col
        )

    return run_spark_job(args, "import_interactions", body)


if __name__ == "__main__":
    sys.exit(main())
