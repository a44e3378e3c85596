"""The values that flow through the crawl: work items, page records, skip records.

All are frozen, picklable dataclasses: they cross thread and process boundaries, and a
value nobody can mutate needs no lock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """One URL to fetch, as the frontier hands it out.

    `url` is what the next attempt fetches; it differs from `origin` (the URL the record is
    about) only while following a redirect chain, whose earlier hops are in `redirects`.
    """

    origin: str
    depth: int = 0
    parent: str | None = None
    url: str = ""
    attempt: int = 1
    redirects: tuple[str, ...] = ()
    for_robots: bool = False  # a robots.txt fetch on behalf of the URLs of its host
    # Connect only to global addresses: set for URLs found on a public host unless
    # --allow-private, and checked by the fetcher against the address it actually
    # connects to, so a public name that resolves to 10.0.0.1 is caught too.
    public_only: bool = False

    def __post_init__(self) -> None:
        if not self.url:
            object.__setattr__(self, "url", self.origin)

    def retried(self) -> Request:
        return dataclasses.replace(self, attempt=self.attempt + 1)

    def redirected(self, target: str) -> Request:
        """The same work item, now fetching `target`; attempts restart for the new hop."""
        return dataclasses.replace(
            self, url=target, attempt=1, redirects=(*self.redirects, self.url)
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One line of pages.jsonl: everything known about one URL the crawl attempted.

    The fields are the contract documented in README.md ("A record in pages.jsonl").
    """

    url: str
    final_url: str | None
    status: int | None
    ok: bool
    error: dict[str, str] | None
    content_type: str | None
    bytes: int
    sha256: str | None
    path: str | None
    depth: int
    parent: str | None
    fetched_at: str
    elapsed_ms: int
    attempts: int
    redirects: tuple[str, ...] = ()
    title: str | None = None
    links: tuple[str, ...] = ()
    text_chars: int | None = None
    meta: dict[str, str | None] | None = None
    data: Any = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in their documented order."""
        return {name: _jsonable(getattr(self, name)) for name in _PAGE_FIELDS}


_PAGE_FIELDS = tuple(field.name for field in dataclasses.fields(Page))


@dataclass(frozen=True, slots=True)
class PageMeta:
    """What the page says about itself.

    description: <meta name=description> content, whitespace collapsed.
    language: <html lang>, else the Content-Language header, else <meta http-equiv>.
    canonical: <link rel=canonical> in absolute canonical form; None if not a fetchable URL.
    robots: <meta name=robots> content, lower-cased and whitespace collapsed.
    """

    description: str | None
    language: str | None
    canonical: str | None
    robots: str | None


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """The result of parsing one page; plain values only, so it crosses the process pool.

    title: the first <title>, whitespace collapsed; None when absent or empty.
    links: <a>/<area> targets, absolute, canonical, http(s) only, first occurrence order.
    text_chars: length of the visible text, whitespace collapsed to single spaces.
    encoding: the Python codec the body was decoded with.
    data: what the user's extraction function returned.
    unfetchable: the other link targets (mailto:, javascript:, malformed...), as written,
        so the crawl can say why they were not followed.
    """

    title: str | None
    links: tuple[str, ...]
    text_chars: int
    meta: PageMeta
    encoding: str
    data: Any = None
    unfetchable: tuple[str, ...] = ()


class SkipReason(str, Enum):
    """Why a URL that was seen was not fetched: the `reason` field of skipped.jsonl."""

    INVALID = "invalid"
    DUPLICATE = "duplicate"
    OFFSITE = "offsite"
    DEPTH = "depth"
    MAX_PAGES = "max_pages"
    ROBOTS = "robots"
    PRIVATE = "private"
    SCHEME = "scheme"


@dataclass(frozen=True, slots=True)
class Skipped:
    """One line of skipped.jsonl: a URL seen but not fetched, and why."""

    url: str
    reason: SkipReason
    parent: str | None = None
    detail: str | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reason": self.reason.value,
            "parent": self.parent,
            "detail": self.detail,
        }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
