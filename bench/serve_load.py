"""An open-loop HTTP load generator: fixed arrival rate, latency from the scheduled send time.

A closed loop (N clients, each sending when its last answer came back) slows down with the
server and so hides its queueing ("coordinated omission"). Here request ``i`` of a step is due
at ``t0 + i / rate`` whatever happened to the earlier ones; its latency is measured from that
due time, so time spent waiting for a free connection or for a generator that fell behind
counts against the server's answer, as a user would feel it. Whether the generator itself kept
up is reported separately (``achieved_rps`` against the target and how late requests left).

The rate is split over ``processes`` worker processes (one asyncio + uvloop event loop and one
aiohttp keep-alive connection pool each), their schedules interleaved, because one Python
process cannot reliably issue 1000 requests/s while parsing the answers. Workers stay alive
across steps and get each step's schedule over a pipe.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIMEOUT = -1  # status of a request that got no answer within the client timeout
CONNECTION_ERROR = -2  # status of a request that failed below HTTP


@dataclass(frozen=True)
class Step:
    rate: float  # requests/s over all processes
    duration_s: float
    start_wall: float  # time.time() at which request 0 is due
    seed: int


@dataclass
class StepResult:
    """Per request of one worker's share: due offset, status, latency and how late it was sent."""

    status: np.ndarray  # int16: HTTP status, TIMEOUT or CONNECTION_ERROR
    latency_s: np.ndarray  # float64 from the due time to the end of the answer (or the error)
    send_lag_s: np.ndarray  # float64 how long after its due time the request was handed to the client
    degraded: dict[str, int]  # degraded stages named by 200 answers
    degraded_responses: int  # 200 answers that named at least one
    first_sent: float  # wall clock
    last_sent: float


def _worker_main(connection, url: str, paths: Sequence[str], weights: np.ndarray, index: int, processes: int,
                 timeout_s: float, connections: int, headers: dict[str, str] | None = None) -> None:  # fmt: skip
    """A worker process: wait for steps, run each, send back its :class:`StepResult`; ``None`` stops it."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the default event loop works too, just slower
        pass
    cumulative = np.cumsum(weights)
    while True:
        step = connection.recv()
        if step is None:
            return
        rng = np.random.default_rng(np.random.SeedSequence([step.seed, index]))
        count = int(step.rate * step.duration_s / processes)
        picks = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
        chosen = [paths[p] for p in np.minimum(picks, len(paths) - 1).tolist()]
        connection.send(asyncio.run(_run_step(url, chosen, step, index, processes, timeout_s, connections, headers)))


async def _run_step(url: str, chosen: list[str], step: Step, index: int, processes: int, timeout_s: float,
                    connections: int, headers: dict[str, str] | None = None) -> StepResult:  # fmt: skip
    import aiohttp
    import orjson

    loop = asyncio.get_running_loop()
    count = len(chosen)
    interval = processes / step.rate  # this worker's share, interleaved with the others'
    status = np.zeros(count, dtype=np.int16)
    latency = np.full(count, np.nan)
    lag = np.zeros(count)
    degraded: dict[str, int] = {}
    degraded_responses = 0
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=60, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def one(i: int, due: float) -> None:
        nonlocal degraded_responses
        try:
            async with session.get(chosen[i]) as response:
                body = await response.read()
                status[i] = response.status
            if response.status == 200 and b'"degraded":[]' not in body:
                degraded_responses += 1
                for stage in orjson.loads(body).get("degraded") or ():
                    degraded[stage] = degraded.get(stage, 0) + 1
        except TimeoutError:
            status[i] = TIMEOUT
        except aiohttp.ClientError:
            status[i] = CONNECTION_ERROR
        latency[i] = loop.time() - due

    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout, headers=headers) as session:
        t0 = loop.time() + (step.start_wall - time.time()) + index * interval / processes
        tasks = []
        first_sent = last_sent = 0.0
        for i in range(count):
            due = t0 + i * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            lag[i] = now - due
            tasks.append(loop.create_task(one(i, due)))
            if i == 0:
                first_sent = time.time()
            last_sent = time.time()
        await asyncio.gather(*tasks)
    return StepResult(status, latency, lag, degraded, degraded_responses, first_sent, last_sent)


class LoadGenerator:
    """Worker processes that replay GET ``paths`` (drawn with ``weights``) at a fixed total rate,
    each request with ``headers`` (the feed's Authorization)."""

    def __init__(self, url: str, paths: Sequence[str], weights: np.ndarray, *, processes: int = 2,
                 timeout_s: float = 2.0, connections: int = 256,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        context = multiprocessing.get_context("spawn")
        self.processes = processes
        self._pipes = []
        self._workers = []
        for index in range(processes):
            parent, child = context.Pipe()
            worker = context.Process(
                target=_worker_main,
                args=(child, url, list(paths), np.asarray(weights, dtype=np.float64), index, processes, timeout_s,
                      connections, headers),
                name=f"bench-serve-load-{index}",
                daemon=True,
            )  # fmt: skip
            worker.start()
            self._pipes.append(parent)
            self._workers.append(worker)

    def run(self, rate: float, duration_s: float, seed: int, lead_s: float = 1.0) -> list[StepResult]:
        """Run one step; request 0 is due ``lead_s`` from now (time for the workers to draw their schedules)."""
        step = Step(rate=rate, duration_s=duration_s, start_wall=time.time() + lead_s, seed=seed)
        for pipe in self._pipes:
            pipe.send(step)
        return [pipe.recv() for pipe in self._pipes]

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()


def summarize_step(rate: float, duration_s: float, results: list[StepResult]) -> dict[str, object]:
    """The step's line of the benchmark JSON: achieved rate, latency percentiles (200s), errors."""
    status = np.concatenate([r.status for r in results])
    latency = np.concatenate([r.latency_s for r in results])
    lag = np.concatenate([r.send_lag_s for r in results])
    ok = status == 200
    sent = len(status)
    span = max(r.last_sent for r in results) - min(r.first_sent for r in results)
    # The schedule spans (sent - 1) intervals; a generator that kept up sent them in that time.
    achieved = (sent - 1) / span if span > 0 and sent > 1 else float(sent)
    p50, p95, p99 = (np.percentile(latency[ok], [50, 95, 99]) * 1000.0) if ok.any() else (np.nan,) * 3
    degraded: dict[str, int] = {}
    for r in results:
        for stage, n in r.degraded.items():
            degraded[stage] = degraded.get(stage, 0) + n
    statuses = {str(int(s)): int(n) for s, n in zip(*np.unique(status[~ok], return_counts=True))}
    return {
        "rps": rate,
        "achieved_rps": round(achieved, 1),
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
        "errors": int(sent - ok.sum()),
        "requests": sent,
        "duration_s": duration_s,
        "error_statuses": statuses,  # "-1": timeouts, "-2": connection errors
        "p99_all_ms": round(float(np.percentile(latency, 99) * 1000.0), 2) if sent else None,
        "send_lag_p99_ms": round(float(np.percentile(lag, 99) * 1000.0), 2) if sent else None,
        "generator_behind": bool(achieved < 0.97 * rate or (sent and np.percentile(lag, 99) > 0.05)),
        "degraded_responses": sum(r.degraded_responses for r in results),
        "degraded": degraded,  # per stage: a response can name several
    }
