"""Deterministic assignment of users to the variants of running experiments.

A user's place in an experiment is a number in ``[0, 1)`` read from a salted SHA-256 hash of
their id, so it is the same in every process, on every machine and in every Python run (unlike
``hash()``, which is salted per process) and needs no stored state:

* ``unit(f"{salt}:{user_id}")`` picks the variant: the variants' shares are laid end to end over
  ``[0, 1)`` in config order and the user gets the one their number falls in;
* ``unit(f"{salt}:traffic:{user_id}")`` decides whether the user is in the experiment at all
  (``< traffic``). A second, independent hash, so that ramping ``traffic`` up only adds users
  and never moves one from a variant to another, and the shares hold within the experiment
  whatever the traffic.

The salt defaults to the experiment's name, so two experiments split their users independently;
changing it reshuffles everyone. A user is in at most one experiment: the first one in config
order that is running (``start <= now < end``) and whose traffic includes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from reelhouse.config import ExperimentConfig, VariantConfig
from reelhouse.errors import ConfigError

_SCALE = float(1 << 64)


def unit(text: str) -> float:
    """``text`` mapped to ``[0, 1)``: the first 8 bytes of its SHA-256, big-endian, over 2**64."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def variant_of(experiment: ExperimentConfig, user_id: str) -> VariantConfig:
    """The variant ``user_id`` gets if they are in ``experiment``."""
    point = unit(f"{salt_of(experiment)}:{user_id}")
    upper = 0.0
    for variant in experiment.variants:
        upper += variant.share
        if point < upper:
            return variant
    return experiment.variants[-1]  # shares sum to 1 within rounding: the top of the range


def in_traffic(experiment: ExperimentConfig, user_id: str) -> bool:
    """Whether ``user_id`` is in ``experiment``'s share of all users."""
    return experiment.traffic >= 1.0 or unit(f"{salt_of(experiment)}:traffic:{user_id}") < experiment.traffic


def salt_of(experiment: ExperimentConfig) -> str:
    return experiment.name if experiment.salt is None else experiment.salt


def _parse_time(experiment: str, field: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as e:
        raise ConfigError(
            f"experiments[{experiment}].{field}: {value!r} is not an ISO-8601 time (e.g. 2026-11-21T00:00:00+00:00)"
        ) from e
    if moment.tzinfo is None:
        raise ConfigError(f"experiments[{experiment}].{field}: {value!r} has no time zone; add +00:00 for UTC")
    return moment


@dataclass(frozen=True)
class Assignment:
    """A user's experiment and variant; ``label`` is what impressions carry as ``variant``."""

    experiment: str
    variant: VariantConfig

    @property
    def label(self) -> str:
        return f"{self.experiment}:{self.variant.name}"


@dataclass(frozen=True)
class _Window:
    experiment: ExperimentConfig
    start: dt.datetime | None
    end: dt.datetime | None

    def running(self, now: dt.datetime) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)


class Bucketing:
    """The experiments of a config, with their times parsed once; answers per user and time."""

    def __init__(self, experiments: Sequence[ExperimentConfig]) -> None:
        names = [e.name for e in experiments]
        if len(set(names)) != len(names):
            raise ConfigError(f"experiment names repeat: {names}")
        self._windows = []
        for experiment in experiments:
            start = _parse_time(experiment.name, "start", experiment.start)
            end = _parse_time(experiment.name, "end", experiment.end)
            if start is not None and end is not None and end <= start:
                raise ConfigError(
                    f"experiments[{experiment.name}]: end {experiment.end} is not after start {experiment.start}"
                )
            self._windows.append(_Window(experiment, start, end))

    @property
    def experiments(self) -> list[ExperimentConfig]:
        return [w.experiment for w in self._windows]

    def running(self, now: dt.datetime) -> list[ExperimentConfig]:
        return [w.experiment for w in self._windows if w.running(now)]

    def assign(self, user_id: str, now: dt.datetime) -> Assignment | None:
        """The first running experiment whose traffic includes ``user_id``, and the user's variant there."""
        for window in self._windows:
            if window.running(now) and in_traffic(window.experiment, user_id):
                return Assignment(window.experiment.name, variant_of(window.experiment, user_id))
        return None
