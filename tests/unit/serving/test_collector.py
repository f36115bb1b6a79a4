"""The collector's way to Kafka against a fake producer: per-batch delivery bookkeeping, counting, shutdown.

The fake stands in for confluent-kafka's ``Producer`` (its ``produce``/``poll``/``flush``/``purge``
and ``len``); the real poll thread of :class:`EventProducer` serves its delivery reports, so
the reports arrive on another thread as they do with librdkafka. The real producer with the
service's settings is exercised against a broker in tests/integration/serving/test_event_delivery.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from reelhouse.config import KafkaConfig, ServingConfig
from reelhouse.kafka import clients
from reelhouse.serving.collector import CLOSED, EVENT, IMPRESSION, QUEUE_FULL, EventProducer

SERVING = ServingConfig(token="t", delivery_timeout_s=3.0, shutdown_flush_s=0.2)
KAFKA = KafkaConfig(bootstrap_servers="127.0.0.1:9", events_topic={"name": "events"})


class FakeError:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


class FakeProducer:
    """Queues messages; ``poll`` reports them unless ``hold`` is set, failing the values in ``errors``.

    ``accept`` bounds how many messages ``produce`` takes in all (then BufferError, as a full queue).
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.queue: list[tuple[bytes, Any]] = []
        self.attempts: list[bytes] = []
        self.delivered: list[bytes] = []  # what the "broker" acknowledged
        self.errors: dict[bytes, str] = {}
        self.raises: dict[bytes, Exception] = {}
        self.accept: int | None = None
        self.hold = threading.Event()
        self.report_purged = True
        self._lock = threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.attempts.append(value)
        if value in self.raises:
            raise self.raises[value]
        if self.accept is not None and len(self.attempts) > self.accept:
            raise BufferError("Local: Queue full")
        with self._lock:
            self.queue.append((value, on_delivery))

    def __len__(self) -> int:
        return len(self.queue)

    def _serve(self, error_for: Any) -> None:
        with self._lock:
            served, self.queue = self.queue, []
        for value, on_delivery in served:
            name = error_for(value)
            if name is None:
                self.delivered.append(value)
            on_delivery(None if name is None else FakeError(name), None)

    def poll(self, timeout: float) -> int:
        if self.hold.is_set() or not self.queue:
            time.sleep(min(timeout, 0.005))
            return 0
        self._serve(self.errors.get)
        return 0

    def flush(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.queue and not self.hold.is_set():
            self._serve(self.errors.get)
        while self.queue and time.monotonic() < deadline:
            time.sleep(0.005)
        return len(self.queue)

    def purge(self, in_queue: bool, in_flight: bool, blocking: bool) -> None:
        if self.report_purged:
            self._serve(lambda value: "_PURGE_QUEUE")


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    """The fake producers EventProducer builds (through the project's one producer factory)."""
    producers: list[FakeProducer] = []

    def producer(kafka: KafkaConfig, **overrides: str) -> FakeProducer:
        producers.append(FakeProducer({**clients.client_options(kafka), **kafka.producer, **overrides}))
        return producers[-1]

    monkeypatch.setattr(clients, "producer", producer)
    return producers


class Outcomes:
    """``on_outcome`` that counts (kind, ok), as the service's metrics do."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, bool]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, kind: str, ok: bool) -> None:
        with self._lock:
            self.counts[(kind, ok)] += 1


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
def running(made: list[FakeProducer], outcomes: Outcomes):
    producer = EventProducer(KAFKA, SERVING, outcomes)
    producer.start()
    yield producer, made[0]
    producer.close(timeout_s=0)


def messages(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"u1", f"e{i}".encode()) for i in range(n)]


def deliver(producer: EventProducer, batch: list[tuple[bytes, bytes]]):
    return asyncio.run(producer.deliver(EVENT, batch))


def test_the_service_producer_is_idempotent_with_acks_all_and_a_bounded_delivery_timeout(made, outcomes, caplog):
    # A config that asks for less: the service replaces it (and says so), since its 202 depends on it.
    kafka = KAFKA.model_copy(update={"producer": {"acks": "1", "linger.ms": "5"}})
    with caplog.at_level(logging.WARNING, logger="reelhouse.serving.collector"):
        EventProducer(kafka, SERVING, outcomes)
    settings = made[0].settings
    assert settings["enable.idempotence"] == "true" and settings["acks"] == "all"
    assert settings["message.timeout.ms"] == "3000" and settings["linger.ms"] == "5"
    assert "acks=1 is replaced by all" in caplog.text


def test_a_batch_kafka_acknowledged_is_delivered_whole(running, outcomes):
    producer, fake = running
    delivery = deliver(producer, messages(5))
    assert delivery.complete and delivery.delivered == [0, 1, 2, 3, 4]
    assert fake.delivered == [f"e{i}".encode() for i in range(5)]
    assert outcomes.counts == {(EVENT, True): 5}


def test_delivery_errors_are_reported_per_event_and_the_rest_is_delivered(running, outcomes):
    producer, fake = running
    fake.errors = {b"e1": "_MSG_TIMED_OUT", b"e3": "TOPIC_AUTHORIZATION_FAILED"}
    delivery = deliver(producer, messages(5))
    assert not delivery.complete
    assert delivery.delivered == [0, 2, 4]
    assert delivery.problems() == [
        {"index": 1, "reason": "not_delivered", "detail": "_MSG_TIMED_OUT"},
        {"index": 3, "reason": "not_delivered", "detail": "TOPIC_AUTHORIZATION_FAILED"},
    ]
    # Only what the broker acknowledged is reported delivered.
    assert [f"e{i}".encode() for i in delivery.delivered] == fake.delivered
    assert outcomes.counts == {(EVENT, True): 3, (EVENT, False): 2}


def test_a_full_queue_mid_batch_stops_it_and_only_the_acknowledged_part_is_reported(running, outcomes):
    producer, fake = running
    fake.accept = 3  # the fourth produce raises BufferError
    delivery = deliver(producer, messages(6))
    assert delivery.delivered == [0, 1, 2] == sorted(int(v[1:]) for v in fake.delivered)
    assert delivery.failed == {3: QUEUE_FULL, 4: QUEUE_FULL, 5: QUEUE_FULL}
    assert fake.attempts == [b"e0", b"e1", b"e2", b"e3"]  # nothing was produced after the refusal
    assert outcomes.counts == {(EVENT, True): 3, (EVENT, False): 3}


def test_a_full_queue_at_the_first_event_delivers_nothing(running, outcomes):
    producer, fake = running
    fake.accept = 0
    delivery = deliver(producer, messages(3))
    assert delivery.delivered == [] and set(delivery.failed) == {0, 1, 2} and fake.delivered == []


def test_a_produce_error_names_the_kafka_error(running, outcomes):
    producer, fake = running
    fake.raises = {b"e1": KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))}
    delivery = deliver(producer, messages(3))
    assert delivery.delivered == [0] and delivery.failed == {1: "MSG_SIZE_TOO_LARGE", 2: "MSG_SIZE_TOO_LARGE"}


def test_reports_that_do_not_come_in_time_are_not_delivered_and_are_counted_when_they_come(running, outcomes):
    producer, fake = running
    producer.wait_s = 0.05
    fake.hold.set()  # the broker does not answer
    delivery = deliver(producer, messages(2))
    assert delivery.delivered == [] and delivery.failed == {
        0: "no delivery report within 0.05 s",
        1: "no delivery report within 0.05 s",
    }
    assert outcomes.counts == {}
    fake.hold.clear()  # the late reports come after the request answered: counted, once each
    deadline = time.monotonic() + 30
    while sum(outcomes.counts.values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcomes.counts == {(EVENT, True): 2}


def test_concurrent_batches_each_get_their_own_reports(running, outcomes):
    producer, fake = running
    fake.errors = {b"b-e1": "_MSG_TIMED_OUT"}

    async def both():
        first = producer.deliver(EVENT, [(b"u", f"a-e{i}".encode()) for i in range(4)])
        second = producer.deliver(EVENT, [(b"u", f"b-e{i}".encode()) for i in range(4)])
        return await asyncio.gather(first, second)

    a, b = asyncio.run(both())
    assert a.complete and a.delivered == [0, 1, 2, 3]
    assert b.delivered == [0, 2, 3] and b.failed == {1: "_MSG_TIMED_OUT"}


def test_impressions_that_cannot_be_queued_are_counted_as_failed(running, outcomes):
    producer, fake = running
    fake.accept = 1
    assert producer.produce(IMPRESSION, b"u1", b"i0") is True
    assert producer.produce(IMPRESSION, b"u1", b"i1") is False  # a full queue
    fake.errors = {b"i2": "_MSG_TIMED_OUT"}
    fake.accept = None
    assert producer.produce(IMPRESSION, b"u1", b"i2") is True  # queued, then not delivered
    producer.close()
    assert producer.produce(IMPRESSION, b"u1", b"i3") is False  # after shutdown
    assert outcomes.counts == {(IMPRESSION, True): 1, (IMPRESSION, False): 3}


def test_a_batch_after_shutdown_is_not_delivered(running, outcomes):
    producer, _ = running
    producer.close()
    delivery = deliver(producer, messages(2))
    assert delivery.failed == {0: CLOSED, 1: CLOSED}


def test_shutdown_flushes_then_purges_and_logs_what_was_lost_per_kind(running, outcomes, caplog):
    producer, fake = running
    fake.hold.set()  # the broker is down: nothing is acknowledged any more
    for i in range(3):
        producer.produce(IMPRESSION, b"u1", f"i{i}".encode())
    producer.produce(EVENT, b"u1", b"e0")
    with caplog.at_level(logging.WARNING, logger="reelhouse.serving.collector"):
        lost = producer.close()
    assert lost == {IMPRESSION: 3, EVENT: 1}
    assert "3 impressions" in caplog.text and "1 event" in caplog.text
    assert outcomes.counts == {(IMPRESSION, False): 3, (EVENT, False): 1}


def test_shutdown_counts_messages_that_never_got_a_report(running, outcomes):
    producer, fake = running
    fake.hold.set()
    fake.report_purged = False  # even the purge reports do not come
    producer.produce(IMPRESSION, b"u1", b"i0")
    assert producer.close() == {IMPRESSION: 1}
    assert outcomes.counts == {(IMPRESSION, False): 1}


def test_shutdown_with_everything_delivered_loses_nothing(running, outcomes):
    producer, fake = running
    fake.hold.set()
    producer.produce(IMPRESSION, b"u1", b"i0")
    fake.hold.clear()  # the broker answers while the producer flushes
    assert producer.close() == {}
    assert outcomes.counts == {(IMPRESSION, True): 1}
