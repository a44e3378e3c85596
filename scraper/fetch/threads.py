"""The default strategy: worker threads, each with its own requests Sessions.

Threads suit fetching because a thread waiting on a socket releases the GIL; Sessions of
its own per thread reuse connections without sharing a connection pool between threads.

The workers are daemon threads fed by a queue rather than a ThreadPoolExecutor, whose
threads the interpreter joins at exit: after Ctrl-C, a worker stuck on a slow server
must not keep the process alive for up to `timeout` seconds. As in a ThreadPoolExecutor, a
worker is started when a job finds none idle: starting all of them up front put about
25-100 ms (32 thread starts, each waiting for its thread to run) before a crawl's first
request, which is its robots.txt and so on every crawl's critical path.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from scraper.fetch.base import Limits, Response
from scraper.fetch.http import Sessions
from scraper.records import Request

_Job = tuple[Request, "Future[Response]"]


class ThreadFetcher:
    def __init__(self, limits: Limits, *, workers: int) -> None:
        self._limits = limits
        self._size = workers
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one count per worker waiting for a job
        self._closed = False
        self._closing = threading.Lock()  # guards `_closed` and `_workers`
        self._workers: list[threading.Thread] = []

    def submit(self, request: Request) -> Future[Response]:
        future: Future[Response] = Future()
        with self._closing:
            if self._closed:
                raise RuntimeError("submit() after close()")
            self._start_a_worker_unless_one_is_idle()
            self._jobs.put((request, future))
        return future

    def close(self) -> None:
        """Cancel queued jobs and let each worker finish its current one on its own."""
        with self._closing:
            self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:  # never seen by a worker, so notify here as a worker would:
                job[1].cancel()  # concurrent.futures.wait() counts only notified cancellations
                job[1].set_running_or_notify_cancel()
        for _ in self._workers:
            self._jobs.put(None)

    def _start_a_worker_unless_one_is_idle(self) -> None:
        """Before the job is queued: when no thread can start (a process limit), submit
        raises and nothing is left queued to be fetched for a future nobody holds, unless
        workers already run; they will take the job."""
        if self._idle.acquire(blocking=False) or len(self._workers) >= self._size:
            return
        worker = threading.Thread(
            target=self._work, name=f"fetch-{len(self._workers)}", daemon=True
        )
        try:
            worker.start()
        except RuntimeError:
            if not self._workers:
                raise
            return
        self._workers.append(worker)

    def _work(self) -> None:
        """Fetch jobs until close(). A worker whose Sessions cannot be made fails each job
        it takes with that error: a worker that died instead would leave its job's future
        unanswered, and the crawl waiting for it forever."""
        try:
            sessions = Sessions(self._limits)
        except Exception as error:
            self._serve(functools.partial(_refuse, error))
            return
        with sessions:
            self._serve(sessions.fetch)

    def _serve(self, fetch: Callable[[Request], Response]) -> None:
        while (job := self._jobs.get()) is not None:
            _run(fetch, *job)
            # Idle only once the future's callbacks have run, as in ThreadPoolExecutor:
            # a callback that waits for another fetch gets a thread of its own.
            self._idle.release()


def _run(fetch: Callable[[Request], Response], request: Request, future: Future[Response]) -> None:
    """One attempt; whatever it raises ends it (a FetchError, or a fault of ours or of the
    environment, which the caller records as a `protocol` error): never the worker."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fetch(request))
    except Exception as error:
        future.set_exception(error)


def _refuse(error: Exception, request: Request) -> Response:
    # Raised afresh for each job: raised as it is, it would gather every earlier raise's
    # frames in its traceback.
    raise error.with_traceback(None)
