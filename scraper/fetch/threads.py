"""The default strategy: worker threads, each with its own requests Sessions.

Threads suit fetching because a thread waiting on a socket releases the GIL; Sessions of
its own per thread reuse connections without sharing a connection pool between threads.

The workers are daemon threads fed by a queue rather than a ThreadPoolExecutor, whose
threads the interpreter joins at exit: after Ctrl-C, a worker stuck on a slow server
must not keep the process alive for up to `timeout` seconds.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

from scraper.errors import FetchError
from scraper.fetch.base import Limits, Response
from scraper.fetch.http import Sessions
from scraper.records import Request

_Job = tuple[Request, "Future[Response]"]


class ThreadFetcher:
    def __init__(self, limits: Limits, *, workers: int) -> None:
        self._limits = limits
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._closing = threading.Lock()
        self._workers = [
            threading.Thread(target=self._work, name=f"fetch-{n}", daemon=True)
            for n in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, request: Request) -> Future[Response]:
        future: Future[Response] = Future()
        with self._closing:
            if self._closed:
                raise RuntimeError("submit() after close()")
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

    def _work(self) -> None:
        with Sessions(self._limits) as sessions:
            while (job := self._jobs.get()) is not None:
                request, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(sessions.fetch(request))
                except FetchError as error:
                    future.set_exception(error)
