"""Serving benchmark: feed-request latency under a fixed arrival rate, step by step.

Builds a catalogue-sized environment (``serve_env.py``: 20k users, 50k videos, >= 300 candidates
per user in ``user_candidates``, online rows for every user, video and (user, topic), a LightGBM
ranker registered as ``champion``), starts the service as its own process (``reelhouse serve``
with a temporary config, impressions produced to a fresh topic of the local broker, which is
started if none answers), waits for ``/readyz`` and then, after a warm-up, offers each rate of
``--rates`` for ``--duration-s`` seconds with an open-loop generator (``serve_load.py``): request
``i`` is due at ``i / rate`` and its latency counts from then, so a server that falls behind is
charged for the queue it built (no coordinated omission).

Requests are ``GET /v1/feed?user_id=..&k=10`` for users drawn Zipf-like (exponent ``--zipf``)
from the users that have candidates, plus ``--unknown-share`` of users the service has never
seen; the service ranks ``serving.candidates`` (>= 300) candidates per request. Errors are
non-200 answers, timeouts (``--timeout-s``) and connection failures; percentiles are over the
200 answers (``p99_all_ms`` includes errors). ``achieved_rps`` is the rate the generator really
sent at and ``generator_behind`` says whether it kept to its schedule: the generator shares the
machine with the server, and a generator that falls behind would flatter the server.
Each step also reports the service's own view from ``/metrics`` (mean ms per stage, online-store
failures by call and kind; with ``--workers`` > 1 that is the one worker that answered the scrape)
and its CPU use (``server_cpu_pct``, ``server_cpu_ms_per_request``), and how many answers were
``degraded`` (served without some stage; ``degraded_share`` of the 200 answers).

``--store redis`` starts a ``redis-server`` of its own and runs the same steps with the service on
the Redis online store.

    make bench-serve                                              # 200, 500, 1000 req/s, 30 s each
    make bench-serve STORE=redis                                  # the same against redis-server
    python bench/bench_serve.py --duration-s 5 --rates 100,300   # a quick run

Last line: ``{"benchmark": "serve", "online_store": "sqlite", "candidates_per_request": C, "steps": [{"rps", "achieved_rps",
"p50_ms", "p95_ms", "p99_ms", "errors", ...}, ...], ...}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_env import build_bench_environment  # noqa: E402
from serve_load import LoadGenerator, summarize_step  # noqa: E402

from reelhouse.config import TopicConfig, load_config  # noqa: E402
from reelhouse.jobs import configure_logging  # noqa: E402
from reelhouse.kafka import ensure_topic  # noqa: E402
from reelhouse.kafka.clients import delete_topic  # noqa: E402
from reelhouse.stack import LocalStack  # noqa: E402
from reelhouse.stack.ports import free_ports  # noqa: E402

log = logging.getLogger("bench.serve")

OSES = ("android", "ios", "web")
COUNTRIES = ("US", "BR", "IN", "DE", "GB")
STAGES = ("store", "recall", "features", "rank", "rerank", "total")


def request_mix(users: list[str], k: int, zipf: float, unknown_share: float, unknown_users: int, seed: int):
    """Feed paths and their weights: Zipf over the users with candidates (random ranks), a few unknown users."""
    rng = np.random.default_rng(seed)
    ranked = [users[i] for i in rng.permutation(len(users))]
    weights = 1.0 / np.arange(1, len(ranked) + 1) ** zipf
    weights *= (1.0 - unknown_share) / weights.sum()
    unknown = [f"unknown-{i:05d}" for i in range(unknown_users)] if unknown_share > 0 else []
    if unknown:
        weights = np.concatenate([weights, np.full(len(unknown), unknown_share / len(unknown))])
    paths = [
        "/v1/feed?" + urlencode({
            "user_id": user, "k": k, "session_id": f"bench-{i % 997}", "os": OSES[i % len(OSES)],
            "country": COUNTRIES[i % len(COUNTRIES)], "network": "wifi", "app_version": "33.2.0",
        })
        for i, user in enumerate(ranked + unknown)
    ]  # fmt: skip
    return paths, weights


class ServiceProcess:
    """``reelhouse serve`` in a process of its own, with its log in a file."""

    def __init__(self, config_file: Path, port: int, workers: int, log_file: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reelhouse.cli", "serve", "--config", str(config_file), "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float) -> float:
        import httpx

        started = time.monotonic()
        last = "no answer"
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(self.url + "/readyz", timeout=2.0)
                if response.status_code == 200:
                    return time.monotonic() - started
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.5)
        raise RuntimeError(f"the service was not ready within {timeout_s:.0f} s (last: {last}):\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        import psutil

        try:
            process = psutil.Process(self.process.pid)
            processes = [process, *process.children(recursive=True)]
            return sum(p.cpu_times().user + p.cpu_times().system for p in processes)
        except psutil.Error:
            return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class RedisProcess:
    """A ``redis-server`` of the benchmark alone (no persistence) on ``port``, for ``--store redis``."""

    def __init__(self, port: int, log_file: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("--store redis needs redis-server: run `make system-deps` (apt-get install redis-server)")
        self.url = f"redis://127.0.0.1:{port}/0"
        self._log = log_file.open("wb")
        self.process = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=1.0)
        deadline = time.monotonic() + 20.0
        try:
            while True:
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start (see {log_file})") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self._log.close()


def server_counters(url: str) -> dict[str, float]:
    """The service's counters so far: per stage the seconds and count of its stage histogram
    (``<stage>_s``, ``<stage>_n``), and online-store failures (``store:<call>:<kind>``)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    counters: dict[str, float] = {}
    # Generous: right after an overloaded step the scrape waits behind the requests still queued.
    text = httpx.get(url + "/metrics", timeout=60.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name == "reelhouse_feed_stage_seconds" and sample.labels.get("stage") in STAGES:
                suffix = "_s" if sample.name.endswith("_sum") else "_n" if sample.name.endswith("_count") else None
                if suffix:
                    key = sample.labels["stage"] + suffix
                    counters[key] = counters.get(key, 0.0) + sample.value
            elif family.name == "reelhouse_store_failures" and sample.name.endswith("_total"):
                key = f"store:{sample.labels.get('call')}:{sample.labels.get('kind')}"
                counters[key] = counters.get(key, 0.0) + sample.value
    return counters


def server_step(before: dict[str, float], after: dict[str, float]) -> dict[str, dict[str, float]]:
    """What the service saw during a step: mean ms per stage, online-store failures by call and kind."""
    means, failures = {}, {}
    for stage in STAGES:
        count = after.get(f"{stage}_n", 0.0) - before.get(f"{stage}_n", 0.0)
        if count > 0:
            means[stage] = round((after[f"{stage}_s"] - before.get(f"{stage}_s", 0.0)) / count * 1000.0, 2)
    for key, value in after.items():
        if key.startswith("store:") and value - before.get(key, 0.0) > 0:
            failures[key.removeprefix("store:")] = int(value - before.get(key, 0.0))
    return {"server_stage_mean_ms": means, "server_store_failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/local.yaml")
    parser.add_argument("--rates", default="200,500,1000", help="requests/s of each step, comma-separated")
    parser.add_argument("--duration-s", type=float, default=30.0, help="seconds per step")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="seconds of load at the first rate, not measured")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--videos", type=int, default=50_000)
    parser.add_argument("--candidates", type=int, default=300, help="serving.candidates: candidates ranked per request")
    parser.add_argument("--k", type=int, default=10, help="videos per feed page")
    parser.add_argument("--zipf", type=float, default=0.8, help="Zipf exponent of how often each user asks")
    parser.add_argument(
        "--unknown-share", type=float, default=0.02, help="share of requests from users without candidates"
    )
    parser.add_argument("--training-rows", type=int, default=40_000)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument(
        "--store", choices=("sqlite", "redis"), default="sqlite",
        help="online store: the embedded SQLite file, or a redis-server the benchmark starts",
    )  # fmt: skip
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=256, help="keep-alive connections per generator process")
    parser.add_argument("--timeout-s", type=float, default=2.0, help="client timeout of a request")
    parser.add_argument("--keep", action="store_true", help="keep the environment and the service log")
    args = parser.parse_args()
    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the readiness and /metrics polls
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not rates or min(rates) <= 0 or args.duration_s <= 0 or args.candidates < 1:
        parser.error("--rates must list positive rates; --duration-s and --candidates must be positive")

    base = load_config(args.config)
    run = time.strftime("%Y%m%d-%H%M%S")
    work = Path(base.data_dir).resolve() / "bench" / f"serve-{run}"
    topic = TopicConfig(name=f"bench.serve.{run}", partitions=base.kafka.events_topic.partitions)
    base = base.model_copy(update={"kafka": base.kafka.model_copy(update={"events_topic": topic})})
    stack = LocalStack(base)
    started_stack = base.stack.enabled and not stack.broker_running()
    service = generator = redis_server = None
    report: dict[str, object] = {"benchmark": "serve", "online_store": args.store}
    try:
        if started_stack:
            stack.up()
        ensure_topic(base.kafka, topic)
        if args.store == "redis":
            work.mkdir(parents=True, exist_ok=True)
            redis_server = RedisProcess(free_ports(1)[0], work / "redis.log")
        env = build_bench_environment(
            work, base, users=args.users, videos=args.videos, candidates_per_user=max(320, args.candidates + 20),
            training_rows=args.training_rows, redis_url=redis_server.url if redis_server is not None else None,
            serving={"candidates": args.candidates, "max_k": max(50, args.k), "default_k": args.k},
        )  # fmt: skip
        config_file = work / "config.yaml"
        config_file.write_text(yaml.safe_dump(env.config.model_dump(mode="json"), sort_keys=False))
        service = ServiceProcess(config_file, free_ports(1)[0], args.workers, work / "service.log")
        ready_s = service.wait_ready(timeout_s=300.0)
        log.info("service ready in %.1f s at %s", ready_s, service.url)

        paths, weights = request_mix(env.users, args.k, args.zipf, args.unknown_share, 1_000, seed=1)
        generator = LoadGenerator(
            service.url, paths, weights, processes=args.processes, timeout_s=args.timeout_s,
            connections=args.connections, headers={"Authorization": f"Bearer {env.config.serving.token}"},
        )  # fmt: skip
        warmup = summarize_step(rates[0], args.warmup_s, generator.run(rates[0], args.warmup_s, seed=0, lead_s=2.0))
        log.info("warm-up: %s", json.dumps(warmup))
        steps = []
        for index, rate in enumerate(rates, start=1):
            time.sleep(2.0)  # let the previous step's stragglers and the state writer drain
            counters, cpu_before, wall_before = server_counters(service.url), service.cpu_seconds(), time.monotonic()
            results = generator.run(rate, args.duration_s, seed=index)
            wall = time.monotonic() - wall_before
            step = summarize_step(rate, args.duration_s, results)
            cpu = service.cpu_seconds() - cpu_before
            step["server_cpu_pct"] = round(cpu / wall * 100.0, 1)
            step["server_cpu_ms_per_request"] = round(cpu / max(step["requests"], 1) * 1000.0, 2)
            answered = step["requests"] - step["errors"]
            step["degraded_share"] = round(step["degraded_responses"] / answered, 4) if answered else None
            step.update(server_step(counters, server_counters(service.url)))
            log.info("step %g req/s: %s", rate, json.dumps(step))
            steps.append(step)
        report.update({
            "candidates_per_request": env.config.serving.candidates,
            "steps": steps,
            "k": args.k,
            "users": args.users,
            "videos": args.videos,
            "candidates_per_user": env.candidates_per_user,
            "zipf_exponent": args.zipf,
            "unknown_share": args.unknown_share,
            "server_workers": args.workers,
            "generator_processes": args.processes,
            "timeout_s": args.timeout_s,
            "warmup": {k: warmup[k] for k in ("rps", "achieved_rps", "p50_ms", "p99_ms", "errors")},
            "service_ready_s": round(ready_s, 1),
            "environment_build_s": env.build_s,
            "ranker_versions": env.versions,
            "machine_cores": os.cpu_count(),
        })  # fmt: skip
    finally:
        if generator is not None:
            generator.close()
        if service is not None:
            if "steps" not in report:
                log.error("service log tail:\n%s", service.tail())
            service.stop()
        try:
            delete_topic(base.kafka, topic.name)
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the benchmark's own error
            log.warning("could not delete topic %s: %s", topic.name, e)
        if redis_server is not None:
            redis_server.stop()
        if started_stack:
            stack.down()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))
    return 0 if report.get("steps") else 1


if __name__ == "__main__":
    raise SystemExit(main())
