"""The `scrape` command: flags become a Config, the engine runs, stderr shows progress.

No crawling logic lives here. Exit statuses (README.md, "Exit status"):
0 every URL succeeded · 1 finished, but some URLs failed or list lines were invalid ·
2 usage or input error · 130 interrupted · 120 finished, but messages could not be written.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import io
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from scraper import config as defaults
from scraper._version import __version__
from scraper.config import Config
from scraper.errors import ConfigError, InputError, ScraperError

if TYPE_CHECKING:
    from scraper.pipeline import Crawler
    from scraper.urls import BadLine, ListedURL

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_MESSAGES_LOST = 0, 1, 2, 130, 120
_STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # each stops a crawl in order


def run() -> None:
    """The `scrape` command: `main`, then an exit that skips tearing the interpreter down.

    A normal exit frees every module and object one by one: 50-140 ms here after a crawl,
    more than the crawl's own shutdown, and none of it needed, since by the time `main`
    returns the records, the state and stats.json are closed on disk. So the exit does
    what a normal one does that matters, then ends the process with os._exit, as
    Instagram's servers did ("Dismissing Python Garbage Collection at Instagram", 2017):
    non-daemon threads are waited for, every atexit handler runs (multiprocessing's,
    which end the fork server; logging's; any a sitecustomize registered, coverage's say),
    and the standard streams are flushed. A message that could not be written makes the
    status 120, as a failed flush makes Python's own exit's. When `main` raises instead
    (argparse's usage errors, --help), the exit is the usual one. For the command only:
    called inside another program, it would end that program.
    """
    status = main()
    from scraper.report import messages_lost  # noqa: PLC0415 (see `scrape`)

    # What Py_Finalize runs first, in its order; neither has a public name.
    threading._shutdown()  # type: ignore[attr-defined]  # joins threads, after their hooks
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except OSError:  # a full disk or a closed pipe: as Python's own exit says
            status = status or EXIT_MESSAGES_LOST
    if messages_lost():
        status = status or EXIT_MESSAGES_LOST
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["demo-site"]:
            return demo_site(args[1:])
        if args[:1] == ["bench"]:
            from scraper.bench import main as bench  # noqa: PLC0415 (only when asked)

            return bench(args[1:])
        return scrape(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def scrape(argv: Sequence[str]) -> int:
    # The engine is imported here rather than at the top: every parse or fetch process
    # imports the main module again as it starts, and needs none of it (78-108 ms each).
    from scraper.pipeline import Crawler  # noqa: PLC0415
    from scraper.report import Progress, log_to_stderr, print_summary, say  # noqa: PLC0415

    parser = _crawl_parser()
    options = parser.parse_args(argv)
    log_to_stderr()
    if options.resume and options.frontier == "memory":
        parser.error("--resume needs the sqlite frontier: --frontier memory keeps no state")
    try:
        config = _config(options)
        listed, bad = _read_list(options.url_list)
        crawler = Crawler(config)
        pages = crawler.run([item.url for item in listed], rejected=bad)
    except ScraperError as error:
        say(f"scrape: error: {error}")
        return EXIT_USAGE
    failed = bool(bad)
    interrupted = threading.Event()
    try:
        with (
            _first_interrupt_stops(crawler, interrupted),
            Progress(crawler.stats.snapshot, quiet=options.quiet),
            contextlib.closing(pages),
        ):
            if options.stop_with is not None:
                _stop_when_gone(options.stop_with, crawler, interrupted)
            for page in pages:
                failed |= not page.ok
    except ScraperError as error:
        # Interrupted, what failed is most often what the signal ended: a SIGTERM to the
        # whole process group ends a fork server that is starting the crawl's processes.
        if not interrupted.is_set():
            say(f"scrape: error: {error}")
            return EXIT_USAGE
    if interrupted.is_set():
        say("scrape: interrupted; finished records are on disk")
        return EXIT_INTERRUPTED
    if not options.quiet:
        print_summary(crawler.stats.snapshot())
    return EXIT_FAILURES if failed else EXIT_OK


def path_argument(text: str) -> Path:
    """argparse's type for a path option: "" is refused, which Path reads as the current
    directory (`-o ""` wrote the crawl there)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no directory")
    return Path(text)


def _crawl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scrape",
        description="Download every URL in a list, parse the HTML pages, and write one JSON "
        "record per URL. `scrape demo-site --help` describes the built-in local site, "
        "`scrape bench --help` the comparison of fetch strategies and parse modes on it.",
    )
    parser.add_argument("url_list", help="file with one URL per line; '-' reads standard input")
    parser.add_argument(
        "-o",
        "--output",
        type=path_argument,
        default=Path("output"),
        help="output directory (default: output)",
    )
    parser.add_argument(
        "--frontier",
        choices=("sqlite", "memory"),
        default="sqlite",
        help="where the crawl's state lives: sqlite keeps it in OUTPUT/state.sqlite so an "
        "interrupted crawl can be resumed; memory is faster to start and leaves no state "
        "behind (default: sqlite)",
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the crawl in OUTPUT where it stopped (same list and options)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start over even though OUTPUT holds an earlier crawl (its records are lost)",
    )
    # `scrape bench` starting this crawl: stop in order once it is gone (_stop_when_gone)
    parser.add_argument("--stop-with", type=_pid, metavar="PID", help=argparse.SUPPRESS)
    parser.add_argument(
        "--depth",
        type=int,
        default=0,
        help="follow links this many hops from the listed URLs (default: 0)",
    )
    parser.add_argument(
        "--max-pages",
        type=int,
        default=None,
        help="fetch at most this many URLs in all (default: no limit)",
    )
    parser.add_argument(
        "--allow-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="also follow links to DOMAIN and its subdomains (repeatable)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.DEFAULT_WORKERS,
        help=f"concurrent fetches (default: {defaults.DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--per-host",
        type=int,
        default=defaults.DEFAULT_PER_HOST,
        help=f"concurrent fetches per host (default: {defaults.DEFAULT_PER_HOST})",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        help="seconds between request starts on one host, jittered ±50%% (default: 0); "
        "a robots.txt Crawl-delay is a floor",
    )
    parser.add_argument(
        "--ignore-robots",
        action="store_true",
        help="do not fetch or obey robots.txt",
    )
    parser.add_argument(
        "--allow-private",
        action="store_true",
        help="follow links and redirects from public hosts to loopback, private and "
        "link-local addresses (listed URLs are always allowed)",
    )
    parser.add_argument(
        "--parsers",
        type=int,
        default=defaults.default_parsers(),
        help="parse workers: processes, or threads with --parse threads (default: the "
        "number of CPUs this process may use)",
    )
    parser.add_argument(
        "--fetch",
        choices=defaults.FETCH_STRATEGIES,
        default="threads",
        help="fetch strategy (default: threads)",
    )
    parser.add_argument(
        "--parse",
        choices=defaults.PARSE_MODES,
        default="processes",
        help="where HTML is parsed (default: processes)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.DEFAULT_TIMEOUT,
        help="seconds allowed for connecting, for each read, and for the whole "
        f"response (default: {defaults.DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=defaults.DEFAULT_MAX_BYTES,
        help="largest body accepted, as sent and after decompression "
        f"(default: {defaults.DEFAULT_MAX_BYTES})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=defaults.DEFAULT_RETRIES,
        help="retries of transient failures: connection errors, timeouts, answers that "
        "are not valid HTTP, 429, "
        f"500, 502, 503, 504 (default: {defaults.DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--user-agent", default=defaults.USER_AGENT, help="User-Agent header (default: %(default)s)"
    )
    parser.add_argument(
        "--no-files", action="store_true", help="do not save response bodies under OUTPUT/files"
    )
    parser.add_argument(
        "--no-skipped-log",
        action="store_true",
        help="do not write OUTPUT/skipped.jsonl (skips are still counted)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress and no summary on stderr"
    )
    parser.add_argument("--version", action="version", version=f"scrape {__version__}")
    return parser


