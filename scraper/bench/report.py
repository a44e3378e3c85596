"""What a bench shows and keeps: the terminal table, the Markdown, the JSON record, the
chart."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from scraper import config as defaults
from scraper._version import __version__
from scraper.bench.figures import (
    DEFAULT_REPEAT,
    DEFAULT_TIMEOUT,
    ONE_AT_A_TIME,
    SCENARIOS,
    Row,
    Scenario,
)
from scraper.bench.processes import SAMPLE_INTERVAL

_VERSIONED = ("requests", "aiohttp", "lxml", "beautifulsoup4", "matplotlib")


def results_table(
    scenario: Scenario, rows: Sequence[Row], repeat: int, *, interrupted: bool = False
) -> Table:
    """The terminal table: one line per combination, medians of `repeat` crawls (of those
    that finished, when `interrupted`)."""
    table = Table(
        title=f"scrape bench · {_describe(scenario, repeat, interrupted=interrupted)}",
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


def _describe(scenario: Scenario, repeat: int, *, interrupted: bool = False) -> str:
    medians = (
        f"median of up to {repeat}, interrupted: the crawls that finished"
        if interrupted
        else f"median of {repeat}"
    )
    return (
        f"{scenario.name}: {scenario.pages} pages of ~{scenario.page_kb} KB linking "
        f"{scenario.fanout} children each, {scenario.latency_ms:g} ms latency, "
        f"{scenario.workers} workers, {scenario.frontier} frontier, {medians}"
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


def bench_command(
    scenario: Scenario,
    rows: Sequence[Row],
    *,
    repeat: int,
    timeout: float,
    fetches: Sequence[str] | None = None,
    parses: Sequence[str] | None = None,
) -> str:
    """The `scrape bench` command that measured `rows`: the options that differ from their
    defaults (not the output directory, which changes no figure). The strategies and parse
    modes are the rows', unless given: an interrupted bench has rows for fewer."""
    argv = ["scrape", "bench", "--scenario", scenario.name]
    named = SCENARIOS[scenario.name]
    for field in dataclasses.fields(Scenario):
        value = getattr(scenario, field.name)
        if value != getattr(named, field.name):
            argv += ["--" + field.name.replace("_", "-"), _number_text(value)]
    fetches = tuple(fetches or dict.fromkeys(row.fetch for row in rows))
    parses = tuple(parses or dict.fromkeys(row.parse for row in rows))
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
    fetches: Sequence[str] | None = None,
    parses: Sequence[str] | None = None,
) -> str:
    """A fragment to paste into a README as is: the command and the machine, the table, and a
    Mermaid chart that GitHub draws (a failed row is in the table but not in the chart)."""
    command = bench_command(
        scenario, rows, repeat=repeat, timeout=timeout, fetches=fetches, parses=parses
    )
    with_ceiling = scenario.latency_ms > 0
    headers = _headers(with_ceiling=with_ceiling)
    lines = [
        f"`{command}` on {machine['cpus']} CPUs, Python {machine['python']} "
        f"({machine['platform']}); {_describe(scenario, repeat, interrupted=interrupted)}.",
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
