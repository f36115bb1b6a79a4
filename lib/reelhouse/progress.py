"""Per-stage progress lines for long commands: what started, then what it produced and how long it took.

Batch jobs (silver, gold, the training set, materialisation) run for minutes on real data; a line
per stage tells the person at the terminal (or reading the Airflow task log) where the job is::

    with stage(log, "silver: write events") as done:
        commit = ...
        done(rows=commit.rows)

logs ``silver: write events ...`` when it starts and ``silver: write events done in 12.3 s
(rows=48,120)`` when it ends (or ``failed after 3.1 s`` on an exception, which propagates).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _counts(counts: dict[str, Any]) -> str:
    parts = [f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in counts.items()]
    return f" ({', '.join(parts)})" if parts else ""


@contextmanager
def stage(log: logging.Logger, label: str) -> Iterator[Callable[..., None]]:
    """Log ``label`` at its start and end with elapsed time; the yielded callable records counts."""
    counts: dict[str, Any] = {}
    started = time.perf_counter()
    log.info("%s ...", label)
    try:
        yield lambda **values: counts.update(values)
    except BaseException:
        log.warning("%s failed after %.1f s", label, time.perf_counter() - started)
        raise
    log.info("%s done in %.1f s%s", label, time.perf_counter() - started, _counts(counts))
