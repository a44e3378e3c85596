"""One HTTP exchange with requests, under the shared limits.

Shared by the requests-based strategies (threads, sequential, processes). The body is read
with `read1`, which returns as soon as any bytes arrive, so the total deadline is checked
between reads: a server that trickles one byte a second cannot hold a worker past
`timeout`. The body is read as it came and decoded by us (decoding.py), as with aiohttp;
the size cap is applied to the body as sent and to the decoded stream, so a gzip bomb stops
at `max_bytes`.

A request with `public_only` goes through a Session of its own whose connections check the
address they reached right after the TCP connect, before TLS or a byte of HTTP is sent, and
close it when it is not global. The two Sessions never share a connection pool, so a
guarded request cannot reuse a connection opened, unchecked, by an unguarded one.
A redirect's body is never read: the connection is closed instead. Every connection
checks that the response head arrived whole (`_WholeHeadResponse`): http.client would take
the end of the connection for the end of the headers.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import time
from types import TracebackType
from typing import Any, ClassVar

import requests
import requests.adapters
import urllib3
import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from scraper.errors import ErrorKind, InvalidURL, TransportError
from scraper.fetch.base import Limits, Response
from scraper.fetch.decoding import ACCEPT_ENCODING, CHUNK
from scraper.fetch.environment import (
    UNSENDABLE_CREDENTIALS,
    Route,
    Routes,
    ca_bundle,
    environment_decides,
    proxy_for_requests,
    refuse_unsendable_credentials,
)
from scraper.fetch.exchange import (
    MAX_HEAD_LINE,
    REDIRECT_STATUSES,
    Body,
    ErrorTable,
    fold_headers,
    has_body,
    refuse_bad_head,
    refuse_private,
    refuse_unknown_version,
)
from scraper.records import Request

__all__ = ["ERRORS", "REDIRECT_STATUSES", "Sessions", "fetch_once", "new_session"]


def new_session(limits: Limits, *, public_only: bool = False) -> requests.Session:
    """A Session sending our User-Agent; with `public_only`, one that only talks to
    global addresses. That one ignores proxy settings from the environment: through a
    proxy, the proxy and not us would pick the address connected to.

    requests' own reading of the environment is off (`trust_env`): it looked up the proxy
    and the .netrc again for every request. The session trusts the CA bundle requests
    would, and takes the proxy and the .netrc from `Routes`, once per origin."""
    session = _Session()
    session.headers["User-Agent"] = limits.user_agent
    session.headers["Accept-Encoding"] = ACCEPT_ENCODING
    session.trust_env = False
    session.verify = ca_bundle()
    if not public_only and environment_decides():
        session.routes = Routes(proxy_for_requests)
    for prefix in ("http://", "https://"):
        session.mount(prefix, _PublicOnlyAdapter() if public_only else _Adapter())
    return session


class _Session(requests.Session):
    routes: Routes | None = None  # None: the environment names no proxy and no .netrc

    def route(self, url: str) -> Route:
        return Route() if self.routes is None else self.routes(url)

    def get_redirect_target(self, resp: requests.Response) -> None:
        """Never a next hop: redirects are the fetch policy's to follow. Otherwise, even
        with allow_redirects=False, requests reads a redirect's whole body to prepare the
        hop, with no size cap and no deadline."""
        return None


class Sessions:
    """One worker's two Sessions: the guarded one for `public_only` requests, and the other."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._open = new_session(limits)
        self._guarded = new_session(limits, public_only=True)

    def fetch(self, request: Request) -> Response:
        session = self._guarded if request.public_only else self._open
        return fetch_once(session, request.url, self._limits)

    def close(self) -> None:
        self._open.close()
        self._guarded.close()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def fetch_once(session: requests.Session, url: str, limits: Limits) -> Response:
    """GET `url` once, without following redirects; raise FetchError on failure."""
    started = time.monotonic()
    try:
        refuse_unsendable_credentials(url)
        with _get(session, url, timeout=(limits.timeout, limits.timeout)) as answer:
            _refuse_non_header_lines(answer)
            headers = fold_headers(answer.raw.headers.items())
            refuse_bad_head(answer.status_code, headers)
            body = b""
            if has_body(answer.status_code):
                body = _read_body(answer, Body(limits, started, headers))
            elif answer.status_code not in REDIRECT_STATUSES:  # a 204, a 304
                answer.raw.read1(CHUNK, decode_content=False)  # nothing: frees the connection
            return Response(
                url=url,
                status=answer.status_code,
                reason=answer.reason or "",
                headers=headers,
                body=body,
                elapsed=time.monotonic() - started,
            )
    except Exception as error:  # every library error becomes a FetchError, right here
        raise ERRORS.translate(error, limits) from None


