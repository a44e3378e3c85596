"""Stats: exact counts under concurrent updates, and frozen, independent snapshots."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from scraper.stats import Stats, StatsSnapshot

THREADS = 8
UPDATES = 5000


def hammer(stats: Stats, worker: int, start: threading.Barrier) -> None:
    start.wait()
    for n in range(UPDATES):
        stats.fetch_started()
        stats.fetch_finished(0.001, status=200 if n % 2 else 404, size=3)
        stats.page_finished(ok=n % 2 == 1, error_kind=None if n % 2 else "http")
        if n % 5 == 0:
            stats.retry_scheduled()
            stats.skipped("duplicate")
        stats.parse_started()
        stats.parse_finished(0.002)
    stats.skipped(f"worker-{worker}")


def test_counters_are_exact_after_concurrent_updates() -> None:
    stats = Stats()
    start = threading.Barrier(THREADS)
    threads = [threading.Thread(target=hammer, args=(stats, n, start)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    snap = stats.snapshot()
    total = THREADS * UPDATES
    assert snap.pages == total
    assert snap.ok == total // 2
    assert snap.failed == total // 2
    assert snap.bytes == 3 * total
    assert snap.fetching == 0
    assert snap.parsing == 0
    assert snap.retries == THREADS * (UPDATES // 5)
    assert snap.statuses == {"200": total // 2, "404": total // 2}
    assert snap.errors == {"http": total // 2}
    assert snap.skipped["duplicate"] == THREADS * (UPDATES // 5)
    assert all(snap.skipped[f"worker-{n}"] == 1 for n in range(THREADS))
    assert snap.fetch_time_s == pytest.approx(0.001 * total, rel=1e-3)
    assert snap.parse_time_s == pytest.approx(0.002 * total, rel=1e-3)


def test_in_flight_gauges_go_up_and_down() -> None:
    stats = Stats()
    stats.fetch_started()
    stats.fetch_started()
    stats.parse_started()
    stats.set_queued(7)
    snap = stats.snapshot()
    assert (snap.fetching, snap.parsing, snap.queued) == (2, 1, 7)
    stats.fetch_finished(0.5, status=None, size=0)
    stats.parse_finished(0.25)
    snap = stats.snapshot()
    assert (snap.fetching, snap.parsing) == (1, 0)
    assert snap.statuses == {}  # no response, no status
    assert snap.fetch_time_s == 0.5
    assert snap.parse_time_s == 0.25


def test_snapshot_is_frozen() -> None:
    snap = Stats().snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.pages = 10  # type: ignore[misc]


def test_snapshot_mappings_are_read_only() -> None:
    # "readers only ever see an immutable value": a snapshot's per-status/error/skip tables
    # are part of that value, so a reader must not be able to change them either.
    stats = Stats()
    stats.fetch_finished(0.1, status=200, size=1)
    snap = stats.snapshot()
    with pytest.raises(TypeError):
        snap.statuses["200"] = 99  # type: ignore[index]


def test_snapshot_is_independent_of_later_updates() -> None:
    stats = Stats()
    stats.fetch_started()
    stats.fetch_finished(0.1, status=200, size=10)
    stats.page_finished(ok=True, error_kind=None)
    stats.skipped("offsite")
    before = stats.snapshot()

    stats.fetch_started()
    stats.fetch_finished(0.1, status=500, size=5)
    stats.page_finished(ok=False, error_kind="http")
    stats.skipped("offsite")
    stats.retry_scheduled()
    after = stats.snapshot()

    assert (before.pages, before.ok, before.failed, before.bytes) == (1, 1, 0, 10)
    assert before.statuses == {"200": 1}
    assert before.errors == {}
    assert before.skipped == {"offsite": 1}
    assert before.retries == 0
    assert (after.pages, after.ok, after.failed, after.bytes) == (2, 1, 1, 15)
    assert after.statuses == {"200": 1, "500": 1}
    assert after.skipped == {"offsite": 2}
    assert after.retries == 1


def test_to_json_has_every_field_and_pages_per_second() -> None:
    stats = Stats()
    stats.page_finished(ok=True, error_kind=None)
    snap = stats.snapshot()
    data = snap.to_json()
    field_names = {f.name for f in dataclasses.fields(StatsSnapshot)}
    assert field_names <= set(data)
    assert "pages_per_second" in data
    assert isinstance(data["pages_per_second"], float)
    assert data["pages_per_second"] >= 0
    json.dumps(data)  # plain JSON-able values


def test_pages_per_second_is_pages_over_elapsed() -> None:
    snap = dataclasses.replace(Stats().snapshot(), pages=30, elapsed_s=4.0)
    assert snap.pages_per_second == 7.5
    assert snap.to_json()["pages_per_second"] == 7.5


def test_pages_per_second_is_zero_when_no_time_elapsed() -> None:
    snap = dataclasses.replace(Stats().snapshot(), pages=5, elapsed_s=0.0)
    assert snap.pages_per_second == 0.0
