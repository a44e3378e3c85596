"""The process strategy: each attempt runs in a worker process with requests Sessions of its own.

    submit() ──► ProcessPoolExecutor (forkserver) ──► worker: Sessions.fetch(request)
    Future ◄──── settled from the pool's future: Response, FetchError, or "the worker died"

Fetching is I/O-bound, so processes mostly add start-up and pickling costs; the strategy is
here to measure that (`scrape bench`). Requests and Responses are plain values and every
FetchError pickles, so a worker's answer or error reaches the caller unchanged.

A worker that dies (killed, out of memory) breaks the whole pool: every attempt in it fails
with a `connect` FetchError, which the fetch policy retries, and the next submit builds a
new pool. close() cancels what has not finished and terminates the workers, since a worker
waiting on a stalled server would otherwise hold the interpreter at exit for `timeout`.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from scraper.errors import ErrorKind, FetchError, TransportError
from scraper.fetch.base import Limits, Response
from scraper.records import Request
from scraper.workers import preload_for, process_context, start_child, terminate_pool

if TYPE_CHECKING:
    from scraper.fetch.http import Sessions

_sessions: Sessions | None = None  # a worker process's own, made when the worker starts


def _start_worker(crawl: int, limits: Limits) -> None:
    """Each worker makes its own Sessions once; `crawl` is the main process (`start_child`).

    requests is imported here, in the worker (its fork server has it loaded already), not
    by this module: the main process of a `processes` crawl never sends a request itself,
    and importing requests there (≈ 70 ms) delayed the crawl's first one. Ctrl-C is left to
    the main process before that import, which takes a while where a worker does it itself
    (spawn).
    """
    global _sessions  # noqa: PLW0603 - one set of Sessions per worker process, for its lifetime
    start_child(crawl)
    from scraper.fetch.http import Sessions  # noqa: PLC0415

    _sessions = Sessions(limits)


def _fetch_in_worker(request: Request) -> Response:
    assert _sessions is not None, "_start_worker runs first in every worker"
    return _sessions.fetch(request)


class ProcessFetcher:
    def __init__(self, limits: Limits, *, workers: int) -> None:
        self._limits = limits
        self._workers = workers
        self._lock = threading.Lock()  # guards the pool, the pending set and `closed`
        self._closed = False
        self._pending: set[Future[Response]] = set()
        self._pool = self._new_pool()

    def submit(self, request: Request) -> Future[Response]:
        future: Future[Response] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("submit() after close()")
            job = self._submit_to_pool(request)
            self._pending.add(future)
        future.add_done_callback(functools.partial(_cancel_if_cancelled, job))
        job.add_done_callback(functools.partial(self._settle, future))
        return future

    def close(self) -> None:
        """Cancel every unfinished attempt and stop the workers without waiting; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()
        terminate_pool(self._pool)

    def _submit_to_pool(self, request: Request) -> Future[Response]:
        try:
            return self._pool.submit(_fetch_in_worker, request)
        except BrokenProcessPool:  # a worker died earlier: start afresh
            self._pool.shutdown(wait=False)
            self._pool = self._new_pool()
            return self._pool.submit(_fetch_in_worker, request)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers,
            mp_context=process_context(preload_for("processes")),
            initializer=_start_worker,
            initargs=(os.getpid(), self._limits),
        )

    def _settle(self, future: Future[Response], job: Future[Response]) -> None:
        """Pass the pool's outcome on, as a FetchError whatever went wrong."""
        with self._lock:
            self._pending.discard(future)
        if job.cancelled():
            future.cancel()
        # Called once per future, here: for a cancelled one it wakes concurrent.futures.wait(),
        # which counts a cancelled future as done only once it is notified.
        if not future.set_running_or_notify_cancel():
            return
        error = job.exception()
        if error is None:
            future.set_result(job.result())
        else:
            future.set_exception(_as_fetch_error(error))


def _cancel_if_cancelled(job: Future[Response], future: Future[Response]) -> None:
    if future.cancelled():
        job.cancel()


def _as_fetch_error(error: BaseException) -> FetchError:
    if isinstance(error, FetchError):
        return error
    # BrokenProcessPool: the worker died with this attempt in it (or queued behind it).
    message = f"the fetch process was lost: {type(error).__name__}: {error}"
    return TransportError(message, ErrorKind.CONNECT)
