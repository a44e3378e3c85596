"""Where a crawl's state lives between runs: a fresh start, an overwrite, or a resume.

An output directory that holds a crawl (or a state file, for a library crawl without one)
is never silently reused: a new run refuses it unless told `overwrite` (start over) or
`resume` (continue), and refuses one a running crawl holds either way. Resuming trusts the records
on disk over the frontier's state: a URL with a record in pages.jsonl is DONE, whatever
the frontier says, and its counts are carried into the new run's stats.

    open_crawl(config, stats)
        ├── guard: is there a crawl here already, or one running?   (OutputError → exit 2)
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
from scraper.frontier.sqlite import FILE_SUFFIXES, held, remove_state
from scraper.sinks import PAGES_FILE, SKIPPED_FILE, CrawlOutput, OutputClaim, refuse_links
from scraper.stats import Stats

STATE_FILE = "state.sqlite"

# The settings that give a crawl its meaning: resuming with others would mix two crawls.
_BINDING_SETTINGS = ("depth", "max_pages", "allow_domains", "ignore_robots", "allow_private")
# ... named as the command's options (the message says --overwrite too): a library caller
# reads `--max-pages` as max_pages, where `max_pages was None` read as Python to everyone
_SETTING_NAMES = {
    "depth": "--depth",
    "max_pages": "--max-pages",
    "allow_domains": "--allow-domain",
    "ignore_robots": "--ignore-robots",
    "allow_private": "--allow-private",
}


@dataclass
class Crawl:
    """The frontier and output of one run, opened together so they agree."""

    frontier: Frontier
    output: CrawlOutput | None
    resumed: bool


def open_crawl(config: Config, stats: Stats) -> Crawl:
    """Open the frontier and the output directory as `config` asks; see the module doc."""
    with contextlib.ExitStack() as undo:  # on any failure: close what was opened
        output = None
        if config.output is not None:
            output = _open_output(config)
            undo.callback(output.close, None)  # and with it the claim on the directory
        elif config.state is not None:  # the library's
            _clear_previous_crawl(config)
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
    checked under the claim, so that a directory a running crawl holds is refused as in
    use, and before it when there is no directory yet, so that a refused crawl creates
    none."""
    assert config.output is not None
    if not config.output.is_dir():
        with _states_held(config):
            _refuse_previous_crawl(config)
    claim = OutputClaim(config.output)
    try:
        refuse_links(config.output, (STATE_FILE + suffix for suffix in FILE_SUFFIXES))
        _clear_previous_crawl(config)
        return CrawlOutput(claim, append=config.resume)
    except BaseException:
        claim.release()
        raise


def _clear_previous_crawl(config: Config) -> None:
    """Refuse what an earlier crawl left (`_refuse_previous_crawl`), or with `overwrite`
    delete its state (the JSONL files are truncated when opened). Its state files are held
    meanwhile: one a running crawl holds is refused as in use (a state file elsewhere than
    the output directory, which the claim covers, or a library crawl's with none).
    Without an output directory, the state file was reused as it was: every URL it had
    finished was taken for done, and the crawl yielded none of them."""
    with _states_held(config) as states:
        _refuse_previous_crawl(config)
        if config.overwrite:
            for state in states:
                remove_state(state)


@contextlib.contextmanager
def _states_held(config: Config) -> Iterator[list[Path]]:
    """The crawl's state files (`_state_files`), each held meanwhile (`sqlite.held`)."""
    with contextlib.ExitStack() as holding:
        states = _state_files(config)
        for state in states:
            holding.enter_context(held(state))
        yield states


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
    if config.resume:  # a Config that resumes has both
        assert config.output is not None and config.state is not None
        if not config.state.exists():
            raise OutputError(f"nothing to resume in {config.output}: no {STATE_FILE} there")
    elif not config.overwrite:
        found = [path.name for path in _crawl_files(config) if _holds_data(path)]
        if found and config.output is not None:
            raise OutputError(
                f"{config.output} already holds a crawl ({', '.join(found)}): use --resume"
                " (resume=True) to continue it or --overwrite (overwrite=True) to start over"
            )
        if found:
            raise OutputError(
                f"the crawl state {config.state} holds an earlier crawl: use overwrite=True"
                " to start over (resuming needs the crawl's output directory)"
            )


def _crawl_files(config: Config) -> list[Path]:
    records = (
        [] if config.output is None else [config.output / PAGES_FILE, config.output / SKIPPED_FILE]
    )
    return [*records, *_state_files(config)]


def _state_files(config: Config) -> list[Path]:
    """The crawl's state file, and the one `scrape` keeps in the output directory: a crawl
    with its frontier in memory (or its state elsewhere) still replaces or refuses what an
    earlier crawl left there. Left behind by --overwrite, it made a later --resume take
    every URL it listed for done, and record none of them."""
    in_output = None if config.output is None else config.output / STATE_FILE
    return list(dict.fromkeys(path for path in (config.state, in_output) if path))


def _holds_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


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
        differences = "; ".join(
            f"{_SETTING_NAMES[n]} was {_shown(saved[n])}, now {_shown(wanted[n])}" for n in changed
        )
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


def _shown(value: Any) -> str:
    """A saved setting as the message shows it: no limit, a list of domains, on or off."""
    if value is None:
        return "no limit"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


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
