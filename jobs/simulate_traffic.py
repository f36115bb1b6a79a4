"""Produce simulated app traffic into the events topic and write the user/video catalogue.

    python jobs/simulate_traffic.py --config conf/local.yaml --rate 0 --events 1000000

Prints the run report as one JSON line; exit code 2 on an error (e.g. undelivered messages).
"""

from __future__ import annotations

import sys

from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.jobs import configure_logging, job_parser
from reelhouse.simulator import run_simulation, simulation_options_from_args
from reelhouse.simulator.options import add_simulation_arguments


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    add_simulation_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        config = load_config(args.config)
        report = run_simulation(config, simulation_options_from_args(config, args))
    except ReelhouseError as e:
        print(f"simulate_traffic: error: {e}", file=sys.stderr)
        return 2
    print(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
