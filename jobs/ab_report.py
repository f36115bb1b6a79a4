"""silver_events -> the A/B report of the configured experiments: Delta table ab_results, markdown and a plot.

    spark-submit jobs/ab_report.py --config conf/local.yaml \
        --start 2026-11-21T00:00:00+00:00 --end 2026-11-22T00:00:00+00:00 [--experiment ranker-vs-baselines]

Re-running an interval replaces its rows (idempotent). The report goes to --out, by default
<data_dir>/ab/<experiment>/<start>_<end>/. Exit code 1 when an experiment could not be analysed.
"""

import sys
from pathlib import Path

from reelhouse.arguments import utc_time
from reelhouse.experiments.report import ab_report
from reelhouse.jobs import job_parser, run_spark_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--start", type=utc_time, required=True, help="first impression time (ISO, UTC)")
    parser.add_argument("--end", type=utc_time, required=True, help="impressions before this time (ISO, UTC)")
    parser.add_argument(
        "--experiment", help="analyse only this experiment (default: every one running in the interval)"
    )
    parser.add_argument("--out", type=Path, help="directory for <experiment>.md/.png/.json")
    args = parser.parse_args(argv)
    return run_spark_job(
        args,
        "ab_report",
        lambda spark, config: ab_report(
            spark, config, args.start, args.end, experiment=args.experiment, out_dir=args.out
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
