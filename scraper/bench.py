"""`scrape bench`: each fetch strategy and parse mode crawls the built-in demo site, measured.

Why it is built this way:

- The demo site runs in a process of its own, so its CPU time is not counted as the crawler's,
  and renders its pages before the crawls start (`demo-site --prerender`): rendering a heavy
  page took the server ≈ 0.9 ms, CPU it took from the crawler on the same cores.
- Each crawl runs as `python -m scraper ...` in a child process that starts a new session.
  The session is the crawl's process tree (the parse pool's forkserver and workers included,
  even after their parent exits), so sampling /proc for its members every `SAMPLE_INTERVAL`
  gives the tree's peak RSS, and killing the session's process group ends the whole tree.
- CPU seconds come from `os.wait4`, which adds the children a process reaped. The parse
  pool's forkserver outlives the crawler and would be reaped by init, its CPU lost, so the
  bench makes itself a child subreaper while it runs: orphans of the crawl come to it and it
  reaps them with `wait4` as well.
- Repeats are interleaved (every combination once, then again), so a machine that slows down
  midway slows every combination alike.
- pages/s is taken from the crawl's own clock (stats.json `elapsed_s`); wall time is the
  child's, interpreter start-up included.

Linux only: the tree is read from /proc and adopted through prctl.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import math
import os
import platform
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scraper import config as defaults
from scraper._version import __version__
from scraper.cli import handling, path_argument
from scraper.demo.site import MAX_LATENCY_MS, MAX_PAGE_KB
from scraper.errors import ScraperError
from scraper.report import quiet_console, stderr_console
from scraper.sinks import STATS_FILE

if TYPE_CHECKING:
    from resource import struct_rusage
    from types import FrameType

EXIT_OK, EXIT_FAILED_ROWS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SAMPLE_INTERVAL = 0.05  # seconds between samples of the crawl tree's RSS
DEFAULT_OUTPUT = Path("output/bench")
TABLE_WIDTH = 120  # columns when stdout is a file or a pipe: the table fits unwrapped
DEFAULT_TIMEOUT = 300.0  # seconds one crawl may take before its tree is killed
DEFAULT_REPEAT = 3
SERVER_START_TIMEOUT = 90.0  # seconds; the site renders up to 256 MB of pages first (≈ 20 s)
ORPHAN_GRACE = 5.0  # seconds the crawl's leftover processes get to exit before SIGKILL
STOP_GRACE = 10.0  # seconds a crawl told to stop (SIGTERM) gets before SIGKILL
ONE_AT_A_TIME = frozenset({"sequential"})  # strategies that ignore --workers
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37
_VERSIONED = ("requests", "aiohttp", "lxml", "beautifulsoup4", "matplotlib")


class BenchError(ScraperError):
    """The bench cannot run at all: the demo site did not start, or no subreaper."""


@dataclass(frozen=True)
class Scenario:
    """The site every combination crawls, and how many fetches run at once."""

    name: str
    latency_ms: float
    pages: int
    page_kb: int
    workers: int
    fanout: int = 5  # child pages each page links to: the demo site's own default
    frontier: str = "sqlite"  # the CLI's default; memory shows what the durable state costs


SCENARIOS = {
    # Each page links 16 children, so the workers are all busy from the root's links on;
    # with the demo site's 5, the first waves fetched 1, 5, 25 pages at a time.
    "io": Scenario(
        "io", latency_ms=50, pages=300, page_kb=4, workers=defaults.DEFAULT_WORKERS, fanout=16
    ),
    # Heavy pages: 128 KB of markup (~4,200 elements) take ~13 ms each to parse here, and
    # 1,000 of them let the parse pool's start-up weigh little.
    "cpu": Scenario("cpu", latency_ms=0, pages=1000, page_kb=128, workers=defaults.DEFAULT_WORKERS),
    "mixed": Scenario(
        "mixed", latency_ms=10, pages=400, page_kb=16, workers=defaults.DEFAULT_WORKERS
    ),
}


@dataclass(frozen=True)
class Figures:
    """What one crawl measured, or the medians of several."""

    pages: int  # HTML pages crawled successfully (the site's binary files are not counted)
    errors: int  # records with ok false
    pages_per_s: float
    wall_s: float
    cpu_s: float  # crawler and every process it started
    tree_rss_mb: float  # peak of the summed RSS of the crawl's processes
    largest_rss_mb: float  # peak RSS of the largest single process
    mb_per_s: float


@dataclass(frozen=True)
class RunResult:
    """One crawl of one combination: its figures, or why it has none."""

    fetch: str
    parse: str
    repeat: int
    figures: Figures | None
    failure: str | None = None


@dataclass(frozen=True)
class Row:
    """One combination's line in the table: medians over its repeats."""

    fetch: str
    parse: str
    median: Figures | None  # None when no repeat finished
    ceiling: float | None  # pages/s the latency allows; None without latency
    failure: str | None  # the first repeat's failure, if any failed
    runs: tuple[RunResult, ...]

    @property
    def share(self) -> float | None:
        """pages/s as a percentage of the ceiling."""
        if self.median is None:
            return None
        return ceiling_share(self.median.pages_per_s, self.ceiling)


