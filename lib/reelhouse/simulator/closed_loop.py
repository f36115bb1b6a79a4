"""The closed loop: simulated users ask the running feed service for feeds and react to what it shows.

The open-loop simulator decides itself what users see; here the service does (recall, ranking,
the A/B variant of the user), and the users' reactions come from the same behaviour model
(:mod:`reelhouse.simulator.behaviour`) and the same latent tastes: the catalogue that
``reelhouse simulate`` wrote to ``simulator.catalogue_dir``, i.e. the users and videos the lake
and the models know. That makes the loop an online A/B test of the rankers against ground truth.

One simulated user is one asyncio task at a time (``concurrency`` of them run at once over one
HTTP/1.1 connection pool); a user plays ``sessions`` sessions of feed pages:

1. ``GET /v1/feed`` with the user's device and the session's network;
2. every shown video of the catalogue gets a reaction (:func:`~reelhouse.simulator.behaviour.react`):
   a play or a skip, then likes, shares, comments and follows; videos play back to back with
   a swipe gap, on a clock ``time_scale`` times faster than the wall clock;
3. once the page is watched (the task sleeps the compressed watch time, so no event time lies
   in the future), its outcome events go to ``POST /v1/events`` with the page's ``request_id``.

The number of pages is geometric like the open loop's (at most ``max_pages``), and a session
shows nothing new after :data:`~reelhouse.simulator.behaviour.MAX_SESSION_MS` of simulated time.
Impressions are not posted: the service logs them itself.

The report counts impressions, users, plays, watch ratios, likes and shares per
``(experiment, variant)`` of the feed responses, and compares every variant of an experiment with
its control (the experiment's first configured variant) with :mod:`reelhouse.experiments.stats`
(delta-method intervals over users, Holm-adjusted p-values). Outcomes of videos the catalogue does
not hold cannot be simulated; they are counted as ``unknown_videos`` and left out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from reelhouse.clock import Clock, FileClock, WallClock
from reelhouse.config import ReelhouseConfig
from reelhouse.errors import SimulationError
from reelhouse.events.contract import EVENT_TYPES, SCHEMA_VERSION
from reelhouse.simulator.behaviour import ENGAGEMENT, MAX_PAGES, MAX_SESSION_MS, PAGES_P, SWIPE_GAP_MS, engages, react
from reelhouse.simulator.catalogue import (
    APP_VERSIONS,
    COUNTRIES,
    DAY_MS,
    OS_NAMES,
    WrittenCatalogue,
    read_catalogue,
    user_id,
    video_id,
)
from reelhouse.simulator.options import ClosedLoopOptions
from reelhouse.simulator.traffic import NETWORK_WEIGHTS, NETWORKS

log = logging.getLogger(__name__)

FEED_PATH = "/v1/feed"
EVENTS_PATH = "/v1/events"
READY_PATH = "/readyz"
PROGRESS_INTERVAL_S = 5.0
METRICS = ("played", "watch_ratio", "liked", "shared")  # the columns experiments.stats compares
NO_EXPERIMENT = "(none)"  # the label of feeds served outside any experiment
_MAX_RETRY_AFTER_S = 5.0


@dataclass
class ClosedLoopReport:
    """What a closed-loop run did and what the users made of the feeds, per variant."""

    url: str
    users: int  # simulated users that got at least one feed
    sessions: int
    feed_requests: int
    feeds: int  # 200 responses
    feed_errors: dict[str, int]  # by HTTP status, "timeout" or "connection"
    first_feed_error: str | None
    impressions: int  # shown videos the users reacted to
    unknown_videos: int  # shown videos missing from the catalogue (no reaction simulated)
    events_posted: int  # accepted by POST /v1/events
    event_errors: dict[str, int]
    first_event_error: str | None
    degraded: dict[str, int]  # feeds that reported a degraded stage, per stage
    feed_latency_ms: dict[str, float]  # client-side p50/p95/p99 of successful feeds
    elapsed_s: float
    variants: list[dict[str, Any]]  # per (experiment, variant): users, impressions and rates
    comparisons: list[dict[str, Any]]  # experiments.stats MetricSummary rows
    notes: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.feeds > 0 and not self.event_errors

    def to_json(self) -> str:
        return orjson.dumps(asdict(self), option=orjson.OPT_SERIALIZE_NUMPY).decode()


class _Ledger:
    """Everything the simulated users saw and did, column by column (one row per reacted impression)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "user_id", "experiment", "variant", "ranker", "request_id", "video_id", "position",
                "played", "watch_ratio", "liked", "shared", "new_video",
            )
        }  # fmt: skip
        self.users: set[str] = set()
        self.sessions = 0
        self.feed_requests = 0
        self.feeds = 0
        self.feed_errors: Counter[str] = Counter()
        self.first_feed_error: str | None = None
        self.unknown_videos = 0
        self.events_posted = 0
        self.event_errors: Counter[str] = Counter()
        self.first_event_error: str | None = None
        self.degraded: Counter[str] = Counter()
        self.latencies_ms: list[float] = []

    def feed_failed(self, kind: str, detail: str) -> None:
        self.feed_errors[kind] += 1
        if self.first_feed_error is None:
            self.first_feed_error = f"{kind}: {detail}"[:500]

    def events_failed(self, kind: str, detail: str) -> None:
        self.event_errors[kind] += 1
        if self.first_event_error is None:
            self.first_event_error = f"{kind}: {detail}"[:500]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns)


