"""Loop benchmark: does the system learn from its own feed over simulated days?

In a workspace of its own (bench/workspace.py, under ``--root``): ``reelhouse demo`` builds the
starting point (a catalogue, traffic, a lake, a champion), then ``reelhouse simulate --closed-loop
--days N`` plays the days (simulator/days.py): a learning variant served by each day's champion
against a frozen variant that keeps the day-0 champion, the daily flow after every day, an
off-policy estimate of each challenger before it ships. The loop's report JSON is the last line.

Targets: by the last day the learning variant's mean watch ratio beats the frozen one's with a
CI excluding zero, its new-video share does not fall below the frozen one's, and most
off-policy estimates hold the realised value within their CI (``targets`` in the JSON).

    make bench-loop [DAYS=5 USERS=2000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workspace import PROJECT_DIR, workspace_config  # noqa: E402

REELHOUSE = str(Path(sys.executable).parent / "reelhouse")
# The starting catalogue: big enough for tastes to matter, small enough for a day's flow to take a minute or two.
CATALOGUE = {
    "users": 4_000,
    "videos": 8_000,
    "creators": 800,
    "uploads_per_hour": 30,
    "rate": 20_000,
    "duration_s": 10,
    "processes": 1,
}


def _run(command: list[str], log: Path) -> str:
    """Run ``command``, its output into ``log``; its standard output's last line, or exit with the log's end."""
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=out, text=True)
    log.open("a").write(done.stdout)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        sys.exit(f"{' '.join(command[:3])} failed ({done.returncode}); the end of {log}:\n{tail}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=PROJECT_DIR / ".reelhouse" / "bench-loop")
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--day-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    shutil.rmtree(args.root, ignore_errors=True)
    config = workspace_config(args.root, {**CATALOGUE, "seed": args.seed})
    started = time.monotonic()
    print(f"demo (the starting point) in {args.root} ...", file=sys.stderr)
    _run([REELHOUSE, "demo", "--config", str(config)], args.root / "demo.log")
    print(f"demo done in {time.monotonic() - started:.0f} s; {args.days} simulated days ...", file=sys.stderr)
    loop = [REELHOUSE, "simulate", "--config", str(config), "--closed-loop", "--days", str(args.days)]
    loop += ["--users", str(args.users), "--day-seconds", str(args.day_seconds), "--seed", str(args.seed)]
    loop += ["--concurrency", "64"]
    result = _run(loop, args.root / "loop.log")
    print(f"loop done in {time.monotonic() - started:.0f} s in all; report under {args.root / 'loop'}", file=sys.stderr)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
