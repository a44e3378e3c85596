"""The Frontier interface that every backend implements.

A URL's life in the frontier:

    add() ──► queued ──next_request()──► leased ──done()──► finished
                 ▲                          │
                 └──── reschedule(delay) ◄──┘   (a retry, or the next hop of a redirect)

A leased URL holds one of its host's politeness slots until `fetched` (the attempt is
over, though the page may still be parsing); its lease lasts until `done` (its record is
written) or `reschedule`. The crawl is over when `is_exhausted()`: nothing queued,
nothing waiting, nothing leased.

Backends: `MemoryFrontier` (RAM) and `SQLiteFrontier` (durable, resumable); both take
their scheduling from `ScheduledFrontier`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, Protocol

from scraper.records import Request


class Admission(Enum):
    """What `Frontier.add` did with a URL."""

    ADDED = "added"
    DUPLICATE = "duplicate"
    MAX_PAGES = "max_pages"


class Frontier(Protocol):
    """The frontier seam. All methods are safe to call from any thread."""

    def add(self, request: Request) -> Admission:
        """Queue a URL not seen before, unless the page budget is spent."""
        ...

    def add_many(self, requests: Iterable[Request]) -> list[Admission]:
        """`add` for the links of one page; durable when it returns, so a page's record is
        never on disk before the links it led to."""
        ...

    def seen_among(self, urls: Iterable[str]) -> set[str]:
        """The URLs of `urls` that were added before: one question for a page's links."""
        ...

    def first_skips(self, urls: Iterable[str]) -> set[str]:
        """The URLs of `urls` reported skipped for the first time (skipped.jsonl lists each
        once): one question for a page's skipped links. Call `skips_logged` once they are
        written."""
        ...

    def skips_logged(self, urls: Iterable[str]) -> None:
        """The first skips of `urls` are in skipped.jsonl: a durable frontier may store them
        now, never before, so that a crash cannot leave a skip stored but not logged."""
        ...

    def settings(self) -> dict[str, Any]:
        """Crawl-wide values saved with the frontier (what a resumed run must match)."""
        ...

    def save_settings(self, settings: dict[str, Any]) -> None:
        """Save (or replace) the named values; JSON-able values only."""
        ...

    def set_delay(self, host: str, seconds: float) -> None:
        """Keep at least `seconds` between request starts on `host` (robots Crawl-delay)."""
        ...

    def next_request(self, timeout: float) -> Request | None:
        """Lease the next URL whose host is free, waiting up to `timeout` seconds."""
        ...

    def fetched(
        self,
        request: Request,
        *,
        throttled: bool = False,
        sent: bool = True,
        started_at: float = float("inf"),
    ) -> None:
        """The attempt on a leased URL is over: free its host's politeness slot.

        `throttled` says the host pushed back (429, 503, reset, timeout): slow it down,
        unless the attempt was leased (`started_at`, time.monotonic()) before the host was
        last slowed. `sent=False` says no request went out (robots.txt decided): its delay
        is undone.
        """
        ...

    def reschedule(self, request: Request, *, delay: float = 0.0) -> None:
        """Return a leased, fetched URL to the queue, not to be handed out for `delay` seconds."""
        ...

    def done(self, request: Request) -> None:
        """End the lease of a URL whose outcome has been recorded."""
        ...

    def pending(self) -> int:
        """URLs queued or waiting for their retry time (not counting leased ones)."""
        ...

    def is_exhausted(self) -> bool:
        """True when nothing is queued, waiting or leased: the crawl is over."""
        ...

    def close(self) -> None:
        """Release resources and wake every thread waiting in `next_request`."""
        ...
