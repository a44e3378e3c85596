"""Both frontier backends: dedupe, budget, per-host slots, fairness, retries, end detection,
threads. Every test runs against MemoryFrontier and SQLiteFrontier; what only the durable
backend promises (resume, bounded RAM) is in test_frontier_sqlite.py."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scraper.frontier import Admission, Frontier, MemoryFrontier, SQLiteFrontier
from scraper.records import Request
from scraper.urls import host_of

# Generous: only reached when something is broken, never part of what is asserted.
PATIENCE = 10.0

FrontierFactory = Callable[..., Frontier]


@pytest.fixture(params=["memory", "sqlite"])
def new_frontier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FrontierFactory]:
    """Builds frontiers of one backend, and closes them after the test."""
    opened: list[Frontier] = []

    def build(**options: Any) -> Frontier:
        if request.param == "memory":
            frontier: Frontier = MemoryFrontier(**options)
        else:
            frontier = SQLiteFrontier(tmp_path / f"state-{len(opened)}.sqlite", **options)
        opened.append(frontier)
        return frontier

    yield build
    for frontier in opened:
        frontier.close()


def lease_all(frontier: Frontier) -> list[Request]:
    """Every request that can be leased right now, without waiting."""
    leased = []
    while (request := frontier.next_request(timeout=0)) is not None:
        leased.append(request)
    return leased


def finish(frontier: Frontier, request: Request) -> None:
    frontier.fetched(request)
    frontier.done(request)


def test_add_then_lease(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    request = Request("http://example.com/", depth=1, parent="http://seed.org/")
    assert frontier.add(request) is Admission.ADDED
    assert frontier.pending() == 1
    assert frontier.next_request(timeout=0) == request
    assert frontier.pending() == 0


def test_duplicates_are_detected_by_origin(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    assert frontier.add(Request("http://example.com/a")) is Admission.ADDED
    assert frontier.add(Request("http://example.com/a", depth=3)) is Admission.DUPLICATE
    assert frontier.add(Request("http://example.com/b")) is Admission.ADDED
    assert frontier.pending() == 2
    assert [r.origin for r in lease_all(frontier)] == [
        "http://example.com/a",
        "http://example.com/b",
    ]


def test_a_finished_url_stays_a_duplicate(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    frontier.add(Request("http://example.com/a"))
    finish(frontier, lease_all(frontier)[0])
    assert frontier.add(Request("http://example.com/a")) is Admission.DUPLICATE
    assert frontier.is_exhausted()


def test_max_pages_caps_admissions(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4, max_pages=2)
    assert frontier.add(Request("http://a.example/1")) is Admission.ADDED
    assert frontier.add(Request("http://a.example/2")) is Admission.ADDED
    assert frontier.add(Request("http://a.example/3")) is Admission.MAX_PAGES
    assert frontier.add(Request("http://a.example/1")) is Admission.DUPLICATE
    assert frontier.pending() == 2


def test_next_request_returns_none_after_timeout_when_empty(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    assert frontier.next_request(timeout=0) is None
    assert frontier.next_request(timeout=0.05) is None


def test_per_host_limit_until_fetched(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=2)
    for n in range(5):
        frontier.add(Request(f"http://example.com/{n}"))

    first = lease_all(frontier)
    assert len(first) == 2
    assert frontier.pending() == 3

    frontier.done(first[0])  # the lease ends, but the slot is freed by `fetched` only
    assert frontier.next_request(timeout=0) is None

    frontier.fetched(first[0])
    third = frontier.next_request(timeout=0)
    assert third is not None
    assert frontier.next_request(timeout=0) is None
    assert [r.origin for r in (*first, third)] == [f"http://example.com/{n}" for n in range(3)]


def test_per_host_limit_does_not_block_other_hosts(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=1)
    frontier.add(Request("http://busy.example/1"))
    frontier.add(Request("http://busy.example/2"))
    frontier.add(Request("http://free.example/1"))
    leased = lease_all(frontier)
    assert sorted(r.origin for r in leased) == ["http://busy.example/1", "http://free.example/1"]


def test_ports_are_separate_hosts_for_slots(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=1)
    frontier.add(Request("http://127.0.0.1:8001/a"))
    frontier.add(Request("http://127.0.0.1:8002/a"))
    assert len(lease_all(frontier)) == 2


def test_fetched_wakes_a_waiter_for_the_freed_host(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=1)
    frontier.add(Request("http://example.com/1"))
    frontier.add(Request("http://example.com/2"))
    first = frontier.next_request(timeout=0)
    assert first is not None
    got: list[Request | None] = []
    waiter = threading.Thread(target=lambda: got.append(frontier.next_request(PATIENCE)))
    waiter.start()
    frontier.fetched(first)
    waiter.join(PATIENCE)
    assert not waiter.is_alive()
    assert got == [Request("http://example.com/2")]


def test_round_robin_does_not_starve_a_small_host(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=1000)
    for n in range(100):
        frontier.add(Request(f"http://big.example/{n}"))
    frontier.add(Request("http://small.example/only"))

    first_two = [frontier.next_request(timeout=0) for _ in range(2)]
    assert {host_of(r.url) for r in first_two if r is not None} == {
        "big.example",
        "small.example",
    }
    rest = lease_all(frontier)
    assert len(rest) == 99
    assert all(host_of(r.url) == "big.example" for r in rest)


def test_round_robin_alternates_between_hosts(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=1000)
    for n in range(3):
        frontier.add(Request(f"http://a.example/{n}"))
        frontier.add(Request(f"http://b.example/{n}"))
    frontier.add(Request("http://c.example/0"))
    hosts = [host_of(r.url) for r in lease_all(frontier)]
    assert hosts[:3] == ["a.example", "b.example", "c.example"]
    assert hosts[3:] == ["a.example", "b.example", "a.example", "b.example"]


def test_reschedule_without_delay_requeues_at_once(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=1)
    frontier.add(Request("http://example.com/"))
    request = frontier.next_request(timeout=0)
    assert request is not None
    frontier.fetched(request)
    frontier.reschedule(request.retried())
    again = frontier.next_request(timeout=0)
    assert again == Request("http://example.com/", attempt=2)


def retry_later(frontier: Frontier, url: str, *, delay: float) -> None:
    """Add `url`, lease it, and send it back for a second attempt after `delay` seconds."""
    frontier.add(Request(url))
    request = frontier.next_request(timeout=0)
    assert request is not None
    frontier.fetched(request)
    frontier.reschedule(request.retried(), delay=delay)


def test_reschedule_with_delay_is_not_handed_out_before_due(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    retry_later(frontier, "http://example.com/", delay=0.2)

    assert frontier.next_request(timeout=0) is None
    assert frontier.pending() == 1
    assert not frontier.is_exhausted()

    again = frontier.next_request(timeout=PATIENCE)
    assert again is not None
    assert again.attempt == 2
    assert frontier.pending() == 0


def test_delayed_retry_does_not_hold_up_other_urls(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    retry_later(frontier, "http://example.com/retry", delay=60)
    frontier.add(Request("http://example.com/fresh"))
    fresh = frontier.next_request(timeout=0)
    assert fresh is not None
    assert fresh.origin == "http://example.com/fresh"


def test_reschedule_of_a_redirect_queues_the_new_url(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=1)
    frontier.add(Request("http://old.example/"))
    request = frontier.next_request(timeout=0)
    assert request is not None
    frontier.fetched(request)
    frontier.reschedule(request.redirected("http://new.example/"))
    hop = frontier.next_request(timeout=0)
    assert hop is not None
    assert hop.origin == "http://old.example/"
    assert hop.url == "http://new.example/"
    assert hop.redirects == ("http://old.example/",)


def test_per_host_delay_spaces_out_starts(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4, delay=0.2)
    frontier.add(Request("http://example.com/1"))
    frontier.add(Request("http://example.com/2"))
    first = frontier.next_request(timeout=0)
    assert first is not None
    assert frontier.next_request(timeout=0) is None  # at least 0.1 s (0.2 ± 50%) away
    second = frontier.next_request(timeout=PATIENCE)
    assert second is not None
    assert second.origin == "http://example.com/2"


def test_is_exhausted_only_after_every_lease_is_done(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    assert frontier.is_exhausted()
    frontier.add(Request("http://example.com/1"))
    frontier.add(Request("http://example.com/2"))
    assert not frontier.is_exhausted()

    one, two = lease_all(frontier)
    assert frontier.pending() == 0
    assert not frontier.is_exhausted()  # leased, not done
    frontier.fetched(one)
    frontier.fetched(two)
    assert not frontier.is_exhausted()  # fetched, record not yet written
    frontier.done(one)
    assert not frontier.is_exhausted()
    frontier.done(two)
    assert frontier.is_exhausted()


def test_not_exhausted_while_a_retry_waits(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    frontier.add(Request("http://example.com/"))
    request = frontier.next_request(timeout=0)
    assert request is not None
    frontier.fetched(request)
    frontier.reschedule(request.retried(), delay=60)
    assert not frontier.is_exhausted()
    assert frontier.pending() == 1


def test_close_wakes_a_blocked_consumer(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    got: list[Request | None] = [Request("http://sentinel.example/")]
    started = threading.Event()

    def consume() -> None:
        started.set()
        got[0] = frontier.next_request(timeout=3600)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    started.wait(PATIENCE)
    frontier.close()
    consumer.join(PATIENCE)
    assert not consumer.is_alive()
    assert got == [None]


def test_next_request_after_close_returns_none(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    frontier.add(Request("http://example.com/"))
    frontier.close()
    assert frontier.next_request(timeout=0) is None


def test_add_wakes_a_blocked_consumer(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    got: list[Request | None] = []
    consumer = threading.Thread(target=lambda: got.append(frontier.next_request(PATIENCE)))
    consumer.start()
    frontier.add(Request("http://example.com/"))
    consumer.join(PATIENCE)
    assert not consumer.is_alive()
    assert got == [Request("http://example.com/")]


@pytest.mark.parametrize("per_host", [1, 3])
def test_concurrent_producers_and_consumers_lose_and_duplicate_nothing(
    new_frontier: FrontierFactory, per_host: int
) -> None:
    producers, consumers, per_producer, hosts = 4, 6, 300, 7
    frontier = new_frontier(per_host=per_host)
    # Each producer adds every URL of its own range and, to exercise dedupe, half of the
    # next producer's range too.
    expected = {f"http://h{n % hosts}.example/{n}" for n in range(producers * per_producer)}
    admissions: Counter[Admission] = Counter()
    admissions_lock = threading.Lock()
    producing = threading.Barrier(producers + consumers)
    produced = threading.Event()
    leased: list[Request] = []
    leased_lock = threading.Lock()
    active = Counter[str]()
    over_limit: list[str] = []

    def produce(index: int) -> None:
        producing.wait()
        start = index * per_producer
        stop = start + per_producer + per_producer // 2
        for step in range(start, stop):
            n = step % (producers * per_producer)
            admission = frontier.add(Request(f"http://h{n % hosts}.example/{n}"))
            with admissions_lock:
                admissions[admission] += 1

    def consume() -> None:
        producing.wait()
        while not (produced.is_set() and frontier.is_exhausted()):
            request = frontier.next_request(timeout=0.05)
            if request is None:
                continue
            host = host_of(request.url)
            with leased_lock:
                leased.append(request)
                active[host] += 1
                if active[host] > per_host:
                    over_limit.append(host)
            with leased_lock:
                active[host] -= 1
            frontier.fetched(request)
            frontier.done(request)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    threads += [threading.Thread(target=consume, daemon=True) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    for thread in threads[:producers]:
        thread.join(PATIENCE)
    produced.set()
    for thread in threads:
        thread.join(PATIENCE)
        assert not thread.is_alive()

    origins = [r.origin for r in leased]
    assert len(origins) == len(set(origins)), "a URL was handed out twice"
    assert set(origins) == expected, "a URL was lost"
    assert admissions[Admission.ADDED] == len(expected)
    assert admissions[Admission.DUPLICATE] == producers * (per_producer // 2)
    assert over_limit == []
    assert frontier.is_exhausted()
    assert frontier.pending() == 0


def test_seen_among_answers_for_a_whole_page_of_links(new_frontier: FrontierFactory) -> None:
    frontier = new_frontier(per_host=4)
    known = [f"http://example.com/{n}" for n in range(0, 1200, 2)]
    frontier.add_many([Request(url) for url in known])
    asked = [f"http://example.com/{n}" for n in range(1200)]  # more than one SQL batch
    assert frontier.seen_among(asked) == set(known)
    assert frontier.seen_among([]) == set()
