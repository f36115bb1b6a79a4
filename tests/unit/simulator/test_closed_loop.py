"""The closed loop against a fake feed service (httpx.MockTransport): requests, reactions, events, report."""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.config.models import ExperimentConfig, VariantConfig
from reelhouse.errors import ConfigError, SimulationError
from reelhouse.events.contract import Invalid, validate_object
from reelhouse.simulator.catalogue import COUNTRIES, OS_NAMES, WrittenCatalogue, read_catalogue, video_id
from reelhouse.simulator.closed_loop import pick_users, run_closed_loop
from reelhouse.simulator.options import (
    ClosedLoopOptions,
    add_closed_loop_arguments,
    add_simulation_arguments,
    closed_loop_options_from_args,
    reject_closed_loop_arguments,
)

from .simworld import START_MS, small_catalogue

CONFIG = Path(__file__).resolve().parents[3] / "conf" / "local.yaml"
TOKEN = "t0ken-for-tests"
URL = "http://feed.test"


@pytest.fixture(scope="module")
def catalogue_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("catalogue")
    catalogue = small_catalogue()
    catalogue.write(str(directory), START_MS, catalogue.uploads_until(600_000))
    return str(directory)


@pytest.fixture(scope="module")
def world(catalogue_dir: str) -> WrittenCatalogue:
    return read_catalogue(catalogue_dir)


def make_config(tmp_path: Path, catalogue_dir: str) -> ReelhouseConfig:
    config = load_config(CONFIG, environ={})
    experiment = ExperimentConfig(
        name="exp",
        variants=[VariantConfig(name="random", share=0.5, ranker="random"), VariantConfig(name="ranker", share=0.5)],
    )
    return config.model_copy(
        update={
            "data_dir": tmp_path,
            "simulator": config.simulator.model_copy(update={"catalogue_dir": catalogue_dir}),
            "serving": config.serving.model_copy(update={"token": TOKEN}),
            "experiments": [experiment],
        }
    )


def options(config: ReelhouseConfig, **overrides: object) -> ClosedLoopOptions:
    settings: dict[str, object] = dict(url=URL, users=60, concurrency=8, sessions=2, time_scale=1e6, seed=5)
    settings.update(overrides)
    return ClosedLoopOptions.from_config(config, **settings)


