"""The way out to Kafka: impressions of every feed response, and client events from ``POST /v1/events``.

:class:`EventProducer` wraps the project's one confluent-kafka producer (kafka/clients.py). Its
``produce`` only appends to librdkafka's local queue and never waits for the broker: a request is
never held up by Kafka. A background thread calls ``poll`` so delivery reports arrive; they are
counted per kind (impression, event) as delivered or failed. A full local queue (the broker has
been away long enough to fill it) drops the message and counts it as failed rather than block.

Events posted by clients are checked one by one with the contract's reference validator
(:func:`reelhouse.events.contract.validate_object`) against the time the service received them,
with the ingestion's limits (``ingest.*``): the batch is produced only when every event is
valid, so a client never has to guess which half of a batch landed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson

from reelhouse.config import IngestConfig, KafkaConfig
from reelhouse.events.contract import Invalid, ValidationLimits, validate_object
from reelhouse.serving.security import RequestError

log = logging.getLogger(__name__)

IMPRESSION = "impression"
EVENT = "event"
POLL_S = 0.1


class EventProducer:
    """Asynchronous producer to the events topic; delivery outcomes go to ``on_outcome(kind, ok)``."""

    def __init__(self, kafka: KafkaConfig, on_outcome: Callable[[str, bool], None] | None = None) -> None:
        from reelhouse.kafka.clients import producer

        self.topic = kafka.events_topic.name
        self.queue_limit = int(kafka.producer.get("queue.buffering.max.messages", "100000"))
        self._producer = producer(kafka)
        self._on_outcome = on_outcome or (lambda kind, ok: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="reelhouse-kafka-poll", daemon=True)
        self._callbacks = {kind: self._callback(kind) for kind in (IMPRESSION, EVENT)}

    def _callback(self, kind: str) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                log.debug("%s not delivered: %s", kind, err)
            self._on_outcome(kind, err is None)

        return delivered

    def start(self) -> None:
        self._thread.start()

    def _poll_loop(self) -> None:
        producer = self._producer
        while producer is not None and not self._stop.is_set():
            producer.poll(POLL_S)

    def room(self) -> int:
        """Messages the local queue can still take (approximately: other threads produce too)."""
        producer = self._producer
        return 0 if producer is None else self.queue_limit - len(producer)

    def produce(self, kind: str, key: bytes, value: bytes) -> bool:
        """Queue one message; False (counted as failed) when the local queue is full or closed."""
        producer = self._producer
        try:
            if producer is None:
                raise BufferError("the producer is closed")
            producer.produce(self.topic, value=value, key=key, on_delivery=self._callbacks[kind])
        except BufferError:
            self._on_outcome(kind, False)
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> int:
        """Stop polling and wait up to ``timeout_s`` for queued messages; returns how many are left.

        The client is released here, not when the object is collected, so its broker connections
        close with the service."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=POLL_S * 5)
        producer, self._producer = self._producer, None
        if producer is None:
            return 0
        left = producer.flush(timeout_s)
        del producer  # the last reference: librdkafka's threads and sockets go now
        return left


def limits(ingest: IngestConfig) -> ValidationLimits:
    return ValidationLimits(
        max_payload_bytes=ingest.max_payload_bytes,
        max_clock_skew_ms=ingest.max_clock_skew_s * 1000,
        max_event_age_ms=ingest.max_event_age_days * 86_400_000,
    )


def parse_events(body: bytes, now_ms: int, bounds: ValidationLimits, max_events: int) -> list[dict[str, Any]]:
    """The events of a ``{"events": [...]}`` body, each valid under the contract; raises
    :class:`RequestError` with the reason of every invalid event (422) or a too-long batch (413)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(422, [{"field": "body", "reason": "invalid_json", "detail": str(e)[:200]}]) from None
    if not isinstance(payload, dict) or set(payload) != {"events"} or not isinstance(payload["events"], list):
        raise RequestError(
            422, [{"field": "body", "reason": "invalid_body", "detail": 'expected {"events": [<event>, ...]}'}]
        )
    events = payload["events"]
    if len(events) > max_events:
        raise RequestError(
            413, [{"field": "events", "reason": "too_many_events", "detail": f"{len(events)} events > {max_events}"}]
        )
    problems: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        try:
            validate_object(event, now_ms, bounds)
        except Invalid as e:
            problems.append({"index": index, "reason": e.reason, "detail": e.detail})
            continue
        size = len(orjson.dumps(event))
        if size > bounds.max_payload_bytes:
            problems.append(
                {"index": index, "reason": "oversized_payload", "detail": f"{size} bytes > {bounds.max_payload_bytes}"}
            )
    if problems:
        raise RequestError(422, problems)
    return events
