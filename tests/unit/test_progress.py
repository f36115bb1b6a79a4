"""Per-stage progress lines: a start line, then counts and elapsed time (or a failure line)."""

from __future__ import annotations

import logging

import pytest

from reelhouse.progress import stage


def test_a_stage_logs_its_start_and_its_counts(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("reelhouse.test")
    with caplog.at_level(logging.INFO, logger="reelhouse.test"), stage(log, "silver: write") as done:
        done(rows=48_120, version=7)
    start, end = (record.getMessage() for record in caplog.records)
    assert start == "silver: write ..."
    assert end.startswith("silver: write done in ") and end.endswith(" s (rows=48,120, version=7)")


def test_a_failed_stage_says_so_and_the_error_propagates(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("reelhouse.test")
    with caplog.at_level(logging.INFO, logger="reelhouse.test"), pytest.raises(KeyError):
        with stage(log, "gold: video_features"):
            raise KeyError("x")
    assert caplog.records[-1].levelno == logging.WARNING
    assert caplog.records[-1].getMessage().startswith("gold: video_features failed after ")
