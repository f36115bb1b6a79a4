"""The multi-day closed loop: the system learns from its own feed, day after day.

``reelhouse simulate --closed-loop --days N`` (``make loop``) runs after ``make demo`` (which
leaves a catalogue, a lake and a champion) and plays simulated days against a feed service it
starts itself:

0. **Bootstrap.** The simulated time begins at the next UTC midnight ``T0`` after now, later than
   anything already in the lake. The daily flow (:mod:`reelhouse.orchestration.daily`, the
   ``reelhouse_daily`` DAG's jobs in its order) rebuilds the two UTC days before ``T0`` (the
   demo's traffic), so day 0 starts from a champion, candidates and online features of ``T0``.
   That champion is the **frozen** model.
1. **Each day** ``[T0 + d, T0 + d + 1)``: the service's clock (``serving.clock_file``, see
   :mod:`reelhouse.clock`) runs through the day in ``day_seconds`` of wall time; the same simulated
   users (drawn by activity once) come back every day for their sessions. Users are bucketed into
   the experiment ``loop``: ``learning`` ranks with the registry's ``champion`` (whatever the gate
   promoted last), ``frozen`` with the day-0 version all run, so the loop's effect is measured
   against not learning, in the same run and the same days. Recall, features and the exploration
   of new videos are the same for both: only the ranker is frozen.
   Reactions come from the one behaviour model; tastes drift a little each day
   (``taste <- normalise((1 - drift) taste + drift Dirichlet(0.3))``), and creators keep uploading
   at ``simulator.uploads_per_hour`` (the catalogue's own deterministic upload stream).
2. **At the end of each day** the clock stops, the day's uploads are written to the catalogue
   (silver MERGEs them into ``dim_videos``), the topic is ingested into bronze (available-now),
   and the daily flow runs for the day: silver, gold, training set (every day since the
   bootstrap, or ``--training-days``), both rankers, the gate, candidates, online store. The candidate the gate judged is also estimated
   off-policy on the day's logged traffic (:mod:`reelhouse.evaluation.off_policy`) *before* it
   serves. The service picks up the new champion and candidates by itself (its pollers); the
   loop waits until ``/readyz`` shows them, then the next day begins.

The report (:mod:`reelhouse.simulator.loop_report`): per day and variant play rate, watch ratio,
like and share rates with delta-method CIs over users, catalogue coverage, the share of
impressions of videos uploaded in the last 24 h, the model that served and the gate's decision;
the learning - frozen delta with its CI; and each promoted challenger's off-policy estimate beside
the watch ratio it then achieved online. Markdown, JSON and a PNG learning curve go to
``<data_dir>/loop/``; the JSON is printed last.

Simulated times lie ahead of the wall clock (at most ``N + 1`` days), so the loop raises
``ingest.max_clock_skew_s`` for its own ingestion and service, and for nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from reelhouse.clock import FileClock, read_clock, write_clock
from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError, SimulationError
from reelhouse.simulator.catalogue import DAY_MS, Catalogue, WrittenCatalogue
from reelhouse.simulator.options import LoopOptions

log = logging.getLogger(__name__)

LOOP_EXPERIMENT = "loop"
LEARNING, FROZEN = "learning", "frozen"
BOOTSTRAP_DAYS = 2  # the demo's traffic: the UTC day before T0 and the one before that
TRAFFIC_SHARE = 0.85  # of a day's wall time users may start pages in; the rest lets the last pages end in the day
DAY_S = DAY_MS / 1000
READY_TIMEOUT_S = 300.0


def loop_environment(
    config: ReelhouseConfig, clock_file: Path, port: int, last_day_end_ms: int, frozen_version: int | None
) -> dict[str, str]:
    """The ``REELHOUSE__...`` overrides the loop's own process and its service share (one owner)."""
    serving = config.serving
    env = {
        "REELHOUSE__SERVING__CLOCK_FILE": str(clock_file),
        "REELHOUSE__SERVING__PORT": str(port),
        # Pick up a new champion and new candidates within seconds of the daily flow.
        "REELHOUSE__SERVING__ALIAS_POLL_S": str(min(serving.alias_poll_s, 1.0)),
        "REELHOUSE__SERVING__TABLES_POLL_S": str(min(serving.tables_poll_s, 2.0)),
        # Simulated days lie ahead of the wall clock (module docstring): up to the last day's end, and a day to spare.
        "REELHOUSE__INGEST__MAX_CLOCK_SKEW_S": str(
            max(config.ingest.max_clock_skew_s, (last_day_end_ms - int(time.time() * 1000)) // 1000 + int(DAY_S))
        ),
    }
    if frozen_version is not None:
        env["REELHOUSE__EXPERIMENTS"] = json.dumps(
            [
                {
                    "name": LOOP_EXPERIMENT,
                    "variants": [
                        {"name": LEARNING, "share": 0.5, "ranker": f"alias:{serving.ranker_alias}"},
                        {"name": FROZEN, "share": 0.5, "ranker": f"version:{frozen_version}"},
                    ],
                }
            ]
        )
    return env


class _World:
    """The catalogue the lake knows, growing by its upload stream, with tastes that drift."""

    def __init__(self, config: ReelhouseConfig, written: WrittenCatalogue, seed: int) -> None:
        sim = config.simulator
        initial = int((written.videos.upload_offset_ms < 0).sum())
        self.catalogue = Catalogue(
            seed=written.seed,
            users=len(written.users),
            videos=initial,
            topics=len(written.topics),
            creators=sim.creators,
            zipf_exponent=sim.zipf_exponent,
            uploads_per_hour=sim.uploads_per_hour,
        )
        self.catalogue.ensure_videos(len(written.videos))
        regenerated = self.catalogue.videos.head(len(written.videos))
        if not (
            np.array_equal(regenerated.duration_ms, written.videos.duration_ms)
            and np.array_equal(regenerated.upload_offset_ms, written.videos.upload_offset_ms)
        ):
            raise SimulationError(
                f"the catalogue in {sim.catalogue_dir} was not written with this config's simulator settings "
                "(creators, zipf_exponent, uploads_per_hour): the loop cannot continue its upload stream; "
                "run it with the config `make demo` used"
            )
        self.written = written
        self.taste = written.users.taste.copy()
        self.seed = seed

    def drift(self, day: int, amount: float) -> None:
        if amount <= 0:
            return
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 5, day]))
        noise = rng.dirichlet(np.full(self.taste.shape[1], 0.3), size=len(self.taste)).astype(np.float32)
        taste = (1 - amount) * self.taste + amount * noise
        self.taste = taste / taste.sum(axis=1, keepdims=True)

    def videos_at(self, time_ms: int) -> int:
        return self.catalogue.uploads_until(time_ms - self.written.start_ms)

    def at(self, time_ms: int) -> WrittenCatalogue:
        """The world as of ``time_ms``: every video uploaded by then, today's tastes."""
        count = self.videos_at(time_ms)
        users = dataclasses.replace(self.written.users, taste=self.taste)
        return dataclasses.replace(self.written, users=users, videos=self.catalogue.videos.head(count))

    def write(self, directory: str, time_ms: int) -> int:
        """Write the catalogue with the uploads until ``time_ms``, for silver's dimension MERGE."""
        count = self.videos_at(time_ms)
        self.catalogue.write(directory, self.written.start_ms, count)
        return count


