"""Ingestion benchmark: simulator -> fresh topic -> ingestion job (available-now, local[2]) -> Delta.

In the same run a plain single-process consumer reads the same topic, so the ingestion rate
can be read against the raw consume rate of this machine and broker. Last line: JSON.

    make bench-ingest            # 5M events
    python bench/bench_ingest.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from confluent_kafka import TopicPartition

from reelhouse.config import TopicConfig, load_config
from reelhouse.jobs import configure_logging
from reelhouse.jvm import pom_properties
from reelhouse.kafka import ensure_topic
from reelhouse.kafka.clients import client_options, consumer, delete_topic
from reelhouse.lake import Lake
from reelhouse.simulator import run_simulation, simulation_options_from_args
from reelhouse.simulator.options import add_simulation_arguments
from reelhouse.stack import LocalStack
from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS

log = logging.getLogger("bench.ingest")


def raw_consume(config, topic: TopicConfig, expected: int) -> float:
    """Records/s of one process reading every partition by explicit assignment, values touched."""
    c = consumer(client_options(config.kafka))
    c.assign([TopicPartition(topic.name, p, 0) for p in range(topic.partitions)])
    seen, size = 0, 0
    started = time.monotonic()
    last_progress = started
    while seen < expected and time.monotonic() - last_progress < 30:
        batch = c.consume(100_000, timeout=1.0)
        if batch:
            last_progress = time.monotonic()
        for m in batch:
            if m.error() is None:
                seen += 1
                size += len(m.value() or b"")
    elapsed = time.monotonic() - started
    c.close()
    if seen < expected:
        raise SystemExit(f"raw read saw {seen} of {expected} records")
    return seen / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/local.yaml")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the topic and the Delta tables afterwards")
    args = parser.parse_args()
    configure_logging()

    base = load_config(args.config)
    run = time.strftime("%Y%m%d-%H%M%S")
    work = Path(base.data_dir) / "bench" / f"ingest-{run}"
    topic = TopicConfig(name=f"bench.ingest.{run}", partitions=args.partitions)
    config = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"events_topic": topic}),
            "lake": base.lake.model_copy(update={"root": str(work / "lake")}),
            "ingest": base.ingest.model_copy(update={"checkpoint_dir": str(work / "checkpoint")}),
        }
    )
    stack = LocalStack(config)
    started_stack = config.stack.enabled and not stack.broker_running()
    if started_stack:
        stack.up()
    spark = None
    report: dict = {}
    bronze_rows = quarantine_rows = -1
    try:
        ensure_topic(config.kafka, topic)
        sim_parser = argparse.ArgumentParser()
        add_simulation_arguments(sim_parser)
        sim_args = sim_parser.parse_args(["--events", str(args.events), "--rate", "0", "--no-catalogue"])
        produced = run_simulation(config, simulation_options_from_args(config, sim_args))
        log.info("produced %d events at %.0f/s", produced.events, produced.events_per_s)

        raw_rate = raw_consume(config, topic, produced.events)
        log.info("raw single-process consume: %.0f records/s", raw_rate)

        from reelhouse.session import spark_session
        from reelhouse.streaming.ingest import run_ingestion

        spark = spark_session(config, "bench-ingest")
        result = run_ingestion(spark, config, trigger="available_now")
        lake = Lake(config.lake)
        bronze_rows = lake.read(spark, BRONZE_EVENTS.name).count()
        quarantine_rows = lake.read(spark, QUARANTINE_EVENTS.name).count()
        rate = produced.events / result.elapsed_s
        versions = pom_properties()
        report = {
            "benchmark": "ingest",
            "broker": (
                f"Apache Kafka {versions['kafka.version']} (local, KRaft)"
                if config.stack.enabled
                else f"Kafka at {config.kafka.bootstrap_servers}"
            ),
            "delta_writer": f"delta-spark {versions['delta.version']} on Spark {versions['spark.version']}",
            "events": produced.events,
            "events_per_s": round(rate),
            "producer_events_per_s": round(produced.events_per_s),
            "raw_consume_per_s": round(raw_rate),
            "ratio_to_raw": round(rate / raw_rate, 4),
            "bronze_rows": bronze_rows,
            "quarantine_rows": quarantine_rows,
            "micro_batches": result.batches,
            "spark_master": config.spark.master,
        }
    finally:
        if spark is not None:
            spark.stop()
        if not args.keep:
            delete_topic(config.kafka, topic.name)
            shutil.rmtree(work, ignore_errors=True)
        if started_stack:
            stack.down()
    print(json.dumps(report))
    return 0 if bronze_rows + quarantine_rows == produced.events else 1


if __name__ == "__main__":
    raise SystemExit(main())
