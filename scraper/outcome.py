"""The record of a finished URL, built from how it ended: a response, a fetch error, a
parse. Kept apart from the pipeline, which decides *when* a URL is finished; this module
decides only what its record says (the fields README.md documents).
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timezone
from typing import Any

from scraper.errors import ErrorKind, FetchError, ParseError
from scraper.fetch.base import Response, media_type
from scraper.records import Page, PageMeta, ParsedPage, Request


def is_ok(response: Response) -> bool:
    return 200 <= response.status < 300


def page_for(
    request: Request,
    outcome: Response | FetchError,
    *,
    saved: str | None = None,
    parsed: ParsedPage | None = None,
    failure: ParseError | None = None,
    sha256: str | None = None,
) -> Page:
    """The record for a finished URL: how its last attempt ended, where its body was saved
    (`saved`, relative to the output directory), and what parsing found or why it failed.
    `sha256` is the body's digest where the parse stage took it; otherwise it is taken here."""
    base: dict[str, Any] = {
        "url": request.origin,
        "depth": request.depth,
        "parent": request.parent,
        "fetched_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "attempts": request.attempt,
        "redirects": request.redirects,
    }
    if isinstance(outcome, FetchError):
        return Page(
            final_url=request.url if request.redirects else None,
            status=None,
            ok=False,
            error=_error(outcome.kind, outcome.message),
            content_type=None,
            bytes=0,
            sha256=None,
            path=None,
            elapsed_ms=round(outcome.elapsed * 1000),
            **base,
        )
    error = None
    if failure is not None:
        error = _error(ErrorKind.PARSE, str(failure))
    elif not is_ok(outcome):
        error = _error(ErrorKind.HTTP, f"{outcome.status} {outcome.reason}".strip())
    return Page(
        final_url=outcome.url,
        status=outcome.status,
        ok=error is None,
        error=error,
        content_type=media_type(outcome.headers.get("content-type")),
        bytes=len(outcome.body),
        sha256=sha256 or hashlib.sha256(outcome.body).hexdigest(),
        path=saved,
        elapsed_ms=round(outcome.elapsed * 1000),
        **base,
        **(_parsed_fields(parsed) if parsed is not None else {}),
    )


def _parsed_fields(parsed: ParsedPage) -> dict[str, Any]:
    meta = parsed.meta
    return {
        "title": parsed.title,
        "links": parsed.links,
        "text_chars": parsed.text_chars,
        "meta": {name: getattr(meta, name) for name in _META_FIELDS},
        "data": parsed.data,
    }


_META_FIELDS = tuple(field.name for field in dataclasses.fields(PageMeta))


def _error(kind: ErrorKind, message: str) -> dict[str, str]:
    return {"kind": kind.value, "message": message}
