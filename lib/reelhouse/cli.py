"""The ``reelhouse`` console script. Each subcommand loads config and calls one library function.

Heavy modules (pyspark, deltalake) are imported inside the subcommands that need them, so
``reelhouse stack status`` answers quickly.
"""

from __future__ import annotations

import argparse
import sys

from reelhouse.arguments import add_maintenance_arguments, add_materialize_arguments, add_trigger_argument
from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.jobs import configure_logging, job_session


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="YAML config file (default: $REELHOUSE_CONFIG or conf/local.yaml)"
    )


def _cmd_stack(args: argparse.Namespace) -> int:
    from reelhouse.stack import LocalStack

    stack = LocalStack(load_config(args.config))
    if args.action == "up":
        stack.up(spark_cluster=args.spark_cluster)
    elif args.action == "down":
        stack.down()
    print(stack.describe())
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from reelhouse.simulator import run_simulation, simulation_options_from_args
    from reelhouse.simulator.options import reject_closed_loop_arguments

    config = load_config(args.config)
    if args.closed_loop:
        return _closed_loop(config, args)
    reject_closed_loop_arguments(args)
    report = run_simulation(config, simulation_options_from_args(config, args))
    print(report.to_json())
    return 0


def _closed_loop(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a ReelhouseConfig
    import logging

    from reelhouse.simulator.closed_loop import run_closed_loop
    from reelhouse.simulator.options import closed_loop_options_from_args

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would drown the progress
    if args.days is not None:
        import orjson

        from reelhouse.simulator.days import run_loop
        from reelhouse.simulator.options import loop_options_from_args

        result = run_loop(args.config, loop_options_from_args(args))
        print(orjson.dumps(result).decode())
        return 0
    report, markdown = run_closed_loop(config, closed_loop_options_from_args(config, args))
    print(markdown)
    print(f"report: {report.paths['markdown']}")
    print(report.to_json())
    return 0 if report.ok else 1


def _run_stream(args: argparse.Namespace, name: str, run) -> int:  # noqa: ANN001 - a run_* function
    config = load_config(args.config)
    with job_session(config, name) as spark:
        print(run(spark, config, trigger=args.trigger).to_json())
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from reelhouse.streaming.ingest import run_ingestion

    return _run_stream(args, "ingest_events", run_ingestion)


def _cmd_stream_features(args: argparse.Namespace) -> int:
    from reelhouse.speed.job import run_speed_layer

    return _run_stream(args, "stream_features", run_speed_layer)


def _cmd_materialize(args: argparse.Namespace) -> int:
    from reelhouse.online.materialize import materialize_online, parse_entities

    config = load_config(args.config)
    entities = parse_entities(args.entities)
    with job_session(config, "materialize_online") as spark:
        print(materialize_online(spark, config, args.feature_time, entities).to_json())
    return 0


def _cmd_maintain(args: argparse.Namespace) -> int:
    from reelhouse.lake import Lake
    from reelhouse.lake.maintenance import maintain, maintenance_settings

    config = load_config(args.config)
    settings = maintenance_settings(
        config, args.tables, args.retention_hours
    )  # a bad override fails before Spark starts
    with job_session(config, "maintain_tables") as spark:
        report = maintain(spark, Lake(config.lake), settings)
    print(report.to_json())
    return 0 if report.ok else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.write_openapi:
        from pathlib import Path

        from reelhouse.serving.app import openapi_document

        path = Path(args.write_openapi)
        path.write_bytes(openapi_document(config))
        print(f"wrote the feed service's OpenAPI document to {path}")
        return 0
    from reelhouse.serving.server import run_server

    run_server(config, host=args.host, port=args.port, workers=args.workers, config_path=args.config)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from reelhouse.demo import run_demo

    return run_demo(
        args.config,
        keep_stack=args.keep_stack,
        closed_loop_s=args.closed_loop_seconds,
        closed_loop_users=args.closed_loop_users,
    )


def _cmd_evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from reelhouse.evaluation.options import check_evaluate_arguments
    from reelhouse.evaluation.run import options_from_args, run_evaluation

    check_evaluate_arguments(parser, args)
    config = load_config(args.config)
    if args.off_policy:
        return _off_policy(config, args)
    sessions = []

    with ExitStack() as stack:

        def spark():  # noqa: ANN202 - started on first use: a CSV without ALS needs no Spark
            if not sessions:
                sessions.append(stack.enter_context(job_session(config, "evaluate")))
            return sessions[0]

        run = run_evaluation(config, options_from_args(args), spark)
    print(run.markdown)
    print(f"report: {run.paths['markdown']}  plot: {run.paths['plot']}")
    print(run.result.to_json())
    return 0


def _off_policy(config, args: argparse.Namespace) -> int:  # noqa: ANN001 - a ReelhouseConfig
    from reelhouse.evaluation.off_policy import DEFAULT_CLIP, evaluate_off_policy

    clip = DEFAULT_CLIP if args.clip is None else args.clip
    result = evaluate_off_policy(config, args.model, args.start, args.end, clip=clip)
    print(result.summary(), file=sys.stderr)
    print(result.to_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelhouse", description="reelhouse: a TikTok-style recommendation lakehouse."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="start, stop or inspect the local Kafka broker (and Spark cluster)")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument(
        "--spark-cluster",
        action="store_true",
        help="with up: also start a Spark standalone cluster, or add one to the running stack (down always stops it)",
    )
    _add_config(stack)
    stack.set_defaults(func=_cmd_stack)

    simulate = sub.add_parser(
        "simulate", help="produce simulated app traffic into Kafka, or (--closed-loop) drive the feed service"
    )
    _add_config(simulate)
    from reelhouse.simulator.options import add_closed_loop_arguments, add_simulation_arguments

    add_simulation_arguments(simulate)
    add_closed_loop_arguments(simulate)
    simulate.set_defaults(func=_cmd_simulate)

    ingest = sub.add_parser("ingest", help="run the Kafka -> bronze ingestion stream in this process")
    _add_config(ingest)
    add_trigger_argument(ingest)
    ingest.set_defaults(func=_cmd_ingest)

    speed = sub.add_parser("stream-features", help="run the speed layer (Kafka -> online features) in this process")
    _add_config(speed)
    add_trigger_argument(speed)
    speed.set_defaults(func=_cmd_stream_features)

    materialize = sub.add_parser(
        "materialize", help="load gold features (the latest feature time) into the online store"
    )
    _add_config(materialize)
    add_materialize_arguments(materialize)
    materialize.set_defaults(func=_cmd_materialize)

    maintain = sub.add_parser("maintain", help="compact, vacuum and checkpoint the Delta tables (safe with streams)")
    _add_config(maintain)
    add_maintenance_arguments(maintain)
    maintain.set_defaults(func=_cmd_maintain)

    evaluate = sub.add_parser(
        "evaluate",
        help="offline top-K evaluation of the baselines, recall sources and ranked pipeline, or (--off-policy) "
        "of a registered ranker on the logged impressions",
    )
    _add_config(evaluate)
    from functools import partial

    from reelhouse.evaluation.options import add_evaluate_arguments

    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(func=partial(_cmd_evaluate, evaluate))  # the parser: for combinations it refuses

    serve = sub.add_parser("serve", help="run the For-You feed service (HTTP API on uvicorn)")
    _add_config(serve)
    serve.add_argument("--host", default=None, help="bind address (default: serving.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: serving.port)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1; more need --config)")
    serve.add_argument(
        "--write-openapi",
        default=None,
        metavar="PATH",
        help="write the service's OpenAPI document to PATH (e.g. docs/openapi.json) and exit",
    )
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser("demo", help="the whole loop on one machine: stack, traffic, ingestion, summary")
    _add_config(demo)
    demo.add_argument("--keep-stack", action="store_true", help="leave the local stack running afterwards")
    from reelhouse.demo import CLOSED_LOOP_S, CLOSED_LOOP_USERS

    demo.add_argument(
        "--closed-loop-seconds",
        type=float,
        default=CLOSED_LOOP_S,
        help=f"how long simulated users drive the feed service (default: {CLOSED_LOOP_S:.0f})",
    )
    demo.add_argument(
        "--closed-loop-users",
        type=int,
        default=CLOSED_LOOP_USERS,
        help=f"simulated users of the closed loop (default: {CLOSED_LOOP_USERS})",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except ReelhouseError as e:
        print(f"reelhouse: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
