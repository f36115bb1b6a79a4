"""``make demo``: the loop so far on one machine, then a short summary of what happened.

Starts the local stack (unless already running), simulates a few hours of app traffic into
Kafka, drains it into Delta with the ingestion job (available-now), builds silver and gold
features for every hour the traffic covered, runs the speed layer over the topic, loads gold
into the online store, builds a point-in-time training set, trains and registers both rankers
in MLflow (the promotion gate decides the ``champion``), builds recall candidates, evaluates
every model offline, then starts the feed service (``reelhouse serve``) and lets simulated users
use it for a while (``reelhouse simulate --closed-loop``: the A/B variants of the config compete
on what the users watch), lands what the service logged and the users reported in bronze,
prints what landed where and the per-variant table, and stops what it started. A token for
the service is generated into the git-ignored ``conf/<config>.local.yaml`` when none is set.

The demo compresses time: its simulated clock runs ``DEMO_TIME_SCALE`` times faster than the
wall clock, so the configured few seconds of traffic cover several hours, and hourly gold
feature times precede most impressions (what point-in-time training needs). The simulated hours
end at the last UTC midnight, so the day before is complete for the daily DAG.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from reelhouse.config import ReelhouseConfig
from reelhouse.progress import progress_bar

# The lake and the tables are imported where used: the CLI imports this module's defaults at start-up.

log = logging.getLogger(__name__)

STEPS = 12
CLOSED_LOOP_S = 90.0  # wall-clock seconds of simulated users driving the feed service (default)
CLOSED_LOOP_USERS = 600  # simulated users of the closed loop (default)
DEMO_TIME_SCALE = 2_400.0  # 10 s of traffic at the default rate = 6.7 simulated hours
SECRET_FILE_MODE = 0o600  # owner read/write: the local overrides file holds the service token


class _Steps:
    """The demo's numbered steps: each is logged as ``[n/STEPS] ...`` and moves the terminal's bar to it."""

    def __init__(self, update: Callable[..., None]) -> None:
        self._update = update

    def __call__(self, n: int, message: str, *args: object) -> None:
        log.info(f"[{n}/{STEPS}] {message}", *args)
        self._update(completed=n - 1, description=f"demo: {message % args}")


def _summary(config: ReelhouseConfig, simulated: object, ingested: object, seconds: float) -> str:
    from reelhouse.lake import Lake
    from reelhouse.streaming.tables import BRONZE_EVENTS, QUARANTINE_EVENTS

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


_SHOWN = {
    "video": (
        "video_impressions_1h",
        "video_plays_1d",
        "video_completion_rate_1d",
        "video_like_rate_1d",
        "video_trending_score",
        "video_age_s",
    ),
    "user": ("user_events_1d", "user_plays_1d", "user_mean_watch_ratio_1d", "user_like_rate_7d", "user_engagement_7d"),
}


def _layers(spark: object, config: ReelhouseConfig, step: _Steps) -> list[str]:
    """Silver and gold for the hours the traffic covered, the speed layer, the online store."""
    from pyspark.sql import functions as F

    from reelhouse.features.gold import build_features
    from reelhouse.features.views import features_view
    from reelhouse.lake import Lake
    from reelhouse.online import open_online_store
    from reelhouse.online.materialize import materialize_online
    from reelhouse.silver.build import build_silver
    from reelhouse.speed.job import run_speed_layer
    from reelhouse.streaming.tables import BRONZE_EVENTS

    lake = Lake(config.lake)
    bronze = lake.read(spark, BRONZE_EVENTS.name)
    # As epoch micros: Python datetimes from collect() are in this process's local time zone.
    first, last = bronze.agg(F.unix_micros(F.min("event_time")), F.unix_micros(F.max("event_time"))).first()
    start = dt.datetime.fromtimestamp(first / 1e6, dt.UTC).replace(minute=0, second=0, microsecond=0)
    end = dt.datetime.fromtimestamp(last / 1e6, dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(
        hours=1
    )
    step(4, "silver for [%s, %s)", start, end)
    silver = build_silver(spark, config, start, end)
    hours = int((end - start) / dt.timedelta(hours=1))
    step(5, "gold features as of every hour from %s to %s", start + dt.timedelta(hours=1), end)
    with progress_bar(hours, "gold features, hour by hour") as built:
        for hour in range(1, hours + 1):
            gold = build_features(spark, config, start + dt.timedelta(hours=hour))
            built()
    step(6, "speed layer over the topic (available-now), then gold into the online store")
    speed = run_speed_layer(spark, config, trigger="available_now")
    materialized = materialize_online(spark, config)
    lines = [
        f"  silver      {silver.rows:>10,} rows for [{start:%Y-%m-%d %H:%M}, {end:%H:%M}) UTC, "
        f"{silver.duplicates_dropped:,} duplicates dropped, {silver.too_late:,} too late",
        f"  gold        {', '.join(f'{t} {n:,}' for t, n in gold.rows.items())} rows as of {end:%Y-%m-%d %H:%M} UTC",
        f"  speed layer {speed.tiles:>10,} tiles in {speed.batches} micro-batch(es) -> "
        f"{', '.join(f'{e} {n:,}' for e, n in speed.feature_rows.items())} feature rows",
        "  online      gold loaded: "
        + ", ".join(f"{view} {load.rows:,}" for view, load in materialized.views.items())
        + f"   ({config.online_store.type}: {config.online_store.path if config.online_store.type == 'sqlite' else config.online_store.redis_url})",
    ]
    bronze = lake.read(spark, BRONZE_EVENTS.name)
    store = open_online_store(config.online_store)
    try:
        for entity, column in (("video", "video_id"), ("user", "user_id")):
            busiest = bronze.groupBy(column).count().orderBy(F.desc("count"), column).first()
            if busiest is None:
                continue
            key = busiest[column]
            row = store.read(features_view(entity), [key])[key]
            if row is None:
                continue
            shown = ", ".join(f"{name}={_fmt(row.values.get(name))}" for name in _SHOWN[entity])
            lines.append(f"  online {entity} {key} (as of {row.feature_time:%H:%M} UTC): {shown}")
    finally:
        store.close()
    return lines + _models(spark, config, start, end, step)


def _models(spark: object, config: ReelhouseConfig, start: dt.datetime, end: dt.datetime, step: _Steps) -> list[str]:
    """Training set, both rankers through the registry's gate, recall candidates, offline evaluation."""
    from reelhouse.evaluation.run import EvaluateOptions, run_evaluation
    from reelhouse.recall.candidates import build_candidates
    from reelhouse.training.dataset import build_training_set
    from reelhouse.training.ranker import train_from_lake

    step(7, "training set for [%s, %s) with point-in-time features", start, end)
    built = build_training_set(spark, config, start, end)
    step(8, "training both rankers, registering them, promotion gate")
    trained = train_from_lake(config)
    step(9, "recall candidates as of %s", end)
    candidates = build_candidates(spark, config, end)
    step(10, "offline evaluation")
    evaluation = run_evaluation(
        config, EvaluateOptions(k=(10, 20), output_dir=Path(config.data_dir) / "evaluation"), lambda: spark
    )
    decision = trained.promotion
    lines = [
        f"  training    {sum(built.rows.values()):>10,} examples ({', '.join(f'{s} {n:,}' for s, n in built.rows.items())}) "
        f"in {config.training.table} v{built.version}",
    ]
    for kind, run in trained.models.items():
        lines.append(
            f"  ranker      {kind:<20} v{run.version}  test AUC {run.metrics['test_auc']:.3f}  "
            f"NDCG@10 {run.metrics['test_ndcg_at_10']:.3f}  (fit {run.metrics['fit_s']:.1f}s)"
        )
    lines += [
        f"  baseline    {'popularity':<20}      test AUC {trained.popularity_test['auc']:.3f}  "
        f"NDCG@10 {trained.popularity_test['ndcg_at_10']:.3f}",
        f"  registry    {trained.registered_model}: champion v{decision.champion_version}"
        + (f", challenger v{decision.challenger_version}" if decision.challenger_version else "")
        + f" ({decision.decision}: {decision.reason})",
        f"  MLflow      {config.mlflow.tracking_uri}   (make mlflow to browse)",
        f"  candidates  {sum(candidates.candidates.values()):>10,} for {candidates.users:,} users: "
        + ", ".join(f"{source} {n:,}" for source, n in candidates.candidates.items()),
        f"  evaluation  {evaluation.result.users:,} users, top-K over the whole catalogue, seen items masked "
        f"({evaluation.paths['markdown']}):",
        "",
        evaluation.markdown,
    ]
    return lines


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only from the first byte on: a new file is
    created with mode 0600 (the umask can only narrow it), an existing one is restricted before it
    is truncated and written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_FILE_MODE)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, SECRET_FILE_MODE)
        out.write(text)