def _config(options: argparse.Namespace) -> Config:
    """The Config the options ask for. Its errors name the option the user typed
    (`--allow-domain`), not the field it sets (`allow_domains`)."""
    from scraper.state import STATE_FILE  # noqa: PLC0415 (see `scrape`)

    try:
        return Config(
            depth=options.depth,
            max_pages=options.max_pages,
            allow_domains=tuple(options.allow_domain),
            workers=options.workers,
            per_host=options.per_host,
            delay=options.delay,
            ignore_robots=options.ignore_robots,
            allow_private=options.allow_private,
            skipped_log=not options.no_skipped_log,
            parsers=options.parsers,
            fetch=options.fetch,
            parse=options.parse,
            timeout=options.timeout,
            max_bytes=options.max_bytes,
            retries=options.retries,
            user_agent=options.user_agent,
            output=options.output,
            state=options.output / STATE_FILE if options.frontier == "sqlite" else None,
            resume=options.resume,
            overwrite=options.overwrite,
            save_files=not options.no_files,
        )
    except ConfigError as error:
        raise ConfigError(_in_option_terms(str(error))) from None


def _in_option_terms(message: str) -> str:
    """`message` with the Config field it opens with ("parsers must be at most 256")
    named as the option that sets it ("--parsers ...")."""
    field = re.match(r"[a-z_]+", message)
    if field is None or field.group() not in _FIELDS:
        return message
    option = _OPTION_OF_FIELD.get(field.group(), "--" + field.group().replace("_", "-"))
    return option + message[field.end() :]


