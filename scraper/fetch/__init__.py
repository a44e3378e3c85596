"""Fetch strategies behind one seam, chosen by name.

fetcher = open_fetcher("threads", limits, workers=16)
future = fetcher.submit(request)      # Future[Response], or a FetchError

A strategy's module is imported when it is opened: `async` alone needs aiohttp, and a
process that parses pages needs none of them.
"""

from __future__ import annotations

import importlib

from scraper.fetch.base import Fetcher, Limits, Response

# strategy name → (module, class); see config.FETCH_STRATEGIES
_STRATEGIES = {
    "async": ("scraper.fetch.aio", "AsyncFetcher"),
    "processes": ("scraper.fetch.processes", "ProcessFetcher"),
    "sequential": ("scraper.fetch.sequential", "SequentialFetcher"),
    "threads": ("scraper.fetch.threads", "ThreadFetcher"),
}


def open_fetcher(name: str, limits: Limits, *, workers: int) -> Fetcher:
    """The strategy called `name` (see config.FETCH_STRATEGIES)."""
    module, strategy = _STRATEGIES[name]
    fetcher: Fetcher = getattr(importlib.import_module(module), strategy)(limits, workers=workers)
    return fetcher


__all__ = ["Fetcher", "Limits", "Response", "open_fetcher"]
