"""The error tree, and the closed set of error kinds that records carry.

    ScraperError                  root of everything this package raises on purpose
    ├── ConfigError (ValueError)  an option is invalid; the message names the option
    ├── InputError                the URL list cannot be used (unreadable, no valid URL)
    ├── OutputError               the output directory cannot be written
    ├── ParseError                the parse stage failed on a page (the user's extraction
    │                             function raised, or a parse process died)
    └── FetchError                one attempt to fetch a URL failed; `kind` says how
        ├── InvalidURL            not a fetchable http(s) URL
        ├── TransportError        no usable response: dns, connect, timeout, tls, protocol
        ├── PrivateAddress        a public_only request would have reached a private address
        └── ResponseError         a response came but was bad: too_large, redirect problems

A `FetchError` crosses process boundaries (the process-pool fetch strategy raises it in a
worker), so every class here pickles: the constructor arguments are exactly `self.args`.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):
    """Why a URL did not yield a good page: the `error.kind` field of a record.

    The set is closed and documented in README.md; scripts may switch on it.
    """

    INVALID_URL = "invalid_url"
    DNS = "dns"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    TLS = "tls"
    PROTOCOL = "protocol"
    DECODE = "decode"
    TOO_LARGE = "too_large"
    HTTP = "http"
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    PARSE = "parse"
    ROBOTS = "robots"
    REDIRECT_BLOCKED = "redirect_blocked"
    MAX_PAGES = "max_pages"
    PRIVATE_ADDRESS = "private_address"


class ScraperError(Exception):
    """Root of the errors this package raises on purpose."""


class ConfigError(ScraperError, ValueError):
    """An invalid option. A ValueError too, so callers of `crawl(**options)` can catch that."""


class InputError(ScraperError):
    """The URL list cannot be used: unreadable, or no valid URL in it."""


class OutputError(ScraperError):
    """The output directory cannot be created or written."""


class FetchError(ScraperError):
    """One fetch attempt failed. `kind` is the record's error kind; `elapsed` is how long the
    attempt took, which only the crawl knows (from submitting it to its answer), so the
    crawl sets it; 0 when nothing was sent (robots.txt, --max-pages)."""

    kind: ErrorKind = ErrorKind.CONNECT
    elapsed: float = 0.0

    def __init__(self, message: str, kind: ErrorKind | None = None) -> None:
        super().__init__(message, kind)
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __str__(self) -> str:
        return self.message


class InvalidURL(FetchError):
    """Not something we can fetch: bad scheme, no host, forbidden characters."""

    kind = ErrorKind.INVALID_URL


class TransportError(FetchError):
    """No usable response arrived; `kind` is dns, connect, timeout, tls or protocol."""


class PrivateAddress(FetchError):
    """The host resolved to a loopback, private or link-local address, and the request
    was only allowed public ones. Raised before anything is sent."""

    kind = ErrorKind.PRIVATE_ADDRESS


class ResponseError(FetchError):
    """A response arrived but cannot be used: too large, or a bad redirect chain."""


class ParseError(ScraperError):
    """The parse stage failed on one page. Carries text only, so it always pickles."""

    kind = ErrorKind.PARSE


class ParseProcessDied(ParseError):
    """A parse process died (segfault, os._exit, out of memory) while this page was in it."""


def shown(value: object) -> str:
    """`value` as an error message shows it: its repr, cut short. A value holding an int
    too long to write in decimal (Python refuses past 4,300 digits) has no repr: it raised
    ValueError in place of the ConfigError. An int is shown by its size instead, anything
    else by its type."""
    try:
        text = repr(value)
    except ValueError:
        if isinstance(value, int):
            sign = "a negative" if value < 0 else "an"
            return f"{sign} integer of {value.bit_length()} bits"
        return f"a {type(value).__name__} too large to show"  # [10**5000], a huge Fraction
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


_SHOWN_MAX = 80  # characters of a value an error message shows


def described(error: BaseException) -> str:
    """A user's exception as a message: its type and its text. An exception whose text
    cannot be had (its __str__ raises) is named by its type alone: formatting it raised in
    the collector's callback, and the crawl waited forever for the batch's result."""
    try:
        text = str(error)
    except Exception:
        return f"{type(error).__name__} (its message could not be read)"
    return f"{type(error).__name__}: {text}"
