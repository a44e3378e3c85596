"""The in-memory frontier: everything in RAM, lost when the process ends."""

from __future__ import annotations

from typing import Any

from scraper.frontier.base import Admission
from scraper.frontier.scheduled import ScheduledFrontier
from scraper.records import Request


class MemoryFrontier(ScheduledFrontier):
    """A Frontier for throwaway runs and the library: fast, but its seen-set grows with
    every URL met and nothing survives the process. `SQLiteFrontier` is the durable one.
    """

    def __init__(self, *, per_host: int, delay: float = 0.0, max_pages: int | None = None) -> None:
        super().__init__(per_host=per_host, delay=delay)
        self._max_pages = max_pages
        self._seen: set[str] = set()
        self._skips: set[str] = set()
        self._settings: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        with self._changed:
            return dict(self._settings)

    def save_settings(self, settings: dict[str, Any]) -> None:
        with self._changed:
            self._settings.update(settings)

    def _store_add(self, request: Request) -> Admission:
        if request.origin in self._seen:
            return Admission.DUPLICATE
        if self._max_pages is not None and len(self._seen) >= self._max_pages:
            return Admission.MAX_PAGES
        self._seen.add(request.origin)
        self._enqueue(request)
        return Admission.ADDED

    def _store_seen_among(self, urls: set[str]) -> set[str]:
        return urls & self._seen

    def _store_first_skips(self, urls: set[str]) -> set[str]:
        first = urls - self._skips
        self._skips |= first
        return first