# Pure functions: scenario, names, statistics, table, Markdown.


def resolve_scenario(
    name: str,
    *,
    latency_ms: float | None = None,
    pages: int | None = None,
    page_kb: int | None = None,
    workers: int | None = None,
    fanout: int | None = None,
    frontier: str | None = None,
) -> Scenario:
    """The named scenario with every explicitly given value put in place of its own."""
    given: dict[str, Any] = {
        "latency_ms": latency_ms,
        "pages": pages,
        "page_kb": page_kb,
        "workers": workers,
        "fanout": fanout,
        "frontier": frontier,
    }
    return dataclasses.replace(
        SCENARIOS[name], **{key: value for key, value in given.items() if value is not None}
    )


def parse_names(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    """A comma-separated subset of `known`, in the order given, each once."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        wrong = ", ".join(map(repr, unknown)) or "none given"
        raise ValueError(f"unknown {what} {wrong}; choose from {', '.join(known)}")
    return names


def io_ceiling(scenario: Scenario, fetch: str) -> float | None:
    """The most pages/s latency allows: workers / latency, or 1 / latency one at a time."""
    if scenario.latency_ms <= 0:
        return None
    concurrent = 1 if fetch in ONE_AT_A_TIME else scenario.workers
    return concurrent * 1000 / scenario.latency_ms


def ceiling_share(pages_per_s: float, ceiling: float | None) -> float | None:
    """pages/s as a percentage of `ceiling` (None when there is no ceiling)."""
    return None if not ceiling else 100 * pages_per_s / ceiling


def median_figures(runs: Sequence[Figures]) -> Figures:
    """Median of each figure over the repeats; errors is the most seen in any repeat."""

    def mid(name: str) -> float:
        return float(statistics.median(getattr(run, name) for run in runs))

    return Figures(
        pages=round(mid("pages")),
        errors=max(run.errors for run in runs),
        pages_per_s=mid("pages_per_s"),
        wall_s=mid("wall_s"),
        cpu_s=mid("cpu_s"),
        tree_rss_mb=mid("tree_rss_mb"),
        largest_rss_mb=mid("largest_rss_mb"),
        mb_per_s=mid("mb_per_s"),
    )


def summarize(scenario: Scenario, fetch: str, parse: str, runs: Sequence[RunResult]) -> Row:
    """A combination's row. A failed repeat marks the row; the others still give medians."""
    finished = [run.figures for run in runs if run.figures is not None]
    failures = [run.failure for run in runs if run.failure is not None]
    return Row(
        fetch=fetch,
        parse=parse,
        median=median_figures(finished) if finished else None,
        ceiling=io_ceiling(scenario, fetch),
        failure=failures[0] if failures else None,
        runs=tuple(runs),
    )


def results_table(scenario: Scenario, rows: Sequence[Row], repeat: int) -> Table:
    """The terminal table: one line per combination, medians of `repeat` crawls."""
    table = Table(
        title=f"scrape bench · {_describe(scenario, repeat)}",
        title_justify="left",
        caption=_caption(scenario, rows),
        box=box.SIMPLE_HEAD,
    )
    with_ceiling = scenario.latency_ms > 0
    for header in _headers(with_ceiling=with_ceiling):
        table.add_column(header, justify="left" if header in _LEFT_ALIGNED else "right")
    for row in rows:
        table.add_row(*map(escape, _cells(row, with_ceiling=with_ceiling)))
    return table


_LEFT_ALIGNED = frozenset({"fetch", "parse"})  # text columns; the figures align right


def _describe(scenario: Scenario, repeat: int) -> str:
    return (
        f"{scenario.name}: {scenario.pages} pages of ~{scenario.page_kb} KB linking "
        f"{scenario.fanout} children each, {scenario.latency_ms:g} ms latency, "
        f"{scenario.workers} workers, "
        f"{scenario.frontier} frontier, median of {repeat}"
    )


def _headers(*, with_ceiling: bool) -> list[str]:
    """The table's columns, shared by the terminal table and the Markdown one."""
    headers = ["fetch", "parse", "pages", "pages/s"]
    headers += ["of ceiling"] if with_ceiling else []
    return [*headers, "wall s", "CPU s", "tree MB", "largest MB", "MB/s", "errors"]


def _cells(row: Row, *, with_ceiling: bool) -> list[str]:
    """A row's cells as plain text: each table escapes them for its own markup."""
    figures = row.median
    if figures is None:
        blanks = ["—"] * (8 if with_ceiling else 7)
        return [row.fetch, row.parse, *blanks, f"failed: {row.failure}"]
    share = [f"{row.share:.0f}% of {row.ceiling:,.0f}"] if with_ceiling else []
    errors = str(figures.errors) + (f" (failed: {row.failure})" if row.failure else "")
    return [
        row.fetch,
        row.parse,
        str(figures.pages),
        f"{figures.pages_per_s:.1f}",
        *share,
        f"{figures.wall_s:.2f}",
        f"{figures.cpu_s:.2f}",
        f"{figures.tree_rss_mb:.0f}",
        f"{figures.largest_rss_mb:.0f}",
        f"{figures.mb_per_s:.2f}",
        errors,
    ]


def _caption(scenario: Scenario, rows: Sequence[Row]) -> str:
    notes = ["pages/s by the crawl's own clock; wall s includes interpreter start-up"]
    if scenario.latency_ms > 0:
        notes.append(
            f"ceiling = workers / latency = {scenario.workers} / {scenario.latency_ms:g} ms"
        )
        if any(row.fetch in ONE_AT_A_TIME for row in rows):
            notes.append("one at a time (sequential): 1 / latency")
    return "; ".join(notes)


def bench_command(scenario: Scenario, rows: Sequence[Row], *, repeat: int, timeout: float) -> str:
    """The `scrape bench` command that measured `rows`: the options that differ from their
    defaults (not the output directory, which changes no figure)."""
    argv = ["scrape", "bench", "--scenario", scenario.name]
    named = SCENARIOS[scenario.name]
    for field in dataclasses.fields(Scenario):
        value = getattr(scenario, field.name)
        if value != getattr(named, field.name):
            argv += ["--" + field.name.replace("_", "-"), _number_text(value)]
    fetches = tuple(dict.fromkeys(row.fetch for row in rows))
    parses = tuple(dict.fromkeys(row.parse for row in rows))
    argv += ["--fetch", ",".join(fetches)] if fetches != defaults.FETCH_STRATEGIES else []
    argv += ["--parse", ",".join(parses)] if parses != defaults.PARSE_MODES else []
    argv += ["--repeat", str(repeat)] if repeat != DEFAULT_REPEAT else []
    argv += ["--timeout", _number_text(timeout)] if timeout != DEFAULT_TIMEOUT else []
    return shlex.join(argv)


def _number_text(value: object) -> str:
    """An option's value as typed: 50 rather than 50.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def results_markdown(
    scenario: Scenario,
    rows: Sequence[Row],
    *,
    repeat: int,
    timeout: float,
    machine: Mapping[str, Any],
    interrupted: bool = False,
) -> str:
    """A fragment to paste into a README as is: the command and the machine, the table, and a
    Mermaid chart that GitHub draws (a failed row is in the table but not in the chart)."""
    command = bench_command(scenario, rows, repeat=repeat, timeout=timeout)
    with_ceiling = scenario.latency_ms > 0
    headers = _headers(with_ceiling=with_ceiling)
    cut_short = " Interrupted: the crawls that finished." if interrupted else ""
    lines = [
        f"`{command}` on {machine['cpus']} CPUs, Python {machine['python']} "
        f"({machine['platform']}); {_describe(scenario, repeat)}.{cut_short}",
        "",
        _markdown_line(headers),
        _markdown_line(":--" if header in _LEFT_ALIGNED else "--:" for header in headers),
        *(_markdown_line(_cells(row, with_ceiling=with_ceiling)) for row in rows),
        "",
        f"{_caption(scenario, rows)}.",
        "",
        *_mermaid_chart(scenario, rows, repeat),
    ]
    return "\n".join(lines) + "\n"


def _markdown_line(cells: Iterable[str]) -> str:
    """A table line; a cell (a failure's message) keeps its pipes and loses its line breaks."""
    escaped = [" ".join(cell.splitlines()).replace("|", r"\|") for cell in cells]
    return f"| {' | '.join(escaped)} |"


def _mermaid_chart(scenario: Scenario, rows: Sequence[Row], repeat: int) -> list[str]:
    """Horizontal bars of median pages/s and, with latency, each row's ceiling as a line.

    Numbers are written without exponents: the xychart grammar has none.
    """
    charted = [(row, row.median) for row in rows if row.median is not None]
    if not charted:
        return ["No combination finished: no chart."]
    bars = [figures.pages_per_s for _, figures in charted]
    with_ceiling = scenario.latency_ms > 0  # then every row has one (sequential its own)
    ceilings = [row.ceiling or 0.0 for row, _ in charted] if with_ceiling else []
    labels = ", ".join(_quoted(f"{row.fetch} / {row.parse}") for row, _ in charted)
    series = [f"    bar [{', '.join(f'{value:.1f}' for value in bars)}]"]
    if with_ceiling:
        series.append(f"    line [{', '.join(f'{value:.1f}' for value in ceilings)}]")
    note = "; the line is the ceiling latency allows" if with_ceiling else ""
    return [
        f"Bars: median pages/s of each fetch / parse{note}.",
        "",
        "```mermaid",
        "xychart-beta horizontal",
        f"    title {_quoted(f'scrape bench · {scenario.name}, median of {repeat}')}",
        f'    x-axis "fetch / parse" [{labels}]',
        f'    y-axis "pages/s" 0 --> {max(1, math.ceil(max(bars + ceilings)))}',
        *series,
        "```",
    ]


def _quoted(text: str) -> str:
    """A Mermaid string: quoted, as a label with spaces or slashes must be; it has no escape."""
    return '"' + text.replace('"', "'") + '"'


# Processes: the demo site, and one measured crawl.


def _child_env() -> dict[str, str]:
    """The environment for child processes: they import this very copy of scraper, and
    take no proxy from it. The site is on 127.0.0.1: through a proxy the environment
    names, the bench measured the proxy (or, with none listening, every crawl failed)."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    kept = {name: value for name, value in os.environ.items() if name.lower() not in _PROXIES}
    return {**kept, "PYTHONPATH": path}


_PROXIES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


@contextlib.contextmanager
def demo_server(scenario: Scenario) -> Iterator[str]:
    """Serve the scenario's site from its own process; yield its root URL; always stop it."""
    argv = [sys.executable, "-m", "scraper", "demo-site", "--port", "0"]
    argv += ["--serve-for", str(os.getpid())]  # it ends with the bench, however that ends
    argv += ["--pages", str(scenario.pages), "--latency-ms", str(scenario.latency_ms)]
    argv += ["--page-kb", str(scenario.page_kb), "--fanout", str(scenario.fanout), "--prerender"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=_child_env())
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], SERVER_START_TIMEOUT)
        line = server.stdout.readline() if ready else ""
        if not line.startswith("URL "):
            raise BenchError(f"the demo site did not start (it said {line.strip()!r})")
        yield line.split()[1]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Make this process a child subreaper, so that the crawl's processes that outlive the
    crawler are reparented here and their CPU time reaches us through `wait4`."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = ctypes.c_int()
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError(f"cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)


@dataclass(frozen=True)
class Usage:
    """What a crawl child cost, its whole process tree included."""

    exit_code: int | None  # None: killed after the timeout
    wall_s: float
    cpu_s: float
    tree_rss_mb: float
    largest_rss_mb: float


def measure_crawl(argv: Sequence[str], *, timeout: float, log: Path) -> Usage:
    """Run one crawl child in a session of its own, sample its tree, reap all of it.

    Past `timeout` the tree is killed. Whatever happens (Ctrl-C included), no process of the
    crawl is left behind.
    """
    started = time.monotonic()
    pid = os.posix_spawn(
        argv[0],
        list(argv),
        _child_env(),
        setsid=True,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        ],
    )
    peak = _TreePeak(pid)
    finished = False
    try:
        finished = _wait_sampling(pid, peak, timeout)
        wall = time.monotonic() - started
    finally:
        if not finished:  # timed out, or Ctrl-C
            _stop_crawl(pid)
        _, status, usage = os.wait4(pid, 0)
        usages = [usage, *_reap_session(pid)]
    largest_kb = max(peak.largest_kb, *(u.ru_maxrss for u in usages))
    return Usage(
        exit_code=os.waitstatus_to_exitcode(status) if finished else None,
        wall_s=wall,
        cpu_s=sum(u.ru_utime + u.ru_stime for u in usages),
        # the kernel's peak of each process (ru_maxrss) catches one between two samples;
        # the tree held at least that process then
        tree_rss_mb=max(peak.tree_kb, largest_kb) / 1024,
        largest_rss_mb=largest_kb / 1024,
    )


