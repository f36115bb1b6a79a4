"""Options of one simulation run: command-line arguments layered over ``config.simulator``."""

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
    group.add_argument("--rate", type=float, default=None, help="events per second over all processes; 0 = as fast as possible")
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
        "--no-catalogue", action="store_true", help="do not write users.parquet / videos.parquet to simulator.catalogue_dir"
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
