"""Gate registered ranker versions against the champion: the `champion` alias moves only to a better one.

    python jobs/promote_ranker.py --config conf/local.yaml --versions 7,8

The versions must come from one training-set snapshot (`jobs/train_ranker.py --no-promote` runs
on the same table version); the current champion is scored on that snapshot's test split. Prints
the decision (both scores, the reason, who holds `champion` and `challenger`) as JSON on the last
line; exit code 2 on an error.
"""

import sys

from reelhouse.jobs import job_parser, run_job
from reelhouse.training.promotion import promote_versions


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--versions", required=True, help="comma-separated registered versions to gate")
    args = parser.parse_args(argv)
    try:
        versions = [int(v) for v in args.versions.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--versions takes comma-separated integers, got {args.versions!r}")
    return run_job(args, "promote_ranker", lambda config: promote_versions(config, versions))


if __name__ == "__main__":
    sys.exit(main())
