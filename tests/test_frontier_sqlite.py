"""What only the durable frontier promises: its state survives the process, and its RAM stays
bounded per host. The behaviour both backends share is tested in test_frontier.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scraper.errors import OutputError
from scraper.frontier import Admission, SQLiteFrontier
from scraper.frontier.sqlite import BATCH
from scraper.records import Request
from scraper.urls import host_of

A, B = "http://a.example", "http://b.example"

Opener = Callable[..., SQLiteFrontier]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


@pytest.fixture
def open_state(state: Path) -> Iterator[Opener]:
    """Opens the same state file as often as a test likes (one open at a time, as a crawl
    does: a run, then the run that resumes it); closes whatever is still open at the end."""
    opened: list[SQLiteFrontier] = []

    def reopen(**options: Any) -> SQLiteFrontier:
        for frontier in opened:
            frontier.close()
        opened.clear()
        options.setdefault("per_host", 4)
        frontier = SQLiteFrontier(state, **options)
        opened.append(frontier)
        return frontier

    yield reopen
    for frontier in opened:
        frontier.close()


def lease_one_at_a_time(frontier: SQLiteFrontier) -> list[Request]:
    """Every queued request, each freed from its host's slot as soon as it is leased, so the
    per-host limit never stops the draining (the leases themselves stay open)."""
    leased = []
    while (request := frontier.next_request(timeout=0)) is not None:
        frontier.fetched(request)
        leased.append(request)
    return leased


def origins(requests: list[Request]) -> list[str]:
    return [request.origin for request in requests]


# -- reopening ---------------------------------------------------------------------------


def test_reopening_gives_back_leases_that_were_not_done(open_state: Opener) -> None:
    frontier = open_state()
    for n in range(4):
        frontier.add(Request(f"{A}/{n}", depth=min(n, 1), parent=f"{A}/0" if n else None))
    finished, cut_short, *_ = lease_one_at_a_time(frontier)
    frontier.done(finished)
    assert frontier.pending() == 0

    frontier = open_state()  # the run died with /1, /2 and /3 leased
    assert frontier.pending() == 3
    assert not frontier.is_exhausted()
    again = lease_one_at_a_time(frontier)
    assert origins(again) == [f"{A}/1", f"{A}/2", f"{A}/3"]
    assert again[0] == cut_short, "depth and parent survive the reopen"
    assert f"{A}/0" not in origins(again), "a done URL is not handed out again"


def test_a_done_url_is_never_handed_out_again(open_state: Opener) -> None:
    frontier = open_state()
    frontier.add(Request(f"{A}/only"))
    (request,) = lease_one_at_a_time(frontier)
    frontier.done(request)
    assert frontier.is_exhausted()

    frontier = open_state()
    assert frontier.pending() == 0
    assert frontier.is_exhausted()
    assert frontier.next_request(timeout=0) is None


def test_a_seen_url_stays_a_duplicate_after_reopening(open_state: Opener) -> None:
    frontier = open_state()
    frontier.add(Request(f"{A}/queued"))
    frontier.add(Request(f"{A}/done"))
    frontier.add(Request(f"{A}/leased"))
    queued, done, leased = (f"{A}/queued", f"{A}/done", f"{A}/leased")
    requests = {request.origin: request for request in lease_one_at_a_time(frontier)}
    frontier.done(requests[done])

    frontier = open_state()
    for url in (queued, done, leased):
        assert url in frontier.seen_among([url])
        assert frontier.add(Request(url, depth=2)) is Admission.DUPLICATE
    assert f"{A}/new" not in frontier.seen_among([f"{A}/new"])
    assert frontier.add(Request(f"{A}/new")) is Admission.ADDED


def test_unfinished_work_survives_several_reopenings(open_state: Opener) -> None:
    urls = [f"{A}/{n}" for n in range(10)]
    frontier = open_state()
    for url in urls:
        frontier.add(Request(url))
    finished: list[str] = []
    for _ in range(3):  # each run finishes two URLs and dies holding the rest
        leased = lease_one_at_a_time(frontier)
        for request in leased[:2]:
            frontier.done(request)
            finished.append(request.origin)
        frontier = open_state()
    rest = origins(lease_one_at_a_time(frontier))
    assert sorted(finished + rest) == sorted(urls)
    assert len(set(finished + rest)) == len(urls)


# -- the RAM batch -----------------------------------------------------------------------


def test_fifo_per_host_survives_the_ram_batch_boundary(open_state: Opener) -> None:
    frontier = open_state()
    added: dict[str, list[str]] = {A: [], B: []}
    for n in range(5 * BATCH):
        for site in (A, B) if n % 3 else (A,):  # interleaved, B a little smaller
            url = f"{site}/{n}"
            assert frontier.add(Request(url)) is Admission.ADDED
            added[site].append(url)
    assert frontier.pending() == len(added[A]) + len(added[B])

    leased = origins(lease_one_at_a_time(frontier))
    for site, urls in added.items():
        assert [url for url in leased if url.startswith(site)] == urls
    assert len(leased) == len(set(leased)) == len(added[A]) + len(added[B])
    assert frontier.pending() == 0


def test_fifo_per_host_after_reopening_spans_several_batches(open_state: Opener) -> None:
    urls = [f"{A}/{n}" for n in range(3 * BATCH + 5)]
    frontier = open_state()
    for url in urls:
        frontier.add(Request(url))

    frontier = open_state()  # everything is on disk now, nothing in RAM
    assert origins(lease_one_at_a_time(frontier)) == urls


def test_ram_holds_at_most_a_batch_per_host(open_state: Opener) -> None:
    """White-box: reads the private `_buffered(host)` (requests of a host queued in RAM),
    the one place the bound is observable without measuring the process's memory."""
    frontier = open_state()
    hosts = [host_of(A), host_of(B)]
    for n in range(10 * BATCH):
        frontier.add(Request(f"{A}/{n}"))
        frontier.add(Request(f"{B}/{n}"))
        assert max(frontier._buffered(host) for host in hosts) <= BATCH
    assert frontier.pending() == 20 * BATCH
    assert min(frontier._buffered(host) for host in hosts) > 0

    leased = 0
    while (request := frontier.next_request(timeout=0)) is not None:
        frontier.fetched(request)
        frontier.done(request)
        leased += 1
        assert max(frontier._buffered(host) for host in hosts) <= BATCH
    assert leased == 20 * BATCH
    assert frontier.is_exhausted()