@dataclass(frozen=True)
class _Feed:
    request_id: str
    experiment: str
    variant: str
    ranker: str
    video_ids: list[str]
    positions: list[int]
    degraded: list[str]


class _Loop:
    """One run: the shared client, catalogue and ledger, and the simulated users' coroutines."""

    def __init__(
        self,
        config: ReelhouseConfig,
        options: ClosedLoopOptions,
        world: WrittenCatalogue,
        client: httpx.AsyncClient,
        clock: Clock,
    ) -> None:
        self.options = options
        self.world = world
        self.clock = clock
        # Event times are the clock's: the wall clock runs at 1x while users watch time_scale times
        # faster, so a simulated millisecond is 1/time_scale of a clock one; a simulated clock runs
        # at time_scale itself (the multi-day loop sets it so), and the two agree.
        self.clock_ms_per_sim_ms = 1.0 if isinstance(clock, FileClock) else 1.0 / options.time_scale
        self.upload_ms = world.start_ms + world.videos.upload_offset_ms
        self.client = client
        self.ledger = _Ledger()
        # Only catalogue videos have latent topics and quality, so only they get a reaction.
        self.video_index = {video_id(i): i for i in range(len(world.videos))}
        self.max_events_per_post = config.serving.max_events_per_request
        self.auth = {"authorization": f"Bearer {options.token}", "content-type": "application/json"}
        self.deadline = math.inf
        # Ids carry the seed and the start, so runs never collide (the lake deduplicates by event_id).
        self.id_prefix = f"cl.{options.seed:x}.{int(time.time() * 1000):x}."
        self.event_counter = 0
        self.session_counter = 0

    # -- one simulated user -------------------------------------------------------------------

    def _device(self, user: int, network: str) -> dict[str, str]:
        users = self.world.users
        return {
            "os": OS_NAMES[users.os[user]],
            "app_version": APP_VERSIONS[users.app_version[user]],
            "country": COUNTRIES[users.country[user]],
            "network": network,
        }

    async def run_user(self, user: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([self.options.seed, 4, user]))
        for _ in range(self.options.sessions):
            if time.monotonic() >= self.deadline:
                return
            await self._session(user, rng)

    async def _session(self, user: int, rng: np.random.Generator) -> None:
        network = NETWORKS[min(int(np.searchsorted(np.cumsum(NETWORK_WEIGHTS), rng.random())), len(NETWORKS) - 1)]
        pages = min(int(rng.geometric(PAGES_P)), MAX_PAGES, self.options.max_pages)
        self.session_counter += 1
        session_id = f"s{self.id_prefix}{self.session_counter}"
        self.ledger.sessions += 1
        device = self._device(user, network)
        session_ms = 0.0  # simulated time since the session's first page
        for _ in range(pages):
            if session_ms > MAX_SESSION_MS or time.monotonic() >= self.deadline:
                return
            feed = await self._request_feed(user, session_id, device)
            if feed is None:
                return  # an error ends the session, as an app would show an error page
            session_ms += await self._watch(user, session_id, device, feed, rng)

    async def _request_feed(self, user: int, session_id: str, device: dict[str, str]) -> _Feed | None:
        ledger = self.ledger
        params = {"user_id": user_id(user), "k": str(self.options.k), "session_id": session_id, **device}
        ledger.feed_requests += 1
        started = time.perf_counter()
        try:
            response = await self.client.get(FEED_PATH, params=params, headers=self.auth)
        except httpx.TimeoutException as e:
            ledger.feed_failed("timeout", repr(e))
            return None
        except httpx.TransportError as e:
            ledger.feed_failed("connection", repr(e))
            return None
        if response.status_code != 200:
            ledger.feed_failed(str(response.status_code), response.text[:300])
            if response.status_code == 503:  # overloaded: back off as told before the next session
                await asyncio.sleep(min(_retry_after(response), _MAX_RETRY_AFTER_S))
            return None
        ledger.latencies_ms.append((time.perf_counter() - started) * 1000.0)
        try:
            feed = _parse_feed(response.content)
        except ValueError as e:
            ledger.feed_failed("bad_response", str(e))
            return None
        ledger.feeds += 1
        ledger.users.add(user_id(user))
        ledger.degraded.update(feed.degraded)
        return feed

    async def _watch(
        self, user: int, session_id: str, device: dict[str, str], feed: _Feed, rng: np.random.Generator
    ) -> float:
        """React to one page, wait until it is watched, post the outcomes; returns the simulated ms it took."""
        received_ms = self.clock.now_ms()
        world, ledger = self.world, self.ledger
        known = [(i, self.video_index[v]) for i, v in enumerate(feed.video_ids) if v in self.video_index]
        ledger.unknown_videos += len(feed.video_ids) - len(known)
        if not known:
            return 0.0
        shown = np.asarray([index for _, index in known], dtype=np.int64)
        reactions = react(world.users, world.videos, np.full(len(shown), user, dtype=np.int64), shown, rng)
        watch, duration = reactions.watch_ms, reactions.duration_ms
        gap = rng.integers(*SWIPE_GAP_MS, size=len(shown))
        start = np.cumsum(watch + gap) - (watch + gap)  # back to back from the page's arrival
        played = np.flatnonzero(~reactions.skipped)
        outcomes: list[tuple[int, int, float]] = [  # (event type, item, simulated offset ms)
            (EVENT_TYPES.index("skip" if reactions.skipped[i] else "play"), i, float(start[i] + watch[i]))
            for i in range(len(shown))
        ]
        engaged: dict[int, np.ndarray] = {}
        for event_type in ENGAGEMENT:
            hit = played[engages(event_type, reactions.score[played], rng)]
            engaged[event_type] = hit
            offsets = start[hit] + 1 + (rng.random(len(hit)) * watch[hit]).astype(np.int64)
            outcomes.extend((event_type, int(i), float(o)) for i, o in zip(hit, offsets))
        page_ms = float(start[-1] + watch[-1] + gap[-1])

        # The user watches in compressed time; events are stamped when they happen, never later than now.
        await asyncio.sleep(page_ms / self.options.time_scale / 1000.0)
        user_key = user_id(user)
        events = []
        for event_type, item, offset in sorted(outcomes, key=lambda o: o[2]):
            event: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "event_id": f"e{self.id_prefix}{self.event_counter}",
                "event_type": EVENT_TYPES[event_type],
                "user_id": user_key,
                "video_id": feed.video_ids[known[item][0]],
                "event_time": int(received_ms + offset * self.clock_ms_per_sim_ms),
                "session_id": session_id,
                "request_id": feed.request_id,
                "device": device,
            }
            self.event_counter += 1
            if event["event_type"] in ("play", "skip"):
                event["watch_ms"] = int(watch[item])
            if event["event_type"] == "play":
                event["video_duration_ms"] = int(duration[item])
            events.append(event)
        await self._post(events)

        liked = np.zeros(len(shown), dtype=np.int8)
        liked[engaged[EVENT_TYPES.index("like")]] = 1
        shared = np.zeros(len(shown), dtype=np.int8)
        shared[engaged[EVENT_TYPES.index("share")]] = 1
        # The training set's watch ratio (training/columns.py): 0 unless the video was played.
        watch_ratio = np.where(reactions.skipped, 0.0, watch / duration)
        new_video = (received_ms - self.upload_ms[shown]) < DAY_MS
        columns = ledger.columns
        for item, (position, _) in enumerate(known):
            columns["user_id"].append(user_key)
            columns["experiment"].append(feed.experiment)
            columns["variant"].append(feed.variant)
            columns["ranker"].append(feed.ranker)
            columns["request_id"].append(feed.request_id)
            columns["video_id"].append(feed.video_ids[position])
            columns["position"].append(feed.positions[position])
            columns["played"].append(int(not reactions.skipped[item]))
            columns["watch_ratio"].append(float(watch_ratio[item]))
            columns["liked"].append(int(liked[item]))
            columns["shared"].append(int(shared[item]))
            columns["new_video"].append(int(new_video[item]))
        return page_ms

    async def _post(self, events: list[dict[str, Any]]) -> None:
        for first in range(0, len(events), self.max_events_per_post):
            batch = events[first : first + self.max_events_per_post]
            body = orjson.dumps({"events": batch})
            try:
                response = await self.client.post(EVENTS_PATH, content=body, headers=self.auth)
            except httpx.TimeoutException as e:
                self.ledger.events_failed("timeout", repr(e))
                continue
            except httpx.TransportError as e:
                self.ledger.events_failed("connection", repr(e))
                continue
            if response.status_code == 202:
                self.ledger.events_posted += len(batch)
            else:
                self.ledger.events_failed(str(response.status_code), response.text[:300])

    # -- the run ------------------------------------------------------------------------------------

    async def run(self, users: np.ndarray) -> float:
        options = self.options
        started = time.monotonic()
        if options.duration_s is not None:
            self.deadline = started + options.duration_s
        queue: asyncio.Queue[int] = asyncio.Queue()
        for user in users.tolist():
            queue.put_nowait(user)

        async def worker() -> None:
            while not queue.empty() and time.monotonic() < self.deadline:
                await self.run_user(queue.get_nowait())

        progress = asyncio.create_task(self._progress(started))
        try:
            await asyncio.gather(*(worker() for _ in range(min(options.concurrency, len(users)))))
        finally:
            progress.cancel()
        return time.monotonic() - started

    async def _progress(self, started: float) -> None:
        ledger = self.ledger
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            log.info(
                "closed loop: %d feeds (%d errors), %d impressions, %d events posted in %.0f s",
                ledger.feeds, sum(ledger.feed_errors.values()), len(ledger.columns["user_id"]),
                ledger.events_posted, time.monotonic() - started,
            )  # fmt: skip


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _parse_feed(content: bytes) -> _Feed:
    """The fields of a 200 feed response the loop needs; ``ValueError`` naming what is wrong."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"the feed response is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ValueError(f"the feed response is a JSON {type(body).__name__}, not an object")
    request_id, items = body.get("request_id"), body.get("items")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("the feed response has no request_id")
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("video_id"), str) for i in items
    ):
        raise ValueError("the feed response's items are not a list of objects with a video_id")
    return _Feed(
        request_id=request_id,
        experiment=body.get("experiment") or NO_EXPERIMENT,
        variant=body.get("variant") or NO_EXPERIMENT,
        ranker=str(body.get("ranker") or ""),
        video_ids=[i["video_id"] for i in items],
        positions=[int(i.get("position", n)) for n, i in enumerate(items)],
        degraded=[str(d) for d in body.get("degraded") or []],
    )


# -- the report -------------------------------------------------------------------------------------


def variant_rates(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (experiment, variant): users, impressions and the mean of every metric (rates per impression)."""
    rows = []
    for (experiment, variant), group in frame.groupby(["experiment", "variant"], sort=True):
        rows.append(
            {
                "experiment": experiment,
                "variant": variant,
                "rankers": sorted(set(group["ranker"])),
                "users": int(group["user_id"].nunique()),
                "impressions": len(group),
                "play_rate": float(group["played"].mean()),
                "mean_watch_ratio": float(group["watch_ratio"].mean()),
                "like_rate": float(group["liked"].mean()),
                "share_rate": float(group["shared"].mean()),
            }
        )
    return rows


