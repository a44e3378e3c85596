"""The Fetcher seam: one HTTP exchange per call, however the strategy waits.

A strategy decides only *how to wait* (threads, an inline loop, ...). What to do with an
answer (retry, follow a redirect, give up) is the fetch policy's job (`policy.py`), and
is the same for every strategy.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from scraper.records import Request


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds every attempt obeys, whichever strategy runs it."""

    timeout: float
    max_bytes: int
    user_agent: str


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP exchange: a plain picklable value, ready to cross a process boundary.

    `headers` has lower-case names; repeated headers are joined with ", ". A redirect's
    body is not read (it is never used), so `body` is empty for 3xx answers.
    """

    url: str
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    elapsed: float


HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def media_type(content_type_header: str | None) -> str | None:
    """The media type of a Content-Type header, lower-cased and without parameters."""
    if content_type_header is None:
        return None
    return content_type_header.partition(";")[0].strip().lower() or None


def is_html(content_type: str | None) -> bool:
    """Whether a Content-Type names HTML (or XHTML), the only bodies worth parsing."""
    return media_type(content_type) in HTML_MEDIA_TYPES


class Fetcher(Protocol):
    """Runs single fetch attempts concurrently, at most `workers` at a time."""

    def submit(self, request: Request) -> Future[Response]:
        """Start one attempt at `request.url`; the future fails with a FetchError."""
        ...

    def close(self) -> None:
        """Stop accepting work, cancel what has not started, release connections."""
        ...
