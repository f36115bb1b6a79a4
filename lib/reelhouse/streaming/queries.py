"""What every reelhouse streaming query shares: one writer per checkpoint, its trigger from config,
and running it to the end with a clear error when it stops.

Spark refuses a second active query on a checkpoint only inside one SparkSession; two driver
processes on the same checkpoint would both commit offsets and race on its logs. A stream
therefore holds an exclusive lock on ``<checkpoint>/_reelhouse_owner`` (``flock``: the kernel
releases it when the process dies, even by SIGKILL) and names the holder when it is refused.
Checkpoints on object storage cannot be locked this way; there the orchestrator (the
``reelhouse_streaming`` DAG) is the one that starts streams.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from reelhouse.config import KafkaStreamConfig
from reelhouse.errors import StreamError
from reelhouse.streaming.source import data_loss_error, is_data_loss

log = logging.getLogger(__name__)

OWNER_FILE = "_reelhouse_owner"


@contextmanager
def checkpoint_owner(stream: KafkaStreamConfig) -> Iterator[None]:
    """Hold the stream's checkpoint for this process, or raise naming the process that holds it."""
    checkpoint = stream.checkpoint_dir
    if "://" in checkpoint and not checkpoint.startswith("file://"):
        log.info("checkpoint %s is on object storage: not locked (one writer is the orchestrator's job)", checkpoint)
        yield
        return
    folder = Path(checkpoint.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(folder / OWNER_FILE, "a+")  # noqa: SIM115 - held for the stream's lifetime
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "{}"
            raise StreamError(
                f"{stream.query_name}: checkpoint {checkpoint} is in use by a running stream ({_describe(owner)}); "
                "stop that one first, or give this one its own checkpoint_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "query_name": stream.query_name,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _describe(owner_json: str) -> str:
    try:
        owner = json.loads(owner_json)
    except ValueError:
        return "owner unknown"
    return (
        f"{owner.get('query_name', '?')}, pid {owner.get('pid', '?')} on {owner.get('host', '?')}, "
        f"started {owner.get('started_at', '?')}"
    )


def with_trigger(writer: Any, mode: str, processing_time: str) -> Any:
    """``available_now`` drains what exists and stops; ``processing_time`` runs until stopped."""
    if mode == "available_now":
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=processing_time)


def await_query(query: Any, name: str, stream: KafkaStreamConfig) -> float:
    """Wait for ``query`` to end (Ctrl-C stops it); returns the seconds it ran.

    A query stopped by ``failOnDataLoss`` raises :class:`StreamError` saying so; other failures
    propagate as Spark raised them.
    """
    from pyspark.errors import StreamingQueryException

    started = time.monotonic()
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("stopping %s", name)
        query.stop()
    except StreamingQueryException as e:
        if is_data_loss(e):
            raise data_loss_error(name, stream, e) from e
        raise
    return round(time.monotonic() - started, 3)