def compare_variants(config: ReelhouseConfig, frame: pd.DataFrame) -> tuple[list[Any], list[str]]:
    """experiments.stats summaries of each experiment in ``frame`` against its control; notes on what was not compared."""
    from reelhouse.errors import ExperimentDataError
    from reelhouse.experiments.stats import summarize

    summaries: list[Any] = []
    notes: list[str] = []
    configured = {e.name: e for e in config.experiments}
    for experiment in sorted(set(frame["experiment"]) - {NO_EXPERIMENT}):
        if experiment not in configured:
            notes.append(f"experiment {experiment!r} is not in this config's experiments: no control to compare with")
            continue
        control = configured[experiment].variants[0].name
        rows = frame[frame["experiment"] == experiment]
        try:
            summaries.extend(summarize(rows, experiment=experiment, control=control, metrics=METRICS))
        except ExperimentDataError as e:
            notes.append(f"experiment {experiment!r} not compared: {e}")
    return summaries, notes


def report_markdown(report: ClosedLoopReport, summaries: list[Any]) -> str:
    from reelhouse.experiments.stats import to_markdown

    lines = [
        "## Closed loop: online engagement per variant",
        "",
        f"{report.users:,} simulated users, {report.sessions:,} sessions, {report.feeds:,} feeds "
        f"({sum(report.feed_errors.values()):,} failed), {report.impressions:,} impressions, "
        f"{report.events_posted:,} events posted in {report.elapsed_s:.1f} s against {report.url}.",
        "",
        "| experiment | variant | ranker | users | impressions | play rate | mean watch ratio | like rate "
        "| share rate |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report.variants:
        lines.append(
            f"| {row['experiment']} | {row['variant']} | {', '.join(row['rankers'])} | {row['users']:,} | "
            f"{row['impressions']:,} | {row['play_rate']:.4f} | {row['mean_watch_ratio']:.4f} | "
            f"{row['like_rate']:.4f} | {row['share_rate']:.4f} |"
        )
    lines += ["", "Comparisons with each experiment's control (delta method over users, Holm-adjusted):", ""]
    lines.append(to_markdown(summaries) if summaries else "_No experiment to compare._\n")
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}


