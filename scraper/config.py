"""One frozen, validated Config value: the CLI and the library both build it.

Defaults are named module constants so the CLI's help text, the README and the code agree.
Change a Config with `dataclasses.replace`, which validates again.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scraper._version import __version__
from scraper.errors import ConfigError, InvalidURL, shown

if TYPE_CHECKING:
    from bs4 import BeautifulSoup

Extractor = Callable[["BeautifulSoup", str], Any]

FETCH_STRATEGIES = ("threads", "async", "processes", "sequential")
PARSE_MODES = ("processes", "threads", "inline")

DEFAULT_WORKERS = 16
DEFAULT_PER_HOST = 4
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_RETRIES = 2
MAX_RETRIES = 100
# Bounds on what a typo can ask for: 100000 parse processes were all started before the
# first page (gigabytes, minutes); a timeout of 1e10 s overflows the system's timers.
MAX_PARSERS = 256
MAX_SECONDS = 86400.0  # a day: for --timeout, --delay, --backoff, --backoff-cap
DEFAULT_MAX_REDIRECTS = 10
DEFAULT_BACKOFF = 0.5
DEFAULT_BACKOFF_CAP = 60.0
# No contact address: the project has none of its own to give (a page of the same name on
# PyPI is someone else's). A crawl of other people's sites should name its own (--user-agent).
USER_AGENT = f"scraper/{__version__}"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), not all the machine has: in a
    container given 2 of a host's 64 CPUs (a cpuset), sizing pools for 64 would be wrong.
    (A CPU quota, such as `docker --cpus`, leaves the affinity, and this count, alone.)"""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity off Linux
        return os.cpu_count() or 1


def default_parsers() -> int:
    return min(usable_cpus(), MAX_PARSERS)


@dataclass(frozen=True)
class Config:
    """Everything that shapes a crawl. Invalid values raise ConfigError naming the option."""

    depth: int = 0
    max_pages: int | None = None
    allow_domains: tuple[str, ...] = ()
    workers: int = DEFAULT_WORKERS
    per_host: int = DEFAULT_PER_HOST
    delay: float = 0.0
    ignore_robots: bool = False
    allow_private: bool = False
    parsers: int = field(default_factory=default_parsers)
    fetch: str = "threads"
    parse: str = "processes"
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES
    retries: int = DEFAULT_RETRIES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    backoff: float = DEFAULT_BACKOFF
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    user_agent: str = USER_AGENT
    output: Path | None = None
    state: Path | None = None  # a SQLite file for the frontier; None keeps it in RAM
    resume: bool = False
    overwrite: bool = False
    save_files: bool = True
    skipped_log: bool = True
    extract: Extractor | None = None

    def __post_init__(self) -> None:
        _whole("depth", self.depth, 0)
        _whole("workers", self.workers, 1)
        _whole("per_host", self.per_host, 1)
        _whole("parsers", self.parsers, 1, MAX_PARSERS)
        _whole("retries", self.retries, 0, MAX_RETRIES)
        _whole("max_redirects", self.max_redirects, 0)
        _whole("max_bytes", self.max_bytes, 1)
        if self.max_pages is not None:
            _whole("max_pages", self.max_pages, 1)
        _number("timeout", self.timeout, above=0)
        _number("delay", self.delay)
        _number("backoff", self.backoff)
        _number("backoff_cap", self.backoff_cap)
        _one_of("fetch", self.fetch, FETCH_STRATEGIES)
        _one_of("parse", self.parse, PARSE_MODES)
        for name in _SWITCHES:
            switch = getattr(self, name)
            if not isinstance(switch, bool):  # "false" is true to an `if`
                raise ConfigError(f"{name} must be True or False, got {shown(switch)}")
        if not isinstance(self.user_agent, str) or not self.user_agent.strip():
            raise ConfigError("user_agent must be a non-empty string")
        if not _HEADER_TEXT.fullmatch(self.user_agent):
            agent = shown(self.user_agent)
            raise ConfigError(
                f"user_agent must be printable ASCII, as an HTTP header is, got {agent}"
            )
        if self.extract is not None and not callable(self.extract):
            raise ConfigError("extract must be a callable (soup, url) -> value")
        if self.extract is not None and self.parse == "processes":
            _sendable_to_processes(self.extract)
        if not isinstance(self.allow_domains, list | tuple | set | frozenset) or not all(
            isinstance(domain, str) for domain in self.allow_domains
        ):
            raise ConfigError("allow_domains must be a sequence of domain names")
        object.__setattr__(self, "allow_domains", tuple(self.allow_domains))
        _domains("allow_domains", self.allow_domains)
        object.__setattr__(self, "output", _path_or_none("output", self.output))
        object.__setattr__(self, "state", _path_or_none("state", self.state))
        if self.resume and (self.state is None or self.output is None):
            raise ConfigError("resume needs an output directory and a state file to resume from")
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other")

    @classmethod
    def from_options(cls, **options: Any) -> Config:
        """Build from keyword options, rejecting unknown names with the name in the message."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise ConfigError(f"unknown option {names}; known options: {', '.join(sorted(known))}")
        return cls(**options)


def _domains(name: str, domains: tuple[str, ...]) -> None:
    """Refuse a domain that no URL can be in: it would widen the scope by nothing, unsaid."""
    if not domains:
        return
    from scraper.urls import ascii_domain  # noqa: PLC0415  # yarl, only when there are domains

    for domain in domains:
        try:
            ascii_domain(domain)
        except InvalidURL as error:
            raise ConfigError(f"{name}: {error}") from None


_SWITCHES = ("ignore_robots", "allow_private", "resume", "overwrite", "save_files", "skipped_log")
# requests refuses a header value with a line break and urllib3 one outside Latin-1, while
# aiohttp sends them: refused here, every strategy sends the same header, or none.
_HEADER_TEXT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")  # no space at the ends


def _path_or_none(name: str, value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{name} must be a path, got {shown(value)}")
    text = os.fspath(value)
    if not text or "\0" in str(text):  # "" would be the current directory to Path
        raise ConfigError(f"{name} must name a file or directory, got {shown(value)}")
    return Path(value)


def _whole(name: str, value: int, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {shown(value)}")


def _number(name: str, value: float, *, above: float | None = None) -> None:
    """A number of seconds: >= 0 (or > `above`), and at most MAX_SECONDS."""
    valid = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and -math.inf < value < math.inf  # math.isfinite overflows on a huge int
    )
    if not valid or value < 0 or (above is not None and value <= above):
        bound = f"> {above}" if above is not None else ">= 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {shown(value)}")
    if value > MAX_SECONDS:
        raise ConfigError(f"{name} must be at most {MAX_SECONDS:g} seconds, got {shown(value)}")


def _sendable_to_processes(extract: Extractor) -> None:
    """Refuse now, rather than on every page, an extraction function the parse processes
    cannot be sent. Functions travel by their importable name, which a lambda or a function
    defined inside another has not; nor has one defined in a `__main__` without a file (a
    notebook, the REPL), which pickles but cannot be imported by a parse process."""
    main = sys.modules.get("__main__")
    if getattr(extract, "__module__", None) == "__main__" and not hasattr(main, "__file__"):
        reason = "it is defined in an interactive session"
    else:
        try:
            pickle.dumps(extract)
            return
        except Exception as error:  # a __reduce__ may raise anything
            reason = str(error)
    raise ConfigError(
        f"extract cannot be sent to the parse processes ({reason}): use a function defined "
        "at the top level of a module, or parse='threads' or parse='inline'"
    )


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {shown(value)}")
