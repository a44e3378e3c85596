"""The in-memory frontier: a queue per host, served round-robin, and a heap of retries."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque

from scraper.frontier.base import Admission
from scraper.politeness import HostSlots
from scraper.records import Request
from scraper.urls import host_of


class MemoryFrontier:
    """A Frontier that keeps its state in RAM; it is lost when the process ends.

    Hosts take turns (round-robin over the hosts with queued URLs), so one big host
    cannot starve the others; a host without a free politeness slot is passed over
    without holding anyone up.
    """

    def __init__(self, *, per_host: int, delay: float = 0.0, max_pages: int | None = None) -> None:
        self._slots = HostSlots(per_host=per_host, delay=delay)
        self._max_pages = max_pages
        self._seen: set[str] = set()
        self._queues: dict[str, deque[Request]] = {}
        self._turns: deque[str] = deque()
        self._waiting: list[tuple[float, int, Request]] = []
        self._tiebreak = itertools.count()
        self._queued = 0
        self._leased = 0
        self._closed = False
        self._changed = threading.Condition(threading.Lock())

    def add(self, request: Request) -> Admission:
        with self._changed:
            if request.origin in self._seen:
                return Admission.DUPLICATE
            if self._max_pages is not None and len(self._seen) >= self._max_pages:
                return Admission.MAX_PAGES
            self._seen.add(request.origin)
            self._enqueue(request)
            self._changed.notify()
            return Admission.ADDED

    def has_seen(self, url: str) -> bool:
        with self._changed:
            return url in self._seen

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
                    return request
                wait = min(deadline, self._next_wakeup(now)) - now
                if wait <= 0:
                    return None
                self._changed.wait(wait)
            return None

    def fetched(self, request: Request, *, throttled: bool = False, sent: bool = True) -> None:
        with self._changed:
            host, now = host_of(request.url), time.monotonic()
            self._slots.finish(host, now, throttled=throttled, sent=sent)
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
            self._changed.notify_all()

    def pending(self) -> int:
        with self._changed:
            return self._queued + len(self._waiting)

    def is_exhausted(self) -> bool:
        with self._changed:
            return not (self._queued or self._waiting or self._leased)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _enqueue(self, request: Request) -> None:
        host = host_of(request.url)
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = deque()
            self._turns.append(host)
        queue.append(request)
        self._queued += 1

    def _take_ready(self, now: float) -> Request | None:
        """Lease the first URL of the first host, in turn order, that may start now."""
        for _ in range(len(self._turns)):
            host = self._turns[0]
            self._turns.rotate(-1)
            if not self._slots.can_start(host, now):
                continue
            queue = self._queues[host]
            request = queue.popleft()
            if not queue:
                del self._queues[host]
                self._turns.pop()  # the host just rotated to the end
            self._queued -= 1
            self._leased += 1
            self._slots.start(host, now)
            return request
        return None

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
