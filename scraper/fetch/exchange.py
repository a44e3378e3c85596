"""What every strategy does the same way with one HTTP exchange, whichever library carries it.

    fold_headers        lower-case names, repeated headers joined with ", "
    MAX_HEAD_LINE, MAX_HEADERS  how long a line of the head and how many headers
    refuse_unknown_version      a status line that is not HTTP/1.0 or HTTP/1.1 is `protocol`
    refuse_bad_head     a status below 100, a NUL in a header, a Transfer-Encoding other
                        than chunked, or a Content-Length that is not one plain number of
                        at most 64 bits is `protocol`
    has_body            whether an answer's body is read (not a redirect's, a 204's, a 304's)
    Body                the body decoded by us (decoding.py), under the size cap (counted
                        as sent and after decompression) and the attempt's deadline
    refuse_private      the connect-time guard of `Request.public_only`
    ErrorTable          one library's exceptions mapped to the record's error kinds, so
                        every strategy gives the same kind for the same failure

The libraries differ in how they read (requests' `read1`, aiohttp's `iter_chunked`) and in
what they raise; these rules must not, or a crawl's records would depend on `--fetch`.
Both hand over the body as it came, undecoded, for the same reason.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from scraper.errors import ErrorKind, FetchError, PrivateAddress, ResponseError, TransportError
from scraper.fetch.base import Limits
from scraper.fetch.decoding import decoder_for

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NO_BODY_STATUSES = frozenset({204, 304})  # (1xx answers are read past, never returned)
# http.client's limits on a response head, given to aiohttp too, whose own are 8,190 bytes
# and 128 headers: past them, the head is `protocol`. http.client's _MAXHEADERS is 100, but
# it counts the blank line that ends the head. A line's length is not measured alike
# (http.client counts the whole line; aiohttp a header's name and value, a status line's
# reason), so lines within a few bytes of the limit may pass with one and not the other.
MAX_HEAD_LINE = 65536
MAX_HEADERS = 99
_KNOWN_VERSIONS = frozenset({"HTTP/1.0", "HTTP/1.1"})


def fold_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names lower-cased, repeated headers joined with ", " in the order received."""
    folded: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        folded[key] = f"{folded[key]}, {value}" if key in folded else value
    return folded


def refuse_unknown_version(version: str) -> None:
    """Raise `protocol` for a status line whose version is not HTTP/1.0 or HTTP/1.1.

    http.client refuses "HTTP/2.0" and reads "HTTP/1.2" as 1.1; aiohttp's parser does the
    opposite. An HTTP/2 server would not answer in text, and no HTTP/1.2 exists: both are
    a server that is not speaking the HTTP we asked in.
    """
    if version not in _KNOWN_VERSIONS:
        raise TransportError(f"unknown HTTP version {version[:20]!r}", ErrorKind.PROTOCOL)


def refuse_bad_head(status: int, headers: dict[str, str]) -> None:
    """Raise `protocol` for a response head that aiohttp's parser refuses and http.client
    takes, so that a record does not depend on `--fetch`.

    - A status below 100 ("099"): a status is three digits from 100 (RFC 9110, 15). The
      ones above 599 stay answers, as both libraries read them: "999" is what some sites
      answer a crawler with.
    - A NUL in a header value, which RFC 9110 (5.5) says to refuse or replace.
    - The framing, below.
    """
    if status < 100:
        raise TransportError(f"status {status:03d} is not an HTTP status", ErrorKind.PROTOCOL)
    if any("\0" in value for value in headers.values()):
        raise TransportError("a NUL byte in a header value", ErrorKind.PROTOCOL)
    _refuse_bad_framing(headers)


def _refuse_bad_framing(headers: dict[str, str]) -> None:
    """Raise `protocol` for a Transfer-Encoding other than one "chunked" (or the obsolete
    "identity", which changes nothing), and for a Content-Length that is not one plain
    number (empty, signed, "abc", or repeated: folded into "4, 4"), that overflows 64 bits,
    or that comes with a Transfer-Encoding, whatever the status.

    A transfer coding other than chunked ("gzip, chunked", "gzip") is one we never asked
    for (we send no TE header), and neither library undoes it: aiohttp took the chunks'
    gzip bytes for the page, requests read the chunk framing into it.
    RFC 9112 (6.3) makes an invalid Content-Length an unrecoverable error and says one with
    a Transfer-Encoding "ought to be handled as an error" (it is how responses are split);
    a repeated equal value may be refused or read as one (RFC 9110, 8.6). aiohttp's parser
    refuses all of them, and a length it cannot hold in 64 bits; requests reads on to the
    end of the connection, or decodes the chunks, and calls what came a page (or, for the
    huge length, too large).
    """
    coding = headers.get("transfer-encoding")
    if coding is not None and coding.strip(" \t").lower() not in ("chunked", "identity"):
        raise TransportError(f"Transfer-Encoding {coding[:80]!r}", ErrorKind.PROTOCOL)
    declared = headers.get("content-length")
    if declared is None:
        return
    digits = declared.strip(" \t")
    if not _is_digits(digits) or int(digits) >= 2**64:
        raise TransportError(f"invalid Content-Length {declared[:80]!r}", ErrorKind.PROTOCOL)
    if "transfer-encoding" in headers:
        raise TransportError("both Content-Length and Transfer-Encoding", ErrorKind.PROTOCOL)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def has_body(status: int) -> bool:
    """Whether an answer's body is read: not for a redirect (its body is never read: the
    connection is closed instead), nor for a status that has none (204, 304), whatever
    its headers say: a 304's Content-Length is that of the page it stands for."""
    return status not in REDIRECT_STATUSES and status not in _NO_BODY_STATUSES