def _get(session: requests.Session, url: str, timeout: tuple[float, float]) -> requests.Response:
    """GET `url` through `session`, streaming, without following redirects.

    A session made by `new_session` sends a request prepared from its own headers and
    cookies, and the proxy and the .netrc's credentials of its `route`: it has no auth,
    params or hooks of its own. `Session.request` would first merge the per-request
    settings (params, auth, proxies, hooks...) that we never pass; with requests 2.34 on
    Python 3.11 those merges run a dozen slow runtime Protocol checks, 0.12 ms of CPU a
    page here (0.74 -> 0.61 ms). A session of the caller's goes the usual way.
    """
    if not isinstance(session, _Session):
        return session.get(url, stream=True, allow_redirects=False, timeout=timeout)
    route = session.route(url)
    prepared = requests.PreparedRequest()
    prepared.prepare(method="GET", url=url, headers=session.headers, cookies=session.cookies)
    if route.authorization is not None:  # only for a URL without credentials of its own
        prepared.headers["Authorization"] = route.authorization
    proxies = {"all": route.proxy} if route.proxy else {}
    return session.send(
        prepared, stream=True, allow_redirects=False, timeout=timeout, proxies=proxies
    )


def _refuse_non_header_lines(answer: requests.Response) -> None:
    """Raise `protocol` for a line among the headers that is not a header, which aiohttp's
    parser refuses. http.client ends the headers there, keeps the rest as the start of the
    body and only notes it (urllib3 logs it): the answer passed for a page.
    """
    original = getattr(answer.raw, "_original_response", None)
    if not isinstance(original, http.client.HTTPResponse):
        return  # a mocked transport
    # What came after the last line read as a header. (The message's defects are no
    # guide: a multipart Content-Type alone adds two, its boundary not being found.)
    unparsed = original.msg.get_payload()
    if not isinstance(unparsed, str) or not unparsed:
        return
    if not unparsed.endswith("\n"):  # on a connection that is not ours (a SOCKS proxy's)
        raise _head_cut_off(unparsed.encode("iso-8859-1", "replace"))
    raise _not_a_header(unparsed)


def _read_body(answer: requests.Response, body: Body) -> bytes:
    while chunk := answer.raw.read1(CHUNK, decode_content=False):
        body.add(chunk)
    return body.decoded()


# Checked in order: the first matching row gives the kind. requests wraps most urllib3
# errors, but the body is read from urllib3 directly, so both families appear. A server
# that hangs up without answering raises RemoteDisconnected, which is also a BadStatusLine.
ERRORS = ErrorTable(
    causes=(
        ((urllib3.exceptions.NameResolutionError,), ErrorKind.DNS),
        ((http.client.RemoteDisconnected, http.client.IncompleteRead), ErrorKind.CONNECT),
        ((http.client.HTTPException,), ErrorKind.PROTOCOL),  # a bad status line or header
    ),
    rows=(
        ((requests.exceptions.SSLError, urllib3.exceptions.SSLError), ErrorKind.TLS),
        ((requests.exceptions.Timeout, urllib3.exceptions.TimeoutError), ErrorKind.TIMEOUT),
        (
            (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema),
            ErrorKind.INVALID_URL,
        ),
        (
            (
                requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.ProtocolError,
            ),
            ErrorKind.CONNECT,
        ),
    ),
)


# -- the connections: a whole response head, and the connect-time guard ----------------------