def _write(config: ReelhouseConfig, report: ClosedLoopReport, markdown: str) -> dict[str, str]:
    directory = Path(config.data_dir) / "closed_loop"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = {
        "markdown": str(directory / f"closed-loop-{stamp}.md"),
        "json": str(directory / f"closed-loop-{stamp}.json"),
    }
    report.paths = paths
    Path(paths["markdown"]).write_text(markdown)
    Path(paths["json"]).write_text(report.to_json() + "\n")
    return paths


# -- entry point ---------------------------------------------------------------------------------------


def pick_users(world: WrittenCatalogue, count: int, seed: int) -> np.ndarray:
    """``count`` distinct catalogue users, drawn by activity like the open loop's sessions."""
    available = len(world.users)
    if count > available:
        raise SimulationError(
            f"{count} simulated users asked for, the catalogue has {available}: use --users <= {available}"
        )
    activity = world.users.activity
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    return rng.choice(available, size=count, replace=False, p=activity / activity.sum())


async def _check_ready(client: httpx.AsyncClient, url: str) -> None:
    try:
        response = await client.get(READY_PATH)
    except httpx.TransportError as e:
        raise SimulationError(
            f"cannot reach the feed service at {url} ({e!r}): start it (reelhouse serve) or pass --url"
        ) from e
    if response.status_code != 200:
        raise SimulationError(f"the feed service at {url} is not ready ({response.status_code}: {response.text[:300]})")