def _wait_sampling(pid: int, peak: _TreePeak, timeout: float) -> bool:
    """Sample the tree until `pid` exits (True) or `timeout` passes (False).

    A pidfd wakes us the moment the child exits, so wall time is not rounded to a sample.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peak.sample()
        if _exits_within(pid, SAMPLE_INTERVAL):
            return True
    return False


def _exits_within(pid: int, seconds: float) -> bool:
    """Whether the child `pid` has exited, or does within `seconds`."""
    exited = os.pidfd_open(pid)
    try:
        return bool(select.select([exited], [], [], seconds)[0])
    finally:
        os.close(exited)


def _stop_crawl(pid: int) -> None:
    """Stop the crawl `pid` in order (SIGTERM: it ends its own processes), and kill its
    whole session if it has not ended within STOP_GRACE, or a second Ctrl-C cuts the wait
    short. Killed at once, its resource tracker left multiprocessing's semaphores in
    /dev/shm, five a crawl."""
    exited = False
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        exited = _exits_within(pid, STOP_GRACE)
    finally:
        if not exited:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


class _TreePeak:
    """The largest RSS seen so far, summed over a session's processes and of any one."""

    def __init__(self, session: int) -> None:
        self.session = session
        self.tree_kb = 0
        self.largest_kb = 0

    def sample(self) -> None:
        sizes = [_rss_kb(pid) for pid in _session_processes(self.session)]
        self.tree_kb = max(self.tree_kb, sum(sizes))
        self.largest_kb = max(self.largest_kb, *sizes, 0)


