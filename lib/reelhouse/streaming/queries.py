"""What every reelhouse streaming query shares: its trigger from config, and running it to the end."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def with_trigger(writer: Any, mode: str, processing_time: str) -> Any:
    """``available_now`` drains what exists and stops; ``processing_time`` runs until stopped."""
    if mode == "available_now":
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=processing_time)


def await_query(query: Any, name: str) -> float:
    """Wait for ``query`` to end (Ctrl-C stops it); returns the seconds it ran."""
    started = time.monotonic()
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("stopping %s", name)
        query.stop()
    return round(time.monotonic() - started, 3)
