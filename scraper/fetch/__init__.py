"""Fetch strategies behind one seam, chosen by name.

fetcher = open_fetcher("threads", limits, workers=16)
future = fetcher.submit(request)      # Future[Response], or a FetchError
"""

from __future__ import annotations

from collections.abc import Callable

from scraper.fetch.aio import AsyncFetcher
from scraper.fetch.base import Fetcher, Limits, Response
from scraper.fetch.processes import ProcessFetcher
from scraper.fetch.sequential import SequentialFetcher
from scraper.fetch.threads import ThreadFetcher

_STRATEGIES: dict[str, Callable[..., Fetcher]] = {
    "async": AsyncFetcher,
    "processes": ProcessFetcher,
    "sequential": SequentialFetcher,
    "threads": ThreadFetcher,
}


def open_fetcher(name: str, limits: Limits, *, workers: int) -> Fetcher:
    """The strategy called `name` (see config.FETCH_STRATEGIES)."""
    return _STRATEGIES[name](limits, workers=workers)


__all__ = ["Fetcher", "Limits", "Response", "open_fetcher"]
