"""Run a simulation: generate blocks, produce them to Kafka (one or more processes), write the catalogue."""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import orjson
from confluent_kafka import KafkaException, Producer

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError, SimulationError
from reelhouse.events.contract import EVENT_TYPES
from reelhouse.kafka.clients import ensure_topic, producer
from reelhouse.simulator.catalogue import Catalogue
from reelhouse.simulator.malformed import MALFORMED_KINDS
from reelhouse.simulator.options import SimulationOptions
from reelhouse.simulator.traffic import MAX_SESSION_MS, VALID, EventBlock, TrafficGenerator

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 5.0
SESSION_MARGIN_MS = MAX_SESSION_MS + 10 * 60_000  # sessions start at least this far behind now
MAX_BLOCK_EVENTS = 65_536
# How long the final flush may wait for the broker before unconfirmed messages count as failed.
FLUSH_TIMEOUT_S = 60.0


@dataclass
class SimulationReport:
    """What a run produced. ``events`` counts every message, malformed ones included."""

    events: int
    valid_events: int
    malformed: dict[str, int]
    per_type: dict[str, int]
    elapsed_s: float  # from the first message produced to the last one confirmed
    events_per_s: float
    topic: str
    catalogue: dict[str, str]
    processes: int
    seed: int
    start_time_ms: int  # where the simulated clock started
    last_event_time_ms: int | None
    videos: int  # in the catalogue, uploads during the run included
    videos_uploaded: int
    delivery_errors: int = 0
    first_delivery_error: str | None = None
    total_s: float = 0.0  # wall-clock time of the whole call (process start-up and catalogue included)

    @property
    def ok(self) -> bool:
        return self.delivery_errors == 0

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()


@dataclass
class _WorkerResult:
    produced: int = 0
    kinds: list[int] = field(default_factory=lambda: [0] * len(MALFORMED_KINDS))
    types: list[int] = field(default_factory=lambda: [0] * len(EVENT_TYPES))
    delivery_errors: int = 0
    first_delivery_error: str | None = None
    visible_videos: int = 0
    last_event_time_ms: int | None = None
    started: float = 0.0
    finished: float = 0.0


