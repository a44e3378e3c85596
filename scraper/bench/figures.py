"""The bench's figures: the scenarios, one crawl's figures, and a combination's row."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scraper import config as defaults
from scraper.errors import ScraperError

DEFAULT_TIMEOUT = 300.0  # seconds one crawl may take before its tree is killed
DEFAULT_REPEAT = 3
ONE_AT_A_TIME = frozenset({"sequential"})  # strategies that ignore --workers


class BenchError(ScraperError):
    """The bench cannot run at all: the demo site did not start, no subreaper, or its
    output directory cannot be written."""


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
