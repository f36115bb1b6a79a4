"""The producing loop against a fake producer: counting, back-pressure, delivery failures, catalogue."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reelhouse.config import load_config
from reelhouse.errors import SimulationError
from reelhouse.events.contract import Invalid, validate_payload
from reelhouse.simulator import SimulationOptions, run_simulation, runner

from .simworld import START_MS

CONFIG = Path(__file__).resolve().parents[3] / "conf" / "local.yaml"


class FakeProducer:
    """Stands in for confluent_kafka.Producer: a small queue, optional delivery failures."""

    def __init__(self, settings: dict, queue_size: int = 1_000, fail_every: int = 0) -> None:
        self.settings = settings
        self.on_delivery = settings["on_delivery"]
        self.queue_size, self.fail_every = queue_size, fail_every
        self.queued: list[tuple[str, bytes, bytes]] = []
        self.delivered: list[tuple[str, bytes, bytes]] = []
        self.buffer_errors = 0

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        if len(self.queued) >= self.queue_size:
            self.buffer_errors += 1
            raise BufferError("queue full")
        self.queued.append((topic, value, key))

    def poll(self, timeout: float = 0) -> int:
        if not self.queued:
            time.sleep(timeout)
        for message in self.queued:
            self.delivered.append(message)
            if self.fail_every and len(self.delivered) % self.fail_every == 0:
                self.on_delivery("KafkaError{code=_MSG_TIMED_OUT}", None)
        self.queued = []
        return 0

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


@pytest.fixture
def config(tmp_path: Path):
    return load_config(CONFIG, environ={"REELHOUSE__SIMULATOR__CATALOGUE_DIR": str(tmp_path / "catalogue")})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    made: list[FakeProducer] = []
    settings: dict = {}

    def producer(kafka, **overrides):
        made.append(FakeProducer(overrides, **settings))
        return made[-1]

    monkeypatch.setattr(runner, "producer", producer)
    monkeypatch.setattr(runner, "ensure_topic", lambda kafka, topic: False)
    return made, settings


def options(config, **overrides) -> SimulationOptions:
    values = dict(rate=0.0, duration_s=None, events=20_000, users=500, videos=2_000, processes=1,
                  malformed_share=0.05, start_time_ms=START_MS)  # fmt: skip
    values.update(overrides)
    return SimulationOptions.from_config(config, **values)


def test_counts_match_what_was_produced(config, fake) -> None:
    made, _ = fake
    report = run_simulation(config, options(config))
    [producer] = made
    assert producer.settings["delivery.report.only.error"] is True
    assert report.events == len(producer.delivered) == 20_000
    assert producer.buffer_errors > 0  # back-pressure was met and every message still went out
    valid = bad = 0
    for topic, value, key in producer.delivered:
        assert topic == config.kafka.events_topic.name and key.startswith(b"u")
        try:
            validate_payload(value, START_MS + 86_400_000)
            valid += 1
        except Invalid:
            bad += 1
    assert (report.valid_events, sum(report.malformed.values())) == (valid, bad)
    assert sum(report.per_type.values()) == report.valid_events
    assert set(report.malformed) == {"bad_json", "missing_field", "wrong_type", "absurd_timestamp", "oversized_payload"}
    assert report.delivery_errors == 0 and report.events_per_s > 0


def test_catalogue_includes_uploads(config, fake) -> None:
    report = run_simulation(config, options(config, events=60_000))
    assert report.videos_uploaded > 0  # 60k events of 1.2 simulated ms: ~12 uploads at 600 per hour
    videos = pq.read_table(report.catalogue["videos"])
    assert videos.num_rows == report.videos == 2_000 + report.videos_uploaded
    assert pq.read_table(report.catalogue["users"]).num_rows == 500
    assert Path(report.catalogue["user_tastes"]).exists() and Path(report.catalogue["video_topics"]).exists()


def test_delivery_failures_fail_the_run(config, fake) -> None:
    _, settings = fake
    settings["fail_every"] = 1_000
    with pytest.raises(SimulationError, match="not delivered") as caught:
        run_simulation(config, options(config, write_catalogue=False))
    report = caught.value.report
    assert report.delivery_errors > 0 and not report.ok
    assert "MSG_TIMED_OUT" in report.first_delivery_error


def test_rate_paces_the_run(config, fake) -> None:
    report = run_simulation(config, options(config, rate=20_000.0, events=None, duration_s=0.5, write_catalogue=False))
    # 0.5 s at 20k/s: about 10k events, whatever the machine could do flat out.
    assert 8_000 <= report.events <= 11_000


def test_same_seed_and_start_produce_the_same_messages(config, fake) -> None:
    made, _ = fake
    run_simulation(config, options(config, write_catalogue=False))
    run_simulation(config, options(config, write_catalogue=False))
    assert made[0].delivered == made[1].delivered
