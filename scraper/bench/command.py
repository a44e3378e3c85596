"""`scrape bench`: its options, and what it writes and prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from scraper import config as defaults
from scraper.bench.figures import (
    DEFAULT_REPEAT,
    DEFAULT_TIMEOUT,
    SCENARIOS,
    BenchError,
    Row,
    Scenario,
    parse_names,
    resolve_scenario,
)
from scraper.bench.report import results_json, results_markdown, results_table, write_chart
from scraper.bench.runs import run_bench
from scraper.cli import handling, path_argument
from scraper.demo.site import MAX_LATENCY_MS, MAX_PAGE_KB
from scraper.errors import ScraperError
from scraper.report import quiet_console, stderr_console

if TYPE_CHECKING:
    from types import FrameType


EXIT_OK, EXIT_FAILED_ROWS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_OUTPUT = Path("output/bench")
TABLE_WIDTH = 120  # columns when stdout is a file or a pipe: the table fits unwrapped


def _names_option(known: Sequence[str], what: str) -> Callable[[str], tuple[str, ...]]:
    def convert(text: str) -> tuple[str, ...]:
        try:
            return parse_names(text, known, what)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _at_least(
    kind: Callable[[str], int | float], minimum: float, maximum: float = math.inf
) -> Callable[[str], Any]:
    def convert(text: str) -> int | float:
        value = kind(text)
        if not value >= minimum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its error message
    return convert


def _parser() -> argparse.ArgumentParser:
    fetches, parses = defaults.FETCH_STRATEGIES, defaults.PARSE_MODES
    parser = argparse.ArgumentParser(
        prog="scrape bench",
        description="Crawl the built-in demo site with every fetch strategy and parse mode, "
        "each crawl in a child process, and compare pages/s, CPU and memory.",
    )
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="io",
        help="io: 50 ms latency, light pages; cpu: no latency, 128 KB pages; "
        "mixed: 10 ms, 16 KB (default: io)",
    )
    overrides = [
        ("--pages", int, 1, math.inf),
        ("--latency-ms", float, 0, MAX_LATENCY_MS),  # the demo site's bounds
        ("--page-kb", int, 0, MAX_PAGE_KB),
        ("--workers", int, 1, math.inf),
        ("--fanout", int, 1, math.inf),
    ]
    for flag, kind, minimum, maximum in overrides:
        converter = _at_least(kind, minimum, maximum)
        parser.add_argument(flag, type=converter, help="replaces the scenario's")
    parser.add_argument(
        "--fetch",
        type=_names_option(fetches, "fetch strategy"),
        default=fetches,
        help=f"comma-separated strategies (default: {','.join(fetches)})",
    )
    parser.add_argument(
        "--parse",
        type=_names_option(parses, "parse mode"),
        default=parses,
        help=f"comma-separated parse modes (default: {','.join(parses)})",
    )
    parser.add_argument(
        "--frontier",
        choices=("sqlite", "memory"),
        help="the crawls' frontier (default: sqlite, as `scrape`)",
    )
    parser.add_argument(
        "--repeat",
        type=_at_least(int, 1),
        default=DEFAULT_REPEAT,
        help=f"crawls per combination; the table shows medians (default: {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--timeout",
        type=_at_least(float, 0.001, defaults.MAX_SECONDS),  # inf waited for ever
        default=DEFAULT_TIMEOUT,
        help="seconds one crawl may take before it is killed and its row "
        f"marked failed (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=path_argument,
        default=DEFAULT_OUTPUT,
        help=f"where results.json, bench.png and bench.md go (default: {DEFAULT_OUTPUT})",
    )
    return parser


def _write_results(
    options: argparse.Namespace,
    scenario: Scenario,
    rows: list[Row],
    load: tuple[float, float, float],
    said: list[str],
    *,
    interrupted: bool,
) -> None:
    """Write results.json, bench.png and bench.md, adding to `said` where each went.

    Written before the table is printed: a reader that stops reading (`scrape bench |
    head`) must not cost the run its results. Without matplotlib, an earlier run's chart
    is removed: left beside these results, it showed other figures."""
    results = options.output / "results.json"
    record = results_json(
        scenario,
        rows,
        repeat=options.repeat,
        timeout=options.timeout,
        load_before=load,
        interrupted=interrupted,
    )
    results.write_text(json.dumps(record, indent=2) + "\n")
    said.append(f"results: {results}")
    chart = options.output / "bench.png"
    if write_chart(chart, scenario, rows):
        said.append(f"chart: {chart}")
    else:
        chart.unlink(missing_ok=True)
        said.append("chart: not drawn: matplotlib is not installed (pip install matplotlib)")
    markdown = options.output / "bench.md"
    markdown.write_text(
        results_markdown(
            scenario,
            rows,
            repeat=options.repeat,
            timeout=options.timeout,
            machine=record["machine"],
            interrupted=interrupted,
            fetches=options.fetch,
            parses=options.parse,
        ),
        encoding="utf-8",
    )
    said.append(f"markdown: {markdown}")


def main(argv: Sequence[str]) -> int:
    """`scrape bench`: 0 when every combination finished, 1 when some failed, 2 on bad usage
    or results that cannot be written (`cli.run` makes a 0 whose messages were lost 120)."""
    options = _parser().parse_args(argv)
    log = stderr_console()
    if not sys.platform.startswith("linux"):
        log.print("scrape bench: error: needs Linux (/proc and prctl)")
        return EXIT_USAGE
    scenario = resolve_scenario(
        options.scenario,
        latency_ms=options.latency_ms,
        pages=options.pages,
        page_kb=options.page_kb,
        workers=options.workers,
        fanout=options.fanout,
        frontier=options.frontier,
    )
    load = os.getloadavg()
    if load[0] > defaults.usable_cpus():
        log.print(f"note: the machine is busy (load {load[0]:.1f}): figures will be noisy")
    with handling(_ENDING_SIGNALS, _interrupt):
        try:
            _refuse_unwritable(options.output)  # before the bench, not after
            rows, interrupted = run_bench(
                scenario,
                options.fetch,
                options.parse,
                repeat=options.repeat,
                timeout=options.timeout,
                console=log,
            )
        except (OSError, ScraperError) as error:
            log.print(f"scrape bench: error: {error}")
            return EXIT_USAGE
        return _report(options, scenario, rows, load, log, interrupted=interrupted)


def _report(
    options: argparse.Namespace,
    scenario: Scenario,
    rows: list[Row],
    load: tuple[float, float, float],
    log: Console,
    *,
    interrupted: bool,
) -> int:
    """Write the results and show the table; the exit status. Interrupted with nothing
    measured, the results an earlier bench left in the directory are removed: unmarked,
    they passed for this one's."""
    if interrupted:
        log.print("scrape bench: interrupted" + ("; the finished crawls follow" if rows else ""))
    if not rows:
        _remove_results(options.output, log)
        return EXIT_INTERRUPTED
    status = EXIT_FAILED_ROWS if any(row.failure for row in rows) else EXIT_OK
    said: list[str] = []  # where each file went, or why it could not
    try:
        with _signals_held():
            _write_results(options, scenario, rows, load, said, interrupted=interrupted)
    except OSError as error:  # the figures still reach the terminal
        said.append(f"scrape bench: error: cannot write the results: {error}")
        status = EXIT_USAGE
    except KeyboardInterrupt:  # held until the files were written: the table still shows
        if not interrupted:
            said.append("scrape bench: interrupted")
        interrupted = True
    console = quiet_console(sys.stdout)
    if not console.file.isatty():  # not rich's is_terminal, which FORCE_COLOR sways
        console.width = TABLE_WIDTH
    console.print(results_table(scenario, rows, options.repeat, interrupted=interrupted))
    for line in said:
        log.print(line)
    return EXIT_INTERRUPTED if interrupted else status


_RESULTS = ("results.json", "bench.png", "bench.md")


def _remove_results(directory: Path, log: Console) -> None:
    removed = [name for name in _RESULTS if (directory / name).exists()]
    for name in removed:
        (directory / name).unlink(missing_ok=True)
    if removed:
        log.print(f"scrape bench: the earlier bench's {', '.join(removed)} removed")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while the results are written, and take them after:
    one that came meanwhile left results.json of this run beside bench.md of another."""
    held = {signal.SIGINT, *_ENDING_SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _refuse_unwritable(directory: Path) -> None:
    """Create `directory`, and raise BenchError when no file can be written in it: found
    after the last crawl, it cost the whole bench."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise BenchError(f"cannot write in {directory}: {error.strerror}") from None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP (a terminal closed) end the bench as Ctrl-C does: the crawl under
    way and the demo site are stopped, and what was measured is kept. Killed by them, the
    bench left both running."""
    raise KeyboardInterrupt


_ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