_FIELDS = frozenset(field.name for field in dataclasses.fields(Config))
_OPTION_OF_FIELD = {
    "allow_domains": "--allow-domain",
    "save_files": "--no-files",
    "skipped_log": "--no-skipped-log",
    "state": "--frontier",
}


def _read_list(name: str) -> tuple[list[ListedURL], list[BadLine]]:
    """Read the URL list, report each invalid line by number; fail if nothing is left."""
    from scraper.report import say  # noqa: PLC0415 (see `scrape`)
    from scraper.urls import ListedURL, read_url_list  # noqa: PLC0415

    listed: list[ListedURL] = []
    bad: list[BadLine] = []
    try:
        with _open_list(name) as lines:
            for item in read_url_list(lines):
                (listed if isinstance(item, ListedURL) else bad).append(item)  # type: ignore[arg-type]
    except OSError as error:
        raise InputError(f"cannot read the URL list {name}: {error}") from None
    for line in bad:
        say(f"{name}:{line.line}: skipped {line.text!r}: {line.reason}")
    if not listed:
        raise InputError(f"no valid URL in {name}")
    return listed, bad


@contextlib.contextmanager
def _open_list(name: str) -> Iterator[TextIO]:
    """The list as UTF-8 text whose undecodable bytes become lone surrogates, so that
    `read_url_list` reports such a line by its number instead of the whole list failing."""
    if name == "-":
        if sys.stdin is None:
            raise OSError("standard input is closed")
        if isinstance(sys.stdin, io.TextIOWrapper):  # not a caller's StringIO
            with contextlib.suppress(io.UnsupportedOperation):  # read from already: as it is
                sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
        yield sys.stdin
    else:
        with open(name, encoding="utf-8-sig", errors="surrogateescape") as file:
            yield file


