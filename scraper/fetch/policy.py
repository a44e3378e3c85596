"""The fetch policy: what to do with the outcome of one attempt. Pure, and the same for
every strategy.

    decide(request, outcome) ──► Finish   the URL's record can be written
                             ├─► Retry    try again after `delay` seconds (the frontier waits)
                             └─► Follow   fetch the redirect target next

Retries use capped exponential backoff with jitter (half fixed, half random, so retries
from many workers spread out), honour Retry-After, and are counted per URL.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from dataclasses import dataclass

from scraper.errors import ErrorKind, FetchError, InvalidURL, ResponseError
from scraper.fetch.base import Response
from scraper.fetch.exchange import REDIRECT_STATUSES
from scraper.records import Request
from scraper.urls import canonicalize

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_KINDS = frozenset({ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.PROTOCOL})
RETRY_AFTER_CAP = 600.0


@dataclass(frozen=True, slots=True)
class Finish:
    outcome: Response | FetchError


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float


@dataclass(frozen=True, slots=True)
class Follow:
    target: str


Decision = Finish | Retry | Follow


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    retries: int
    backoff: float
    backoff_cap: float
    max_redirects: int

    def decide(self, request: Request, outcome: Response | FetchError) -> Decision:
        if isinstance(outcome, FetchError):
            return self._after_error(request, outcome)
        if outcome.status in REDIRECT_STATUSES and "location" in outcome.headers:
            return self._redirect(request, outcome)
        if outcome.status in RETRY_STATUSES and request.attempt <= self.retries:
            wait = retry_after(outcome.headers.get("retry-after"))
            if wait is None or wait <= RETRY_AFTER_CAP:
                return Retry(max(wait or 0.0, self.backoff_delay(request.attempt)))
            return Finish(_beyond_cap(outcome, wait))
        return Finish(outcome)

    def backoff_delay(self, attempt: int) -> float:
        """Delay before retry number `attempt`: base·2^(attempt-1), capped, half jittered."""
        ceiling = min(self.backoff_cap, self.backoff * 2.0 ** min(attempt - 1, 64))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _after_error(self, request: Request, error: FetchError) -> Decision:
        if error.kind in RETRY_KINDS and request.attempt <= self.retries:
            return Retry(self.backoff_delay(request.attempt))
        return Finish(error)

    def _redirect(self, request: Request, response: Response) -> Decision:
        try:
            target = canonicalize(response.headers["location"], base=response.url)
        except InvalidURL as error:
            return Finish(InvalidURL(f"redirect to an unusable URL: {error}"))
        if target == request.url or target in request.redirects:
            return Finish(ResponseError(f"redirect loop back to {target}", ErrorKind.REDIRECT_LOOP))
        if len(request.redirects) >= self.max_redirects:
            message = f"more than {self.max_redirects} redirects"
            return Finish(ResponseError(message, ErrorKind.TOO_MANY_REDIRECTS))
        return Follow(target)


def _beyond_cap(response: Response, wait: float) -> Response:
    """The answer, its reason saying why it was not retried: the record's error message is
    built from it, and "429 Too Many Requests" alone would hide that we chose to stop."""
    reason = f"{response.reason} (Retry-After {wait:.0f} s exceeds the {RETRY_AFTER_CAP:.0f} s cap)"
    return dataclasses.replace(response, reason=reason.strip())


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
