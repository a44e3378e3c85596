"""The one lock-protected Stats object that every stage updates, and its frozen snapshot.

Stages call narrow verbs (`fetch_started`, `page_finished`, ...) rather than poking at
counters, so the meaning of each figure is defined here and nowhere else. Readers (the
progress display, the summary, stats.json) only ever see a `StatsSnapshot`, an immutable
value taken under the lock, so they never observe a half-updated set of counters.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class StatsSnapshot:
    """The crawl's figures at one instant. Every field is documented in README.md."""

    elapsed_s: float
    queued: int
    fetching: int
    parsing: int
    pages: int
    ok: int
    failed: int
    bytes: int
    retries: int
    skipped: Mapping[str, int]
    statuses: Mapping[str, int]
    errors: Mapping[str, int]
    fetch_time_s: float
    parse_time_s: float
    resumed_pages: int = 0  # of `pages`, those earlier runs of a resumed crawl recorded

    @property
    def pages_per_second(self) -> float:
        """This run's rate: `elapsed_s` is this run's time, so its pages only."""
        pages = self.pages - self.resumed_pages
        return pages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Mapping) else value
            for f in dataclasses.fields(self)
        }
        data["pages_per_second"] = round(self.pages_per_second, 2)
        return data


class Stats:
    """Counters and timings shared by the stages; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._stopped: float | None = None
        self._resumed_pages = 0
        self._queued = 0
        self._fetching = 0
        self._parsing = 0
        self._pages = 0
        self._ok = 0
        self._bytes = 0
        self._retries = 0
        self._fetch_time = 0.0
        self._parse_time = 0.0
        self._skipped: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    def set_queued(self, count: int) -> None:
        with self._lock:
            self._queued = count

    def fetch_started(self) -> None:
        with self._lock:
            self._fetching += 1

    def fetch_finished(self, seconds: float, *, status: int | None, size: int) -> None:
        with self._lock:
            self._fetching -= 1
            self._fetch_time += seconds
            self._bytes += size
            if status is not None:
                self._statuses[str(status)] += 1

    def retry_scheduled(self) -> None:
        with self._lock:
            self._retries += 1

    def parse_started(self) -> None:
        with self._lock:
            self._parsing += 1

    def parse_finished(self, seconds: float) -> None:
        with self._lock:
            self._parsing -= 1
            self._parse_time += seconds

    def page_finished(self, *, ok: bool, error_kind: str | None) -> None:
        with self._lock:
            self._pages += 1
            self._ok += ok
            if error_kind is not None:
                self._errors[error_kind] += 1

    def carry_page(self, record: Mapping[str, Any]) -> None:
        """Count a record an earlier run of a resumed crawl wrote (a pages.jsonl entry), so
        the figures describe the whole crawl, not only its last run."""
        error = record.get("error")
        self.page_finished(
            ok=bool(record.get("ok")), error_kind=error.get("kind") if error else None
        )
        with self._lock:
            self._resumed_pages += 1
            self._bytes += int(record.get("bytes") or 0)
            if record.get("status") is not None:
                self._statuses[str(record["status"])] += 1

    def skipped(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._skipped[reason] += count

    def start(self) -> None:
        """Start the clock as the run begins iterating, not when it was asked for."""
        with self._lock:
            self._started, self._stopped = time.monotonic(), None

    def stop(self) -> None:
        """Stop the clock as the crawl ends: every later snapshot has the same elapsed time,
        so stats.json and the summary printed after it agree."""
        with self._lock:
            self._stopped = time.monotonic()

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            now = time.monotonic() if self._stopped is None else self._stopped
            return StatsSnapshot(
                elapsed_s=round(now - self._started, 3),
                queued=self._queued,
                fetching=self._fetching,
                parsing=self._parsing,
                pages=self._pages,
                ok=self._ok,
                failed=self._pages - self._ok,
                bytes=self._bytes,
                retries=self._retries,
                skipped=MappingProxyType(dict(self._skipped)),
                statuses=MappingProxyType(dict(self._statuses)),
                errors=MappingProxyType(dict(self._errors)),
                fetch_time_s=round(self._fetch_time, 3),
                parse_time_s=round(self._parse_time, 3),
                resumed_pages=self._resumed_pages,
            )