def demo_site(argv: Sequence[str]) -> int:
    """`scrape demo-site`: serve the built-in deterministic site until interrupted."""
    from scraper.demo import (  # noqa: PLC0415 (aiohttp.web only when asked)
        CannotServe,
        SiteSpec,
        serve_forever,
    )
    from scraper.demo.site import PRERENDER_BUDGET  # noqa: PLC0415
    from scraper.report import say  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="scrape demo-site",
        description="Serve the built-in demo site on 127.0.0.1 and print its root URL.",
    )
    parser.add_argument("--port", type=port, default=0, help="port (default: a free one)")
    parser.add_argument("--pages", type=int, default=100, help="HTML pages (default: 100)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before each answer (default: 0)"
    )
    parser.add_argument("--page-kb", type=int, default=4, help="page size in KB (default: 4)")
    parser.add_argument(
        "--fanout",
        type=int,
        default=SiteSpec.fanout,
        help=f"child pages each page links to (default: {SiteSpec.fanout})",
    )
    parser.add_argument(
        "--prerender",
        action="store_true",
        help=f"render the pages (up to {PRERENDER_BUDGET >> 20} MB of them) before printing "
        "the URL, so that serving one costs next to no CPU; what `scrape bench` uses",
    )
    # `scrape bench` serving its site: end with it, however it ends (SIGKILL too)
    parser.add_argument("--serve-for", type=_pid, metavar="PID", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve_for is not None:
        from scraper.workers import start_child  # noqa: PLC0415

        start_child(options.serve_for)
        # the bench stops it with SIGTERM, even one the bench was started ignoring
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        spec = SiteSpec(
            pages=options.pages,
            fanout=options.fanout,
            latency_ms=options.latency_ms,
            page_kb=options.page_kb,
        )
    except ValueError as error:
        parser.error(str(error))
    try:
        serve_forever(spec, port=options.port, prerendered=options.prerender)
    except CannotServe as error:
        say(f"scrape demo-site: error: {error}")
        return EXIT_USAGE
    return EXIT_OK


def _pid(text: str) -> int:
    """argparse's type for a process id: 0 and below name process groups, not a process."""
    number = int(text)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"a process id is above 0, not {number}")
    return number


def port(text: str) -> int:
    """argparse's type for --port: its name is what argparse shows ("invalid port value")."""
    number = int(text)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, not {number}")
    return number


@contextlib.contextmanager
def _first_interrupt_stops(crawler: Crawler, interrupted: threading.Event) -> Iterator[None]:
    """While the crawl runs, the first Ctrl-C or SIGTERM stops it in order, and sets
    `interrupted`; the next one exits at once. The previous handlers are restored after.

    The handler only asks the crawl to stop: raising KeyboardInterrupt instead could land
    between writing a record and counting it, or in the middle of a write. SIGTERM is what
    `kill`, `docker stop`, systemd and Kubernetes send to end a program: killed by it, the
    crawl left no stats.json, and its parse processes' semaphores to the resource tracker.
    A signal the program was started ignoring stays ignored (`handling`).
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        for stopping in handled:
            signal.signal(stopping, _exit_at_once)
        interrupted.set()
        crawler.stop()

    with handling(_STOPPING_SIGNALS, handler) as handled:
        yield


@contextlib.contextmanager
def handling(
    signals: Sequence[signal.Signals], handler: Callable[[int, FrameType | None], None]
) -> Iterator[list[signal.Signals]]:
    """Handle each of `signals` with `handler` while the `with` lasts, then restore the
    previous handlers; yields the signals handled. One the program was started ignoring
    (`nohup`, a shell's background job, a supervisor's choice) stays ignored, as Python
    leaves an ignored SIGINT. Off the main thread, none is: signals reach only that one
    (and Python refuses a handler from another)."""
    if threading.current_thread() is not threading.main_thread():
        yield []  # signals reach only the main thread: nothing to install
        return
    handled = [name for name in signals if signal.getsignal(name) != signal.SIG_IGN]
    previous = {name: signal.signal(name, handler) for name in handled}
    try:
        yield handled
    finally:
        for name, restored in previous.items():
            signal.signal(name, restored)


def _stop_when_gone(bench: int, crawler: Crawler, interrupted: threading.Event) -> None:
    """For `scrape bench`'s crawls (`--stop-with`): stop the crawl in order, as SIGTERM
    would, once the bench that started it is gone. Killed outright, it left them crawling
    a site that had ended with it, for as long as the retries took."""
    from scraper.workers import wait_until_gone  # noqa: PLC0415

    def stop() -> None:
        wait_until_gone(bench, our_parent=True)
        interrupted.set()
        crawler.stop()

    threading.Thread(target=stop, name="stop-with", daemon=True).start()


def _exit_at_once(signum: int, frame: FrameType | None) -> None:
    os._exit(EXIT_INTERRUPTED)
