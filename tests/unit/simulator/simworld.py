"""A small simulated world shared by the simulator's unit tests (no Kafka, no network)."""

from __future__ import annotations

from reelhouse.simulator.catalogue import Catalogue
from reelhouse.simulator.traffic import TrafficGenerator

START_MS = 1_790_000_000_000  # a fixed simulated start keeps every test reproducible


def small_catalogue(seed: int = 11, **overrides: object) -> Catalogue:
    settings: dict[str, object] = dict(
        seed=seed, users=2_000, videos=5_000, topics=12, creators=300, zipf_exponent=1.1, uploads_per_hour=600.0
    )
    settings.update(overrides)
    return Catalogue(**settings)  # type: ignore[arg-type]


def generator(catalogue: Catalogue | None = None, **overrides: object) -> TrafficGenerator:
    settings: dict[str, object] = dict(start_ms=START_MS, ms_per_event=1.2)
    settings.update(overrides)
    return TrafficGenerator(catalogue or small_catalogue(), **settings)  # type: ignore[arg-type]
