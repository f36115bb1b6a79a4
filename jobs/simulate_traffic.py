"""Produce simulated app traffic into the events topic and write the user/video catalogue.

    python jobs/simulate_traffic.py --config conf/local.yaml --rate 0 --events 1000000

Prints the run report as one JSON line; exit code 2 on an error (e.g. undelivered messages).
"""

from __future__ import annotations

import sys

from reelhouse.jobs import job_parser, run_job
from reelhouse.simulator import run_simulation, simulation_options_from_args
from reelhouse.simulator.options import add_simulation_arguments


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    add_simulation_arguments(parser)
    args = parser.parse_args(argv)
    return run_job(
        args, "simulate_traffic", lambda config: run_simulation(config, simulation_options_from_args(config, args))
    )


if __name__ == "__main__":
    sys.exit(main())
