"""The time the feed service lives in: the wall clock, or a simulated clock a file sets.

A production service reads the wall clock. The multi-day closed loop
(``reelhouse simulate --closed-loop --days N``) plays a simulated day in a minute or two and
then pauses time while the daily flow runs, so the service it starts must stamp impressions,
check event times, expire seen videos and judge what is "new" in the simulation's time, not the
machine's. The loop writes the clock file; every process that reads it (the service, the
simulated users) sees the same time:

    {"sim_ms": S, "wall_ms": W, "scale": x}   ->   now = S + (wall now - W) * x

``scale`` 0 holds time still at ``S`` (the loop does that between days). The file is replaced
atomically, so a reader sees the old or the new clock, never half of one. Only a simulation sets
``serving.clock_file``; when it is unset (the default) the service reads the wall clock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reelhouse.errors import ReelhouseError

# How often a reader looks at the file for a new clock: a simulated day jumps at most once per
# daily flow, and a stat per call on the request path would cost more than it could gain.
RECHECK_S = 0.05


class Clock(Protocol):
    def now_ms(self) -> int:
        """Epoch milliseconds (UTC) of now."""
        ...


class WallClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


@dataclass(frozen=True)
class ClockSetting:
    sim_ms: int
    wall_ms: int
    scale: float

    def at(self, wall_ms: float) -> int:
        return int(self.sim_ms + (wall_ms - self.wall_ms) * self.scale)


def write_clock(path: str | Path, sim_ms: int, scale: float, wall_ms: int | None = None) -> ClockSetting:
    """Set the simulated clock at ``path``: ``sim_ms`` now, running ``scale`` times the wall clock."""
    if scale < 0:
        raise ReelhouseError(f"a clock cannot run backwards (scale {scale})")
    setting = ClockSetting(int(sim_ms), int(time.time() * 1000) if wall_ms is None else int(wall_ms), float(scale))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"sim_ms": setting.sim_ms, "wall_ms": setting.wall_ms, "scale": setting.scale}))
    os.replace(temporary, path)
    return setting


def read_clock(path: str | Path) -> ClockSetting:
    try:
        data = json.loads(Path(path).read_text())
        return ClockSetting(int(data["sim_ms"]), int(data["wall_ms"]), float(data["scale"]))
    except FileNotFoundError:
        raise ReelhouseError(
            f"the clock file {path} does not exist: the simulation that sets it is not running"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise ReelhouseError(f"the clock file {path} is not a clock ({type(e).__name__}: {e})") from None


def _stamp(path: Path) -> tuple[int, int]:
    # Each write replaces the file, so a new inode tells a new clock even within one mtime tick.
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


class FileClock:
    """The clock of the file at ``path`` (module docstring); it must exist when the clock is made.

    A file that later disappears or breaks keeps the last clock read (logged by nobody: the
    simulation that writes it reports its own failures)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._setting = read_clock(self.path)
        self._stamp = _stamp(self.path)
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _current(self) -> ClockSetting:
        now = time.monotonic()
        if now - self._checked < RECHECK_S:
            return self._setting
        with self._lock:
            self._checked = now
            try:
                stamp = _stamp(self.path)
                if stamp != self._stamp:
                    self._setting, self._stamp = read_clock(self.path), stamp
            except (OSError, ReelhouseError):
                pass
        return self._setting

    def now_ms(self) -> int:
        return self._current().at(time.time() * 1000)


def clock_for(clock_file: str | None) -> Clock:
    """The wall clock, or the simulated clock of ``clock_file`` (``serving.clock_file``)."""
    return WallClock() if not clock_file else FileClock(clock_file)
