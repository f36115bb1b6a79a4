"""Options of one simulation run: command-line arguments layered over ``config.simulator``.

``reelhouse simulate`` produces open-loop traffic to Kafka (:class:`SimulationOptions`);
``reelhouse simulate --closed-loop`` drives the running feed service (:class:`ClosedLoopOptions`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ConfigError


@dataclass(frozen=True)
class SimulationOptions:
    """What one run does; build it with :func:`simulation_options_from_args` or :meth:`from_config`."""

    rate: float  # events/s over all processes; 0 = as fast as possible
    duration_s: float | None  # stop after this many wall-clock seconds (None: no time limit)
    events: int | None  # stop after this many messages (None: no count limit)
    users: int
    videos: int
    seed: int
    malformed_share: float
    topic: str
    processes: int = 1
    write_catalogue: bool = True
    start_time_ms: int | None = None  # simulated clock start; None: far enough behind now for the run

    def __post_init__(self) -> None:
        problems = []
        if self.rate < 0:
            problems.append(f"rate must be >= 0 (0 = as fast as possible), got {self.rate}")
        if self.duration_s is None and self.events is None:
            problems.append("give a duration or a number of events, or the run would never stop")
        if self.duration_s is not None and self.duration_s <= 0:
            problems.append(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.events is not None and self.events < 0:
            problems.append(f"events must be >= 0, got {self.events}")
        if self.users < 1 or self.videos < 1:
            problems.append(f"users and videos must be >= 1, got {self.users} and {self.videos}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if not 0 <= self.malformed_share <= 1:
            problems.append(f"malformed share must be in [0, 1], got {self.malformed_share}")
        if not 1 <= self.processes <= 64:
            problems.append(f"processes must be in [1, 64], got {self.processes}")
        elif self.processes > self.users:
            problems.append(f"{self.processes} processes need at least as many users, got {self.users}")
        if not self.topic:
            problems.append("the topic name is empty")
        if problems:
            raise ConfigError("invalid simulation options: " + "; ".join(problems))

    @classmethod
    def from_config(cls, config: ReelhouseConfig, **overrides: object) -> SimulationOptions:
        sim = config.simulator
        values: dict[str, object] = {
            "rate": sim.rate,
            "duration_s": sim.duration_s,
            "events": None,
            "users": sim.users,
            "videos": sim.videos,
            "seed": sim.seed,
            "malformed_share": sim.malformed_share,
            "topic": config.kafka.events_topic.name,
            "processes": sim.processes,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulation options; every default is None, meaning "use the config"."""
    group = parser.add_argument_group("simulation")
    group.add_argument(
        "--rate", type=float, default=None, help="events per second over all processes; 0 = as fast as possible"
    )
    group.add_argument("--duration", type=float, default=None, help="wall-clock seconds to run")
    group.add_argument(
        "--events", type=int, default=None, help="stop after this many messages (without --duration: no time limit)"
    )
    group.add_argument("--users", type=int, default=None, help="users in the catalogue")
    group.add_argument("--videos", type=int, default=None, help="videos in the catalogue at the start")
    group.add_argument("--seed", type=int, default=None, help="seed: the same seed gives the same catalogue and events")
    group.add_argument("--malformed-share", type=float, default=None, help="share of deliberately malformed messages")
    group.add_argument("--topic", default=None, help="Kafka topic (default: kafka.events_topic.name)")
    group.add_argument("--processes", type=int, default=None, help="parallel producer processes")
    group.add_argument(
        "--no-catalogue",
        action="store_true",
        help="do not write users.parquet / videos.parquet to simulator.catalogue_dir",
    )


