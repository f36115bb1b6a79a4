"""Per-stage progress lines (a start line, then counts and elapsed time, or a failure line) and the
terminal's progress bar (drawn only where a person watches)."""

from __future__ import annotations

import io
import logging

import pytest

from reelhouse.progress import progress_bar, stage


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


def test_no_bar_where_nobody_watches() -> None:
    out = io.StringIO()  # a log file, a pipe: not a terminal
    with progress_bar(3, "gold features", file=out) as update:
        for _ in range(3):
            update()
        update(description="no one sees this")
    assert out.getvalue() == ""


def test_no_bar_on_a_terminal_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    monkeypatch.setenv("CI", "true")
    with progress_bar(2, "demo", file=out) as update:
        update(2)
    assert out.getvalue() == ""
    monkeypatch.delenv("CI")
    with progress_bar(2, "demo", file=out) as update:
        update(2)
    assert "demo" in out.getvalue()


def test_a_forced_bar_counts_its_steps_and_shows_the_latest_label() -> None:
    out = io.StringIO()
    with progress_bar(3, "demo", file=out, force=True) as update:
        update()
        update(2, description="demo: evaluation")
    drawn = out.getvalue()
    assert "demo: evaluation" in drawn and "3/3" in drawn
    assert "\x1b[" in drawn  # drawn with terminal control codes, then cleared


def test_a_running_total_sets_the_count_outright() -> None:
    out = io.StringIO()
    with progress_bar(None, "simulate", file=out, force=True) as update:
        update(completed=40)
        update(completed=1_000)
    assert "1000/?" in out.getvalue()


def test_a_bar_inside_a_bar_joins_its_display_and_leaves_it_with_its_block() -> None:
    out = io.StringIO()
    with progress_bar(2, "demo", file=out, force=True) as step:
        with progress_bar(None, "gold features") as hour:  # stderr here is no terminal: joins anyway
            hour(5)
            assert "gold features" in _rendered(out)
        step(2)
        assert "gold features" not in _rendered(out).rsplit("demo", 1)[-1]
    assert "gold features" in out.getvalue()


def test_log_lines_print_above_the_bar_and_the_handler_gets_its_stream_back() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger("reelhouse.test.bar")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with progress_bar(1, "materialise", file=out, force=True) as update:
            assert handler.stream is not out
            log.info("video_features: 1,200 rows")
            update()
        assert handler.stream is out
    finally:
        log.removeHandler(handler)
    assert "video_features: 1,200 rows" in out.getvalue()


def test_an_error_closes_the_bar_and_propagates() -> None:
    out = io.StringIO()
    with pytest.raises(KeyError), progress_bar(2, "demo", file=out, force=True):
        raise KeyError("x")
    with progress_bar(1, "again", file=io.StringIO()) as update:  # no display left open to join
        update()
    assert "again" not in out.getvalue()


def _rendered(out: io.StringIO) -> str:
    """What the display last drew: a forced bar refreshes a few times a second, so draw once more now."""
    from reelhouse import progress

    assert progress._display is not None
    progress._display.refresh()
    return out.getvalue()
