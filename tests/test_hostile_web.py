"""Polite and unbreakable on the real web: the crawler end to end against hostile routes.

Every test crawls the demo site on 127.0.0.1 (scraper.demo.hostile has the misbehaving
routes) through `crawl`, or through the CLI's `main` in-process, and checks the documented
outcome in the records, the output files and the stats, and what the server saw: the app
logs every request with its arrival and end times (`GET /log`). Waits are checked from the
server's side, as lower bounds only; the one upper bound is a generous hang guard.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonl import read_jsonl

from scraper import Page, cli, crawl
from scraper.config import FETCH_STRATEGIES
from scraper.demo import ENCODING_TITLES, RunningSite, SiteSpec, running_site
from scraper.demo.hostile import ESCAPE_HREFS
from scraper.fetch.policy import RETRY_AFTER_CAP

FAST = {"backoff": 0.01, "backoff_cap": 0.05, "timeout": 5.0, "parse": "inline"}
SLACK = 0.03  # seconds of clock and scheduling noise allowed in a lower bound
HANG_GUARD = 30.0  # seconds: far above any wait these crawls may make, far below a real one
HTTP_TIMEOUT = (2, 5)  # the test's own requests to the server: connect, read


# -- helpers -------------------------------------------------------------------------------


def run_crawl(urls: list[str], **options: Any) -> dict[str, Page]:
    pages = list(crawl(urls, **{**FAST, **options}))
    index = {page.url: page for page in pages}
    assert len(index) == len(pages), "a URL was recorded more than once"
    return index


def run_cli(*args: str) -> int:
    """`scrape ARGS --quiet` in-process; the SIGINT handler it installs is put back."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        return cli.main([*args, "--quiet"])
    finally:
        signal.signal(signal.SIGINT, handler)


def write_list(directory: Path, *urls: str) -> Path:
    path = directory / "list.txt"
    path.write_text("".join(f"{url}\n" for url in urls), encoding="utf-8")
    return path


