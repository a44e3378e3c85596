"""One HTTP exchange with requests, under the shared limits.

Shared by the requests-based strategies. The body is read with `read1`, which returns
as soon as any bytes arrive, so the total deadline is checked between reads: a server
that trickles one byte a second cannot hold a worker past `timeout`. The size cap is
applied to the decompressed stream, so a gzip bomb stops at `max_bytes`.
"""

from __future__ import annotations

import time

import requests
import urllib3.exceptions

from scraper.errors import ErrorKind, FetchError, ResponseError, TransportError
from scraper.fetch.base import Limits, Response

_CHUNK = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def new_session(limits: Limits) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = limits.user_agent
    return session


def fetch_once(session: requests.Session, url: str, limits: Limits) -> Response:
    """GET `url` once, without following redirects; raise FetchError on failure."""
    started = time.monotonic()
    try:
        with session.get(
            url, stream=True, allow_redirects=False, timeout=(limits.timeout, limits.timeout)
        ) as answer:
            body = b""
            if answer.status_code not in REDIRECT_STATUSES:
                body = _read_body(answer, started + limits.timeout, limits.max_bytes)
            return Response(
                url=url,
                status=answer.status_code,
                reason=answer.reason or "",
                headers={name.lower(): value for name, value in answer.headers.items()},
                body=body,
                elapsed=time.monotonic() - started,
            )
    except FetchError:
        raise
    except Exception as error:  # every library error becomes a FetchError, right here
        raise translate(error, limits) from None


def _read_body(answer: requests.Response, deadline: float, max_bytes: int) -> bytes:
    declared = answer.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise ResponseError(
            f"Content-Length {declared} exceeds {max_bytes} bytes", ErrorKind.TOO_LARGE
        )
    chunks: list[bytes] = []
    size = 0
    while chunk := answer.raw.read1(_CHUNK, decode_content=True):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseError(f"body exceeds {max_bytes} bytes", ErrorKind.TOO_LARGE)
        if time.monotonic() > deadline:
            raise TransportError("body not complete within the timeout", ErrorKind.TIMEOUT)
        chunks.append(chunk)
    return b"".join(chunks)


# Checked in order: the first matching row gives the kind. requests wraps most urllib3
# errors, but the body is read from urllib3 directly, so both families appear.
_KIND_OF_ERROR: tuple[tuple[tuple[type[BaseException], ...], ErrorKind], ...] = (
    ((requests.exceptions.SSLError, urllib3.exceptions.SSLError), ErrorKind.TLS),
    ((requests.exceptions.Timeout, urllib3.exceptions.TimeoutError), ErrorKind.TIMEOUT),
    (
        (urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError),
        ErrorKind.DECODE,
    ),
    ((requests.exceptions.InvalidURL, requests.exceptions.MissingSchema), ErrorKind.INVALID_URL),
    (
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError,
        ),
        ErrorKind.CONNECT,
    ),
)


def translate(error: Exception, limits: Limits) -> FetchError:
    """Map a requests or urllib3 exception to the FetchError with the record's kind."""
    if _caused_by(error, urllib3.exceptions.NameResolutionError):
        return TransportError(str(error), ErrorKind.DNS)
    kind = next(
        (kind for types, kind in _KIND_OF_ERROR if isinstance(error, types)), ErrorKind.PROTOCOL
    )
    if kind is ErrorKind.TIMEOUT:
        return TransportError(f"no answer within {limits.timeout:g}s", kind)
    return TransportError(f"{type(error).__name__}: {error}", kind)


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """True when `kind` is anywhere in the error's chain (requests wraps urllib3 errors)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind) or any(isinstance(arg, kind) for arg in seen.args):
            return True
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
    return False
