"""scraper: a concurrent web scraper and downloader.

from scraper import crawl
for page in crawl(["https://example.com/"], depth=1):
    print(page.url, page.status, page.title)
"""

from scraper._version import __version__
from scraper.config import Config
from scraper.errors import ErrorKind, ScraperError
from scraper.pipeline import Crawler, crawl
from scraper.records import Page, SkipReason
from scraper.stats import Stats, StatsSnapshot

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
