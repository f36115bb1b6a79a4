"""One writer per checkpoint: a second stream on a held checkpoint is refused and told who holds it."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from reelhouse.config import IngestConfig
from reelhouse.errors import StreamError
from reelhouse.streaming.queries import OWNER_FILE, checkpoint_owner


def _hold(checkpoint: str, ready, release) -> None:  # runs in a child process
    with checkpoint_owner(IngestConfig(checkpoint_dir=checkpoint)):
        ready.set()
        release.wait(30)


def test_a_second_owner_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path / "cp"), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(StreamError, match=rf"in use by a running stream \(ingest_events, pid {holder.pid} on "):
            with checkpoint_owner(IngestConfig(checkpoint_dir=str(tmp_path / "cp"))):
                pass
    finally:
        release.set()
        holder.join(30)


def test_the_checkpoint_is_free_again_once_its_owner_is_gone(tmp_path: Path) -> None:
    stream = IngestConfig(checkpoint_dir=str(tmp_path / "cp"))
    with checkpoint_owner(stream):
        owner = json.loads((tmp_path / "cp" / OWNER_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["query_name"] == "ingest_events"

    with checkpoint_owner(stream):  # not refused: the lock went with the first holder
        pass


def test_a_holder_killed_with_sigkill_leaves_the_checkpoint_free(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path / "cp"), ready, release))
    holder.start()
    assert ready.wait(30)
    holder.kill()
    holder.join(30)

    with checkpoint_owner(IngestConfig(checkpoint_dir=str(tmp_path / "cp"))):
        pass
