"""The asyncio strategy: aiohttp on an event loop of its own, in a daemon thread.

    submit() ──run_coroutine_threadsafe──► loop thread: _Client.fetch ──► aiohttp
    (any thread)  concurrent Future ◄────────── Response or FetchError

One event loop waits on every socket, so many slow servers cost no threads; a semaphore
keeps at most `workers` requests in flight. The body is read in chunks as it came and
decoded by us (decoding.py), as with requests. The ClientTimeout's `total` covers
connecting, the headers and the whole body, so a trickling server ends at `timeout` as
well.

`public_only` requests use a second ClientSession whose resolver drops every address that
is not global and fails when none is left. The connector only connects to addresses its
resolver returned, so the check holds for the address actually connected to, DNS rebinding
included. aiohttp does not ask the resolver about IP literals, so a trace hook checks
those before connecting; for a literal, the URL's text is the address. The two sessions
have separate connection pools: a guarded request never reuses an unchecked connection.
A redirect's body is never read: the connection is closed instead. Proxies, .netrc and the
trusted authorities come from the environment as requests takes them (`environment`), so
a crawl reaches the same servers the same way, and trusts the same certificates, with
every strategy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Coroutine
from concurrent.futures import Future
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import aiohttp
import aiohttp.http_exceptions
from aiohttp.abc import ResolveResult

from scraper.errors import ErrorKind
from scraper.fetch.base import Limits, Response
from scraper.fetch.decoding import ACCEPT_ENCODING, CHUNK
from scraper.fetch.environment import (
    Route,
    Routes,
    environment_decides,
    proxy_for_aiohttp,
    refuse_unsendable_credentials,
    tls_context,
)
from scraper.fetch.exchange import (
    MAX_HEAD_LINE,
    MAX_HEADERS,
    Body,
    ErrorTable,
    fold_headers,
    has_body,
    is_public,
    refuse_bad_head,
    refuse_private,
    refuse_unknown_version,
)
from scraper.records import Request

if TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType  # aiohttp's, for its socket_factory

_CLOSE_TIMEOUT = 5.0  # seconds close() waits for the loop thread before giving up on it
_CANCEL_GRACE = 1.0  # seconds cancelled requests get to unwind before the sessions close
_CLOSING_GRACE = 1.0  # seconds shut-down connections get to close
_CLOSED_POLL = 0.001  # seconds between looks at whether they have
_T = TypeVar("_T")


class AsyncFetcher:
    def __init__(self, limits: Limits, *, workers: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fetch-aio", daemon=True
        )
        self._thread.start()
        self._closing = threading.Lock()
        self._closed = False
        self._client = self._run(_Client.open(limits, workers))

    def submit(self, request: Request) -> Future[Response]:
        with self._closing:
            if self._closed:
                raise RuntimeError("submit() after close()")
            return asyncio.run_coroutine_threadsafe(self._client.fetch(request), self._loop)

    def close(self) -> None:
        """Cancel what is in flight, close the sessions and stop the loop; idempotent."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CLOSE_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CLOSE_TIMEOUT)


class _Client:
    """The loop's side: both sessions and the in-flight bound. Used on the loop only."""

    def __init__(self, limits: Limits, workers: int) -> None:
        self._limits = limits
        self._slots = asyncio.Semaphore(workers)
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._open = _new_session(limits, self._sockets, public_only=False)
        self._guarded = _new_session(limits, self._sockets, public_only=True)
        self._tls: ssl.SSLContext | None = None
        self._routes = Routes(proxy_for_aiohttp) if environment_decides() else None

    @classmethod
    async def open(cls, limits: Limits, workers: int) -> _Client:
        """Built on the loop: aiohttp sessions belong to the loop that creates them."""
        return cls(limits, workers)

    async def fetch(self, request: Request) -> Response:
        async with self._slots:
            started = time.monotonic()
            session = self._guarded if request.public_only else self._open
            try:
                refuse_unsendable_credentials(request.url)
                route = self._route_for(request)
                return await _fetch_once(session, request.url, self._limits, started, route)
            except Exception as error:  # every library error becomes a FetchError, right here
                raise ERRORS.translate(error, self._limits) from None

    def _route_for(self, request: Request) -> _Route:
        """What requests takes from the environment for this request (nothing for a
        `public_only` one, as with requests), and the authorities every strategy trusts
        (`environment.tls_context`) for TLS to the server or to the proxy."""
        route = _Route()
        if self._routes is not None and not request.public_only:
            route = _Route.of(request.url, self._routes(request.url))
        if request.url.startswith("https:") or (route.proxy or "").startswith("https:"):
            route = route._replace(tls=self._trusted())
        return route

    def _trusted(self) -> ssl.SSLContext:
        """Loaded at the first TLS connection (16 ms: at the start of the crawl, where a
        plain-http one need not wait for it)."""
        if self._tls is None:
            self._tls = tls_context()
        return self._tls

    async def close(self) -> None:
        current = asyncio.current_task()
        in_flight = [task for task in asyncio.all_tasks() if task is not current]
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.wait(in_flight, timeout=_CANCEL_GRACE)
        await self._open.close()
        await self._guarded.close()
        await self._until_sockets_closed()

    async def _until_sockets_closed(self) -> None:
        """Shut down every socket of ours still open and wait until each is closed, so that
        none is left to the garbage collector when the loop stops. The sessions wait only
        for the connections in their pools, and abort the TLS ones rather than wait for the
        peer's close_notify (aiohttp's ssl_shutdown_timeout of 0). One closed earlier, after
        an answer or a cancelled request, may still be waiting for it, or a loop turn away
        from closing its socket: shut down, its transport reads the end and closes."""
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _CLOSING_GRACE
        while any(sock.fileno() != -1 for sock in self._sockets):
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(_CLOSED_POLL)