def _session_processes(session: int) -> dict[int, tuple[str, int]]:
    """pid → (state, ppid) of every process in `session`, from /proc/*/stat."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as file:
                stat = file.read()
        except OSError:  # it exited meanwhile
            continue
        state, ppid, _group, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(sid) == session:
            found[int(name)] = (state, int(ppid))
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0  # exited, or a zombie: no memory any more


def _reap_session(session: int) -> list[struct_rusage]:
    """Reap the crawl's processes that outlived it (adopted by us); SIGKILL the stragglers.

    A zombie whose parent is another process is that parent's to reap, not ours to wait for.
    """
    usages: list[struct_rusage] = []
    deadline = time.monotonic() + ORPHAN_GRACE
    while True:
        waiting = {
            pid: ppid
            for pid, (state, ppid) in _session_processes(session).items()
            if ppid == os.getpid() or state != "Z"
        }
        if not waiting:
            return usages
        for pid, ppid in waiting.items():
            if ppid == os.getpid():
                reaped, _, usage = os.wait4(pid, os.WNOHANG)
                usages += [usage] if reaped else []
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signal.SIGKILL)
        time.sleep(0.01)


# The bench: every combination, repeated, on one running site.


def crawl_argv(scenario: Scenario, fetch: str, parse: str, url_list: Path, out: Path) -> list[str]:
    """The crawl every combination runs: the whole site, no per-host cap, nothing saved, a
    size cap above the pages' (~page_kb: --page-kb 60000 failed every page, too_large)."""
    return [
        *(sys.executable, "-m", "scraper", str(url_list), "--output", str(out)),
        *("--depth", str(scenario.pages), "--frontier", scenario.frontier),
        *("--workers", str(scenario.workers), "--per-host", str(scenario.workers)),
        *("--fetch", fetch, "--parse", parse, "--no-files", "--no-skipped-log", "--quiet"),
        *("--max-bytes", str(max(defaults.DEFAULT_MAX_BYTES, 2 * scenario.page_kb * 1024))),
    ]


