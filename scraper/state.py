"""Where a crawl's state lives between runs: a fresh start, an overwrite, or a resume.

An output directory that holds a crawl is never silently replaced: a new run refuses it
unless told `overwrite` (start over) or `resume` (continue). Resuming trusts the records
on disk over the frontier's state: a URL with a record in pages.jsonl is DONE, whatever
the frontier says, and its counts are carried into the new run's stats.

    open_crawl(config, stats)
        ├── guard: is there a crawl here already?          (OutputError → exit 2)
        ├── CrawlOutput: pages.jsonl / skipped.jsonl (appended on resume, torn line dropped)
        ├── frontier: SQLiteFrontier(state) or MemoryFrontier
        └── resume: settings must match; records settle the frontier and the stats
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scraper.config import Config
from scraper.errors import ConfigError, OutputError
from scraper.frontier import Frontier, MemoryFrontier, SQLiteFrontier
from scraper.sinks import PAGES_FILE, SKIPPED_FILE, CrawlOutput, OutputClaim, refuse_links
from scraper.stats import Stats

STATE_FILE = "state.sqlite"
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")

# The settings that give a crawl its meaning: resuming with others would mix two crawls.
_BINDING_SETTINGS = ("depth", "max_pages", "allow_domains", "ignore_robots", "allow_private")


@dataclass
class Crawl:
    """The frontier and output of one run, opened together so they agree."""

    frontier: Frontier
    output: CrawlOutput | None
    resumed: bool


def open_crawl(config: Config, stats: Stats) -> Crawl:
    """Open the frontier and the output directory as `config` asks; see the module doc."""
    with contextlib.ExitStack() as undo:  # on any failure: close what was opened
        output = _open_output(config) if config.output is not None else None
        if output is not None:
            undo.callback(output.close, None)  # and with it the claim on the directory
        frontier = _open_frontier(config)
        undo.callback(frontier.close)
        if config.resume:
            _resume(config, frontier, stats)
        else:
            frontier.save_settings(_binding_settings(config))
        undo.pop_all()
    return Crawl(frontier, output, resumed=config.resume)


def _open_output(config: Config) -> CrawlOutput:
    """Claim the output directory and clear what --overwrite replaces. What it holds is
    checked before the claim, so a refused crawl creates no directory, and again under it,
    as another crawl may have run in between."""
    assert config.output is not None
    _refuse_previous_crawl(config)
    claim = OutputClaim(config.output)
    try:
        _refuse_previous_crawl(config)
        refuse_links(config.output, (STATE_FILE + suffix for suffix in _SQLITE_COMPANIONS))
        if config.overwrite:
            for state in _state_files(config):
                _remove_state(state)
        return CrawlOutput(claim, append=config.resume)
    except BaseException:
        claim.release()
        raise


def _open_frontier(config: Config) -> Frontier:
    options: dict[str, Any] = {
        "per_host": config.per_host,
        "delay": config.delay,
        "max_pages": config.max_pages,
    }
    if config.state is None:
        return MemoryFrontier(**options)
    return SQLiteFrontier(config.state, **options)


def _refuse_previous_crawl(config: Config) -> None:
    assert config.output is not None
    if config.resume:
        if config.state is None or not config.state.exists():
            raise OutputError(f"nothing to resume in {config.output}: no {STATE_FILE} there")
    elif not config.overwrite:
        found = [path.name for path in _crawl_files(config) if _holds_data(path)]
        if found:
            raise OutputError(
                f"{config.output} already holds a crawl ({', '.join(found)}): use --resume"
                " (resume=True) to continue it or --overwrite (overwrite=True) to start over"
            )


def _crawl_files(config: Config) -> list[Path]:
    assert config.output is not None
    return [config.output / PAGES_FILE, config.output / SKIPPED_FILE, *_state_files(config)]


def _state_files(config: Config) -> list[Path]:
    """The crawl's state file, and the one `scrape` keeps in the output directory: a crawl
    with its frontier in memory (or its state elsewhere) still replaces or refuses what an
    earlier crawl left there. Left behind by --overwrite, it made a later --resume take
    every URL it listed for done, and record none of them."""
    assert config.output is not None
    return list(dict.fromkeys(p for p in (config.state, config.output / STATE_FILE) if p))


def _holds_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _remove_state(state: Path) -> None:
    """Delete a previous state file (the JSONL files are truncated when opened)."""
    for suffix in _SQLITE_COMPANIONS:
        with contextlib.suppress(FileNotFoundError):
            state.with_name(state.name + suffix).unlink()


def _binding_settings(config: Config) -> dict[str, Any]:
    return {
        "depth": config.depth,
        "max_pages": config.max_pages,
        "allow_domains": sorted(config.allow_domains),
        "ignore_robots": config.ignore_robots,
        "allow_private": config.allow_private,
    }


def _resume(config: Config, frontier: Frontier, stats: Stats) -> None:
    saved = frontier.settings()
    wanted = _binding_settings(config)
    changed = [name for name in _BINDING_SETTINGS if name in saved and saved[name] != wanted[name]]
    if changed:
        differences = "; ".join(f"{n} was {saved[n]!r}, now {wanted[n]!r}" for n in changed)
        raise ConfigError(
            f"cannot resume with different settings ({differences}): resume with the same "
            "options, or use --overwrite to start a new crawl"
        )
    assert config.output is not None and isinstance(frontier, SQLiteFrontier)
    pages = config.output / PAGES_FILE
    skipped = config.output / SKIPPED_FILE
    frontier.settle(
        _urls_counted(pages, stats.carry_page),
        _urls_counted(skipped, lambda entry: stats.skipped(str(entry.get("reason")))),
    )


def _urls_counted(path: Path, count: Callable[[dict[str, Any]], None]) -> Iterator[str]:
    """The `url` of each line of a JSONL file, after passing the entry to `count`.

    A crash can only tear the last line, which opening the file for the resume dropped; so
    a line that is not an entry this crawl wrote means the file was edited or damaged, and
    the resume stops on it (OutputError, naming it). Skipped, its URL was left done without
    a record; read, a line of the wrong shape ended the resume in a traceback."""
    with contextlib.suppress(FileNotFoundError), path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                url = entry["url"]
                if not isinstance(url, str):
                    raise TypeError(url)
                count(entry)
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
                raise OutputError(
                    f"cannot resume: line {number} of {path} is not an entry a crawl wrote;"
                    " mend or remove it, or use --overwrite to start over"
                ) from None
            yield url
