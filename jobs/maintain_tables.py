"""Compact, vacuum and checkpoint the lake's Delta tables; safe while the streaming jobs run.

    python jobs/maintain_tables.py --config conf/local.yaml [--tables bronze_events,quarantine_events] [--retention-hours 168]

No Spark: delta-rs does the work in this process. Prints the report as JSON on the last line;
exits 1 when a table failed (the others are still maintained), 2 on a configuration error.
"""

import sys

from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.jobs import configure_logging, job_parser
from reelhouse.lake.maintenance import run_maintenance, table_names


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--tables", type=table_names, default=None, help="comma-separated tables (default: config)")
    parser.add_argument("--retention-hours", type=int, default=None, help="VACUUM retention (default: config)")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        report = run_maintenance(load_config(args.config), args.tables, args.retention_hours)
    except ReelhouseError as e:
        print(f"maintain_tables: error: {e}", file=sys.stderr)
        return 2
    print(report.to_json())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