def run_once(
    scenario: Scenario,
    fetch: str,
    parse: str,
    repeat: int,
    *,
    url_list: Path,
    work: Path,
    timeout: float,
) -> RunResult:
    """One measured crawl of one combination, figures read from its output."""
    run_dir = work / f"{fetch}-{parse}-{repeat}"
    run_dir.mkdir()
    log = run_dir / "stderr.log"
    usage = measure_crawl(
        crawl_argv(scenario, fetch, parse, url_list, run_dir / "out"), timeout=timeout, log=log
    )
    failure = _failure(usage, log)
    if failure is not None:
        return RunResult(fetch, parse, repeat, None, failure)
    try:
        output = _read_output(run_dir / "out")
    except (OSError, ValueError, KeyError) as error:
        return RunResult(fetch, parse, repeat, None, f"unreadable output: {error}")
    figures = Figures(
        pages=output.pages,
        errors=output.errors,
        pages_per_s=output.pages / output.elapsed_s,
        wall_s=usage.wall_s,
        cpu_s=usage.cpu_s,
        tree_rss_mb=usage.tree_rss_mb,
        largest_rss_mb=usage.largest_rss_mb,
        mb_per_s=output.bytes / output.elapsed_s / 1e6,
    )
    if output.pages == scenario.pages:
        return RunResult(fetch, parse, repeat, figures)
    missing = f"crawled {output.pages} of {scenario.pages} pages"
    return RunResult(
        fetch, parse, repeat, figures, "; ".join(filter(None, [missing, output.first_error]))
    )