class _Route(NamedTuple):
    """How one request goes out, as aiohttp's per-request arguments."""

    tls: ssl.SSLContext | bool = True  # the `ssl` argument; True: aiohttp's, for no TLS
    proxy: str | None = None
    headers: dict[str, str] | None = None
    proxy_headers: dict[str, str] | None = None  # sent with CONNECT only

    @classmethod
    def of(cls, url: str, route: Route) -> _Route:
        """`route` as aiohttp takes it. A tunnel's CONNECT carries the proxy's credentials;
        a plain-http request, which goes to the proxy, carries them itself."""
        headers: dict[str, str] = {}
        proxy_headers: dict[str, str] = {}
        if route.proxy_authorization is not None:
            carrier = proxy_headers if url.startswith("https:") else headers
            carrier["Proxy-Authorization"] = route.proxy_authorization
        if route.authorization is not None:
            headers["Authorization"] = route.authorization
        return cls(True, route.proxy, headers or None, proxy_headers or None)


async def _fetch_once(
    session: aiohttp.ClientSession,
    url: str,
    limits: Limits,
    started: float,
    route: _Route,
) -> Response:
    """GET `url` once, without following redirects; no body is read for a redirect, a 204
    or a 304 (see has_body)."""
    async with session.get(
        url,
        allow_redirects=False,
        ssl=route.tls,
        proxy=route.proxy,
        proxy_headers=route.proxy_headers,
        headers=route.headers,
    ) as answer:
        major, minor = answer.version or (0, 0)  # None only before the head is read
        refuse_unknown_version(f"HTTP/{major}.{minor}")
        headers = fold_headers(answer.headers.items())
        refuse_bad_head(answer.status, headers)  # aiohttp's parser has refused most
        body = b""
        if has_body(answer.status):
            reader = Body(limits, started, headers)
            async for chunk in answer.content.iter_chunked(CHUNK):
                reader.add(chunk)
            body = reader.decoded()
        return Response(
            url=url,
            status=answer.status,
            reason=answer.reason or "",
            headers=headers,
            body=body,
            elapsed=time.monotonic() - started,
        )


def _new_session(
    limits: Limits, sockets: weakref.WeakSet[socket.socket], *, public_only: bool
) -> aiohttp.ClientSession:
    """A session like requests' (http.new_session): our headers and limits. It takes
    nothing from the environment itself: `environment.Routes` decides for each request.
    Each socket it makes goes into `sockets`, so that close() can see them closed."""

    def new_socket(address: AddrInfoType) -> socket.socket:
        family, kind, protocol = address[:3]
        made = socket.socket(family, kind, protocol)
        sockets.add(made)
        return made

    timeout = aiohttp.ClientTimeout(
        total=limits.timeout, sock_connect=limits.timeout, sock_read=limits.timeout
    )
    resolver = _PublicOnlyResolver() if public_only else aiohttp.ThreadedResolver()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver, socket_factory=new_socket),
        timeout=timeout,
        headers={"User-Agent": limits.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        auto_decompress=False,  # decoding.py decodes, as for requests
        max_line_size=MAX_HEAD_LINE,
        max_field_size=MAX_HEAD_LINE,
        max_headers=MAX_HEADERS,
        trace_configs=[_literal_guard()] if public_only else None,
    )


class _PublicOnlyResolver(aiohttp.ThreadedResolver):
    """Resolves as usual, then keeps only global addresses; none left is PrivateAddress."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        public = [result for result in found if is_public(result["host"])]
        if found and not public:
            refuse_private(host, found[0]["host"])
        return public


def _literal_guard() -> aiohttp.TraceConfig:
    """Checks IP-literal hosts before connecting: aiohttp connects to those unresolved."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_refuse_private_literal)
    return trace


async def _refuse_private_literal(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestStartParams,
) -> None:
    host = params.url.raw_host or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return  # a name: the resolver decides
    refuse_private(host, host)


# Checked in order: the first matching row gives the kind. aiohttp wraps the resolver's
# errors, hence the cause.
ERRORS = ErrorTable(
    causes=(((socket.gaierror,), ErrorKind.DNS),),
    rows=(
        ((aiohttp.ClientSSLError,), ErrorKind.TLS),
        ((asyncio.TimeoutError, aiohttp.ServerTimeoutError), ErrorKind.TIMEOUT),
        ((aiohttp.InvalidURL,), ErrorKind.INVALID_URL),
        (
            # a proxy that refuses the tunnel (407, 403...): requests' ProxyError, `connect`
            (
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
                aiohttp.ClientHttpProxyError,
            ),
            ErrorKind.CONNECT,
        ),
    ),
)
