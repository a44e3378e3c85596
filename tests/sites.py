"""Servers on 127.0.0.1 for tests, each in threads of its own for as long as its `with` lasts:

serving_site        a recording site: routes set by the test, every request's path
                    and arrival time kept (aiohttp)
serving_tls_page    one page over TLS, with a certificate the test chooses (http.server:
                    asyncio's TLS connections can outlive the loop that stops them)
forwarding_proxy    an HTTP proxy that relays what it is asked to, CONNECT tunnels
                    included, and notes each request's first line (asyncio)
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import ssl
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import yarl
from aiohttp import web
from multidict import CIMultiDict

_THREAD_TIMEOUT = 10.0
_POLL_INTERVAL = 0.02  # seconds: how soon http.server's loop sees it is asked to stop
_T = TypeVar("_T")


@dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


class Site:
    """Routes set by the test; every request's path and arrival time are recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hold = 0.0  # seconds each request other than robots.txt is kept open
        self.url = ""
        self._lock = threading.Lock()
        self._hits: list[tuple[str, float]] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self._in_flight = 0
        self._max_in_flight = 0

    def page(
        self, path: str, *links: str, head: str = "", headers: tuple[tuple[str, str], ...] = ()
    ) -> str:
        anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
        html = (
            f"<!DOCTYPE html><html><head><title>{path}</title>{head}</head>"
            f"<body>{anchors}</body></html>"
        )
        self.routes[path] = Route(
            body=html.encode(), headers=(("Content-Type", "text/html; charset=utf-8"), *headers)
        )
        return self.url_for(path)

    def robots(self, text: str = "", status: int = 200, path: str = "/robots.txt") -> None:
        self.routes[path] = Route(status, text.encode(), (("Content-Type", "text/plain"),))

    def redirect(self, path: str, location: str) -> None:
        self.routes[path] = Route(302, b"", (("Location", location),))

    def url_for(self, path: str) -> str:
        return self.url + path.removeprefix("/")

    @property
    def paths(self) -> list[str]:
        """Paths requested, in arrival order."""
        with self._lock:
            return [path for path, _ in self._hits]

    def arrivals(self, *, robots: bool = False) -> list[float]:
        """Arrival times of the requests (robots.txt ones too when `robots`)."""
        with self._lock:
            return [at for path, at in self._hits if robots or "robots" not in path]

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    async def handle(self, request: web.Request) -> web.Response:
        with self._lock:
            self._hits.append((request.path_qs, time.monotonic()))
            self.authorizations.append(request.headers.get("Authorization"))
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if self.hold and "robots" not in request.path:
                await asyncio.sleep(self.hold)
            route = self.routes.get(request.path_qs)
            if route is None:
                return web.Response(status=404, text="not found\n")
            return web.Response(
                status=route.status, body=route.body, headers=CIMultiDict(route.headers)
            )
        finally:
            with self._lock:
                self._in_flight -= 1


@contextlib.contextmanager
def serving_site(site: Site) -> Iterator[Site]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", site.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.25, handler_cancellation=True)
    with _loop_thread("test-site") as loop:
        site.url = _run_in(loop, _start(runner))
        try:
            yield site
        finally:
            _run_in(loop, _stop(runner))


TLS_PAGE = b"<!DOCTYPE html><html><head><title>TLS page</title></head><body></body></html>"


@contextlib.contextmanager
def serving_tls_page(context: ssl.SSLContext, *, hold: bool = False) -> Iterator[str]:
    """Serve TLS_PAGE at every path over TLS with `context`; yield the root URL. A
    connection whose handshake fails is dropped quietly. With `hold`, a connection is
    neither closed after its answer nor its TLS close answered until this returns. Every
    connection is closed by the time this returns: the server waits for the thread of each."""
    server = _TLSPageServer(("127.0.0.1", 0), _TLSPage)
    server.hold = threading.Event() if hold else None
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(
        target=server.serve_forever, args=(_POLL_INTERVAL,), name="tls-page", daemon=True
    )
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        if server.hold is not None:
            server.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(_THREAD_TIMEOUT)


class _TLSPageServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # so server_close waits for every connection's thread
    hold: threading.Event | None = None  # set: let the connections held go

    def handle_error(self, request: object, client_address: object) -> None:
        """A failed handshake (a client that does not trust us) is what a test wants."""


class _TLSPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(TLS_PAGE)))
        self.end_headers()
        self.wfile.write(TLS_PAGE)
        if isinstance(self.server, _TLSPageServer) and self.server.hold is not None:
            self.wfile.flush()
            self.server.hold.wait(_THREAD_TIMEOUT)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read answers, not logs."""


class Proxy:
    """What `forwarding_proxy` was asked: the first line of each request, as it came."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []  # each request's Proxy-Authorization
        self.refusal: bytes | None = None  # an answer to every request instead of relaying
        self._relays: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.StreamWriter] = set()

    async def relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        """Connect to the host the request names (127.0.0.1 only, as every test), answer a
        CONNECT with 200, pass a plain request on as it came, then copy both ways."""
        self._relays.add(asyncio.current_task())  # type: ignore[arg-type]
        self._connections.add(client_out)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await client_in.readuntil(b"\r\n\r\n")
            method, target = head.decode("latin-1").split(" ", 2)[:2]
            self.requests.append(f"{method} {target}")
            self.authorizations.append(_header(head, b"proxy-authorization"))
            if self.refusal is not None:
                client_out.write(self.refusal)
                await client_out.drain()
                raise ConnectionResetError  # ends the relay, as the refusal does
            where = yarl.URL(f"//{target}" if method == "CONNECT" else target)
            assert where.host == "127.0.0.1", target
            server_in, server_out = await asyncio.open_connection(where.host, where.port)
            self._connections.add(server_out)
            if method == "CONNECT":
                client_out.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                server_out.write(head)
            await asyncio.gather(_copy(client_in, server_out), _copy(server_in, client_out))
        client_out.close()

    async def close(self, server: asyncio.Server) -> None:
        """Stop `server`, and end every relay: clients keep their connections to a proxy."""
        server.close()
        for connection in self._connections:
            connection.close()
        await asyncio.gather(*self._relays, return_exceptions=True)
        closed = (connection.wait_closed() for connection in self._connections)
        await asyncio.gather(*closed, return_exceptions=True)
        await server.wait_closed()


@contextlib.contextmanager
def forwarding_proxy() -> Iterator[Proxy]:
    proxy = Proxy()
    with _loop_thread("test-proxy") as loop:
        server = _run_in(loop, asyncio.start_server(proxy.relay, "127.0.0.1", 0))
        proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield proxy
        finally:
            _run_in(loop, proxy.close(server))


def _header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


@contextlib.contextmanager
def _loop_thread(name: str) -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a daemon thread, stopped and joined on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_THREAD_TIMEOUT)
        assert not thread.is_alive(), f"the {name} event loop did not stop"
        loop.close()


async def _start(runner: web.AppRunner) -> str:
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # the OS picks the port; we read it back
    address, port = runner.addresses[0][:2]
    return str(yarl.URL.build(scheme="http", host=address, port=port, path="/"))


async def _stop(runner: web.AppRunner) -> None:
    await runner.cleanup()
    await asyncio.get_running_loop().shutdown_default_executor()


def _run_in(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(_THREAD_TIMEOUT)