def simulation_options_from_args(config: ReelhouseConfig, args: argparse.Namespace) -> SimulationOptions:
    """Options from parsed arguments; arguments left out fall back to ``config.simulator``."""
    overrides: dict[str, object] = {
        "rate": args.rate,
        "users": args.users,
        "videos": args.videos,
        "seed": args.seed,
        "malformed_share": args.malformed_share,
        "topic": args.topic,
        "processes": args.processes,
        "events": args.events,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.duration is not None:
        overrides["duration_s"] = args.duration
    elif args.events is not None:
        overrides["duration_s"] = None  # a count alone decides when to stop
    overrides["write_catalogue"] = not args.no_catalogue
    return SimulationOptions.from_config(config, **overrides)


# -- the closed loop ------------------------------------------------------------------------------

# Options of one loop only: given to the other they are refused rather than silently ignored.
_OPEN_LOOP_ONLY = ("rate", "events", "videos", "malformed_share", "topic", "processes", "no_catalogue")
_CLOSED_LOOP_ONLY = (
    "url",
    "concurrency",
    "sessions",
    "pages",
    "k",
    "time_scale",
    "days",
    "day_seconds",
    "drift",
    "training_days",
)
# Options of a single closed-loop run that the multi-day loop sets itself.
_ONE_RUN_ONLY = ("url", "time_scale", "duration")


@dataclass(frozen=True)
class ClosedLoopOptions:
    """What one closed-loop run does; build it with :func:`closed_loop_options_from_args` or :meth:`from_config`."""

    url: str  # base URL of the feed service
    token: str  # bearer token of POST /v1/events
    users: int  # distinct simulated users, drawn by activity from the written catalogue
    concurrency: int  # simulated users in a session at once
    sessions: int  # sessions per simulated user
    max_pages: int  # feed pages per session are geometric (the behaviour model), at most this many
    k: int  # videos per feed page
    duration_s: float | None  # wall-clock limit (None: until every session has ended)
    seed: int
    time_scale: float  # simulated seconds per wall-clock second while users watch
    catalogue_dir: str
    request_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        problems = []
        if not self.url.startswith(("http://", "https://")):
            problems.append(f"the service URL must start with http:// or https://, got {self.url!r}")
        if not self.token:
            problems.append("no bearer token for POST /v1/events: set serving.token (or REELHOUSE__SERVING__TOKEN)")
        if self.users < 1:
            problems.append(f"users must be >= 1, got {self.users}")
        if self.concurrency < 1:
            problems.append(f"concurrency must be >= 1, got {self.concurrency}")
        if self.sessions < 1:
            problems.append(f"sessions must be >= 1, got {self.sessions}")
        if not 1 <= self.max_pages <= 100:
            problems.append(f"pages must be in [1, 100], got {self.max_pages}")
        if self.k < 1:
            problems.append(f"k must be >= 1, got {self.k}")
        if self.duration_s is not None and self.duration_s <= 0:
            problems.append(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.time_scale <= 0:
            problems.append(f"time scale must be > 0, got {self.time_scale}")
        if self.request_timeout_s <= 0:
            problems.append(f"request timeout must be > 0 seconds, got {self.request_timeout_s}")
        if problems:
            raise ConfigError("invalid closed-loop options: " + "; ".join(problems))

    @classmethod
    def from_config(cls, config: ReelhouseConfig, **overrides: object) -> ClosedLoopOptions:
        serving, sim = config.serving, config.simulator
        values: dict[str, object] = {
            "url": f"http://{serving.host}:{serving.port}",
            "token": serving.token or "",
            "users": 200,
            "concurrency": 32,
            "sessions": 1,
            "max_pages": 5,
            "k": serving.default_k,
            "duration_s": None,
            "seed": sim.seed,
            "time_scale": sim.time_scale,
            "catalogue_dir": sim.catalogue_dir,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def add_closed_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--closed-loop`` and its options (``--users``, ``--duration`` and ``--seed`` are shared)."""
    group = parser.add_argument_group(
        "closed loop",
        "with --closed-loop, simulated users request feeds from the running service and post their reactions "
        "back; --users is then the number of simulated users (default 200), --duration a wall-clock limit",
    )
    group.add_argument(
        "--closed-loop", action="store_true", help="drive the running feed service instead of producing to Kafka"
    )
    group.add_argument("--url", default=None, help="feed service base URL (default: http://serving.host:serving.port)")
    group.add_argument("--concurrency", type=int, default=None, help="simulated users in a session at once (32)")
    group.add_argument("--sessions", type=int, default=None, help="sessions per simulated user (default 1)")
    group.add_argument("--pages", type=int, default=None, help="most feed pages per session (default 5)")
    group.add_argument("--k", type=int, default=None, help="videos per feed page (default: serving.default_k)")
    group.add_argument(
        "--time-scale", type=float, default=None,
        help="simulated seconds per wall-clock second while users watch (default: simulator.time_scale)",
    )  # fmt: skip
    days = parser.add_argument_group(
        "multi-day closed loop",
        "with --closed-loop --days N: simulated days against a service the loop starts, the daily flow after each "
        "(make loop; docs/loop.md); --users (default 500), --seed, --concurrency, --sessions (default 2 a day), "
        "--pages and --k apply",
    )
    days.add_argument("--days", type=int, default=None, help="simulated days to run (with --closed-loop)")
    days.add_argument(
        "--day-seconds", type=float, default=None,
        help=f"wall-clock seconds of traffic per simulated day (default {DEFAULT_DAY_SECONDS:g})",
    )  # fmt: skip
    days.add_argument(
        "--training-days", type=int, default=None,
        help="days of impressions each day's training set covers (default: every day since the loop's bootstrap)",
    )  # fmt: skip
    days.add_argument(
        "--drift", type=float, default=None,
        help=f"share of each user's taste replaced by a random one per day (default {DEFAULT_DRIFT:g})",
    )  # fmt: skip


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names if getattr(args, name, None) not in (None, False))


def reject_closed_loop_arguments(args: argparse.Namespace) -> None:
    """Refuse closed-loop options on an open-loop run (they would be silently ignored)."""
    flags = _given(args, _CLOSED_LOOP_ONLY)
    if flags:
        raise ConfigError(f"closed-loop options given without --closed-loop: {flags}")


def closed_loop_options_from_args(config: ReelhouseConfig, args: argparse.Namespace) -> ClosedLoopOptions:
    """Closed-loop options from parsed arguments; refuses open-loop-only options given alongside."""
    flags = _given(args, _OPEN_LOOP_ONLY)
    if flags:
        raise ConfigError(f"open-loop (Kafka traffic) options cannot be used with --closed-loop: {flags}")
    flags = _given(args, ("day_seconds", "drift", "training_days"))
    if flags:
        raise ConfigError(f"multi-day loop options given without --days: {flags}")
    overrides: dict[str, object] = {
        "url": args.url.rstrip("/") if args.url else None,
        "users": args.users,
        "concurrency": args.concurrency,
        "sessions": args.sessions,
        "max_pages": args.pages,
        "k": args.k,
        "duration_s": args.duration,
        "seed": args.seed,
        "time_scale": args.time_scale,
    }
    return ClosedLoopOptions.from_config(config, **{k: v for k, v in overrides.items() if v is not None})


# -- the multi-day closed loop ----------------------------------------------------------------------

DEFAULT_DAY_SECONDS = 60.0
DEFAULT_DRIFT = 0.03


@dataclass(frozen=True)
class LoopOptions:
    days: int
    users: int = 500
    day_seconds: float = DEFAULT_DAY_SECONDS  # wall seconds a simulated day's traffic takes
    drift: float = DEFAULT_DRIFT  # per day, of each user's taste
    seed: int = 7
    concurrency: int = 32
    sessions: int = 2  # per user and day
    max_pages: int = 5
    k: int = 10
    # Days of impressions each day's training set covers, ending with the day; None: every day since
    # the bootstrap's first (the model learns from all the feedback so far).
    training_days: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.training_days is not None and self.training_days < 1:
            problems.append(f"training days must be >= 1, got {self.training_days}")
        if self.days < 1:
            problems.append(f"days must be >= 1, got {self.days}")
        if self.users < 2:
            problems.append(f"users must be >= 2 (two variants), got {self.users}")
        if self.day_seconds < 5:
            problems.append(f"a simulated day needs at least 5 wall seconds, got {self.day_seconds}")
        if not 0 <= self.drift <= 1:
            problems.append(f"drift must be in [0, 1], got {self.drift}")
        if min(self.concurrency, self.sessions, self.max_pages, self.k) < 1:
            problems.append("concurrency, sessions, pages and k must be >= 1")
        if problems:
            raise ConfigError("invalid multi-day loop options: " + "; ".join(problems))


def loop_options_from_args(args: argparse.Namespace) -> LoopOptions:
    """Multi-day loop options (``--days``) from parsed arguments; refuses what the loop sets itself."""
    flags = _given(args, _OPEN_LOOP_ONLY + _ONE_RUN_ONLY)
    if flags:
        raise ConfigError(
            f"--days starts its own service on a simulated clock; these options do not apply to it: {flags}"
        )
    values = {
        "days": args.days,
        "users": args.users,
        "day_seconds": args.day_seconds,
        "drift": args.drift,
        "seed": args.seed,
        "concurrency": args.concurrency,
        "sessions": args.sessions,
        "max_pages": args.pages,
        "k": args.k,
        "training_days": args.training_days,
    }
    return LoopOptions(**{k: v for k, v in values.items() if v is not None})
