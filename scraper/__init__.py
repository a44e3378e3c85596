"""scraper: a concurrent web scraper and downloader.

from scraper import crawl
for page in crawl(["https://example.com/"], depth=1):
    print(page.url, page.status, page.title)

The names below are imported on first use. A parse process imports `scraper.parse`, and so
this package, but needs none of the engine: importing it all (requests, aiohttp, SQLite)
would add about 30 MB to every parse process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scraper._version import __version__

if TYPE_CHECKING:
    from scraper.config import Config
    from scraper.errors import ErrorKind, ScraperError
    from scraper.pipeline import Crawler, crawl
    from scraper.records import Page, SkipReason
    from scraper.stats import Stats, StatsSnapshot

_HOMES = {
    "Config": "scraper.config",
    "Crawler": "scraper.pipeline",
    "ErrorKind": "scraper.errors",
    "Page": "scraper.records",
    "ScraperError": "scraper.errors",
    "SkipReason": "scraper.records",
    "Stats": "scraper.stats",
    "StatsSnapshot": "scraper.stats",
    "crawl": "scraper.pipeline",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'scraper' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup finds it directly
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Config",
    "Crawler",
    "ErrorKind",
    "Page",
    "ScraperError",
    "SkipReason",
    "Stats",
    "StatsSnapshot",
    "__version__",
    "crawl",
]