def first_day_ms(clock_file: Path) -> int:
    """The start of the loop's day 0: the next UTC midnight after now, or after the last simulated
    time a previous loop left in its clock file, so a second run never adds to days already played."""
    after = int(time.time() * 1000)
    if clock_file.exists():
        try:
            after = max(after, read_clock(clock_file).sim_ms)
        except ReelhouseError as e:
            log.warning("ignoring the previous loop's clock: %s", e)
    return (after // DAY_MS + 1) * DAY_MS


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _label(config: ReelhouseConfig, version: int) -> str:
    return f"{config.training.registered_model}/{version}"  # how the service names a model (ranking.py)


def _serving_ranker(body: dict[str, Any]) -> str | None:
    return (body.get("checks") or {}).get("ranker", {}).get("serving")


def _recall_versions(body: dict[str, Any]) -> dict[str, Any]:
    return (body.get("checks") or {}).get("recall", {}).get("versions") or {}


def _estimate_off_policy(config: ReelhouseConfig, version: int) -> dict | None:
    """The off-policy estimate of ``version`` on the day's logged traffic (None when it cannot be made)."""
    from reelhouse.evaluation.off_policy import evaluate_off_policy

    try:
        # The day's test split only: the candidate was fitted on the rest of the day (train/valid),
        # and its own training rows would flatter it.
        result = evaluate_off_policy(config, f"version:{version}")
    except ReelhouseError as e:
        log.warning("no off-policy estimate of version %d: %s", version, e)
        return None
    log.info("off-policy estimate of version %d before it serves:\n%s", version, result.summary())
    return {**result.headline("snips"), "rows": result.rows, "logged": result.to_dict()["logged"]}


def run_loop(config_path: str | Path, options: LoopOptions) -> dict[str, Any]:
    """Run the loop (module docstring); returns the report as a dict (also written under ``<data_dir>/loop/``)."""
    import os

    from reelhouse.config import load_config
    from reelhouse.orchestration.daily import run_daily_flow
    from reelhouse.progress import progress_bar
    from reelhouse.session import spark_session
    from reelhouse.simulator.closed_loop import load_world, pick_users, play
    from reelhouse.simulator.loop_report import LoopDay, LoopReport, write_report
    from reelhouse.simulator.options import ClosedLoopOptions
    from reelhouse.simulator.service import feed_service, wait_until_ready
    from reelhouse.stack import LocalStack
    from reelhouse.stack.ports import free_ports
    from reelhouse.streaming.ingest import run_ingestion

    base = load_config(config_path)
    directory = Path(base.data_dir) / "loop"
    directory.mkdir(parents=True, exist_ok=True)
    clock_file = directory / "clock.json"
    (port,) = free_ports(1)
    t0_ms = first_day_ms(clock_file)
    write_clock(clock_file, t0_ms - 1, 0.0)  # held still until day 0 begins

    def configured(frozen: int | None) -> tuple[ReelhouseConfig, dict[str, str]]:
        env = loop_environment(base, clock_file, port, t0_ms + options.days * DAY_MS, frozen)
        return load_config(config_path, environ={**os.environ, **env}), env

    config, _ = configured(None)
    if not config.serving.token:
        raise SimulationError("the loop's service needs serving.token: run `make demo` first (it writes one)")
    closed_defaults = ClosedLoopOptions.from_config(config)
    world = _World(config, load_world(closed_defaults), options.seed)
    users = pick_users(world.written, options.users, options.seed)

    stack = LocalStack(config)
    started_stack = config.stack.enabled and not stack.broker_running()
    if started_stack:
        log.info("loop: starting the local stack")
        stack.up()
    spark = None
    days: list[Any] = []
    try:
        spark = spark_session(config, "loop")
        log.info("loop: bootstrap, the daily flow for [%s, %s)", _utc(t0_ms - BOOTSTRAP_DAYS * DAY_MS), _utc(t0_ms))
        world.write(config.simulator.catalogue_dir, t0_ms)
        run_ingestion(spark, config, trigger="available_now")
        boot = run_daily_flow(
            spark, config, _utc(t0_ms - BOOTSTRAP_DAYS * DAY_MS), _utc(t0_ms),
            training_start=_utc(t0_ms - BOOTSTRAP_DAYS * DAY_MS),
        )  # fmt: skip
        frozen = boot.decision.champion_version
        log.info("loop: day-0 champion (the frozen variant's model) is %s", _label(config, frozen))
        config, env = configured(frozen)
        url = f"http://{config.serving.host}:{port}"
        logs = directory / "serving.log"
        with feed_service(config_path, logs, env) as service, progress_bar(options.days, "simulated days") as advance:
            body = wait_until_ready(url, service, logs, READY_TIMEOUT_S)
            for day in range(options.days):
                start_ms = t0_ms + day * DAY_MS
                end_ms = start_ms + DAY_MS
                world.drift(day, options.drift if day else 0.0)
                today = world.at(start_ms)
                scale = DAY_S / options.day_seconds
                write_clock(clock_file, start_ms, scale)
                champion = _serving_ranker(body)
                log.info("loop: day %d (%s), %s serves the learning variant", day, _utc(start_ms).date(), champion)
                closed = ClosedLoopOptions.from_config(
                    config,
                    url=url,
                    users=options.users,
                    concurrency=min(options.concurrency, options.users),
                    sessions=options.sessions,
                    max_pages=options.max_pages,
                    k=options.k,
                    duration_s=options.day_seconds * TRAFFIC_SHARE,
                    seed=options.seed + day,
                    time_scale=scale,
                )
                began = time.monotonic()
                report, frame, _ = play(config, closed, today, users, clock=FileClock(clock_file))
                traffic_s = time.monotonic() - began
                write_clock(clock_file, end_ms - 1, 0.0)
                if report.feeds == 0:
                    raise SimulationError(f"day {day}: no feed was served ({report.first_feed_error})")
                # Impressions are produced without waiting; every one has its report within this.
                time.sleep(config.serving.delivery_timeout_s + 1)

                began = time.monotonic()
                world.write(config.simulator.catalogue_dir, end_ms)
                run_ingestion(spark, config, trigger="available_now")
                first_ms = t0_ms - BOOTSTRAP_DAYS * DAY_MS
                if options.training_days is not None:
                    first_ms = max(first_ms, end_ms - options.training_days * DAY_MS)
                flow = run_daily_flow(spark, config, _utc(start_ms), _utc(end_ms), training_start=_utc(first_ms))
                decision = flow.decision
                estimate = None
                if decision is not None:
                    estimate = _estimate_off_policy(config, decision.candidate_version)
                flow_s = time.monotonic() - began
                advance()
                days.append(
                    LoopDay.from_impressions(
                        frame,
                        day=day,
                        date=_utc(start_ms).date().isoformat(),
                        catalogue_videos=len(today.videos),
                        champion=champion or "",
                        frozen_model=_label(config, frozen),
                        gate=None if decision is None else decision.to_dict(),
                        off_policy=estimate,
                        traffic_s=traffic_s,
                        flow_s=flow_s,
                        flow=flow.to_dict(),
                        serving={
                            "feeds": report.feeds,
                            "feed_errors": dict(report.feed_errors),
                            "events_posted": report.events_posted,
                            "event_errors": dict(report.event_errors),
                            "degraded": dict(report.degraded),
                            "feed_latency_ms": report.feed_latency_ms,
                        },
                    )
                )
                if decision is not None and day + 1 < options.days:
                    # The next day starts once the service serves the new champion and the new candidates.
                    expected = _label(config, decision.champion_version)
                    before = _recall_versions(body)
                    body = wait_until_ready(
                        url, service, logs, READY_TIMEOUT_S,
                        condition=lambda b, e=expected, v=before: _serving_ranker(b) == e and _recall_versions(b) != v,
                        what=f"serving {expected} with the new candidates",
                    )  # fmt: skip
    finally:
        if spark is not None:
            spark.stop()
        if started_stack:
            stack.down()
    report = LoopReport(
        days=days,
        settings={
            **dataclasses.asdict(options),
            "t0": _utc(t0_ms).isoformat(),
            "epsilon": config.serving.explore_epsilon,
            "frozen_model": _label(config, frozen),
            "bootstrap": boot.to_dict(),
        },
    )
    paths = write_report(report, directory)
    log.info("loop finished: %s", ", ".join(f"{kind} {path}" for kind, path in paths.items()))
    return report.to_dict()
