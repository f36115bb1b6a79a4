"""The way out to Kafka: impressions of every feed response, and client events from ``POST /v1/events``.

:class:`EventProducer` wraps the project's one confluent-kafka producer (kafka/clients.py),
always idempotent with ``acks=all`` (forced here, whatever ``kafka.producer`` says: the answers
below promise what only those settings keep) and with ``message.timeout.ms`` set to
``serving.delivery_timeout_s``, so every message gets a definitive delivery report within that
time. A background thread calls ``poll`` so the reports arrive; they are counted per kind
(impression, event) as delivered or failed (``reelhouse_kafka_delivered_total`` /
``reelhouse_kafka_failed_total``), and so is every message that could not even be queued: no
message is lost without being counted.

Impressions are fire and forget (:meth:`EventProducer.produce`): a feed request never waits for
the broker. Client events are delivered (:meth:`EventProducer.deliver`): the batch is queued, then
the request awaits every delivery report (the poll thread wakes the event loop; nothing blocks
it), at most ``delivery_timeout_s`` + :data:`DELIVERY_WAIT_MARGIN_S`. The answer says exactly
which events Kafka acknowledged: "accepted" means on the broker, and a partial failure names the
delivered events, so the service never holds back a delivery it did not report. A client retries
the others (or the whole batch): retried events that did land are harmless, since silver keeps
one row per ``event_id`` (silver/transforms.py ``deduplicate``) and the speed layer drops
duplicate ids within its watermark.

At shutdown :meth:`EventProducer.close` waits up to ``serving.shutdown_flush_s`` for queued
messages, then purges the rest and logs, per kind, how many were lost (also counted as failed).

Events posted by clients are checked one by one with the contract's reference validator
(:func:`reelhouse.events.contract.validate_object`) against the time the service received them,
with the ingestion's limits (``ingest.*``): the batch is produced only when every event is
valid, so a client never has to guess which half of a batch landed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaException

from reelhouse.config import IngestConfig, KafkaConfig, ServingConfig
from reelhouse.events.contract import Invalid, ValidationLimits, validate_object
from reelhouse.serving.security import RequestError

log = logging.getLogger(__name__)

# Reasons of the events route's refusals (docs/openapi.json lists them from here).
INVALID_BODY, TOO_MANY_EVENTS = "invalid_body", "too_many_events"
KAFKA_UNAVAILABLE, KAFKA_BACKLOG, NOT_DELIVERED = "kafka_unavailable", "kafka_backlog", "not_delivered"

IMPRESSION = "impression"
EVENT = "event"
KINDS = (IMPRESSION, EVENT)
POLL_S = 0.1
# librdkafka scans for timed-out messages about once a second and the poll thread serves reports
# every POLL_S: a request waits this much beyond message.timeout.ms for its last report.
DELIVERY_WAIT_MARGIN_S = 2.0
PURGE_WAIT_S = 1.0  # at shutdown, how long the reports of purged messages may take to arrive
# The producer settings "accepted means durable" rests on (librdkafka also caps in-flight requests
# and retries for idempotence): the broker acknowledges a message once every in-sync replica has
# it, and retries never duplicate or reorder it.
DURABLE_SETTINGS = {"enable.idempotence": "true", "acks": "all"}
QUEUE_FULL = "_QUEUE_FULL"  # librdkafka's name for a full local queue (BufferError in Python)
CLOSED = "_DESTROY"  # librdkafka's name for "the producer is being destroyed"


def delivery_wait_s(serving: ServingConfig) -> float:
    """How long ``POST /v1/events`` waits for its batch's delivery reports (and uvicorn for it at shutdown)."""
    return serving.delivery_timeout_s + DELIVERY_WAIT_MARGIN_S


def _error_name(error: Any) -> str:
    name = getattr(error, "name", None)
    return name() if callable(name) else str(error)


@dataclass
class Delivery:
    """What became of a batch: the indices Kafka acknowledged, the others with the reason."""

    delivered: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # index -> Kafka error name (or why there is none)

    @property
    def complete(self) -> bool:
        return not self.failed

    def problems(self) -> list[dict[str, Any]]:
        return [{"index": i, "reason": NOT_DELIVERED, "detail": self.failed[i]} for i in sorted(self.failed)]


class _Batch:
    """The delivery reports of one batch: written by the poll thread, awaited on the event loop.

    Each report lands under a lock; once the batch is sealed (everything that could be queued was)
    and no report is outstanding, the future resolves through ``call_soon_threadsafe``.
    """

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.outcomes: list[str | None] = [None] * size  # error name, or None: delivered (once reported)
        self.reported = [False] * size
        self.future: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._outstanding = 0
        self._sealed = False
        self._lock = threading.Lock()

    def queued(self) -> None:
        with self._lock:
            self._outstanding += 1

    def report(self, index: int, error: str | None, queued: bool = True) -> None:
        """The outcome of message ``index``; ``queued=False`` for one that never reached the queue."""
        with self._lock:
            self.outcomes[index], self.reported[index] = error, True
            self._outstanding -= queued
            done = self._sealed and self._outstanding == 0
        if done:
            self._wake()

    def seal(self) -> None:
        with self._lock:
            self._sealed = True
            done = self._outstanding == 0
        if done:
            self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def delivery(self, waited_s: float) -> Delivery:
        """The outcome so far; a message without a report counts as not delivered (it may still land)."""
        result = Delivery()
        with self._lock:
            for index, (reported, error) in enumerate(zip(self.reported, self.outcomes, strict=True)):
                if not reported:
                    result.failed[index] = f"no delivery report within {waited_s:g} s"
                elif error is None:
                    result.delivered.append(index)
                else:
                    result.failed[index] = error
        return result