def test_ram_stays_bounded_after_reopening(open_state: Opener) -> None:
    """White-box, as above: a reopened state with many pending rows loads one batch at a time."""
    frontier = open_state()
    frontier.add_many(Request(f"{A}/{n}") for n in range(4 * BATCH))
    frontier = open_state()
    first = frontier.next_request(timeout=0)
    assert first is not None
    assert frontier._buffered(host_of(A)) <= BATCH
    assert frontier.pending() == 4 * BATCH - 1


# -- settle: the records on disk win ---------------------------------------------------


def test_settle_marks_recorded_urls_done(open_state: Opener) -> None:
    urls = [f"{A}/{n}" for n in range(5)]
    frontier = open_state()
    for url in urls:
        frontier.add(Request(url))
    lease_one_at_a_time(frontier)  # died with all five leased; three had records written

    frontier = open_state()
    frontier.settle(urls[:3])
    assert frontier.pending() == 2
    assert origins(lease_one_at_a_time(frontier)) == urls[3:]

    frontier = open_state()  # and the settling itself is durable
    assert frontier.pending() == 2
    assert origins(lease_one_at_a_time(frontier)) == urls[3:]


def test_settle_of_a_url_the_state_lost_makes_it_seen_and_done(open_state: Opener) -> None:
    """A record can outlive the state (a power cut lost the last commits): it still counts."""
    frontier = open_state()
    frontier.settle([f"{A}/recorded"])
    assert f"{A}/recorded" in frontier.seen_among([f"{A}/recorded"])
    assert frontier.add(Request(f"{A}/recorded")) is Admission.DUPLICATE
    assert frontier.is_exhausted()


def test_settle_marks_skipped_urls_as_logged(open_state: Opener) -> None:
    frontier = open_state()
    frontier.settle([], [f"{B}/offsite", f"{B}/robots"])
    assert frontier.first_skips([f"{B}/offsite", f"{B}/robots"]) == set()
    assert frontier.first_skips([f"{B}/other", f"{B}/robots", f"{B}/other"]) == {f"{B}/other"}
    assert frontier.first_skips([f"{B}/other"]) == set()
    frontier.skips_logged([f"{B}/other"])

    frontier = open_state()
    assert frontier.first_skips([f"{B}/offsite", f"{B}/robots", f"{B}/other"]) == set()


def test_a_skip_is_stored_only_once_logged(open_state: Opener) -> None:
    """A crash between first_skips and writing skipped.jsonl must not leave the skip stored
    but not logged, whatever commits meanwhile (here: closing commits everything)."""
    frontier = open_state()
    assert frontier.first_skips([f"{B}/logged", f"{B}/crashed"]) == {
        f"{B}/logged",
        f"{B}/crashed",
    }
    frontier.skips_logged([f"{B}/logged"])
    frontier.close()

    frontier = open_state()
    assert frontier.first_skips([f"{B}/logged", f"{B}/crashed"]) == {f"{B}/crashed"}


# -- settings and the page budget -------------------------------------------------------


def test_settings_round_trip_across_reopening(open_state: Opener) -> None:
    frontier = open_state()
    assert frontier.settings() == {}
    saved = {
        "depth": 3,
        "max_pages": None,
        "allow_domains": ["a.example", "b.example"],
        "ignore_robots": False,
        "scope_hosts": ["a.example"],
    }
    frontier.save_settings(saved)

    frontier = open_state()
    assert frontier.settings() == saved
    frontier.save_settings({"scope_hosts": ["a.example", "www.a.example"]})

    frontier = open_state()
    assert frontier.settings() == {**saved, "scope_hosts": ["a.example", "www.a.example"]}


