"""Running the demo site: in a background thread for tests, in the foreground for the CLI.

Both bind the port themselves (port 0 lets the OS choose) and report the address they got, so
no other process can take the port between choosing and binding it. Requests still in flight
at shutdown get `_SHUTDOWN_TIMEOUT` seconds and are then cancelled: a stalled request never
holds a test or the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import yarl
from aiohttp import web

from scraper.demo.site import HITS, HitCounter, SiteSpec, body_for, build_app, prerender

if TYPE_CHECKING:
    from collections.abc import Mapping

_SHUTDOWN_TIMEOUT = 0.25  # seconds for in-flight requests to finish before they are cancelled
_THREAD_TIMEOUT = 10.0  # seconds for the server thread to start or stop before we give up
_T = TypeVar("_T")


@dataclass(frozen=True)
class RunningSite:
    """A demo site being served: where it is, what it serves, and what it was asked for."""

    url: str  # the root URL, with its trailing slash: "http://127.0.0.1:41234/"
    spec: SiteSpec
    _hits: HitCounter = field(repr=False)

    @property
    def hits(self) -> Mapping[str, int]:
        """Requests received so far per path and query ("/page/3", "/flaky/a?fail=2")."""
        return self._hits.snapshot()

    def url_for(self, path: str) -> str:
        """The absolute URL of a path on this site: url_for("/page/3")."""
        return self.url + path.removeprefix("/")

    def body_for(self, path: str) -> bytes | None:
        """The exact bytes this site serves at `path`, or None where it answers 404."""
        return body_for(self.spec, path, self.url)


@contextlib.contextmanager
def running_site(
    spec: SiteSpec, host: str = "127.0.0.1", *, prerendered: bool = False
) -> Iterator[RunningSite]:
    """Serve the site for `spec` on a free port of `host` from a daemon thread.

    The server accepts connections by the time this yields (with `prerendered`, its pages
    are rendered by then: `site.prerender`); on exit it is stopped and its thread joined,
    cancelling any request still in flight.
    """
    app = build_app(spec)
    runner = _make_runner(app)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-site", daemon=True)
    thread.start()
    try:
        url = _run_in(loop, _start(runner, host, 0))
        if prerendered:
            prerender(app, url)  # no request has the URL yet: nothing races the loop
        yield RunningSite(url, spec, app[HITS])
    finally:
        try:
            _run_in(loop, _stop(runner))
        finally:
            _stop_thread(loop, thread)


class CannotServe(Exception):
    """`serve_forever` could not start: the port was refused, or the URL could not be
    printed (whoever started the site would never learn where it is)."""


def serve_forever(
    spec: SiteSpec,
    host: str = "127.0.0.1",
    port: int = 0,
    out: TextIO = sys.stdout,
    *,
    prerendered: bool = False,
) -> None:
    """Serve the site in the foreground until SIGINT or SIGTERM, for `scrape demo-site`.

    Prints one line, "URL http://HOST:PORT/", as soon as the server accepts connections;
    with `prerendered`, once its pages for that URL are rendered too (`site.prerender`).
    Raises CannotServe when either fails.
    """
    with contextlib.suppress(KeyboardInterrupt):  # where signal handlers are not available
        asyncio.run(_serve_until_signalled(spec, host, port, out, prerendered=prerendered))


async def _serve_until_signalled(
    spec: SiteSpec, host: str, port: int, out: TextIO, *, prerendered: bool
) -> None:
    app = build_app(spec)
    runner = _make_runner(app)
    try:
        try:
            url = await _start(runner, host, port)
        except OSError as error:  # taken, or not ours to bind
            reason = os.strerror(error.errno) if error.errno else str(error)  # asyncio's is long
            raise CannotServe(f"cannot serve on port {port}: {reason}") from error
        if prerendered:
            prerender(app, url)
        try:
            print(f"URL {url}", file=out, flush=True)
        except OSError as error:
            raise CannotServe(f"cannot print the URL: {error.strerror}") from error
        await _signalled()
    finally:
        await runner.cleanup()


async def _signalled() -> None:
    """Return when SIGINT or SIGTERM arrives (wait forever where signals cannot be caught).
    One that is ignored stays ignored: the program started so (a shell's background job,
    `nohup`), or `scrape bench` serving it (`--serve-for`), which stops it itself."""
    loop = asyncio.get_running_loop()
    received = asyncio.Event()
    signals = [
        signum
        for signum in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(signum) != signal.SIG_IGN
    ]
    try:
        for signum in signals:
            loop.add_signal_handler(signum, received.set)
        await received.wait()
    except NotImplementedError:  # Windows: Ctrl-C arrives as KeyboardInterrupt instead
        await asyncio.Event().wait()
    finally:
        for signum in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)


def _make_runner(app: web.Application) -> web.AppRunner:
    # handler_cancellation: a client that gives up on /stall or /trickle frees its handler.
    return web.AppRunner(app, shutdown_timeout=_SHUTDOWN_TIMEOUT, handler_cancellation=True)


async def _start(runner: web.AppRunner, host: str, port: int) -> str:
    """Start serving and return the root URL of the address actually bound."""
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    address, bound_port = runner.addresses[0][:2]
    return str(yarl.URL.build(scheme="http", host=address, port=bound_port, path="/"))


async def _stop(runner: web.AppRunner) -> None:
    await runner.cleanup()
    # The loop resolved the host name in its default executor; end that thread too.
    await asyncio.get_running_loop().shutdown_default_executor()


def _run_in(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(_THREAD_TIMEOUT)


def _stop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(_THREAD_TIMEOUT)
    if thread.is_alive():
        raise RuntimeError("the demo site's event loop did not stop")
    loop.close()