class _WholeHeadResponse(http.client.HTTPResponse):
    """A response whose head must arrive whole: every line of it ends in a line feed.

    http.client reads the status line and the headers line by line and takes the end of
    the connection for the end of the head. A connection cut anywhere in it ("HTTP/1.1 200",
    "Content-Type:", or right after a header line) passed for a complete 200 with an empty
    body, where aiohttp says the server disconnected: `connect` here too.
    """

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        timeout = sock.gettimeout()  # the read timeout: urllib3 sets it just before
        if timeout is not None:
            # detached, or the reader makefile made would close the socket's file when freed
            socket_io = self.fp.detach()
            raw = _UntilDeadline(socket_io, sock, time.monotonic() + timeout)
            self.fp = io.BufferedReader(raw)

    def begin(self) -> None:
        watched = _LineEnds(self.fp)
        self.fp = watched  # type: ignore[assignment]
        try:
            super().begin()  # which reads the head with readline, and may close the file
        except http.client.HTTPException as error:
            # A status line cut off is a bad one to http.client ("HTTP/1.1 20"); one that
            # could not have become a status line stays `protocol`, as aiohttp says.
            if watched.cut is None or not watched.cut_could_be_whole:
                raise
            raise _head_cut_off(watched.cut) from error
        finally:
            if self.fp is not None:  # not closed
                self.fp = watched.lines
        if watched.cut is not None:
            if not watched.cut_could_be_whole:
                raise _not_a_header(watched.cut)
            raise _head_cut_off(watched.cut)
        self._settle_framing()

    def _settle_framing(self) -> None:
        """Two corrections to how http.client reads the body's framing, to aiohttp's:
        "chunked " with whitespace after it is chunked (http.client compared the raw
        value, and read the chunk framing into the page); and an answer that has no body
        (204, 304) has none even when it says chunked (http.client set its length to 0
        and went on to look for a chunk, until the timeout)."""
        coding = self.headers.get("transfer-encoding", "").strip(" \t").lower()
        if self.length == 0:  # set so by the status alone (or a Content-Length of 0)
            self.chunked = False
        elif not self.chunked and coding == "chunked":
            self.chunked, self.chunk_left, self.length = True, None, None

    def _read_status(self) -> tuple[str, int, str]:
        """http.client's, reading on past the interim answers it does not know (102
        Processing, 103 Early Hints) as it does past 100 Continue: the final answer is the
        one recorded, as with aiohttp. 101 Switching Protocols is final: we never ask."""
        version, status, reason = self._read_status_line()
        while 101 < status < 200:
            http.client.parse_headers(self.fp)  # the interim answer's, dropped
            version, status, reason = self._read_status_line()
        refuse_unknown_version(version)
        return version, status, reason

    def _read_status_line(self) -> tuple[str, int, str]:
        """http.client's, held to the grammar aiohttp's parser holds a status line to:
        http.client splits it on any whitespace, so " HTTP/1.1 200", "HTTP/1.1  200",
        "HTTP/1.1\t200" and a CR in the reason passed. (A line cut off fails here too,
        and begin() tells it from a bad one.)"""
        answer: tuple[str, int, str] = super()._read_status()  # type: ignore[misc]
        watched = self.fp
        if not isinstance(watched, _LineEnds):
            return answer  # a proxy's answer to CONNECT, which http.client reads itself
        if not _STATUS_LINE.fullmatch(watched.status_line):
            raise http.client.BadStatusLine(repr(watched.status_line[:80]))
        return answer

    def _get_chunk_left(self) -> int | None:
        """http.client's, but a chunk's data must end in a line end (CRLF, or an LF as
        aiohttp takes): http.client drops the next two bytes unseen, so "helloXX" was read
        as "hello", and "hello\\n0" lost the next line's first byte."""
        if self.chunk_left == 0:  # the chunk's data is read: its line end comes next
            end = self.fp.read(1)
            if end == b"\r":
                end += self.fp.read(1)
            if end not in (b"\n", b"\r\n"):
                if end in (b"", b"\r"):
                    raise http.client.IncompleteRead(end)
                raise TransportError("a chunk's data runs past its size", ErrorKind.PROTOCOL)
            self.chunk_left = None  # as http.client leaves it before reading a size
        return super()._get_chunk_left()  # type: ignore[misc,no-any-return]

    def _read_and_discard_trailer(self) -> None:
        """http.client's, but as strict as aiohttp: a connection that ends before the blank
        line closing the message is cut off (`connect`), not done, and a trailer line that
        is not a header (nor one folded onto the line before, as in the head) is
        `protocol`."""
        after_a_header = False
        while (line := self._framing_line("trailer line")) not in (b"\r\n", b"\n"):
            folded = after_a_header and line.startswith((b" ", b"\t")) and line.strip()
            if not (folded or _HEADER_LINE.fullmatch(line)):
                raise _not_a_header(line)
            after_a_header = True

    def _read_next_chunk_size(self) -> int:
        """http.client's, but as strict as aiohttp: a size that is not hex digits ("zz",
        "-5", "0x5", " 5": int() takes a sign, a prefix and spaces) or needs more than 64
        bits, or a line ending in a bare LF, is `protocol`; spaces or tabs after the size
        are allowed, as there. A connection that ends before the line does is still
        IncompleteRead."""
        line = self._framing_line("chunk size")
        size = line.split(b";", 1)[0].removesuffix(b"\r\n").rstrip(b" \t")
        if not line.endswith(b"\r\n") or not _HEX_DIGITS.fullmatch(size) or int(size, 16) >= 2**64:
            self._close_conn()  # type: ignore[attr-defined]
            raise TransportError(f"chunk-size line {line[:20]!r} is not a size", ErrorKind.PROTOCOL)
        return int(size, 16)

    def _framing_line(self, what: str) -> bytes:
        """A whole line of the chunked framing: one too long is `protocol` (LineTooLong),
        one the connection cut off `connect` (IncompleteRead)."""
        line = self.fp.readline(MAX_HEAD_LINE + 1)
        if len(line) > MAX_HEAD_LINE:
            raise http.client.LineTooLong(what)
        if not line.endswith(b"\n"):
            raise http.client.IncompleteRead(line)
        return line