def server_log(site: RunningSite, path: str | None = None) -> list[dict[str, Any]]:
    """The server's request log (every request, or those for one path and query)."""
    params = {} if path is None else {"path": path}
    response = requests.get(site.url_for("/log"), params=params, timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


def records_by_url(output: Path) -> dict[str, dict[str, Any]]:
    records = read_jsonl(output / "pages.jsonl")
    index = {record["url"]: record for record in records}
    assert len(index) == len(records), "a URL was recorded more than once"
    return index


def stats_of(output: Path) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads((output / "stats.json").read_text(encoding="utf-8"))
    return stats


def error_kind(record: Page | dict[str, Any]) -> str | None:
    error = record.error if isinstance(record, Page) else record["error"]
    return error["kind"] if error else None


def files_under(root: Path) -> set[Path]:
    return {Path(folder, name) for folder, _, names in os.walk(root) for name in names}


@pytest.fixture
def quiet_site() -> Iterator[RunningSite]:
    """A demo site of its own whose request log holds only what one test asked for."""
    with running_site(SiteSpec(pages=12, fanout=3, latency_ms=300)) as site:
        yield site


# -- retries and Retry-After ---------------------------------------------------------------


def test_429_with_retry_after_seconds_waits_then_succeeds(demo_site, tmp_path):
    path = "/flaky/retry-after-seconds?fail=1&status=429&retry_after=1"
    url = demo_site.url_for(path)
    pages = run_crawl([url], retries=2, output=tmp_path)

    page = pages[url]
    assert (page.ok, page.status, page.error, page.attempts) == (True, 200, None, 2)
    assert records_by_url(tmp_path)[url]["attempts"] == 2
    log = server_log(demo_site, path)
    assert len(log) == 2
    first, second = log
    assert second["start"] - first["end"] >= 1.0 - SLACK  # Retry-After: 1 is a minimum
    stats = stats_of(tmp_path)
    assert stats["retries"] == 1
    assert stats["statuses"]["429"] == 1


def test_retry_after_as_an_http_date_is_honoured(demo_site, tmp_path):
    # The date is 3 s ahead, truncated to whole seconds: at least 2 s after the first
    # request, longer than the 1 s a host that answers 429 is slowed by anyway.
    path = "/flaky/retry-after-date?fail=1&status=429&retry_after_date=3"
    url = demo_site.url_for(path)
    pages = run_crawl([url], retries=2, output=tmp_path)

    page = pages[url]
    assert (page.ok, page.status, page.error, page.attempts) == (True, 200, None, 2)
    log = server_log(demo_site, path)
    assert len(log) == 2
    first, second = log
    promised = math.floor(first["wall"] + 3)  # no later than the date the server sent
    assert second["wall"] >= promised - SLACK
    assert second["start"] - first["start"] >= 2.0 - SLACK


def test_503_twice_then_200_succeeds_on_the_third_attempt(demo_site, tmp_path):
    path = "/flaky/twice?fail=2&status=503"
    url = demo_site.url_for(path)
    pages = run_crawl([url], retries=2, output=tmp_path)

    page = pages[url]
    assert (page.ok, page.status, page.error, page.attempts) == (True, 200, None, 3)
    record = records_by_url(tmp_path)[url]
    assert (record["ok"], record["status"], record["attempts"]) == (True, 200, 3)
    assert record["title"] == "Flaky twice: ok"
    assert demo_site.hits[path] == 3
    stats = stats_of(tmp_path)
    assert stats["retries"] == 2
    assert stats["statuses"]["503"] == 2
    assert (stats["ok"], stats["failed"]) == (1, 0)


def test_permanent_500_fails_after_its_retries_and_the_cli_exits_1(demo_site, tmp_path):
    path = "/status/500?permanent"
    url = demo_site.url_for(path)
    output = tmp_path / "output"
    status = run_cli(str(write_list(tmp_path, url)), "-o", str(output), "--retries", "2")

    assert status == 1
    record = records_by_url(output)[url]
    assert record["ok"] is False
    assert record["status"] == 500
    assert record["error"] == {"kind": "http", "message": "500 Internal Server Error"}
    assert record["attempts"] == 3  # retries + 1
    assert record["path"] is None  # only 2xx bodies are saved
    assert demo_site.hits[path] == 3
    stats = stats_of(output)
    assert stats["errors"] == {"http": 1}
    assert stats["statuses"]["500"] == 3
    assert stats["retries"] == 2


def test_retry_after_above_the_cap_ends_the_url_at_once(demo_site, tmp_path):
    path = "/flaky/retry-after-cap?fail=1&status=429&retry_after=86400"
    url = demo_site.url_for(path)
    started = time.monotonic()
    pages = run_crawl([url], retries=2, output=tmp_path)

    assert time.monotonic() - started < HANG_GUARD
    page = pages[url]
    assert (page.ok, page.status, page.attempts) == (False, 429, 1)
    assert error_kind(page) == "http"
    assert demo_site.hits[path] == 1
    assert records_by_url(tmp_path)[url]["attempts"] == 1
    assert stats_of(tmp_path)["retries"] == 0
    message = page.error["message"] if page.error else ""
    assert "Retry-After" in message, message  # says why it was not retried ...
    assert f"{RETRY_AFTER_CAP:g}" in message, message  # ... and what the cap is


# -- broken transfers ----------------------------------------------------------------------


def test_connection_reset_mid_body_is_retried_then_recorded_as_connect(demo_site, tmp_path):
    path = "/reset?bytes=8192"
    url = demo_site.url_for(path)
    retries = 1
    pages = run_crawl([url], retries=retries, output=tmp_path)

    page = pages[url]
    assert (page.ok, page.status, page.final_url) == (False, None, None)
    assert error_kind(page) == "connect"  # README: "broke off mid-response"
    assert page.attempts == retries + 1
    assert demo_site.hits[path] == retries + 1
    record = records_by_url(tmp_path)[url]
    assert (record["bytes"], record["sha256"], record["path"]) == (0, None, None)
    stats = stats_of(tmp_path)
    assert stats["errors"] == {"connect": 1}
    assert stats["retries"] == retries


@pytest.mark.parametrize("fetch", FETCH_STRATEGIES)
def test_a_brotli_bomb_stops_at_max_bytes(demo_site, tmp_path, fetch):
    # 14 bytes on the wire, 10 MiB once inflated: brotli is a dependency, so every strategy
    # decodes br, and the cap on the decompressed stream stops it.
    url = demo_site.url_for(f"/brotli-bomb?{fetch}")
    max_bytes = 1 << 20
    pages = run_crawl([url], retries=0, max_bytes=max_bytes, output=tmp_path, fetch=fetch)

    page = pages[url]
    assert demo_site.hits[f"/brotli-bomb?{fetch}"] == 1
    assert (page.ok, error_kind(page), page.bytes, page.path) == (False, "too_large", 0, None)


# -- decoding ------------------------------------------------------------------------------


def test_pages_in_many_encodings_get_their_titles_right(demo_site, tmp_path):
    # Header charset, <meta charset>, http-equiv, a BOM, a label browsers remap, no
    # declaration at all, and invalid bytes (U+FFFD), parsed in the process pool.
    urls = {name: demo_site.url_for(f"/encoding/{name}") for name in ENCODING_TITLES}
    pages = run_crawl(list(urls.values()), parse="processes", parsers=2, output=tmp_path)

    assert {name: pages[url].title for name, url in urls.items()} == ENCODING_TITLES
    assert all(page.ok and page.content_type == "text/html" for page in pages.values())
    records = records_by_url(tmp_path)
    assert {name: records[url]["title"] for name, url in urls.items()} == ENCODING_TITLES


# -- politeness across hosts ---------------------------------------------------------------


def test_a_slow_host_does_not_starve_a_fast_one(tmp_path):
    # Two ports are two hosts. The slow one could fill every worker but the politeness
    # limit keeps it to 2 of the 3: the fast host's pages go on in the third.
    with (
        running_site(SiteSpec(pages=12, fanout=3, latency_ms=400)) as slow,
        running_site(SiteSpec(pages=12, fanout=3)) as fast,
    ):
        pages = list(
            crawl([slow.url, fast.url], **FAST, depth=10, workers=3, per_host=2, output=tmp_path)
        )

    assert all(page.ok for page in pages), [page.url for page in pages if not page.ok]
    hosts = ["fast" if page.url.startswith(fast.url) else "slow" for page in pages]
    assert hosts.count("fast") == hosts.count("slow") == 12 + 3  # pages and files
    last_fast = max(index for index, host in enumerate(hosts) if host == "fast")
    slow_before = hosts[:last_fast].count("slow")
    # The fast host's 15 URLs take a fraction of a second; the slow host's take about 3.5 s
    # (0.4 s each, 2 at a time). Taking turns one for one would finish them together.
    assert slow_before <= hosts.count("slow") // 4, hosts
    assert [record["url"] for record in read_jsonl(tmp_path / "pages.jsonl")] == [
        page.url for page in pages
    ]


def test_per_host_limit_and_delay_hold_over_a_whole_crawl(quiet_site, tmp_path):
    output = tmp_path / "output"
    urls = write_list(tmp_path, quiet_site.url)
    status = run_cli(
        str(urls), "-o", str(output), "--depth", "5", "--workers", "8", "--per-host", "2",
        "--delay", "0.2", "--parse", "threads",
    )  # fmt: skip

    assert status == 0
    records = records_by_url(output)
    assert len(records) == 12 + 3  # pages and files; /private/secret is robots-disallowed
    log = server_log(quiet_site)
    assert len(log) == len(records) + 1  # and robots.txt, once
    assert max(entry["in_flight"] for entry in log) == 2  # reached, never exceeded
    starts = sorted(entry["start"] for entry in log)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 0.2 * 0.5 - SLACK  # --delay 0.2, jittered by ±50% at most


# -- robots.txt ----------------------------------------------------------------------------


def test_robots_txt_500_denies_the_listed_urls_and_nothing_else_is_requested(fresh_site, tmp_path):
    answer = requests.post(fresh_site.url_for("/robots-status?status=500"), timeout=HTTP_TIMEOUT)
    answer.raise_for_status()
    listed = [fresh_site.url, fresh_site.url_for("/page/1"), fresh_site.url_for("/page/2")]
    output = tmp_path / "output"
    status = run_cli(
        str(write_list(tmp_path, *listed)), "-o", str(output), "--depth", "1", "--retries", "1"
    )

    assert status == 1
    records = records_by_url(output)
    assert set(records) == set(listed)
    for record in records.values():
        assert (record["ok"], record["status"], record["attempts"]) == (False, None, 0)
        assert error_kind(record) == "robots"
        assert "500" in record["error"]["message"]
    assert fresh_site.hits == {"/robots-status?status=500": 1, "/robots.txt": 2}  # retried once
    assert read_jsonl(output / "skipped.jsonl") == []
    assert stats_of(output)["errors"] == {"robots": 3}


# -- the output directory ------------------------------------------------------------------


def test_hostile_paths_write_nothing_outside_the_output_directory(demo_site, tmp_path, monkeypatch):
    # The crawl runs from tmp_path with a relative output three levels down: a path that
    # climbed out of files/ by up to four levels would still land under tmp_path, here.
    monkeypatch.chdir(tmp_path)
    output = Path("a", "b", "output")
    root = demo_site.url_for("/escape/")
    urls = write_list(tmp_path, root)
    before = files_under(tmp_path)
    status = run_cli(str(urls), "-o", str(output), "--depth", "1", "--parse", "inline")

    created = files_under(tmp_path) - before
    outside = sorted(str(path) for path in created if not path.is_relative_to(tmp_path / output))
    assert outside == []
    records = records_by_url(output)
    failed = {url for url, record in records.items() if not record["ok"]}
    # Only the links whose dot segments resolve above /escape/ miss (404 there).
    assert failed == {
        demo_site.url_for("/escaped-dots"),
        demo_site.url_for("/escaped-encoded-dots"),
    }
    assert status == 1
    saved = [record["path"] for record in records.values() if record["path"] is not None]
    assert len(saved) == len(ESCAPE_HREFS) - len(failed) + 1  # every good body, the root too
    assert len(set(saved)) == len(saved)  # never two URLs onto one file
    files = (tmp_path / output / "files").resolve()
    for path in saved:
        assert (tmp_path / output / path).resolve().is_relative_to(files), path
        assert (tmp_path / output / path).is_file(), path
    assert not [path for path in created if path.name.startswith("_tmp-")]  # no leftovers
