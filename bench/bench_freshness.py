"""Freshness benchmark: produce -> speed layer -> readable in the online store, under load.

The simulator (a separate process) produces a steady background load at ``--rate`` events/s
on a fresh topic, its clock running at wall-clock speed; the speed layer runs in this process
on ``local[2]`` with its production trigger (next micro-batch as soon as one ends). Probing
starts once the speed layer has drained the start-up backlog (see ``wait_until_caught_up``;
the JSON reports how long that took as ``warmup_s``). A sender
thread then produces probe impressions, each for a video of its own, at ``--probe-interval``;
the probe's freshness is the time from just before its produce call to the first read in which
the online store holds that video's ``video_impressions_1h``. Reads poll every 20 ms.

    make bench-freshness
    python bench/bench_freshness.py --rate 12000 --probes 200

Last line: JSON ``{"benchmark": "freshness", "background_events_per_s", "samples", "p50_s", "p99_s", ...}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import yaml

from reelhouse.config import TopicConfig, load_config
from reelhouse.events.contract import make_event
from reelhouse.features.views import features_view
from reelhouse.jobs import configure_logging
from reelhouse.kafka import ensure_topic, producer
from reelhouse.kafka.clients import delete_topic
from reelhouse.lake import Lake
from reelhouse.online import open_online_store
from reelhouse.silver.build import refresh_dimensions
from reelhouse.simulator import run_simulation, simulation_options_from_args
from reelhouse.simulator.options import add_simulation_arguments
from reelhouse.stack import LocalStack

log = logging.getLogger("bench.freshness")
DEVICE = {"os": "ios", "app_version": "31.4.0", "country": "DE", "network": "wifi"}


def probe_event(i: int) -> tuple[str, bytes]:
    video = f"probe-{i}"
    event = make_event(
        event_id=f"probe-{i}-{time.time_ns()}",
        event_type="impression",
        user_id=f"probe-user-{i % 50}",
        video_id=video,
        event_time_ms=int(time.time() * 1000),
        session_id="probe",
        device=DEVICE,
    )
    return video, orjson.dumps(event)


def measure(config, probes: int, interval_s: float, timeout_s: float) -> tuple[list[float], int]:
    """Send probes from a thread; poll the online store for them; return latencies and misses."""
    sent: dict[str, float] = {}
    lock = threading.Lock()
    done = threading.Event()

    def send() -> None:
        p = producer(config.kafka)
        for i in range(probes):
            video, payload = probe_event(i)
            with lock:
                sent[video] = time.monotonic()
            p.produce(config.kafka.events_topic.name, value=payload, key=video.encode())
            p.poll(0)
            p.flush(5)
            time.sleep(interval_s)
        done.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    store = open_online_store(config.online_store)
    latencies: list[float] = []
    seen: set[str] = set()
    try:
        while True:
            with lock:
                pending = {v: t for v, t in sent.items() if v not in seen}
            now = time.monotonic()
            if pending:
                rows = store.read(features_view("video"), list(pending))
                read_at = time.monotonic()
                for video, row in rows.items():
                    if row is not None and (row.values.get("video_impressions_1h") or 0) >= 1:
                        latencies.append(read_at - pending[video])
                        seen.add(video)
            if done.is_set() and (not pending or all(now - t > timeout_s for t in pending.values())):
                break
            time.sleep(0.02)
    finally:
        store.close()
    return latencies, probes - len(latencies)


def wait_until_caught_up(query, rate: float, at_least_s: float, limit_s: float) -> float:
    """Seconds until the speed layer is in its steady state under the load.

    A fresh query first plans its state and drains what arrived meanwhile; the benchmark
    measures the steady state after that: three micro-batches in a row shorter than 5 s, each
    reading no more than 5 s of the load.
    """
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        time.sleep(1.0)
        recent = [p for p in query.recentProgress if "addBatch" in p["durationMs"]][-3:]
        steady = len(recent) == 3 and all(
            p["durationMs"]["triggerExecution"] < 5_000 and p["numInputRows"] <= rate * 5 for p in recent
        )
        if steady and time.monotonic() - started >= at_least_s:
            return time.monotonic() - started
    raise SystemExit(f"the speed layer did not keep up with {rate:.0f} events/s within {limit_s:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/local.yaml")
    parser.add_argument("--rate", type=float, default=12_000, help="background events/s (the target is >= 10,000)")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--probe-interval", type=float, default=0.3)
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="at least this many seconds of load before the first probe"
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    configure_logging()

    base = load_config(args.config)
    run = time.strftime("%Y%m%d-%H%M%S")
    work = Path(base.data_dir) / "bench" / f"freshness-{run}"
    topic = TopicConfig(name=f"bench.freshness.{run}", partitions=base.kafka.events_topic.partitions)
    config = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"events_topic": topic}),
            "lake": base.lake.model_copy(update={"root": str(work / "lake")}),
            "online_store": base.online_store.model_copy(update={"path": work / "online.db"}),
            "speed": base.speed.model_copy(
                update={
                    "checkpoint_dir": str(work / "checkpoint"),
                    "starting_offsets": "latest",
                    "dimensions_refresh_s": 5.0,
                }
            ),
            # Wall-clock speed: the background events carry current times, as live traffic does.
            "simulator": base.simulator.model_copy(
                update={"catalogue_dir": str(work / "catalogue"), "time_scale": 1.0, "max_lag_s": 5.0}
            ),
        }
    )
    stack = LocalStack(config)
    started_stack = config.stack.enabled and not stack.broker_running()
    if started_stack:
        stack.up()
    spark = query = background = job = None
    try:
        ensure_topic(config.kafka, topic)
        # The catalogue first (a few events), so dim_videos gives the speed layer its topics.
        sim_parser = argparse.ArgumentParser()
        add_simulation_arguments(sim_parser)
        run_simulation(
            config, simulation_options_from_args(config, sim_parser.parse_args(["--events", "1000", "--rate", "0"]))
        )
        from reelhouse.session import spark_session
        from reelhouse.speed.job import SpeedLayerJob

        spark = spark_session(config, "bench-freshness")
        refresh_dimensions(spark, Lake(config.lake), config.simulator.catalogue_dir)
        job = SpeedLayerJob(spark, config)
        query = job.start("processing_time")
        config_file = work / "config.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        # The load outlasts the probes; its report (last line) gives the rate it sustained.
        duration = 240 + args.probes * args.probe_interval + 15
        background = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reelhouse.cli",
                "simulate",
                "--config",
                str(config_file),
                "--rate",
                str(args.rate),
                "--duration",
                str(duration),
                "--no-catalogue",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        warmup_s = wait_until_caught_up(query, args.rate, args.warmup, limit_s=240.0)
        latencies, missed = measure(config, args.probes, args.probe_interval, timeout_s=30.0)
        for p in query.recentProgress:
            log.info("batch %s: %s rows, durations %s", p["batchId"], p["numInputRows"], p["durationMs"])
        progress = [p for p in query.recentProgress if p.get("numInputRows")]
        input_rate = float(np.mean([p["processedRowsPerSecond"] for p in progress])) if progress else 0.0
        out, _ = background.communicate(timeout=duration + 120)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        produced = json.loads(lines[-1]) if lines else {}
        background = None
        report = {
            "benchmark": "freshness",
            "background_events_per_s": round(produced.get("events_per_s", 0.0)),
            "samples": len(latencies),
            "missed": missed,
            "p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
            "p90_s": round(float(np.percentile(latencies, 90)), 3) if latencies else None,
            "p99_s": round(float(np.percentile(latencies, 99)), 3) if latencies else None,
            "max_s": round(max(latencies), 3) if latencies else None,
            "speed_layer_rows_per_s": round(input_rate),
            "warmup_s": round(warmup_s, 1),
            "micro_batches": job.result.batches,
            "realtime_delta_commits": job.realtime.commits
            if job.realtime
            else 0,  # appends to <entity>_features_rt, off the batch's path
            "spark_master": config.spark.master,
            "online_store": config.online_store.type,
        }
    finally:
        if background is not None:
            background.kill()
        if query is not None:
            query.stop()
        if job is not None:
            job.close()  # appends what is still spooled for the real-time Delta tables
        if spark is not None:
            spark.stop()
        if not args.keep:
            delete_topic(config.kafka, topic.name)
            shutil.rmtree(work, ignore_errors=True)
        if started_stack:
            stack.down()
    print(json.dumps(report))
    return 0 if report["samples"] and not report["missed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