class _DeliveryFailures:
    """Delivery-report callback; with ``delivery.report.only.error`` it only runs for failures."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def __call__(self, err: object, msg: object) -> None:
        if err is not None:
            self.count += 1
            if self.first is None:
                self.first = str(err)


def build_catalogue(config: ReelhouseConfig, options: SimulationOptions) -> Catalogue:
    sim = config.simulator
    return Catalogue(
        seed=options.seed,
        users=options.users,
        videos=options.videos,
        topics=sim.topics,
        creators=sim.creators,
        zipf_exponent=sim.zipf_exponent,
        uploads_per_hour=sim.uploads_per_hour,
    )


def _quota(options: SimulationOptions, process_index: int) -> float:
    if options.events is None:
        return math.inf
    share, extra = divmod(options.events, options.processes)
    return share + (1 if process_index < extra else 0)


def _produce(
    config: ReelhouseConfig,
    options: SimulationOptions,
    process_index: int,
    start_ms: int,
    ms_per_event: float,
    progress: Callable[[int], None],
) -> _WorkerResult:
    """The producing loop of one process: generate a block, hand it to librdkafka, pace, repeat."""
    sim = config.simulator
    generator = TrafficGenerator(
        build_catalogue(config, options),
        start_ms=start_ms,
        ms_per_event=ms_per_event,
        malformed_share=options.malformed_share,
        oversized_bytes=config.ingest.max_payload_bytes + 4_096,
        process_index=process_index,
        processes=options.processes,
        page_size=sim.page_size,
        organic_share=sim.organic_share,
        session_margin_ms=SESSION_MARGIN_MS,
    )
    failures = _DeliveryFailures()
    try:
        kafka = producer(config.kafka, **{"delivery.report.only.error": True, "on_delivery": failures})  # type: ignore[arg-type]
    except KafkaException as e:
        raise SimulationError(f"cannot create a Kafka producer: {e}; check kafka.client and kafka.producer") from e
    poll, topic = kafka.poll, options.topic
    result = _WorkerResult()
    quota = _quota(options, process_index)
    rate = options.rate / options.processes
    block_size = MAX_BLOCK_EVENTS if rate == 0 else int(min(MAX_BLOCK_EVENTS, max(256, rate / 20)))
    kinds = np.zeros(len(MALFORMED_KINDS), dtype=np.int64)
    types = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    result.started = time.time()
    deadline = math.inf if options.duration_s is None else time.monotonic() + options.duration_s
    paced_from = time.monotonic()
    while result.produced < quota and time.monotonic() < deadline and failures.count == 0:
        block = generator.next_block(
            block_size, now_ms=int(time.time() * 1000), max_events=int(min(quota - result.produced, 2**62))
        )
        try:
            _produce_block(kafka, topic, block)
        except KafkaException as e:
            raise SimulationError(f"could not produce to {topic}: {e}") from e
        poll(0)
        result.produced += len(block)
        kinds += np.bincount(block.kind[block.kind != VALID], minlength=len(kinds))
        types += np.bincount(block.event_type[block.kind == VALID], minlength=len(types))
        result.visible_videos = max(result.visible_videos, block.visible_videos)
        if len(block):
            last = int(block.event_time_ms.max())
            result.last_event_time_ms = max(last, result.last_event_time_ms or last)
        progress(result.produced)
        if rate > 0:
            wait = paced_from + result.produced / rate - time.monotonic()
            while wait > 0 and time.monotonic() < deadline:
                poll(min(wait, 0.05))
                wait = paced_from + result.produced / rate - time.monotonic()
    unconfirmed = kafka.flush(FLUSH_TIMEOUT_S)
    result.finished = time.time()
    result.delivery_errors = failures.count + unconfirmed
    result.first_delivery_error = failures.first or (
        f"{unconfirmed} messages not confirmed within {FLUSH_TIMEOUT_S:.0f} s" if unconfirmed else None
    )
    result.kinds = kinds.tolist()
    result.types = types.tolist()
    return result


def _produce_block(kafka: Producer, topic: str, block: EventBlock) -> None:
    """Hand every message of ``block`` to librdkafka, in order, waiting when its queue is full.

    The key (the user id) picks the partition, so a user's events stay in one partition, in order,
    whichever process produced them; several processes may write to the same partition at once.
    """
    produce = kafka.produce
    data, offsets, keys = block.data, block.offsets, block.keys
    start = 0
    for stop in [*sorted(block.replacements), len(keys)]:
        # The hot loop: valid messages are sliced out of the block's buffer one at a time.
        for a, b, key in zip(offsets[start:stop], offsets[start + 1 : stop + 1], keys[start:stop]):
            try:
                produce(topic, data[a:b], key)
            except BufferError:
                _produce_when_queue_has_room(kafka, topic, data[a:b], key)
        if stop < len(keys):
            _produce_when_queue_has_room(kafka, topic, block.replacements[stop], keys[stop])
        start = stop + 1


def _produce_when_queue_has_room(kafka: Producer, topic: str, value: bytes, key: bytes) -> None:
    while True:
        try:
            kafka.produce(topic, value, key)
            return
        except BufferError:
            # Serve delivery reports so librdkafka frees room in its queue.
            kafka.poll(0.005)


class _ProgressLog:
    """Logs progress every few seconds; the rate counts from the first message produced."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.started: float | None = None
        self.last = time.monotonic()

    def __call__(self, produced: int) -> None:
        now = time.monotonic()
        if self.started is None:
            if produced == 0:
                return
            self.started = now
        if now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            rate = produced / max(now - self.started, 1e-3)
            if math.isfinite(self.total):
                log.info("simulated %d of %d events (%.0f/s)", produced, self.total, rate)
            else:
                log.info("simulated %d events (%.0f/s)", produced, rate)


def _child_main(
    config: ReelhouseConfig,
    options: SimulationOptions,
    process_index: int,
    start_ms: int,
    ms_per_event: float,
    counters: object,
    results: multiprocessing.SimpleQueue,
) -> None:
    """Entry point of a spawned producer process (module level, so spawn can import it)."""

    def progress(produced: int) -> None:
        counters[process_index] = produced  # type: ignore[index]

    try:
        result = _produce(config, options, process_index, start_ms, ms_per_event, progress)
        results.put((process_index, result, None))
    except BaseException as e:  # report everything to the parent, which raises
        detail = str(e) if isinstance(e, ReelhouseError) else traceback.format_exc()
        results.put((process_index, None, f"{type(e).__name__}: {detail}"))


def _run_processes(
    config: ReelhouseConfig, options: SimulationOptions, start_ms: int, ms_per_event: float, total: float
) -> list[_WorkerResult]:
    context = multiprocessing.get_context("spawn")
    counters = context.Array("q", options.processes, lock=False)
    results = context.SimpleQueue()
    children = [
        context.Process(
            target=_child_main,
            args=(config, options, index, start_ms, ms_per_event, counters, results),
            name=f"reelhouse-simulate-{index}",
            daemon=True,
        )
        for index in range(options.processes)
    ]
    for child in children:
        child.start()
    progress = _ProgressLog(total)
    collected: dict[int, _WorkerResult] = {}
    errors: list[str] = []
    try:
        # One failed process fails the run: the others are stopped rather than left to finish.
        while len(collected) < len(children) and not errors:
            while not results.empty():
                index, result, error = results.get()
                if error is None:
                    collected[index] = result
                else:
                    errors.append(f"producer process {index}: {error}")
            dead = [c for i, c in enumerate(children) if i not in collected and c.exitcode not in (0, None)]
            if dead and not errors and results.empty():
                errors.extend(f"producer process {c.name} died with exit code {c.exitcode}" for c in dead)
            progress(sum(counters))  # type: ignore[arg-type]
            if len(collected) < len(children) and not errors:
                time.sleep(0.1)
    except BaseException:
        errors.append("interrupted")
        raise
    finally:
        for child in children:
            if errors:
                child.terminate()
            child.join(timeout=FLUSH_TIMEOUT_S + 10)
    if errors:
        raise SimulationError("; ".join(errors))
    return [collected[index] for index in range(options.processes)]