def test_max_pages_counts_admissions_across_reopening(open_state: Opener) -> None:
    frontier = open_state(max_pages=3)
    assert frontier.add(Request(f"{A}/1")) is Admission.ADDED
    assert frontier.add(Request(f"{A}/2")) is Admission.ADDED
    (first, _) = lease_one_at_a_time(frontier)
    frontier.done(first)

    frontier = open_state(max_pages=3)
    assert frontier.add(Request(f"{A}/3")) is Admission.ADDED
    assert frontier.add(Request(f"{A}/4")) is Admission.MAX_PAGES
    assert frontier.add(Request(f"{A}/1")) is Admission.DUPLICATE

    frontier = open_state(max_pages=3)
    assert frontier.add(Request(f"{B}/5")) is Admission.MAX_PAGES
    assert frontier.pending() == 2  # /2 (a lease given back) and /3


# -- a state that cannot be opened -------------------------------------------------------


@pytest.mark.parametrize("where", ["missing directory", "parent is a file", "not a database"])
def test_an_unusable_state_path_raises_output_error(tmp_path: Path, where: str) -> None:
    if where == "missing directory":
        path = tmp_path / "no-such-dir" / "state.sqlite"
    elif where == "parent is a file":
        (tmp_path / "a-file").write_text("not a directory\n")
        path = tmp_path / "a-file" / "state.sqlite"
    else:
        path = tmp_path / "state.sqlite"
        path.write_bytes(b"this is not an SQLite database, just text\n" * 100)
    with pytest.raises(OutputError) as raised:
        SQLiteFrontier(path, per_host=4).close()
    assert str(path) in str(raised.value)


def test_a_state_file_is_one_crawls_at_a_time(state: Path) -> None:
    """A second crawl on the state would give itself the first one's leases as a dead
    run's, and fetch and record its URLs again; it soon died of "database is locked"."""
    first = SQLiteFrontier(state, per_host=4)
    try:
        first.add(Request(f"{A}/1"))
        with pytest.raises(OutputError, match="in use by another crawl"):
            SQLiteFrontier(state, per_host=4)
        assert first.next_request(timeout=0) is not None  # the first goes on
    finally:
        first.close()
    again = SQLiteFrontier(state, per_host=4)
    again.close()


def test_urls_forgotten_by_the_ram_cache_are_still_known_from_disk(
    open_state: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the most recent URLs are remembered in RAM; older ones are asked of the table,
    so a URL met long ago is still a duplicate and still skipped only once."""
    monkeypatch.setattr("scraper.frontier.sqlite.RECENT", 4)
    frontier = open_state()
    urls = [f"{A}/{n}" for n in range(20)]  # five times what RAM remembers
    assert frontier.add_many([Request(url) for url in urls]) == [Admission.ADDED] * 20
    skips = [f"{B}/{n}" for n in range(20)]
    assert frontier.first_skips(skips[:10]) == set(skips[:10])
    frontier.skips_logged(skips[:10])
    assert frontier.first_skips(skips) == set(skips[10:])
    frontier.skips_logged(skips[10:])

    assert frontier.seen_among([*urls, f"{A}/new"]) == set(urls)
    assert frontier.add(Request(urls[0])) is Admission.DUPLICATE
    assert frontier.first_skips(skips) == set()
    assert frontier.add(Request(f"{A}/new")) is Admission.ADDED


def test_a_new_state_answers_from_ram_until_it_forgets(
    open_state: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While RAM holds every stored URL (a new state, nothing forgotten yet), what it lacks
    is not stored either: the links a page brings cost no query. A reopened state, or one
    that has forgotten, asks the table again."""
    monkeypatch.setattr("scraper.frontier.sqlite.RECENT", 4)
    frontier = open_state()
    queries: list[str] = []
    frontier.add_many([Request(f"{A}/{n}") for n in range(3)])
    frontier._db.set_trace_callback(queries.append)
    assert frontier.seen_among([f"{A}/0", f"{A}/new"]) == {f"{A}/0"}
    assert frontier.first_skips([f"{B}/offsite"]) == {f"{B}/offsite"}
    assert [query for query in queries if query.startswith("SELECT")] == []

    frontier.add_many([Request(f"{A}/{n}") for n in range(3, 12)])  # RAM forgets some
    queries.clear()
    assert frontier.seen_among([f"{A}/0", f"{A}/new"]) == {f"{A}/0"}
    assert any(query.startswith("SELECT url FROM urls") for query in queries)

    frontier = open_state()
    queries = []
    frontier._db.set_trace_callback(queries.append)
    assert frontier.seen_among([f"{A}/1", f"{A}/new"]) == {f"{A}/1"}
    assert any(query.startswith("SELECT url FROM urls") for query in queries)