class Body:
    """A body, added as it came off the connection and decoded here, failing as soon as
    one limit is passed.

    The deadline is checked on every chunk that arrives, so a server that trickles a byte
    at a time ends at `timeout` even though every single read is quick (and even while
    its bytes decode to nothing yet); the size is counted as sent and after
    decompression, so a gzip bomb ends at `max_bytes` instead of filling memory, and so
    do endless bytes after a gzip stream, which decode to nothing.
    """

    def __init__(self, limits: Limits, started: float, headers: dict[str, str]) -> None:
        self._decoder = decoder_for(headers)
        self._max_bytes = limits.max_bytes
        self._deadline = started + limits.timeout
        self._pieces: list[bytes] = []
        self._size = 0  # decoded
        self._received = 0  # as sent
        declared = headers.get("content-length", "").strip(" \t")
        if _is_digits(declared) and int(declared) > self._max_bytes:
            raise ResponseError(
                f"Content-Length {declared} exceeds {self._max_bytes} bytes", ErrorKind.TOO_LARGE
            )

    def add(self, chunk: bytes) -> None:
        if time.monotonic() > self._deadline:
            raise TransportError("body not complete within the timeout", ErrorKind.TIMEOUT)
        self._received += len(chunk)
        if self._received > self._max_bytes:  # as sent: bytes a decoder ignores count too
            raise ResponseError(f"body exceeds {self._max_bytes} bytes", ErrorKind.TOO_LARGE)
        for piece in self._decoder.feed(chunk):
            self._size += len(piece)
            if self._size > self._max_bytes:
                raise ResponseError(f"body exceeds {self._max_bytes} bytes", ErrorKind.TOO_LARGE)
            self._pieces.append(piece)

    def decoded(self) -> bytes:
        """The whole body, once the connection has ended it."""
        self._decoder.finish()
        return b"".join(self._pieces)


def is_public(address: str) -> bool:
    """True for a global IP address; False for loopback, private, link-local, reserved...
    and for anything that is not an IP address at all (fail closed)."""
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def refuse_private(host: str, address: str) -> None:
    """Raise PrivateAddress unless `address`, where `host` led, is public.

    Called with the address actually connected to, or the only ones the connection may
    use, never with the URL's text alone: a public name that resolves to 10.0.0.1 must be
    caught.
    """
    if not is_public(address):
        raise PrivateAddress(f"{host} is at {address}, which is not a public address")


ErrorRows = tuple[tuple[tuple[type[BaseException], ...], ErrorKind], ...]


@dataclass(frozen=True, slots=True)
class ErrorTable:
    """How one HTTP library's exceptions become FetchErrors: the one place they are mapped.

    Libraries wrap the exception that tells what happened ("name not known", "cannot
    decode gzip") in one that tells where, so `causes` are looked for anywhere in an
    error's chain first; then `rows` are matched against the error itself. In both, rows
    are checked in order and the first match gives the kind; anything else is `protocol`.
    """

    causes: ErrorRows
    rows: ErrorRows

    def translate(self, error: BaseException, limits: Limits) -> FetchError:
        if isinstance(error, FetchError):
            return error  # ours already: the size and deadline checks, PrivateAddress
        kind = next((kind for types, kind in self.causes if _caused_by(error, types)), None)
        if kind is None:
            kind = next(
                (kind for types, kind in self.rows if isinstance(error, types)), ErrorKind.PROTOCOL
            )
        if kind is ErrorKind.TIMEOUT:
            return TransportError(f"no complete answer within {limits.timeout:g}s", kind)
        message = _CREDENTIALS.sub(r"\1***@", f"{type(error).__name__}: {error}")
        return TransportError(message, kind)


# The user and password of a URL in a library's message (a proxy's, from the environment):
# the message goes into the record, and a record is no place for a password. Up to the
# token's last "@", since a password may hold "/" or "@" as it came: where it is a path's,
# a little more is masked than needed.
_CREDENTIALS = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'"<>]*@""")


def _caused_by(error: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """True when one of `kinds` is anywhere in the error's chain, its `reason` or its args."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kinds) or any(isinstance(arg, kinds) for arg in seen.args):
            return True
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
    return False