def ensure_serving_token(config_path: Path) -> bool:
    """Give the feed service a token when the config has none: a random one, written into the
    git-ignored ``<config>.local.yaml`` beside the config, which is owner-only (an existing one
    readable by others is restricted first). Returns whether it wrote a token."""
    import secrets

    import yaml

    from reelhouse.config import load_config
    from reelhouse.config.loader import local_overrides_file

    local = local_overrides_file(config_path)
    if local.exists() and local.stat().st_mode & 0o077:
        log.warning("%s was open to other users; restricting it to its owner (it holds secrets)", local)
        local.chmod(SECRET_FILE_MODE)
    if load_config(config_path).serving.token:
        return False
    data = (yaml.safe_load(local.read_text()) or {}) if local.exists() else {}
    data.setdefault("serving", {})["token"] = secrets.token_urlsafe(32)
    write_secret_file(
        local,
        "# Machine-local settings and secrets, merged over "
        + config_path.name
        + "; git-ignored.\n"
        + yaml.safe_dump(data, sort_keys=False),
    )
    log.info("wrote a new serving token into %s (git-ignored, mode 0600)", local)
    return True


def _closed_loop(
    spark: object, config: ReelhouseConfig, config_path: Path, seconds: float, users: int, step: _Steps
) -> list[str]:
    """Start the feed service, let simulated users use it, land their events in bronze."""
    from reelhouse.lake import Lake
    from reelhouse.simulator.closed_loop import run_closed_loop
    from reelhouse.simulator.options import ClosedLoopOptions
    from reelhouse.simulator.service import feed_service, wait_until_ready
    from reelhouse.streaming.ingest import run_ingestion
    from reelhouse.streaming.tables import BRONZE_EVENTS

    serving = config.serving
    url = f"http://{serving.host}:{serving.port}"
    step(
        11,
        "feed service on %s, then %.0f s of simulated users (closed loop, A/B variants)",
        url,
        seconds,
    )
    logs = Path(config.data_dir) / "serving.log"
    with feed_service(config_path, logs) as service:
        wait_until_ready(url, service, logs, timeout_s=180)
        options = ClosedLoopOptions.from_config(
            config, url=url, users=users, concurrency=min(24, users), duration_s=seconds
        )
        report, markdown = run_closed_loop(config, options)
    step(12, "ingesting what the service logged and the users reported into bronze")
    from pyspark.sql import functions as F

    lake = Lake(config.lake)
    before = lake.read(spark, BRONZE_EVENTS.name).count()
    run_ingestion(spark, config, trigger="available_now")
    after, stamped = lake.read(spark, BRONZE_EVENTS.name).agg(F.count("*"), F.count("variant")).first()
    return [
        "",
        f"  serving     {report.feeds:,} feeds to {report.users:,} simulated users in {report.elapsed_s:.0f} s, "
        f"p50 {report.feed_latency_ms.get('p50', float('nan')):.1f} ms, p99 {report.feed_latency_ms.get('p99', float('nan')):.1f} ms "
        f"(log {logs})",
        f"  feedback    {report.events_posted:,} events posted back; bronze grew by {after - before:,} rows, "
        f"{stamped:,} impressions there carry an experiment variant (joined to outcomes by request_id)",
        "",
        markdown,
    ]


