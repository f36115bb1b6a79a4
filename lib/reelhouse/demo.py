"""``make demo``: the loop so far on one machine, then a short summary of what happened.

Starts the local stack (unless already running), simulates app traffic into Kafka, drains it
into Delta with the ingestion job (available-now), prints what landed where, and stops what
it started.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from reelhouse.config import ReelhouseConfig
from reelhouse.lake import Lake
from reelhouse.lake.tables import BRONZE_EVENTS, QUARANTINE_EVENTS

log = logging.getLogger(__name__)


def _summary(config: ReelhouseConfig, simulated: object, ingested: object, seconds: float) -> str:
    lake = Lake(config.lake)
    bronze = lake.to_arrow(BRONZE_EVENTS.name, columns=["event_type"])
    quarantine = lake.to_arrow(QUARANTINE_EVENTS.name, columns=["reason"])
    per_type = Counter(bronze.column("event_type").to_pylist())
    reasons = Counter(quarantine.column("reason").to_pylist())
    lines = [
        "",
        "reelhouse demo — what happened",
        f"  simulated   {simulated.events:>10,} events into topic {config.kafka.events_topic.name} "
        f"({simulated.events_per_s:,.0f}/s, {sum(simulated.malformed.values()):,} deliberately malformed)",
        f"  ingested    {ingested.records:>10,} records in {ingested.batches} micro-batch(es), "
        f"{ingested.elapsed_s:.1f}s (available-now)",
        f"  bronze      {bronze.num_rows:>10,} rows   Delta version {lake.version(BRONZE_EVENTS.name)}   "
        f"{lake.uri(BRONZE_EVENTS.name)}",
        f"  quarantine  {quarantine.num_rows:>10,} rows   Delta version {lake.version(QUARANTINE_EVENTS.name)}   "
        f"{lake.uri(QUARANTINE_EVENTS.name)}",
        "  events by type (bronze, all runs):",
        *(f"    {kind:<11} {count:>10,}" for kind, count in per_type.most_common()),
        "  quarantine reasons (all runs):",
        *(f"    {reason:<23} {count:>8,}" for reason, count in reasons.most_common()),
        f"  catalogue   {config.simulator.catalogue_dir}",
        f"  took {seconds:.0f}s",
    ]
    return "\n".join(lines)


def run_demo(config: ReelhouseConfig, keep_stack: bool = False) -> int:
    from reelhouse.jobs import configure_logging
    from reelhouse.simulator import SimulationOptions, run_simulation
    from reelhouse.stack import LocalStack

    configure_logging()
    started = time.monotonic()
    stack = LocalStack(config)
    started_stack = config.stack.enabled and not stack.broker_running()
    if started_stack:
        log.info("[1/4] starting the local stack (broker on local S3 storage)")
        stack.up()
    else:
        log.info("[1/4] local stack already running; using it")
    spark = None
    try:
        log.info("[2/4] simulating %.0fs of app traffic at %.0f events/s", config.simulator.duration_s, config.simulator.rate)
        simulated = run_simulation(config, SimulationOptions.from_config(config))
        log.info("[3/4] ingesting the topic into Delta (bronze + quarantine)")
        from reelhouse.session import spark_session
        from reelhouse.streaming.ingest import run_ingestion

        spark = spark_session(config, "demo")
        ingested = run_ingestion(spark, config, trigger="available_now")
        log.info("[4/4] summarising")
        print(_summary(config, simulated, ingested, time.monotonic() - started))
    finally:
        if spark is not None:
            spark.stop()
        if started_stack and not keep_stack:
            stack.down()
    return 0