class _Output(NamedTuple):
    pages: int  # HTML pages crawled successfully
    errors: int  # records with ok false
    first_error: str | None  # "kind: message" of the first of them
    elapsed_s: float
    bytes: int


def _read_output(out: Path) -> _Output:
    """What a crawl wrote: its records and its final stats."""
    stats = json.loads((out / STATS_FILE).read_text())
    with open(out / "pages.jsonl") as file:
        records = [json.loads(line) for line in file]
    errors = [record["error"] for record in records if not record["ok"]]
    return _Output(
        pages=sum(record["ok"] and record["content_type"] == "text/html" for record in records),
        errors=len(errors),
        first_error=f"{errors[0]['kind']}: {errors[0]['message']}" if errors else None,
        elapsed_s=max(stats["elapsed_s"], 0.001),
        bytes=stats["bytes"],
    )


def _failure(usage: Usage, log: Path) -> str | None:
    """Why a crawl gave no figures; None when it finished (exit 1 only means some URLs failed)."""
    if usage.exit_code is None:
        return f"timed out after {usage.wall_s:.0f} s"
    if usage.exit_code in (0, 1):
        return None
    lines = log.read_text(errors="replace").strip().splitlines()
    return f"exit {usage.exit_code}" + (f": {lines[-1]}" if lines else "")