def load_world(options: ClosedLoopOptions) -> WrittenCatalogue:
    try:
        return read_catalogue(options.catalogue_dir)
    except (FileNotFoundError, ValueError) as e:
        raise SimulationError(
            f"cannot read the catalogue the lake knows from {options.catalogue_dir}: {e}; "
            "run `reelhouse simulate` first (it writes the catalogue) or point simulator.catalogue_dir at it"
        ) from e


def run_closed_loop(
    config: ReelhouseConfig, options: ClosedLoopOptions, *, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[ClosedLoopReport, str]:
    """Drive the feed service at ``options.url``; returns the report and its markdown (both also written
    under ``<data_dir>/closed_loop/``). ``transport`` replaces the network (tests)."""
    world = load_world(options)
    report, frame, summaries = play(
        config, options, world, pick_users(world, options.users, options.seed), transport=transport
    )
    markdown = report_markdown(report, summaries)
    _write(config, report, markdown)
    log.info("closed loop finished: %d feeds, %d impressions, report in %s", report.feeds, report.impressions,
             report.paths["markdown"])  # fmt: skip
    return report, markdown


def play(
    config: ReelhouseConfig,
    options: ClosedLoopOptions,
    world: WrittenCatalogue,
    users: np.ndarray,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[ClosedLoopReport, pd.DataFrame, list[Any]]:
    """One run of ``users`` (catalogue indices) against the service: the report, the ledger (one row
    per reacted impression) and the experiments.stats summaries. Event times come from ``clock``
    (default: the wall clock)."""
    clock = clock or WallClock()
    log.info(
        "closed loop against %s: %d users (%d at once), %d session(s) each, k=%d, time scale %gx",
        options.url, len(users), min(options.concurrency, len(users)), options.sessions, options.k, options.time_scale,
    )  # fmt: skip

    async def main() -> tuple[_Ledger, float]:
        limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
        async with httpx.AsyncClient(
            base_url=options.url, timeout=options.request_timeout_s, limits=limits, transport=transport
        ) as client:
            await _check_ready(client, options.url)
            loop = _Loop(config, options, world, client, clock)
            elapsed = await loop.run(users)
            return loop.ledger, elapsed

    ledger, elapsed = asyncio.run(main())
    frame = ledger.frame()
    summaries, notes = compare_variants(config, frame) if len(frame) else ([], ["no impressions: nothing to compare"])
    report = ClosedLoopReport(
        url=options.url,
        users=len(ledger.users),
        sessions=ledger.sessions,
        feed_requests=ledger.feed_requests,
        feeds=ledger.feeds,
        feed_errors=dict(ledger.feed_errors),
        first_feed_error=ledger.first_feed_error,
        impressions=len(frame),
        unknown_videos=ledger.unknown_videos,
        events_posted=ledger.events_posted,
        event_errors=dict(ledger.event_errors),
        first_event_error=ledger.first_event_error,
        degraded=dict(ledger.degraded),
        feed_latency_ms=_percentiles(ledger.latencies_ms),
        elapsed_s=round(elapsed, 3),
        variants=variant_rates(frame) if len(frame) else [],
        comparisons=[asdict(s) for s in summaries],
        notes=notes,
    )
    return report, frame, summaries