def _utc_ms(ms: int) -> str:
    return f"{dt.datetime.fromtimestamp(ms / 1000, dt.UTC):%Y-%m-%d %H:%M} UTC"


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_demo(
    config_path: str | Path | None = None,
    keep_stack: bool = False,
    closed_loop_s: float = CLOSED_LOOP_S,
    closed_loop_users: int = CLOSED_LOOP_USERS,
) -> int:
    """The whole loop (module docstring); ``closed_loop_s``/``closed_loop_users`` size its last step."""
    from reelhouse.config import load_config
    from reelhouse.config.loader import config_file
    from reelhouse.jobs import configure_logging
    from reelhouse.simulator import SimulationOptions, run_simulation
    from reelhouse.stack import LocalStack

    configure_logging()
    config_path = config_file(config_path)
    ensure_serving_token(config_path)
    config = load_config(config_path)
    started = time.monotonic()
    stack = LocalStack(config)
    started_stack = config.stack.enabled and not stack.broker_running()
    # The bar is gone before the summary prints: it is for the wait, the summary is the result.
    with progress_bar(STEPS, "demo") as update:
        step = _Steps(update)
        if started_stack:
            step(1, "starting the local stack (broker on local S3 storage)")
            stack.up()
        else:
            step(1, "local stack already running; using it")
        spark = None
        try:
            sim = config.simulator
            span_s = sim.duration_s * DEMO_TIME_SCALE
            # The traffic ends at the last UTC midnight: the day before is then complete, so the daily
            # DAG's next scheduled run (make airflow, make airflow-daily) rebuilds exactly that day.
            end_ms = int(time.time() // 86_400 * 86_400_000)
            start_ms = end_ms - int(span_s * 1000)
            lag_s = time.time() - start_ms / 1000 + 3_600
            config = config.model_copy(
                update={"simulator": sim.model_copy(update={"time_scale": DEMO_TIME_SCALE, "max_lag_s": lag_s})}
            )
            step(
                2,
                "simulating %.0fs of app traffic at %.0f events/s (%.1f simulated hours up to %s)",
                sim.duration_s,
                sim.rate,
                span_s / 3600,
                _utc_ms(end_ms),
            )
            options = dataclasses.replace(SimulationOptions.from_config(config), start_time_ms=start_ms)
            simulated = run_simulation(config, options)
            step(3, "ingesting the topic into Delta (bronze + quarantine)")
            from reelhouse.session import spark_session
            from reelhouse.streaming.ingest import run_ingestion

            spark = spark_session(config, "demo")
            ingested = run_ingestion(spark, config, trigger="available_now")
            layers = _layers(spark, config, step)
            layers += _closed_loop(spark, config, config_path, closed_loop_s, closed_loop_users, step)
            log.info("summarising")
            summary = _summary(config, simulated, ingested, time.monotonic() - started)
        finally:
            if spark is not None:
                spark.stop()
            if started_stack and not keep_stack:
                stack.down()
    print(summary)
    print("\n".join(layers))
    return 0