def planned_start_ms(config: ReelhouseConfig, options: SimulationOptions, now_ms: int) -> tuple[int, float]:
    """Where the simulated clock starts, and the simulated ms per event over all processes.

    The clock runs ``time_scale`` times faster than a paced run's wall clock. It starts far
    enough behind now to cover the planned run (at most ``max_lag_s``), so it never has to be
    held back and the run stays reproducible.
    """
    sim = config.simulator
    nominal_rate = options.rate or sim.rate
    ms_per_event = sim.time_scale * 1000.0 / nominal_rate
    planned = math.inf if options.events is None else float(options.events)
    if options.rate > 0 and options.duration_s is not None:
        planned = min(planned, options.rate * options.duration_s)
    lag_ms = min(sim.max_lag_s * 1000.0, planned * ms_per_event + SESSION_MARGIN_MS)
    return int(now_ms - lag_ms), ms_per_event


def run_simulation(config: ReelhouseConfig, options: SimulationOptions) -> SimulationReport:
    """Produce simulated traffic to ``options.topic`` and write the catalogue; returns the report.

    Raises :class:`SimulationError` (carrying the report as ``.report``) when any message was
    not confirmed by the broker: such a run must not pass for a complete one.
    """
    called = time.time()
    topic_config = config.kafka.events_topic.model_copy(update={"name": options.topic})
    ensure_topic(config.kafka, topic_config)
    start_ms, ms_per_event = planned_start_ms(config, options, int(called * 1000))
    if options.start_time_ms is not None:
        start_ms = options.start_time_ms
    total = math.inf if options.events is None else options.events
    log.info(
        "simulating %s events into %s with %d process(es), seed %d, rate %s",
        total if options.events is not None else f"{options.duration_s:g} s of", options.topic,
        options.processes, options.seed, "max" if options.rate == 0 else f"{options.rate:g}/s",
    )  # fmt: skip
    if options.processes == 1:
        results = [_produce(config, options, 0, start_ms, ms_per_event, _ProgressLog(total))]
    else:
        results = _run_processes(config, options, start_ms, ms_per_event, total)

    catalogue = build_catalogue(config, options)
    videos = max([options.videos] + [r.visible_videos for r in results])
    paths: dict[str, str] = {}
    if options.write_catalogue:
        paths = catalogue.write(config.simulator.catalogue_dir, start_ms, videos)
    events = sum(r.produced for r in results)
    malformed = dict(zip(MALFORMED_KINDS, np.sum([r.kinds for r in results], axis=0).tolist()))
    per_type = dict(zip(EVENT_TYPES, np.sum([r.types for r in results], axis=0).tolist()))
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    last_times = [r.last_event_time_ms for r in results if r.last_event_time_ms is not None]
    errors = [r.first_delivery_error for r in results if r.first_delivery_error]
    report = SimulationReport(
        events=events,
        valid_events=events - sum(malformed.values()),
        malformed=malformed,
        per_type=per_type,
        elapsed_s=round(elapsed, 3),
        events_per_s=round(events / elapsed, 1) if elapsed > 0 else 0.0,
        topic=options.topic,
        catalogue=paths,
        processes=options.processes,
        seed=options.seed,
        start_time_ms=start_ms,
        last_event_time_ms=max(last_times) if last_times else None,
        videos=videos,
        videos_uploaded=videos - options.videos,
        delivery_errors=sum(r.delivery_errors for r in results),
        first_delivery_error=errors[0] if errors else None,
        total_s=round(time.time() - called, 3),
    )
    log.info("simulation finished: %d events (%d malformed) in %.1f s, %.0f/s", events, events - report.valid_events,
             elapsed, report.events_per_s)  # fmt: skip
    if not report.ok:
        raise SimulationError(
            f"{report.delivery_errors} of {events} messages were not delivered to {options.topic} "
            f"(first error: {report.first_delivery_error}); check the broker (reelhouse stack status) and run again",
            report,
        )
    return report
