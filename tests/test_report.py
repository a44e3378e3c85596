"""What a person sees on stderr, when stderr can no longer be written: the messages are
lost and counted (`messages_lost`, which the command makes exit status 120), the crawl is
not. tests/test_cli.py runs the command so: a closed pipe, a full disk, a terminal that
goes away."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

import pytest

from scraper import report


@pytest.fixture(autouse=True)
def _nothing_lost_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "_messages_lost", threading.Event())


@contextlib.contextmanager
def stderr_on(stream: TextIO) -> Iterator[None]:
    """sys.stderr replaced inside the test itself: pytest puts its own back between a
    fixture's setup and the test."""
    captured, sys.stderr = sys.stderr, stream
    try:
        yield
    finally:
        sys.stderr = captured


@contextlib.contextmanager
def full_disk() -> Iterator[None]:
    # unbuffered: a failed write leaves nothing behind for closing the file to fail on
    raw = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 (closed by the wrapper)
    with io.TextIOWrapper(raw, write_through=True) as full, stderr_on(full):
        yield


def test_a_line_that_cannot_be_written_is_counted() -> None:
    with full_disk():
        report.say("lost")
    assert report.messages_lost()


def test_a_warning_that_cannot_be_written_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """logging drops a failed write silently: a parse process's death was lost unsaid."""
    monkeypatch.setattr(logging.getLogger("scraper"), "handlers", [])
    with full_disk():
        report.log_to_stderr()
        logging.getLogger("scraper.parse_pool").warning("a parse process died")
    assert report.messages_lost()


def test_the_engines_warnings_are_said_and_quiet_libraries_stay_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """urllib3 keeps its warnings to itself (a NullHandler): a handler on the root logger
    printed them, tracebacks included, for every page with a stray header line."""
    monkeypatch.setattr(logging.getLogger("scraper"), "handlers", [])
    written = io.StringIO()
    with stderr_on(written):
        report.log_to_stderr()
        logging.getLogger("scraper.parse_pool").warning("%d parse process died", 1)
        logging.getLogger("urllib3.connectionpool").warning("Failed to parse headers")
    assert written.getvalue() == "1 parse process died\n"
    assert not report.messages_lost()


def test_a_line_with_no_stderr_at_all_is_counted_not_printed_elsewhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`2>&-` leaves sys.stderr None, and print(file=None) writes to stdout."""
    with stderr_on(None):  # type: ignore[arg-type]
        report.say("lost")
    assert report.messages_lost()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("where", ["full disk", "no stream"])
def test_a_console_that_cannot_write_is_counted_and_raises_nothing(where: str) -> None:
    """rich raised the OSError of a full disk from wherever it printed: `scrape bench
    2>/dev/full` ended at its first progress line, its results never written."""
    if where == "full disk":
        with full_disk():
            report.quiet_console(sys.stderr).print("lost")
    else:
        report.quiet_console(None).print("lost")
    assert report.messages_lost()


def test_a_console_on_an_ascii_stream_escapes_what_it_cannot_encode() -> None:
    """`PYTHONIOENCODING=ascii scrape bench` ended in a UnicodeEncodeError at the table's
    title, as Python escapes what stderr cannot encode."""
    raw = io.BytesIO()
    with io.TextIOWrapper(raw, encoding="ascii", write_through=True) as ascii_only:
        report.quiet_console(ascii_only).print("bench · io")
        assert raw.getvalue() == b"bench \\xb7 io\n"
    assert not report.messages_lost()
