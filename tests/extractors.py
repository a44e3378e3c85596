"""Extraction functions for the crawl tests.

They live in a real module, not in a test file, because the parse pool sends the extraction
function to its worker processes by name: a worker must be able to import it. pytest puts
this directory on sys.path (tests/ has no __init__.py), and the forkserver that starts the
parse processes inherits that sys.path.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

FAILING_SUFFIX = "/page/1"
FAILURE_TEXT = "extractor refuses this page"
STALLING_SUFFIX = "/page/3"


def headings(soup: Any, url: str) -> dict[str, Any]:
    """The page's <h1> texts, its URL, and the id of the process that ran the extraction."""
    return {
        "h1": [tag.get_text(strip=True) for tag in soup.find_all("h1")],
        "url": url,
        "pid": os.getpid(),
    }


def fails_on_page_1(soup: Any, url: str) -> str:
    """Raise on /page/1 only, so the test can see the crawl go on past the failure."""
    if url.endswith(FAILING_SUFFIX):
        raise RuntimeError(FAILURE_TEXT)
    return "fine"


def exits_on_page_1(soup: Any, url: str) -> str:
    """Call sys.exit on /page/1: a BaseException, which `except Exception` lets through."""
    if url.endswith(FAILING_SUFFIX):
        sys.exit(FAILURE_TEXT)
    return "fine"


class OwnBaseException(BaseException):
    """A BaseException of the user's own, neither Exception nor KeyboardInterrupt."""


class Unprintable(Exception):
    """An exception whose text cannot be had: its __str__ raises."""

    def __str__(self) -> str:
        raise Unprintable


def raises_its_own_base_exception_on_page_1(soup: Any, url: str) -> str:
    if url.endswith(FAILING_SUFFIX):
        raise OwnBaseException(FAILURE_TEXT)
    return "fine"


def raises_the_unprintable_on_page_1(soup: Any, url: str) -> str:
    if url.endswith(FAILING_SUFFIX):
        raise Unprintable
    return "fine"


LOADS = 0  # in each process: how often a CountsItsLoads was unpickled there


class CountsItsLoads:
    """An extraction whose data is how often it was unpickled in the process running it."""

    def __init__(self) -> None:
        self.name = "counts its loads"  # some state, so that unpickling calls __setstate__

    def __setstate__(self, state: dict[str, Any]) -> None:
        global LOADS  # noqa: PLW0603 (the point of it: a count per process)
        LOADS += 1
        self.__dict__.update(state)

    def __call__(self, soup: Any, url: str) -> int:
        return LOADS


counts_its_loads = CountsItsLoads()


def returns_a_set(soup: Any, url: str) -> set[str]:
    """A value JSON cannot encode."""
    return {url}


def nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def nested_to_the_limit(soup: Any, url: str) -> list[Any]:
    """As deep as data may nest (parse_pool.MAX_DATA_DEPTH)."""
    return nested(200)


def nested_near_the_recursion_limit(soup: Any, url: str) -> list[Any]:
    """Deep enough for JSON to encode in the parse process, and not in the collector as it
    wrote the record, a few frames deeper."""
    return nested(975)


def dies_on_page_1(soup: Any, url: str) -> str:
    """Kill the parse process on /page/1, as a segfault or the OOM killer would."""
    if url.endswith(FAILING_SUFFIX):
        os._exit(1)
    return "fine"


def title_string(soup: Any, url: str) -> Any:
    """bs4's own string object: it passes as a str, but pickled it drags its whole tree."""
    return soup.title.string if soup.title else None


def stalls_on_page_3(soup: Any, url: str) -> str:
    """Take ten minutes over /page/3, as an extraction stuck on a slow service would."""
    if url.endswith(STALLING_SUFFIX):
        time.sleep(600)
    return "fine"
