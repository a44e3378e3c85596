"""The reference strategy: one attempt at a time, in the caller's thread.

The lock keeps it one at a time even when two threads submit (the dispatcher, and a timer
thread retrying a robots.txt or following its redirect), which also keeps its Sessions
single-threaded.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from scraper.fetch.base import Limits, Response
from scraper.fetch.http import Sessions
from scraper.records import Request


class SequentialFetcher:
    def __init__(self, limits: Limits, *, workers: int = 1) -> None:
        del workers  # one at a time is the point of this strategy
        self._sessions = Sessions(limits)
        self._one_at_a_time = threading.Lock()

    def submit(self, request: Request) -> Future[Response]:
        future: Future[Response] = Future()
        with self._one_at_a_time:
            try:
                future.set_result(self._sessions.fetch(request))
            except Exception as error:  # as in the threads strategy: it ends the attempt
                future.set_exception(error)
        return future

    def close(self) -> None:
        self._sessions.close()
