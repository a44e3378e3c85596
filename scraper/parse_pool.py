"""The parse stage's executors: where a fetched HTML page is saved and parsed, and how the
result comes back.

`--parse processes` (the default) runs it in a process pool, because HTML parsing is
CPU-bound Python and the GIL would serialize it in threads; `threads` and `inline` exist to
show that (`scrape bench`). Whatever the executor, a page's parse ends in a value, a
`PageWork` or a `ParseError`, never an exception in the collector. The one exception is
OutputError: a body that cannot be saved (a full disk) ends the crawl.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

from scraper.config import Config, Extractor
from scraper.errors import (
    ConfigError,
    OutputError,
    ParseError,
    ParseProcessDied,
    ScraperError,
    described,
)
from scraper.fetch.base import Response
from scraper.records import ParsedPage
from scraper.sinks import FileStore
from scraper.workers import (
    START_FAILURES,
    preload_for,
    process_context,
    start_child,
    start_failure,
    terminate_pool,
)

_log = logging.getLogger(__name__)
# Levels of lists and objects an extraction's data may nest. JSON's encoders recurse, and
# data that the parse process could encode took the collector past Python's recursion
# limit as it wrote the record, a few frames deeper: the crawl ended in RecursionError.
MAX_DATA_DEPTH = 200


@dataclass(frozen=True, slots=True)
class PageWork:
    """What the parse stage made of one page: its body's digest, where the body was saved,
    and its parse."""

    sha256: str
    saved: str | None
    parsed: ParsedPage | ParseError
    seconds: float  # spent parsing


def save_and_parse(
    url: str, origin: str, response: Response, extract: Extractor | None, files: FileStore | None
) -> PageWork:
    """The function the parse pool runs: save the body under `origin`, then parse it as `url`.

    The page is saved here rather than in the collector because creating a file costs
    kernel time (0.2 ms to over a millisecond a file on this project's test machine); in
    the pool that time runs beside the collector instead of inside it. Its digest is taken
    here too: in the collector, hashing a 45 KB page took 0.7 ms of its time, a tenth of
    it hashing and the rest getting the GIL back from the fetch threads (hashlib lets it
    go). A failed save raises OutputError. A failed parse is a value, so the record still
    names the saved file.
    """
    sha256 = hashlib.sha256(response.body).hexdigest()
    saved = str(files.save(origin, response.body)) if files is not None else None
    started = time.perf_counter()
    try:
        parsed: ParsedPage | ParseError = _parse(url, response, extract)
    except Exception as error:  # a parse never takes the crawl down: it becomes the record's
        parsed = _as_parse_error(error)
    return PageWork(sha256, saved, parsed, time.perf_counter() - started)


def save_and_parse_all(
    pages: list[tuple[str, str, Response]], extract: Extractor | None, files: FileStore | None
) -> list[PageWork]:
    """`save_and_parse` for each `(url, origin, response)` of a batch, in one hand-off."""
    return [
        save_and_parse(url, origin, response, extract, files) for url, origin, response in pages
    ]


def save_and_parse_in_process(
    pages: list[tuple[str, str, Response]], files: FileStore | None
) -> list[PageWork]:
    """`save_and_parse_all` in a parse process, with the extraction function it loaded as
    it started (`_start_parser`). One it could not load (ConfigError) ends the crawl."""
    if _EXTRACTION.failure is not None:
        raise ConfigError(_EXTRACTION.failure)
    return save_and_parse_all(pages, _EXTRACTION.function, files)


@dataclass
class _Extraction:
    """A parse process's extraction function, or why it could not be loaded."""

    function: Extractor | None = None
    failure: str | None = None


_EXTRACTION = _Extraction()  # set once in each parse process, as it starts


def _parse(url: str, response: Response, extract: Extractor | None) -> ParsedPage:
    # Imported here: the main process imports this module for ParseStage, and needs the
    # parser (lxml, w3lib: ≈ 30 ms and 5 MB) only when it parses itself (inline, threads).
    from scraper.parse import parse_page  # noqa: PLC0415

    parsed = parse_page(
        url,
        response.headers.get("content-type"),
        response.body,
        extract,
        content_language=response.headers.get("content-language"),
    )
    if parsed.data is None:
        return parsed
    if _nested_deeper(parsed.data, MAX_DATA_DEPTH):
        raise ParseError(f"the extraction returned data nested deeper than {MAX_DATA_DEPTH} levels")
    try:
        encoded = json.dumps(parsed.data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ParseError(f"the extraction returned what JSON cannot encode: {error}") from None
    # Plain values from here on: a bs4 string passes as a str but pickles its whole tree.
    return replace(parsed, data=json.loads(encoded))


def _nested_deeper(value: Any, levels: int) -> bool:
    """Whether the dicts, lists and tuples in `value` (what JSON encodes as objects and
    arrays) nest deeper than `levels`. Looked at without recursion, unlike the encoders."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if level > levels:
            return True
        pending.extend((child, level + 1) for child in children)
    return False


def _as_parse_error(error: BaseException) -> ParseError:
    if isinstance(error, ParseError):
        return error
    if isinstance(error, BrokenProcessPool):
        return ParseProcessDied("the parse process died on this page")
    return ParseError(described(error))


class ParseStage:
    """The parse stage of one crawl: the executor `--parse` asks for, which it replaces
    with a new one when a parse process dies (that breaks a process pool for good).
    The pipeline hands it batches without knowing what runs them."""

    def __init__(self, config: Config) -> None:
        """Open the executor in a thread of its own and return at once.

        Starting a process pool means waiting for a fork server to boot and for each child
        to be forked (60-150 ms here). In the crawl's thread that wait came between the
        first answers and the next requests: on a fast server the root page went out
        90-130 ms after robots.txt instead of 11-15. Opened beside the crawl, the pool starts
        while robots.txt and the first pages are fetched, and only the first batch waits
        for what is left of its start.
        """
        self._config = config
        self._executor: Executor | None = None
        self._opening: Future[Executor] = Future()
        self._asked = False  # whether a batch has asked for the executor (and so learnt
        # why there is none, when its start failed)
        # Not a daemon, even when the crawl runs in one: the pool's own threads inherit
        # that, and must be joined at exit (see workers.terminate_pool).
        starter = threading.Thread(target=self._open, name="parse-pool-start", daemon=False)
        try:
            starter.start()
        except RuntimeError:  # no thread to spare: open it here, and wait
            self._open()

    def _open(self) -> None:
        try:
            self._opening.set_result(open_parse_pool(self._config))
        except BaseException as error:  # the crawl's thread raises it, in `_opened`
            self._opening.set_exception(error)

    def _opened(self) -> Executor:
        """The executor, once its start is over; raises what made the start fail."""
        self._asked = True
        if self._executor is None:
            self._executor = self._opening.result()
        return self._executor

    def submit(
        self, pages: list[tuple[str, str, Response]], files: FileStore | None
    ) -> Future[list[PageWork]] | None:
        """Start `save_and_parse_all` on a batch. None when the pool had broken: a new one
        is started, and the batch is for the caller to send again."""
        executor = self._opened()
        job = (
            functools.partial(save_and_parse_in_process, pages, files)
            if isinstance(executor, _ParseProcesses)
            else functools.partial(save_and_parse_all, pages, self._config.extract, files)
        )
        try:
            try:
                return executor.submit(job)
            except RuntimeError:
                # A pool that breaks while submit runs: its manager thread marks it broken,
                # then shut down, without the lock submit holds, so submit may see only the
                # latter. Asked again, a broken pool says so; anything else is raised again.
                return executor.submit(job)
        except BrokenProcessPool:
            _refuse_a_pool_that_never_ran(executor)
            _log.warning("a parse process died; starting a new parse pool")
            if isinstance(executor, ProcessPoolExecutor):
                terminate_pool(executor)
            self._executor = open_parse_pool(self._config)
            return None

    @staticmethod
    def result(future: Future[list[PageWork]]) -> list[PageWork] | ParseError:
        """A finished batch as a value. Raises what ends the crawl: OutputError if a page
        could not be saved, ConfigError if the parse processes could not load the
        extraction function. (Processes that died as they started are found by the next
        `submit`, which knows the pool.)"""
        if future.cancelled():
            return ParseError("parsing was cancelled")
        error = future.exception()
        if error is None:
            return future.result()
        if isinstance(error, OutputError | ConfigError):
            raise error
        return _as_parse_error(error)

    def shutdown(self, *, abandon: bool = False) -> None:
        """Wait for the batches being parsed; drop those not started. A pool that could not
        start has nothing left to stop (`_started` ended what it had started); its error
        ended the crawl with the first batch, or, when no page needed parsing, is logged.

        `abandon` (a crawl that ends with pages still being parsed: stopped, closed early,
        failed) ends the parse processes instead of waiting for their batches, whose
        results nobody would collect: a slow extraction, or a page the parser spins on,
        held the crawl's end for as long as it took. Parse threads cannot be ended: they
        are still waited for.

        A Ctrl-C while the pool is still starting leaves the pool to be ended by the thread
        starting it, once started. Before, in a program that embeds the crawl and goes on
        after the Ctrl-C, its processes ran on, idle, until the program exited.
        """
        try:
            error = self._opening.exception()
        except BaseException:
            self._opening.add_done_callback(_end_once_started)
            raise
        if error is not None:
            if not self._asked:
                _log.warning("%s", error)
            return
        executor = self._opened()
        if abandon and isinstance(executor, ProcessPoolExecutor):
            terminate_pool(executor)
        else:
            executor.shutdown(wait=True, cancel_futures=True)


def _end_once_started(opening: Future[Executor]) -> None:
    """End a pool whose crawl stopped waiting for it while it started."""
    if opening.exception() is not None:
        return
    executor = opening.result()
    if isinstance(executor, ProcessPoolExecutor):
        terminate_pool(executor)
    else:
        executor.shutdown(wait=False, cancel_futures=True)


def open_parse_pool(config: Config) -> Executor:
    """The executor `--parse` asks for: processes (the default), threads, or inline."""
    if config.parse in ("inline", "threads"):
        importlib.import_module("scraper.parse")  # now, rather than with the first page
    if config.parse == "inline":
        return InlineExecutor()
    if config.parse == "threads":
        return ThreadPoolExecutor(config.parsers, thread_name_prefix="parse")
    extract = None if config.extract is None else pickle.dumps(config.extract)
    pool = _ParseProcesses(
        config.parsers,
        mp_context=process_context(preload_for(config.fetch)),
        initializer=_start_parser,
        initargs=(os.getpid(), extract),
    )
    pool.start(config.parsers)
    return pool


def _start_parser(crawl: int, extract: bytes | None) -> None:
    """Runs first in every parse process: the parser is imported now, as the process
    starts, rather than with its first page, and the extraction function is loaded once
    (it was sent with every batch: a callable holding 50 MB made 30 pages take 1.5 s).

    Loaded here, one that cannot be found in this process (a function defined under `if
    __name__ == "__main__":` pickles by its name, which the process, running the script
    again as `__mp_main__`, never defines) is a message for the crawl to end with, where
    unpickling it with each batch killed the process: every page failed to parse."""
    start_child(crawl)
    importlib.import_module("scraper.parse")
    if extract is None:
        return
    try:
        _EXTRACTION.function = pickle.loads(extract)
    except Exception as error:
        _EXTRACTION.failure = (
            f"the parse processes cannot load the extraction function ({described(error)}):"
            " it must be defined at the top level of a module, outside `if __name__ =="
            ' "__main__":`, or parse must be "threads" or "inline"'
        )


class _ParseProcesses(ProcessPoolExecutor):
    """The parse pool of `--parse processes`, which knows whether its processes ever ran."""

    _warmups: list[Future[int]]

    def start(self, processes: int) -> None:
        """Start the pool's processes now, while the crawl fetches its first pages and
        robots.txt, rather than when pages arrive and have to wait for them. The pool
        starts a process for a call that finds none idle, so one call each starts them all.

        Raises ScraperError when the system refuses a process (see START_FAILURES): the
        crawl ends with that message, and the processes already started are ended."""
        try:
            self._warmups = [self.submit(int) for _ in range(processes)]
        except START_FAILURES as error:
            terminate_pool(self)
            raise start_failure("parse processes", error) from error

    def never_ran(self) -> bool:
        """Whether no process of the pool ever ran a call: the start-up calls go first, so
        a pool that broke before any of them ended did not break on a page."""
        return not any(
            call.done() and not call.cancelled() and call.exception() is None
            for call in self._warmups
        )


def _refuse_a_pool_that_never_ran(executor: Executor) -> None:
    """Raise ScraperError when `executor`, now broken, is a parse pool whose processes
    died as they started: a new pool would die alike, and every page be blamed for it."""
    if isinstance(executor, _ParseProcesses) and executor.never_ran():
        raise ScraperError(
            "the parse processes died as they started (their messages are above); a"
            " script that crawls runs again in each of them, so its crawl must be under"
            ' `if __name__ == "__main__":`'
        ) from None


class InlineExecutor(Executor):
    """Runs each call at once in the caller's thread: the `--parse inline` mode."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # the future carries it, as a pool's future would
            future.set_exception(error)
        return future
