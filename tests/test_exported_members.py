"""The public surface is deliberate: this list changes only on purpose."""

from __future__ import annotations

import scraper


def test_all_is_sorted_and_exact() -> None:
    assert scraper.__all__ == sorted(scraper.__all__)
    assert scraper.__all__ == [
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


def test_every_exported_name_exists() -> None:
    for name in scraper.__all__:
        assert getattr(scraper, name) is not None
