"""The parse stage's executors: where `parse_page` runs, and how its results come back.

`--parse processes` (the default) runs it in a process pool, because HTML parsing is
CPU-bound Python and the GIL would serialize it in threads; `threads` and `inline` exist to
show that (`scrape bench`). Whatever the executor, a page's parse ends in a value: a
`(ParsedPage, seconds)` pair or a `ParseError` — never an exception in the collector.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from scraper.config import Config, Extractor
from scraper.errors import ParseError, ParseProcessDied
from scraper.fetch.base import Response
from scraper.parse import ParsedPage, parse_page
from scraper.workers import ignore_sigint, process_context


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
        ProcessPoolExecutor(config.parsers, mp_context=process_context(), initializer=ignore_sigint)
    )


def _started(pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """Start the pool's processes now, while the crawl fetches its first pages and
    robots.txt, rather than when the first page arrives and has to wait for them."""
    pool.submit(int)
    return pool


class InlineExecutor(Executor):
    """Runs each call at once in the caller's thread: the `--parse inline` mode."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # the future carries it, as a pool's future would
            future.set_exception(error)
        return future