def run_bench(
    scenario: Scenario,
    fetches: Sequence[str],
    parses: Sequence[str],
    *,
    repeat: int,
    timeout: float,
    console: Console,
) -> tuple[list[Row], bool]:
    """Serve the site, crawl it with every combination `repeat` times, summarize. Ctrl-C
    (or SIGTERM, SIGHUP: see `_interrupt`) stops the bench, with the crawl
    under way and the site, and keeps what the finished crawls measured: True says so."""
    combos = [(fetch, parse) for fetch in fetches for parse in parses]
    runs: dict[tuple[str, str], list[RunResult]] = {combo: [] for combo in combos}
    interrupted = False
    with (
        tempfile.TemporaryDirectory(prefix="scrape-bench-") as work,
        adopting_orphans(),
        demo_server(scenario) as url,
    ):
        url_list = Path(work) / "list.txt"
        url_list.write_text(url + "\n")
        try:
            for number in range(1, repeat + 1):
                for fetch, parse in combos:
                    result = run_once(
                        scenario,
                        fetch,
                        parse,
                        number,
                        url_list=url_list,
                        work=Path(work),
                        timeout=timeout,
                    )
                    runs[fetch, parse].append(result)
                    console.print(_progress(result))
        except KeyboardInterrupt:
            interrupted = True
    rows = [summarize(scenario, *combo, runs[combo]) for combo in combos if runs[combo]]
    return rows, interrupted


def _progress(result: RunResult) -> str:
    what = f"{result.fetch} / {result.parse}, repeat {result.repeat}"
    if result.figures is None:
        return f"{what}: failed: {result.failure}"
    return f"{what}: {result.figures.pages} pages, {result.figures.pages_per_s:.1f} pages/s"


# Output: the JSON record, the chart and the Markdown.


