"""The parse stage's executors: where `parse_page` runs, and how its results come back.

`--parse processes` (the default) runs it in a process pool, because HTML parsing is
CPU-bound Python and the GIL would serialize it in threads; `threads` and `inline` exist to
show that (`scrape bench`). Whatever the executor, a page's parse ends in a value: a
`(ParsedPage, seconds)` pair or a `ParseError` — never an exception in the collector.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from scraper.config import Config, Extractor
from scraper.errors import ParseError, ParseProcessDied
from scraper.fetch.base import Response
from scraper.parse import ParsedPage, parse_page


def timed_parse(
    url: str, response: Response, extract: Extractor | None
) -> tuple[ParsedPage, float]:
    """The function the parse pool runs: parse one page and say how long it took."""
    started = time.perf_counter()
    parsed = parse_page(
        url,
        response.headers.get("content-type"),
        response.body,
        extract,
        content_language=response.headers.get("content-language"),
    )
    if parsed.data is not None:
        try:
            json.dumps(parsed.data, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ParseError(f"the extraction returned what JSON cannot encode: {error}") from None
    return parsed, time.perf_counter() - started


def parse_result(
    future: Future[tuple[ParsedPage, float]],
) -> tuple[ParsedPage, float] | ParseError:
    if future.cancelled():
        return ParseError("parsing was cancelled")
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, ParseError):
        return error
    if isinstance(error, BrokenProcessPool):
        return ParseProcessDied("the parse process died on this page")
    return ParseError(f"{type(error).__name__}: {error}")


def open_parse_pool(config: Config) -> Executor:
    """The executor `--parse` asks for: processes (the default), threads, or inline."""
    if config.parse == "inline":
        return InlineExecutor()
    if config.parse == "threads":
        return ThreadPoolExecutor(config.parsers, thread_name_prefix="parse")
    return _started(
        ProcessPoolExecutor(config.parsers, mp_context=_context(), initializer=ignore_sigint)
    )


def _context() -> multiprocessing.context.BaseContext:
    """forkserver, not fork: forking a process that runs threads can copy a held lock.

    The fork server imports the parser's libraries once (lxml, bs4, charset-normalizer), and
    every parse process forks from it with them loaded, instead of importing them anew.
    """
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["scraper.parse_pool"])
    return context


def _started(pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """Start the pool's processes now, while the crawl fetches its first pages and
    robots.txt, rather than when the first page arrives and has to wait for them."""
    pool.submit(int)
    return pool


def ignore_sigint() -> None:
    """Parse processes leave Ctrl-C to the main process, which shuts them down in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class InlineExecutor(Executor):
    """Runs each call at once in the caller's thread: the `--parse inline` mode."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # the future carries it, as a pool's future would
            future.set_exception(error)
        return future
