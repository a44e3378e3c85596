"""The default strategy: worker threads, each with its own requests Session.

Threads suit fetching because a thread waiting on a socket releases the GIL; one Session
per thread reuses connections without sharing a connection pool between threads.

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
from scraper.fetch.http import fetch_once, new_session
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
            if job is not None:
                job[1].cancel()
        for _ in self._workers:
            self._jobs.put(None)

    def _work(self) -> None:
        session = new_session(self._limits)
        with session:
            while (job := self._jobs.get()) is not None:
                request, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fetch_once(session, request.url, self._limits))
                except FetchError as error:
                    future.set_exception(error)