class EventProducer:
    """Producer to the events topic; delivery outcomes go to ``on_outcome(kind, ok)``, once per message."""

    def __init__(
        self,
        kafka: KafkaConfig,
        serving: ServingConfig,
        on_outcome: Callable[[str, bool], None] | None = None,
    ) -> None:
        from reelhouse.kafka.clients import producer

        configured = {**kafka.client, **kafka.producer}
        for key, value in DURABLE_SETTINGS.items():
            if configured.get(key, value).lower() != value:
                log.warning("kafka.producer %s=%s is replaced by %s for the feed service", key, configured[key], value)
        self.topic = kafka.events_topic.name
        self.queue_limit = int(kafka.producer.get("queue.buffering.max.messages", "100000"))
        self.wait_s = delivery_wait_s(serving)
        self.shutdown_flush_s = serving.shutdown_flush_s
        self._producer = producer(
            kafka, **DURABLE_SETTINGS, **{"message.timeout.ms": str(round(serving.delivery_timeout_s * 1000))}
        )
        self._on_outcome = on_outcome or (lambda kind, ok: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="reelhouse-kafka-poll", daemon=True)
        self._callbacks = {kind: self._callback(kind) for kind in KINDS}
        self._pending: Counter[str] = Counter()  # queued, not yet reported, per kind
        self._lost: Counter[str] = Counter()  # failed while closing, per kind
        self._closing = False
        self._lock = threading.Lock()

    def _outcome(self, kind: str, error: Any) -> None:
        """One message's report (from the poll thread, or from ``close``)."""
        if error is not None:
            log.debug("%s not delivered: %s", kind, error)
        with self._lock:
            self._pending[kind] -= 1
            if error is not None and self._closing:
                self._lost[kind] += 1
        self._on_outcome(kind, error is None)

    def _callback(self, kind: str, batch: _Batch | None = None, index: int = 0) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            self._outcome(kind, err)
            if batch is not None:
                batch.report(index, None if err is None else _error_name(err))

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

    def _queue(self, kind: str, key: bytes, value: bytes, on_delivery: Callable[[Any, Any], None]) -> str | None:
        """Queue one message; the reason (a librdkafka error name) when it could not be, counted as failed."""
        producer = self._producer
        with self._lock:
            self._pending[kind] += 1  # before produce: its report may come at once, on the poll thread
        if producer is None:
            reason = CLOSED
        else:
            try:
                producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)
                return None
            except BufferError:
                reason = QUEUE_FULL
            except KafkaException as e:  # e.g. a message too large, a fatal error of the idempotent producer
                reason = _error_name(e.args[0]) if e.args else type(e).__name__
        with self._lock:
            self._pending[kind] -= 1
        self._on_outcome(kind, False)
        return reason

    def produce(self, kind: str, key: bytes, value: bytes) -> bool:
        """Queue one message without waiting; False (counted as failed) when it could not be queued."""
        return self._queue(kind, key, value, self._callbacks[kind]) is None

    async def deliver(self, kind: str, messages: list[tuple[bytes, bytes]]) -> Delivery:
        """Queue ``(key, value)`` messages in order and wait (up to ``wait_s``) for their delivery reports.

        Queueing stops at the first message that cannot be queued; the later ones are not sent
        either and fail with the same reason (a full queue will not take them a moment later)."""
        batch = _Batch(len(messages), asyncio.get_running_loop())
        for index, (key, value) in enumerate(messages):
            batch.queued()
            reason = self._queue(kind, key, value, self._callback(kind, batch, index))
            if reason is not None:
                batch.report(index, reason)
                for later in range(index + 1, len(messages)):
                    self._on_outcome(kind, False)
                    batch.report(later, reason, queued=False)
                break
        batch.seal()
        await asyncio.wait({batch.future}, timeout=self.wait_s)
        return batch.delivery(self.wait_s)

    def close(self, timeout_s: float | None = None) -> dict[str, int]:
        """Stop polling, wait up to ``timeout_s`` (default ``serving.shutdown_flush_s``) for queued
        messages to be delivered, then purge what is left; returns (and logs) the messages lost per kind.

        The client is released here, not when the object is collected, so its broker connections
        close with the service."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=POLL_S * 5)
        producer, self._producer = self._producer, None
        if producer is None:
            return {}
        self._closing = True
        if producer.flush(self.shutdown_flush_s if timeout_s is None else timeout_s):
            # Purged messages get a report (_PURGE_QUEUE, _PURGE_INFLIGHT), so they are counted per kind.
            producer.purge(in_queue=True, in_flight=True, blocking=True)
            producer.flush(PURGE_WAIT_S)
        del producer  # the last reference: librdkafka's threads and sockets go now
        with self._lock:
            unreported = {kind: n for kind, n in self._pending.items() if n > 0}
            self._pending.clear()
            self._lost.update(unreported)
            lost = {kind: n for kind, n in self._lost.items() if n > 0}
        for kind, n in unreported.items():
            for _ in range(n):
                self._on_outcome(kind, False)
        if lost:
            log.warning(
                "Kafka producer closed: not delivered, lost: %s",
                ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in sorted(lost.items())),
            )
        else:
            log.info("Kafka producer closed: every queued message was delivered")
        return lost


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
            422, [{"field": "body", "reason": INVALID_BODY, "detail": 'expected {"events": [<event>, ...]}'}]
        )
    events = payload["events"]
    if len(events) > max_events:
        raise RequestError(
            413, [{"field": "events", "reason": TOO_MANY_EVENTS, "detail": f"{len(events)} events > {max_events}"}]
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
