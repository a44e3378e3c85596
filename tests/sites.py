"""A recording test site on 127.0.0.1: routes set by the test, every request's path and
arrival time kept, served by aiohttp from its own thread for as long as `serving` lasts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import yarl
from aiohttp import web
from multidict import CIMultiDict

_THREAD_TIMEOUT = 10.0
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
def serving(site: Site) -> Iterator[Site]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", site.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.25, handler_cancellation=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="politeness-site", daemon=True)
    thread.start()
    try:
        site.url = _run_in(loop, _start(runner))
        yield site
    finally:
        try:
            _run_in(loop, _stop(runner))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_THREAD_TIMEOUT)
            assert not thread.is_alive(), "the test site's event loop did not stop"
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