class FakeFeedService:
    """The HTTP API of the feed service over a catalogue, with ground truth the real service never has.

    Users are bucketed by a hash of their id; the ``ranker`` variant shows the videos closest to the
    user's true taste (out of a random sample), the ``random`` variant random videos, so the
    closed loop has a real difference to find. Every posted event is checked against the contract.
    """

    def __init__(
        self, world: WrittenCatalogue, *, unknown_every: int = 0, overload_every: int = 0, fail_every: int = 0
    ) -> None:
        self.world = world
        self.rng = np.random.default_rng(0)
        self.unknown_every, self.overload_every, self.fail_every = unknown_every, overload_every, fail_every
        self.feeds: dict[str, dict] = {}  # request_id -> what was served, to whom and when
        self.feed_requests = 0
        self.statuses: dict[int, int] = defaultdict(int)
        self.events: list[dict] = []
        self.posted_at: list[int] = []
        self.invalid: list[str] = []

    def variant(self, user: str) -> str:
        return "ranker" if hashlib.sha256(user.encode()).digest()[0] % 2 else "random"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"ready": True})
        if request.url.path == "/v1/feed" and request.method == "GET":
            return self.feed(request)
        if request.url.path == "/v1/events" and request.method == "POST":
            return self.collect(request)
        return httpx.Response(404, json={"detail": "not found"})

    def feed(self, request: httpx.Request) -> httpx.Response:
        self.feed_requests += 1
        params = request.url.params
        n = self.feed_requests
        if self.overload_every and n % self.overload_every == 0:
            self.statuses[503] += 1
            return httpx.Response(503, headers={"retry-after": "0"}, json={"detail": "overloaded"})
        if self.fail_every and n % self.fail_every == 0:
            self.statuses[500] += 1
            return httpx.Response(500, json={"detail": "boom"})
        user, k = params["user_id"], int(params["k"])
        index = int(user[1:])
        variant = self.variant(user)
        if variant == "ranker":
            sample = self.rng.choice(len(self.world.videos), size=300, replace=False)
            affinity = self.world.videos.mix[sample] @ self.world.users.taste[index]
            videos = sample[np.argsort(-affinity)[:k]]
        else:
            videos = self.rng.choice(len(self.world.videos), size=k, replace=False)
        ids = [video_id(int(v)) for v in videos]
        if self.unknown_every and n % self.unknown_every == 0:
            ids[-1] = "v9999999"  # a video the catalogue does not hold
        request_id = f"r-{n:06d}"
        self.feeds[request_id] = {"user": user, "videos": ids, "session": params["session_id"], "at": _now_ms()}
        self.statuses[200] += 1
        body = {
            "request_id": request_id,
            "user_id": user,
            "experiment": "exp",
            "variant": variant,
            "ranker": "reelhouse-ranker/1" if variant == "ranker" else "random",
            "degraded": ["features_unavailable"] if n % 10 == 0 else [],
            "items": [{"video_id": v, "position": i, "score": 1.0 - i / k, "source": "als"} for i, v in enumerate(ids)],
        }
        return httpx.Response(200, content=orjson.dumps(body), headers={"content-type": "application/json"})

    def collect(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"detail": "bad token"})
        now = _now_ms()
        events = orjson.loads(request.content)["events"]
        problems = []
        for i, event in enumerate(events):
            try:
                validate_object(event, now)
            except Invalid as e:
                problems.append({"index": i, "reason": e.reason, "detail": e.detail})
        if problems:
            self.invalid.extend(str(p) for p in problems)
            return httpx.Response(422, json={"errors": problems})
        self.events.extend(events)
        self.posted_at.extend([now] * len(events))
        return httpx.Response(202, json={"accepted": len(events)})


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_outcomes_are_contract_valid_and_belong_to_the_feed_that_showed_the_video(
    tmp_path: Path, catalogue_dir: str, world: WrittenCatalogue
) -> None:
    service = FakeFeedService(world)
    config = make_config(tmp_path, catalogue_dir)
    report, _ = run_closed_loop(config, options(config), transport=httpx.MockTransport(service))

    assert not service.invalid and report.event_errors == {} and report.feed_errors == {}
    assert report.events_posted == len(service.events) > 0
    assert report.feeds == report.feed_requests == service.feed_requests
    shown = sum(len(f["videos"]) for f in service.feeds.values())
    assert report.impressions == shown and report.unknown_videos == 0
    per_feed: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for event, posted_at in zip(service.events, service.posted_at):
        feed = service.feeds[event["request_id"]]
        assert event["user_id"] == feed["user"] and event["session_id"] == feed["session"]
        assert event["video_id"] in feed["videos"]
        assert feed["at"] <= event["event_time"] <= posted_at  # never before the feed, never in the future
        index = int(event["video_id"][1:])
        if event["event_type"] == "play":
            # The duration is the catalogue's; the watch time never exceeds it.
            assert event["video_duration_ms"] == world.videos.duration_ms[index]
            assert 0 < event["watch_ms"] <= event["video_duration_ms"]
        per_feed[(event["request_id"], event["video_id"])].append(event)
    # Exactly one play or skip per shown video; likes and shares only after a play.
    assert len(per_feed) == shown
    for events in per_feed.values():
        kinds = [e["event_type"] for e in events]
        assert kinds.count("play") + kinds.count("skip") == 1
        assert "skip" not in kinds or kinds == ["skip"]
    assert len({e["event_id"] for e in service.events}) == len(service.events)
    # Each simulated user's device travels with its feed requests and events.
    for event in service.events[:50]:
        user = int(event["user_id"][1:])
        assert event["device"]["country"] == COUNTRIES[world.users.country[user]]
        assert event["device"]["os"] == OS_NAMES[world.users.os[user]]
    # Two sessions for each of the 60 users, each a geometric number of pages (at most 5).
    assert report.sessions == 120 and report.users == 60
    assert 120 <= report.feeds <= 600
    assert report.degraded == {"features_unavailable": service.feed_requests // 10}


def test_a_ranker_that_knows_the_tastes_wins_significantly_over_random(
    tmp_path: Path, catalogue_dir: str, world: WrittenCatalogue
) -> None:
    service = FakeFeedService(world)
    config = make_config(tmp_path, catalogue_dir)
    report, markdown = run_closed_loop(config, options(config, users=200), transport=httpx.MockTransport(service))

    rates = {row["variant"]: row for row in report.variants}
    assert set(rates) == {"random", "ranker"}
    assert rates["ranker"]["rankers"] == ["reelhouse-ranker/1"]
    assert sum(r["impressions"] for r in rates.values()) == report.impressions
    # The behaviour model rewards affinity (7 x taste . mix): the taste-aware variant's users watch more.
    assert rates["ranker"]["play_rate"] > rates["random"]["play_rate"]
    assert rates["ranker"]["mean_watch_ratio"] > rates["random"]["mean_watch_ratio"]
    comparisons = {(c["variant"], c["metric"]): c for c in report.comparisons}
    # The control is the experiment's first configured variant (random here).
    assert comparisons[("random", "played")]["delta"] is None
    played = comparisons[("ranker", "played")]
    assert played["delta"] > 0 and played["significant"] and played["delta_ci_low"] > 0
    assert played["users"] == rates["ranker"]["users"]
    assert {c["metric"] for c in report.comparisons} == {"played", "watch_ratio", "liked", "shared"}
    # The report is printed and written: markdown table plus JSON.
    assert "| exp | ranker | reelhouse-ranker/1 |" in markdown and "p (Holm)" in markdown
    assert Path(report.paths["markdown"]).read_text() == markdown
    assert Path(report.paths["markdown"]).parent == tmp_path / "closed_loop"
    assert orjson.loads(Path(report.paths["json"]).read_bytes())["impressions"] == report.impressions


def test_failed_feeds_and_unknown_videos_are_counted_and_the_loop_goes_on(
    tmp_path: Path, catalogue_dir: str, world: WrittenCatalogue
) -> None:
    service = FakeFeedService(world, unknown_every=3, overload_every=7, fail_every=11)
    config = make_config(tmp_path, catalogue_dir)
    report, _ = run_closed_loop(config, options(config), transport=httpx.MockTransport(service))

    assert report.feed_errors == {"503": service.statuses[503], "500": service.statuses[500]}
    assert service.statuses[503] > 0 and service.statuses[500] > 0
    assert report.feeds == service.statuses[200]
    assert report.unknown_videos == len([r for r in service.feeds if int(r[2:]) % 3 == 0])
    # No reaction to a video the users know nothing about; everything else is reacted to and posted.
    assert report.impressions == sum(len(f["videos"]) for f in service.feeds.values()) - report.unknown_videos
    assert not any(e["video_id"] == "v9999999" for e in service.events)
    assert report.event_errors == {} and report.ok
    assert report.first_feed_error is not None


def test_rejected_events_are_reported(tmp_path: Path, catalogue_dir: str, world: WrittenCatalogue) -> None:
    service = FakeFeedService(world)
    config = make_config(tmp_path, catalogue_dir)
    run = options(config, users=5, token="not-the-token")
    report, _ = run_closed_loop(config, run, transport=httpx.MockTransport(service))
    assert report.events_posted == 0 and set(report.event_errors) == {"401"} and not report.ok


def test_the_duration_stops_new_pages(tmp_path: Path, catalogue_dir: str, world: WrittenCatalogue) -> None:
    service = FakeFeedService(world)
    config = make_config(tmp_path, catalogue_dir)
    # Watching a page of 10 videos takes at least 10 x (0.3 s skip + 0.25 s swipe) = 5.5 simulated
    # seconds, 55 ms at 100x: longer than the whole run, so each of the 2 slots starts at most one page.
    run = options(config, users=50, concurrency=2, duration_s=0.05, time_scale=100.0, max_pages=1, k=10)
    report, _ = run_closed_loop(config, run, transport=httpx.MockTransport(service))
    assert report.feeds <= 2 and report.users <= 2
    assert report.events_posted == len(service.events)  # the pages started before the end are still reported


def test_unreachable_service_missing_catalogue_and_too_many_users_are_clear_errors(
    tmp_path: Path, catalogue_dir: str, world: WrittenCatalogue
) -> None:
    config = make_config(tmp_path, catalogue_dir)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(SimulationError, match=r"cannot reach the feed service at http://feed.test"):
        run_closed_loop(config, options(config), transport=httpx.MockTransport(refuse))
    not_ready = httpx.MockTransport(lambda request: httpx.Response(503, json={"missing": ["model"]}))
    with pytest.raises(SimulationError, match=r"not ready \(503"):
        run_closed_loop(config, options(config), transport=not_ready)
    with pytest.raises(SimulationError, match=r"run `reelhouse simulate` first"):
        run_closed_loop(config, options(config, catalogue_dir=str(tmp_path / "nowhere")))
    with pytest.raises(SimulationError, match=r"use --users <= 2000"):
        pick_users(world, 2_001, seed=1)


def test_users_are_distinct_and_drawn_by_activity(world: WrittenCatalogue) -> None:
    users = pick_users(world, 500, seed=3)
    assert len(set(users.tolist())) == 500
    assert np.array_equal(users, pick_users(world, 500, seed=3))
    # Active users are over-represented: the picked users' mean activity beats the catalogue's.
    assert world.users.activity[users].mean() > world.users.activity.mean()


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulation_arguments(parser)
    add_closed_loop_arguments(parser)
    return parser.parse_args(list(argv))


def test_closed_loop_options_from_arguments_and_config(tmp_path: Path, catalogue_dir: str) -> None:
    config = make_config(tmp_path, catalogue_dir)
    defaults = closed_loop_options_from_args(config, _parse("--closed-loop"))
    assert defaults.url == f"http://{config.serving.host}:{config.serving.port}"
    assert (defaults.k, defaults.token, defaults.duration_s) == (config.serving.default_k, TOKEN, None)
    assert defaults.time_scale == config.simulator.time_scale and defaults.catalogue_dir == catalogue_dir
    given = closed_loop_options_from_args(
        config, _parse("--closed-loop", "--url", "http://h:9/", "--users", "7", "--concurrency", "3",
                       "--sessions", "4", "--pages", "2", "--k", "20", "--duration", "9", "--seed", "1"),
    )  # fmt: skip
    assert (given.url, given.users, given.concurrency, given.sessions) == ("http://h:9", 7, 3, 4)
    assert (given.max_pages, given.k, given.duration_s, given.seed) == (2, 20, 9.0, 1)


def test_options_of_the_other_loop_and_bad_values_are_refused(tmp_path: Path, catalogue_dir: str) -> None:
    config = make_config(tmp_path, catalogue_dir)
    with pytest.raises(ConfigError, match=r"cannot be used with --closed-loop: --rate, --processes"):
        closed_loop_options_from_args(config, _parse("--closed-loop", "--rate", "5", "--processes", "2"))
    with pytest.raises(ConfigError, match=r"given without --closed-loop: --url"):
        reject_closed_loop_arguments(_parse("--url", "http://h:1"))
    reject_closed_loop_arguments(_parse("--rate", "5"))  # an open-loop run with open-loop options
    with pytest.raises(ConfigError, match=r"no bearer token"):
        ClosedLoopOptions.from_config(config, token="")
    with pytest.raises(ConfigError, match=r"must start with http:// or https://.*concurrency must be >= 1"):
        ClosedLoopOptions.from_config(config, url="feed:8000", concurrency=0)
