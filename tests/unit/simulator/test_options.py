from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from reelhouse.config import load_config
from reelhouse.errors import ConfigError
from reelhouse.simulator import simulation_options_from_args
from reelhouse.simulator.options import add_simulation_arguments

CONFIG = Path(__file__).resolve().parents[3] / "conf" / "local.yaml"


def parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_simulation_arguments(parser)
    config = load_config(CONFIG, environ={})
    return config, simulation_options_from_args(config, parser.parse_args(list(argv)))


def test_defaults_come_from_config() -> None:
    config, options = parse()
    sim = config.simulator
    assert (options.rate, options.duration_s, options.events) == (sim.rate, sim.duration_s, None)
    assert (options.users, options.videos, options.seed) == (sim.users, sim.videos, sim.seed)
    assert options.topic == config.kafka.events_topic.name
    assert options.processes == sim.processes and options.write_catalogue


def test_arguments_override_config() -> None:
    _, options = parse("--rate", "0", "--events", "1000", "--users", "50", "--videos", "60", "--seed", "3",
                       "--malformed-share", "0.5", "--topic", "t1", "--processes", "1", "--no-catalogue")  # fmt: skip
    assert options.rate == 0 and options.events == 1000
    assert options.duration_s is None  # a count alone decides when to stop
    assert (options.users, options.videos, options.seed, options.malformed_share) == (50, 60, 3, 0.5)
    assert (options.topic, options.processes, options.write_catalogue) == ("t1", 1, False)
    _, both = parse("--events", "1000", "--duration", "5")
    assert (both.events, both.duration_s) == (1000, 5.0)


@pytest.mark.parametrize(
    "argv",
    [["--rate", "-1"], ["--duration", "0"], ["--malformed-share", "1.5"], ["--seed", "-2"], ["--processes", "0"],
     ["--users", "1", "--processes", "2"]],
)  # fmt: skip
def test_bad_values_are_one_config_error(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match="invalid simulation options"):
        parse(*argv)
