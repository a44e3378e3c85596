"""How fast each frontier backend is, next to how fast a crawl needs it to be.

    python -m scraper.frontier.throughput [--urls N] [--hosts H] [--links L]

Replays the frontier's part of a crawl without any network: every URL is leased,
fetched and done, and each "page" admits L links (one `add_many`, as the pipeline does;
about half are new). It prints URLs per second through the whole life cycle, and disk
bytes per URL for SQLite. A crawl on this machine does a few hundred to ~1,300 pages/s,
so a frontier must move tens of thousands of URLs per second not to be the bottleneck.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scraper.frontier.base import Admission, Frontier
from scraper.frontier.memory import MemoryFrontier
from scraper.frontier.sqlite import SQLiteFrontier
from scraper.records import Request


@dataclass(frozen=True)
class Throughput:
    backend: str
    urls: int
    seconds: float
    disk_bytes: int | None

    @property
    def urls_per_second(self) -> float:
        return self.urls / self.seconds if self.seconds > 0 else 0.0


def replay(frontier: Frontier, *, urls: int, hosts: int, links: int) -> int:
    """Drive `frontier` through a crawl of `urls` pages; return how many were finished."""
    seeds = [Request(_url(host, 0)) for host in range(hosts)]
    frontier.add_many(seeds)
    admitted, finished = hosts, 0
    while (request := frontier.next_request(timeout=0)) is not None:
        frontier.fetched(request)
        page = int(request.origin.rsplit("/", 1)[1])
        if admitted < urls:
            found = [_link(request.origin, page, n, urls) for n in range(links)]
            admitted += frontier.add_many(found).count(Admission.ADDED)
        frontier.done(request)
        finished += 1
    return finished


def measure(backend: str, *, urls: int, hosts: int, links: int, directory: Path) -> Throughput:
    state = directory / f"{backend}.sqlite"
    frontier: Frontier
    if backend == "sqlite":
        frontier = SQLiteFrontier(state, per_host=10**6, max_pages=urls)
    else:
        frontier = MemoryFrontier(per_host=10**6, max_pages=urls)
    started = time.perf_counter()
    try:
        finished = replay(frontier, urls=urls, hosts=hosts, links=links)
    finally:
        frontier.close()
    seconds = time.perf_counter() - started
    disk = state.stat().st_size if backend == "sqlite" else None
    return Throughput(backend, finished, seconds, disk)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scraper.frontier.throughput")
    parser.add_argument("--urls", type=int, default=100_000, help="pages to replay")
    parser.add_argument("--hosts", type=int, default=10, help="hosts they are spread over")
    parser.add_argument("--links", type=int, default=10, help="links found on each page")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        for backend in ("memory", "sqlite"):
            result = measure(
                backend,
                urls=options.urls,
                hosts=options.hosts,
                links=options.links,
                directory=Path(directory),
            )
            disk = (
                f", {result.disk_bytes / result.urls:.0f} disk bytes/URL"
                if result.disk_bytes
                else ""
            )
            print(
                f"{backend:>6}: {result.urls} URLs in {result.seconds:.2f} s = "
                f"{result.urls_per_second:,.0f} URLs/s through add, lease, fetched, done{disk}"
            )
    return 0


def _url(host: int, page: int) -> str:
    return f"http://host{host}.example/page/{page}"


def _link(origin: str, page: int, n: int, urls: int) -> Request:
    """Link n of a page: half point forward to new pages, half back to known ones."""
    host = origin.split("/")[2]
    target = page * 2 + n if n % 2 == 0 else max(0, page - n)
    return Request(f"http://{host}/page/{target % (urls * 4)}", 1, origin)


if __name__ == "__main__":
    raise SystemExit(main())
