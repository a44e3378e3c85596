"""What a person sees on stderr: live progress while crawling and a summary at the end.

Both read only `StatsSnapshot` values, so rendering never holds the stats lock.

rich draws the live line on a terminal and the summary table. It is imported only when
progress is shown (≈ 30 ms): a quiet crawl never loads it. Everything else is a plain line
on stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from scraper.stats import StatsSnapshot

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

PLAIN_INTERVAL = 5.0  # seconds between progress lines when stderr is not a terminal

_messages_lost = threading.Event()


def messages_lost() -> bool:
    """Whether a message could not be written to stderr (a closed pipe, a full disk).

    The exit status tells it (`cli.run` makes it 120, as Python's own exit does): Python
    itself cannot, since it drops what a failed flush held, and the flush at exit then
    succeeds with nothing to write."""
    return _messages_lost.is_set()


def progress_line(stats: StatsSnapshot) -> str:
    """One line of progress: the figures a person watches during a crawl."""
    return (
        f"pages {stats.pages} (ok {stats.ok}, failed {stats.failed}) · queued {stats.queued}"
        f" · fetching {stats.fetching} · parsing {stats.parsing}"
        f" · {stats.bytes / 1e6:.1f} MB · {stats.pages_per_second:.1f} pages/s"
    )


class Progress:
    """Live progress on stderr: redrawn in place on a terminal, a line every few seconds
    otherwise (logs stay readable), nothing when quiet."""

    def __init__(self, snapshot: Callable[[], StatsSnapshot], *, quiet: bool) -> None:
        self._snapshot = snapshot
        self._quiet = quiet
        self._live: Live | None = None
        self._stop = threading.Event()
        self._printer: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self._quiet:
            return self
        console = stderr_console()  # rich decides what a terminal is (FORCE_TERMINAL...)
        if console.is_terminal:
            self._live = self._start_live(console)
        else:
            self._printer = threading.Thread(target=self._print_lines, daemon=True)
            self._printer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.stop()
        if self._printer is not None:
            self._printer.join()

    def _start_live(self, console: Console) -> Live:
        from rich.live import Live  # noqa: PLC0415 (see the module's docstring)
        from rich.text import Text  # noqa: PLC0415

        live = Live(
            get_renderable=lambda: Text(progress_line(self._snapshot())),
            console=console,
            refresh_per_second=4,
            transient=True,
        )
        live.start()
        return live

    def _print_lines(self) -> None:
        while not self._stop.wait(PLAIN_INTERVAL):
            say(progress_line(self._snapshot()))


def say(message: str) -> None:
    """One plain line on stderr, as it is: no markup, never wrapped. While the live line is
    shown, rich redirects stderr and prints it above.

    A stderr that cannot be written (a closed pipe, a full disk) loses the message, not the
    crawl: a list's first bad line ended the run before it began. `messages_lost` tells."""
    stderr = _GuardedStream(sys.stderr)
    stderr.write(f"{message}\n")
    stderr.flush()


def log_to_stderr() -> None:
    """Send the engine's logged warnings (a parse process that died...) to stderr through
    `say`: a bare line each, as Python's last-resort handler writes them, above the live
    line, and counted by `messages_lost` when they cannot be written (logging drops those
    silently). The `scraper` logger's only: libraries that keep theirs quiet (urllib3's
    NullHandler) stay so. For the command: a program that embeds the crawl keeps its own
    logging."""
    engine = logging.getLogger("scraper")
    if not engine.handlers:
        handler = _SayHandler()
        handler.setLevel(logging.WARNING)
        engine.addHandler(handler)


class _SayHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
        except Exception:  # a logging call's own mistake: logging's report of it
            self.handleError(record)
        else:
            say(message)


def stderr_console() -> Console:
    """A rich console on stderr that prints text as it is: brackets in paths and URLs stay,
    and a long line stays whole on a pipe (rich would wrap it at 80 columns)."""
    return quiet_console(sys.stderr, markup=False, highlight=False, soft_wrap=True)


def quiet_console(stream: TextIO | None, **options: Any) -> Console:
    """A rich Console (`options` are its own) on `stream` that loses what it cannot write
    (`_GuardedStream`) instead of raising."""
    from rich.console import Console  # noqa: PLC0415 (see the module's docstring)

    return Console(file=_GuardedStream(stream), **options)  # type: ignore[arg-type]


class _GuardedStream:
    """A text stream that loses what cannot be written instead of raising: a closed pipe, a
    full disk, a terminal gone (EIO), no stream at all (`2>&-`). Each lost message counts
    for the exit status (`messages_lost`), and the stream goes quiet after its first loss.

    rich's own answer to a closed pipe was to point stdout at /dev/null and raise
    SystemExit(1) (a finished crawl exited 1; `scrape bench | head` ended before writing
    its results); to the rest, to raise from wherever it was printing."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):  # ValueError: a closed file
            return False

    def write(self, text: str) -> int:
        if self._stream is None:
            _messages_lost.set()
        else:
            self._attempt(self._write, self._stream, text)
        return len(text)

    def _write(self, stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
        except UnicodeEncodeError:  # an ASCII stream (LANG=C): as Python writes to stderr
            stream.write(text.encode(self.encoding, "backslashreplace").decode(self.encoding))

    def flush(self) -> None:
        if self._stream is not None:
            self._attempt(self._stream.flush)

    def _attempt(self, action: Callable[..., object], *args: object) -> None:
        try:
            action(*args)
        except OSError:
            self._stream = None
            _messages_lost.set()


def print_summary(stats: StatsSnapshot) -> None:
    """The end-of-crawl summary on stderr: totals, then statuses, errors and skips by kind."""
    from rich.table import Table  # noqa: PLC0415 (see the module's docstring)

    table = Table(title="scrape summary", show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("pages", str(stats.pages)),
        ("ok", str(stats.ok)),
        ("failed", str(stats.failed)),
        ("retries", str(stats.retries)),
        ("downloaded", f"{stats.bytes / 1e6:.2f} MB"),
        ("elapsed", f"{stats.elapsed_s:.1f} s"),
        ("pages/s", f"{stats.pages_per_second:.1f}"),
    ]
    rows += _counted("status", stats.statuses)
    rows += _counted("error", stats.errors)
    rows += _counted("skipped", stats.skipped)
    for name, value in rows:
        table.add_row(name, value)
    stderr_console().print(table)


def _counted(prefix: str, counts: Mapping[str, int]) -> list[tuple[str, str]]:
    return [(f"{prefix} {key}", str(counts[key])) for key in sorted(counts)]