def machine_info(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """What the figures depend on besides the code: the machine, how busy it was (other
    work on a shared machine slows every crawl), and the libraries."""
    versions: dict[str, str | None] = {"scraper": __version__}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": defaults.usable_cpus(),
        "parsers": defaults.default_parsers(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "versions": versions,
    }


def results_json(
    scenario: Scenario,
    rows: Sequence[Row],
    *,
    repeat: int,
    timeout: float,
    load_before: tuple[float, float, float],
    interrupted: bool = False,
) -> dict[str, Any]:
    """Everything needed to read the figures later: raw repeats, medians, settings, machine;
    and whether the bench was interrupted (then the rows are the crawls that finished)."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "scenario": dataclasses.asdict(scenario),
        "settings": {"repeat": repeat, "timeout_s": timeout, "sample_interval_s": SAMPLE_INTERVAL},
        "machine": machine_info(load_before),
        "rows": [{**dataclasses.asdict(row), "share_pct": row.share} for row in rows],
    }


def write_chart(path: Path, scenario: Scenario, rows: Sequence[Row]) -> bool:
    """Horizontal bars of pages/s, coloured by parse mode, each with its I/O ceiling.

    Returns False when matplotlib is not installed (it is the optional `plot` extra).
    """
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return False
    fetches = list(dict.fromkeys(row.fetch for row in rows))
    colours = {parse: f"C{n}" for n, parse in enumerate(dict.fromkeys(r.parse for r in rows))}
    figure = Figure(figsize=(10, 1.2 + 0.45 * len(rows)), layout="constrained")
    axes = figure.subplots()
    labelled: set[str] = set()
    positions = [n + 0.5 * fetches.index(row.fetch) for n, row in enumerate(rows)]  # groups
    right = chart_width(rows)
    for y, row in zip(positions, rows, strict=True):
        spread = [run.figures.pages_per_s for run in row.runs if run.figures]
        value = row.median.pages_per_s if row.median else 0.0
        whiskers = [[value - min(spread)], [max(spread) - value]] if spread else None
        label = "_nolegend_" if row.parse in labelled else row.parse
        labelled.add(row.parse)
        axes.barh(y, value, xerr=whiskers, capsize=3, color=colours[row.parse], label=label)
        text = f" {value:.0f}" + (f" ({row.share:.0f}%)" if row.share is not None else "")
        # on a white ground: a ceiling's dashed line may cross it
        axes.text(
            max(spread, default=0),
            y,
            text if spread else " failed",
            va="center",
            size=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
        )
        if row.ceiling and row.ceiling <= right:
            ceiling_label = "_nolegend_" if "ceiling" in labelled else "I/O ceiling"
            labelled.add("ceiling")
            axes.vlines(
                row.ceiling,
                y - 0.45,
                y + 0.45,
                colors="black",
                linestyles="dashed",
                label=ceiling_label,
            )
        elif row.ceiling:  # far beyond the bars: said at the edge, not drawn
            axes.text(right, y, f"ceiling {row.ceiling:,.0f} →", ha="right", va="center", size=7)
    axes.set_xlim(0, right)
    axes.set_yticks(positions, [f"{row.fetch} / {row.parse}" for row in rows])
    axes.invert_yaxis()
    axes.set_xlabel("pages/s: median of the repeats, whiskers from the slowest to the fastest")
    axes.set_title(
        f"scrape bench · {scenario.name}: {scenario.pages} pages, {scenario.latency_ms:g} ms "
        f"latency, ~{scenario.page_kb} KB pages, {scenario.workers} workers"
    )
    axes.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)  # beside the bars
    figure.savefig(path, dpi=120)
    return True


def chart_width(rows: Sequence[Row]) -> float:
    """Where the chart's pages/s axis ends: past the fastest repeat, with room for its
    figures, and past the ceilings near the bars. A ceiling far beyond them (16,000 pages/s
    at 1 ms, over bars of 250) squeezed every bar into the first few percent."""
    fastest = max(
        (run.figures.pages_per_s for row in rows for run in row.runs if run.figures),
        default=1.0,
    )
    width = 1.4 * fastest
    near = [row.ceiling for row in rows if row.ceiling and row.ceiling <= 2 * width]
    return max([width, *(1.05 * ceiling for ceiling in near)])


# The command.


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
        ),
        encoding="utf-8",
    )
    said.append(f"markdown: {markdown}")


def main(argv: Sequence[str]) -> int:
    """`scrape bench`: 0 when every combination finished, 1 when some failed, 2 on bad usage
    or results that cannot be written (`cli.run` makes a 0 whose messages were lost 120)."""
    options = _parser().parse_args(argv)
    console = quiet_console(sys.stdout)
    if not console.file.isatty():  # not rich's is_terminal, which FORCE_COLOR sways
        console.width = TABLE_WIDTH
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
    try:
        _refuse_unwritable(options.output)  # before the bench, not after
        with handling(_ENDING_SIGNALS, _interrupt):
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
    if interrupted:
        log.print("scrape bench: interrupted" + ("; the finished crawls follow" if rows else ""))
        if not rows:
            return EXIT_INTERRUPTED
    status = EXIT_FAILED_ROWS if any(row.failure for row in rows) else EXIT_OK
    said: list[str] = []  # where each file went, or why it could not
    try:
        _write_results(options, scenario, rows, load, said, interrupted=interrupted)
    except OSError as error:  # the figures still reach the terminal
        said.append(f"scrape bench: error: cannot write the results: {error}")
        status = EXIT_USAGE
    console.print(results_table(scenario, rows, options.repeat))
    for line in said:
        log.print(line)
    return EXIT_INTERRUPTED if interrupted else status


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
