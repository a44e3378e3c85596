"""The bench itself: every combination crawls the site, repeated, one crawl at a time."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from rich.console import Console

from scraper import config as defaults
from scraper.bench.figures import Figures, Row, RunResult, Scenario, summarize
from scraper.bench.processes import Usage, adopting_orphans, demo_server, measure_crawl
from scraper.sinks import STATS_FILE


def crawl_argv(scenario: Scenario, fetch: str, parse: str, url_list: Path, out: Path) -> list[str]:
    """The crawl every combination runs: the whole site, no per-host cap, nothing saved, a
    size cap above the pages' (~page_kb: --page-kb 60000 failed every page, too_large),
    and an end when the bench's process ends (killed outright, it left the crawl running)."""
    return [
        *(sys.executable, "-m", "scraper", str(url_list), "--output", str(out)),
        *("--depth", str(scenario.pages), "--frontier", scenario.frontier),
        *("--workers", str(scenario.workers), "--per-host", str(scenario.workers)),
        *("--fetch", fetch, "--parse", parse, "--no-files", "--no-skipped-log", "--quiet"),
        *("--max-bytes", str(max(defaults.DEFAULT_MAX_BYTES, 2 * scenario.page_kb * 1024))),
        *("--stop-with", str(os.getpid())),  # it stops once the bench is gone, however
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
    try:
        with (
            tempfile.TemporaryDirectory(prefix="scrape-bench-") as work,
            adopting_orphans(),
            demo_server(scenario) as url,
        ):
            url_list = Path(work) / "list.txt"
            url_list.write_text(url + "\n")
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
    except KeyboardInterrupt:  # in a crawl, or as the site starts or stops: what ran stays
        interrupted = True
    rows = [summarize(scenario, *combo, runs[combo]) for combo in combos if runs[combo]]
    return rows, interrupted


def _progress(result: RunResult) -> str:
    what = f"{result.fetch} / {result.parse}, repeat {result.repeat}"
    if result.figures is None:
        return f"{what}: failed: {result.failure}"
    return f"{what}: {result.figures.pages} pages, {result.figures.pages_per_s:.1f} pages/s"