# What a status line or a header line can start with: all a cut leaves of a valid one.
_STATUS_LINE_START = re.compile(
    rb"H(T(T(P(/([0-9](\.([0-9]( ([0-9]([0-9]([0-9]( [^\r\n]*)?)?)?)?)?)?)?)?)?)?)?)?\r?"
)
_NAME = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]"  # a character of a header's name (a token)
_HEADER_LINE_START = re.compile(_NAME + rb"*(:[^\r\n]*)?\r?")
_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9] [0-9]{3}( [^\r\n]*)?\r?\n")
_HEADER_LINE = re.compile(_NAME + rb"+:[^\r\n]*\r?\n")
_HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]+")


def _head_cut_off(cut: bytes) -> TransportError:
    return TransportError(
        f"the connection ended inside the response head, at {cut[-80:]!r}", ErrorKind.CONNECT
    )


def _not_a_header(line: bytes | str) -> TransportError:
    return TransportError(f"a header line is not a header: {line[:80]!r}", ErrorKind.PROTOCOL)


class _UntilDeadline(io.RawIOBase):
    """A socket's reads, each allowed only the time left before a deadline.

    The socket's own timeout bounds one read, so a server sending a byte now and then kept
    a fetch going for as long as it liked: in the head, which is read before `Body`'s
    deadline applies (a status or header line trickled, endless 103 answers), it held a
    worker and its host's slot for good, where aiohttp ends at the timeout. The deadline
    is the read timeout after the request was sent: the whole answer, head and body."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")  # what the socket raises: urllib3 knows it
        self._sock.settimeout(left)  # urllib3 sets the read timeout again for each answer
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _LineEnds:
    """A binary file's readline that notes the first line the end of the file cut off:
    one that ends in no line feed although the limit was not reached, or no line at all;
    and keeps the last status line read. That is all the head is read with."""

    def __init__(self, lines: io.BufferedReader) -> None:
        self.lines = lines
        self.cut: bytes | None = None
        self.cut_could_be_whole = False  # the cut line is the start of a valid one
        self.status_line = b""
        self._status_line_next = True  # first, and after a 1xx answer's blank line

    def readline(self, limit: int = -1) -> bytes:
        line = self.lines.readline(limit)
        if self._status_line_next:
            self.status_line = line
        if self.cut is None and not line.endswith(b"\n") and not 0 <= limit <= len(line):
            self.cut = line
            start = _STATUS_LINE_START if self._status_line_next else _HEADER_LINE_START
            self.cut_could_be_whole = bool(start.fullmatch(line))
        self._status_line_next = line in (b"\r\n", b"\n")
        return line

    def close(self) -> None:
        self.lines.close()


class _Connection(HTTPConnection):
    response_class = _WholeHeadResponse


class _HTTPSConnection(_Connection, HTTPSConnection):
    pass


class _PublicOnlyConnection(_Connection):
    """Refuses a peer that is not a global address, right after the TCP connect.

    `_new_conn` is where urllib3 opens the socket, for http and https alike, before any
    TLS handshake or request bytes: the earliest moment the real address is known.
    """

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        try:
            refuse_private(self.host, str(sock.getpeername()[0]))
        except Exception:
            sock.close()
            raise
        return sock


class _PublicOnlyHTTPSConnection(_PublicOnlyConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _PublicOnlyHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicOnlyConnection


class _PublicOnlyHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyHTTPSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    """An adapter whose pools, direct or through an HTTP proxy, make our connections."""

    pool_classes: ClassVar[dict[str, type[HTTPConnectionPool]]] = {
        "http": _HTTPPool,
        "https": _HTTPSPool,
    }

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self.pool_classes

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        """requests' own, but a CA bundle that cannot be found is `tls` for every https URL,
        as with aiohttp (`environment.tls_context`): it raised a bare OSError, `protocol`."""
        try:
            super().cert_verify(conn, url, verify, cert)
        except requests.exceptions.RequestException:
            raise
        except OSError as error:
            raise requests.exceptions.SSLError(str(error)) from error

    def proxy_headers(self, proxy: str) -> dict[str, str]:
        """requests' own, but credentials it cannot encode are our error: its own quoted
        the character (`environment.basic_authorization`)."""
        try:
            return super().proxy_headers(proxy)
        except UnicodeEncodeError:
            raise InvalidURL(UNSENDABLE_CREDENTIALS) from None

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # not SOCKS: its pools are its own
            manager.pool_classes_by_scheme = self.pool_classes
        return manager


class _PublicOnlyAdapter(_Adapter):
    """An adapter whose pools make only guarded connections (it is never given a proxy)."""

    pool_classes: ClassVar[dict[str, type[HTTPConnectionPool]]] = {
        "http": _PublicOnlyHTTPPool,
        "https": _PublicOnlyHTTPSPool,
    }
