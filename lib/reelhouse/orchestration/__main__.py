"""``python -m reelhouse.orchestration``: what ``make airflow``, ``make mlflow`` and ``make stop`` run.

python -m reelhouse.orchestration airflow --config conf/local.yaml [--port 8080]
python -m reelhouse.orchestration mlflow --config conf/local.yaml [--port 5000]
python -m reelhouse.orchestration run-daily --config conf/local.yaml [--port 8080]  # in the running Airflow
python -m reelhouse.orchestration stop --config conf/local.yaml
python -m reelhouse.orchestration connection --config conf/local.yaml   # the spark_default env var
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.jobs import configure_logging
from reelhouse.orchestration.settings import default_config_path


def _show(text: str) -> None:
    print(text, end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reelhouse.orchestration", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["airflow", "mlflow", "run-daily", "stop", "connection"])
    parser.add_argument(
        "--config", default=None, help="YAML config file (default: $REELHOUSE_CONFIG or conf/local.yaml)"
    )
    parser.add_argument("--port", type=int, default=None, help="port of the UI (airflow: 8080, mlflow: 5000)")
    args = parser.parse_args(argv)
    configure_logging()
    from reelhouse.orchestration import services
    from reelhouse.orchestration.connections import spark_connection_env

    config_path = args.config or default_config_path()
    try:
        config = load_config(config_path)
        if args.action == "airflow":
            service = services.start_airflow(config, config_path, args.port or services.AIRFLOW_PORT, progress=_show)
            print(service.describe())
        elif args.action == "mlflow":
            print(services.start_mlflow_ui(config, args.port or services.MLFLOW_PORT, progress=_show))
        elif args.action == "run-daily":
            run = services.run_daily(config, args.port or services.AIRFLOW_PORT, progress=_show)
            print(json.dumps(run, indent=2))
            if run["state"] != "success":
                return 1
        elif args.action == "stop":
            stopped = services.stop_all(config)
            print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
        else:
            for name, value in spark_connection_env(config).items():
                print(f"export {name}={shlex.quote(value)}")
    except ReelhouseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
