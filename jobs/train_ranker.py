"""Train the logistic-regression and LightGBM rankers on a training-set snapshot, register them, gate promotion.

    python jobs/train_ranker.py --config conf/local.yaml [--table training_set] [--version 3]
                                [--models lightgbm,logistic_regression] [--no-promote]

No Spark: the Delta table is read with delta-rs in this process. Runs, models and aliases go to
the MLflow store of `mlflow.tracking_uri`. `--models` trains only some kinds; `--no-promote`
registers them without the gate, for `jobs/promote_ranker.py` to gate later (the daily DAG trains
each kind in a task of its own). Prints the result (test metrics of the models and of the
popularity baseline, registered versions, promotion decision) as JSON on the last line; exit
code 2 on an error.
"""

import sys

from reelhouse.jobs import job_parser, run_job
from reelhouse.training.ranker import train_from_lake


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--table", default=None, help="training-set Delta table (default: training.table)")
    parser.add_argument("--version", type=int, default=None, help="table version to train on (default: current)")
    parser.add_argument("--models", default=None, help="comma-separated ranker kinds (default: all)")
    parser.add_argument("--no-promote", action="store_true", help="register only; gate with jobs/promote_ranker.py")
    args = parser.parse_args(argv)
    kinds = None if args.models is None else [k.strip() for k in args.models.split(",") if k.strip()]
    return run_job(
        args,
        "train_ranker",
        lambda config: train_from_lake(config, args.table, args.version, kinds=kinds, promote=not args.no_promote),
    )


if __name__ == "__main__":
    sys.exit(main())
