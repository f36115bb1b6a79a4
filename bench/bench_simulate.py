"""Benchmark: how many simulated events per second the simulator gets into the local broker.

Produces >= 3 million events as fast as possible into a fresh topic (explicit partitions),
starting the local stack (one Apache Kafka broker) first if no broker answers, and stopping it
afterwards. Every process writes to every partition (the key picks it), acks=all as configured.
Prints a JSON object as its last line: {"benchmark": "simulate", "events": N, "events_per_s": X, ...}.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from confluent_kafka import KafkaException

from reelhouse.config import load_config
from reelhouse.kafka import admin_client, ensure_topic
from reelhouse.kafka.clients import delete_topic
from reelhouse.simulator import SimulationOptions, run_simulation


def _broker_reachable(config) -> bool:
    try:
        admin_client(config.kafka).list_topics(timeout=3)
        return True
    except KafkaException:
        return False


def _broker_description(config, stack) -> str:  # noqa: ANN001 - a ReelhouseConfig and a LocalStack or None
    if stack is None:
        return f"already running at {config.kafka.bootstrap_servers}"
    from reelhouse.jvm import pom_properties

    return f"local Apache Kafka {pom_properties()['kafka.version']} (KRaft, one node, heap {config.stack.broker.heap})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--processes", type=int, default=None, help="default: simulator.processes")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    stack = None
    if not _broker_reachable(config):
        from reelhouse.stack import LocalStack

        stack = LocalStack(config)
        stack.up()
    topic = config.kafka.events_topic.model_copy(
        update={"name": f"bench.simulate.{int(time.time())}", "partitions": args.partitions}
    )
    try:
        ensure_topic(config.kafka, topic)
        options = SimulationOptions.from_config(
            config,
            rate=0.0,
            duration_s=None,
            events=args.events,
            topic=topic.name,
            processes=args.processes or config.simulator.processes,
            write_catalogue=False,
        )
        report = run_simulation(config, options)
    finally:
        delete_topic(config.kafka, topic.name)
        if stack is not None:
            stack.down()
    print(report.to_json())
    print(
        json.dumps(
            {
                "benchmark": "simulate",
                "events": report.events,
                "events_per_s": report.events_per_s,
                "processes": report.processes,
                "partitions": args.partitions,
                "malformed": sum(report.malformed.values()),
                "elapsed_s": report.elapsed_s,
                "total_s": report.total_s,
                "broker": _broker_description(config, stack),
                "producer_acks": config.kafka.producer.get("acks", "librdkafka default"),
                "compression": config.kafka.producer.get("compression.type", "none"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
