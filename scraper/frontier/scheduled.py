"""What every frontier backend shares: hosts taking turns, politeness, timed retries, waiting.

A backend decides how URLs are *stored* (a set and deques in RAM, rows in SQLite); this
base class decides in which *order* they are handed out, under one lock:

    per-host queues ──round-robin over hosts whose politeness slot is free──► next_request
          ▲   ▲
          │   └── refilled from the backend's storage when a host's queue runs dry
          └────── retries, once their due time has come (a heap ordered by due time)

A backend keeps at most a small batch per host in RAM when it has storage of its own
(`_stored` counts the rest), so the frontier's memory grows with the number of hosts,
not with the number of URLs.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from scraper.frontier.base import Admission
from scraper.politeness import HostSlots
from scraper.records import Request
from scraper.urls import host_of


class ScheduledFrontier:
    """The Frontier interface, less storage. Subclasses implement the `_store_*` hooks,
    which are always called with the lock held."""

    def __init__(self, *, per_host: int, delay: float = 0.0) -> None:
        self._slots = HostSlots(per_host=per_host, delay=delay)
        self._queues: dict[str, deque[Request]] = {}
        self._stored: Counter[str] = Counter()  # queued URLs held only in storage, per host
        self._turns: deque[str] = deque()  # hosts with queued URLs, in serving order
        self._waiting: list[tuple[float, int, Request]] = []
        self._tiebreak = itertools.count()
        self._queued = 0  # in RAM and in storage
        self._leased = 0
        self._closed = False
        self._changed = threading.Condition(threading.Lock())

    # -- the Frontier interface -----------------------------------------------------------

    def add(self, request: Request) -> Admission:
        with self._changed:
            admission = self._store_add(request)
            self._changed.notify()
            return admission

    def add_many(self, requests: Iterable[Request]) -> list[Admission]:
        """Admit a page's links together; they are durable when this returns."""
        with self._changed:
            admissions = [self._store_add(request) for request in requests]
            self._store_commit()
            self._changed.notify_all()
            return admissions

    def seen_among(self, urls: Iterable[str]) -> set[str]:
        with self._changed:
            return self._store_seen_among(set(urls))

    def first_skips(self, urls: Iterable[str]) -> set[str]:
        """The URLs reported skipped for the first time, so skipped.jsonl lists each once."""
        with self._changed:
            return self._store_first_skips(set(urls))

    def skips_logged(self, urls: Iterable[str]) -> None:
        with self._changed:
            self._store_skips_logged(list(urls))

    def set_delay(self, host: str, seconds: float) -> None:
        with self._changed:
            self._slots.set_delay(host, seconds)

    def next_request(self, timeout: float) -> Request | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                self._release_due(now)
                request = self._take_ready(now)
                if request is not None:
                    self._store_leased(request)
                    return request
                wait = min(deadline, self._next_wakeup(now)) - now
                if wait <= 0:
                    return None
                self._changed.wait(wait)
            return None

    def fetched(
        self,
        request: Request,
        *,
        throttled: bool = False,
        sent: bool = True,
        started_at: float = float("inf"),
    ) -> None:
        with self._changed:
            host, now = host_of(request.url), time.monotonic()
            self._slots.finish(host, now, throttled=throttled, sent=sent, started_at=started_at)
            self._changed.notify_all()

    def reschedule(self, request: Request, *, delay: float = 0.0) -> None:
        with self._changed:
            self._leased -= 1
            if delay > 0:
                due = time.monotonic() + delay
                heapq.heappush(self._waiting, (due, next(self._tiebreak), request))
            else:
                self._enqueue(request)
            self._changed.notify_all()

    def done(self, request: Request) -> None:
        with self._changed:
            self._leased -= 1
            self._store_done(request)
            self._changed.notify_all()

    def pending(self) -> int:
        with self._changed:
            return self._queued + len(self._waiting)

    def is_exhausted(self) -> bool:
        with self._changed:
            return not (self._queued or self._waiting or self._leased)

    def close(self) -> None:
        with self._changed:
            if not self._closed:
                self._closed = True
                self._store_close()
            self._changed.notify_all()

    # -- for backends ---------------------------------------------------------------------

    def _enqueue(self, request: Request) -> None:
        """Queue `request` in RAM, behind its host's other queued URLs."""
        self._queue_of(host_of(request.url)).append(request)
        self._queued += 1

    def _enqueue_stored(self, host: str, count: int = 1) -> None:
        """Count `count` URLs of `host` that storage holds; `_store_load` will fetch them."""
        self._queue_of(host)
        self._stored[host] += count
        self._queued += count

    def _buffered(self, host: str) -> int:
        return len(self._queues.get(host, ()))

    def _store_add(self, request: Request) -> Admission:
        raise NotImplementedError

    def _store_seen_among(self, urls: set[str]) -> set[str]:
        raise NotImplementedError

    def _store_first_skips(self, urls: set[str]) -> set[str]:
        raise NotImplementedError

    def _store_skips_logged(self, urls: list[str]) -> None:
        """`urls`, first skips, are in skipped.jsonl."""

    def _store_load(self, host: str) -> list[Request]:
        """The next stored URLs of `host`, oldest first (only called when some are stored)."""
        raise NotImplementedError

    def _store_leased(self, request: Request) -> None:
        """`request` was handed to a fetcher."""

    def _store_done(self, request: Request) -> None:
        """`request`'s record is written."""

    def _store_commit(self) -> None:
        """Make what was stored so far durable."""

    def _store_close(self) -> None:
        """Release the storage."""

    # -- scheduling -----------------------------------------------------------------------

    def _queue_of(self, host: str) -> deque[Request]:
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = deque()
            self._turns.append(host)
        return queue

    def _take_ready(self, now: float) -> Request | None:
        """Lease the first URL of the first host, in turn order, that may start now."""
        for _ in range(len(self._turns)):
            host = self._turns[0]
            self._turns.rotate(-1)
            if not self._slots.can_start(host, now):
                continue
            queue = self._queues[host]
            if not queue:
                self._refill(host, queue)
            request = queue.popleft()
            if not queue and not self._stored[host]:
                del self._queues[host]
                del self._stored[host]
                self._turns.pop()  # the host just rotated to the end
            self._queued -= 1
            self._leased += 1
            self._slots.start(host, now)
            return request
        return None

    def _refill(self, host: str, queue: deque[Request]) -> None:
        batch = self._store_load(host)
        if not batch:
            raise RuntimeError(f"storage lost the queued URLs of {host}")
        self._stored[host] -= len(batch)
        queue.extend(batch)

    def _release_due(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            _, _, request = heapq.heappop(self._waiting)
            self._enqueue(request)

    def _next_wakeup(self, now: float) -> float:
        """The soonest time something could change without another thread calling us."""
        candidates = [self._waiting[0][0]] if self._waiting else []
        candidates += (
            start for host in self._turns if (start := self._slots.next_start(host)) > now
        )
        return min(candidates, default=float("inf"))
