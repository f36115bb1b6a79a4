"""Progress for long commands: a log line per stage, and a bar while a person waits at a terminal.

Batch jobs (silver, gold, the training set, materialisation) run for minutes on real data; a line
per stage tells the person at the terminal (or reading the Airflow task log) where the job is::

    with stage(log, "silver: write events") as done:
        commit = ...
        done(rows=commit.rows)

logs ``silver: write events ...`` when it starts and ``silver: write events done in 12.3 s
(rows=48,120)`` when it ends (or ``failed after 3.1 s`` on an exception, which propagates).

A loop a person waits on at a terminal (the demo's steps, gold hour after hour) also gets a bar
from :func:`progress_bar`. The bar is drawn only on a terminal: in logs, CI and Airflow tasks it
draws nothing, and the stage lines are all there is.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress


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


# The display on the terminal while any bar is open: a bar opened inside another joins it as one
# more line (a terminal holds one live display; two would overwrite each other).
_display: Progress | None = None
_display_lock = threading.Lock()


def _is_terminal(file: TextIO) -> bool:
    """A person is watching ``file``: it is a terminal, and not one a CI runner allocated."""
    if os.environ.get("CI", "").lower() == "true":
        return False
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _ignore(n: int = 1, *, completed: int | None = None, description: str | None = None) -> None:
    """The bar's update where no bar is drawn."""


@contextmanager
def progress_bar(
    total: int | None, description: str, *, file: TextIO | None = None, force: bool = False
) -> Iterator[Callable[..., None]]:
    """A progress bar of ``total`` steps (None: unknown) on the terminal while the block runs.

    Yields ``update(n=1, *, completed=None, description=None)``: ``n`` more steps are done, or
    ``completed`` of them in all (for a caller that keeps a running total); ``description``, when
    given, replaces the bar's label (e.g. the step now running). The bar is drawn on ``file``
    (stderr by default) only when that is a terminal outside CI, or when ``force`` is set;
    elsewhere ``update`` does nothing, so callers keep logging their stages as before. The bar
    goes away when the block ends (the log lines say what happened); an exception propagates.

    While a bar is drawn, log lines written to the same terminal print above it instead of
    through it, and a bar opened inside another (a loop within a step) is drawn under it.
    Call it in the driver process only: Spark executors and worker processes have no terminal,
    so they report counts to the process that owns the bar. For example the simulator, whose
    parent process sums what its producer processes report::

        with progress_bar(options.events, "simulate") as update:  # events None: a run bounded by time
            while running:
                ...
                update(completed=sum(counters))
    """
    global _display
    out = sys.stderr if file is None else file
    with _display_lock:
        joined = _display
        if joined is None and not (force or _is_terminal(out)):
            shown = None
        else:
            shown = joined or _start_display(out)
            _display = shown
            task = shown.add_task(description, total=total)
    if shown is None:
        yield _ignore
        return
    restore_logs = _log_through(shown, out) if joined is None else {}

    def update(n: int = 1, *, completed: int | None = None, description: str | None = None) -> None:
        progress: dict[str, Any] = {"advance": n} if completed is None else {"completed": completed}
        if description is not None:
            progress["description"] = description
        shown.update(task, **progress)

    try:
        yield update
    finally:
        with _display_lock:
            if joined is not None:
                shown.remove_task(task)
            else:
                shown.stop()
                _display = None
                for handler, stream in restore_logs.items():
                    handler.setStream(stream)


def _start_display(out: TextIO) -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    on_stderr = out is sys.stderr
    display = Progress(
        # A long label is cut, so the bar keeps room on a narrow terminal (the log line has it whole).
        TextColumn("{task.description}", table_column=Column(max_width=48, no_wrap=True, overflow="ellipsis")),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        # Already decided to draw: rich's own detection (FORCE_COLOR, TERM) must not overrule it.
        console=Console(file=out, force_terminal=True),
        transient=True,
        # Prints to the same terminal go above the bar; stdout redirected to a file stays there.
        redirect_stdout=on_stderr and _is_terminal(sys.stdout),
        redirect_stderr=on_stderr,
    )
    display.start()
    return display


def _log_through(display: Progress, out: TextIO) -> dict[logging.StreamHandler, TextIO]:
    """Send log handlers that write to ``out`` through the display; their streams, to restore."""
    from rich.file_proxy import FileProxy

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is out
    }
    proxy = FileProxy(display.console, out)
    return {handler: handler.setStream(proxy) for handler in handlers}
