"""The Crawler end to end: real HTTP on 127.0.0.1 against the demo site.

Every crawl here runs with zero retry backoff and short timeouts, so nothing waits long and
nothing can hang; no assertion bounds wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import json
import multiprocessing
import os
import queue
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import extractors
import pytest
from jsonl import read_jsonl
from processes import GRACE, loaded_by_import, python, settled, wait_for

import scraper
from scraper import Config, Crawler, Page, crawl
from scraper.demo import (
    MAILTO_URL,
    OFFSITE_URL,
    PRIVATE_PATH,
    SiteSpec,
    file_paths,
    page_paths,
    running_site,
)
from scraper.errors import ConfigError, OutputError, ScraperError
from scraper.fetch import Response
from scraper.frontier import SQLiteFrontier
from scraper.frontier.scheduled import ScheduledFrontier
from scraper.parse_pool import InlineExecutor, ParseStage, open_parse_pool
from scraper.pipeline import LEASES_PER_WORKER, PARSE_BACKLOG, PARSE_BATCH, _ParseJob, _Run
from scraper.records import Request
from scraper.sinks import CrawlOutput
from scraper.stats import Stats
from scraper.urls import canonicalize
from scraper.workers import terminate_pool

FAST = {"backoff": 0, "timeout": 10.0, "parsers": 2}
DEEP = 50  # deeper than any demo site used here
CRAWL_THREAD = ("fetch-", "dispatch", "parse")
DOCUMENTED_FIELDS = [
    "url",
    "final_url",
    "status",
    "ok",
    "error",
    "content_type",
    "bytes",
    "sha256",
    "path",
    "depth",
    "parent",
    "fetched_at",
    "elapsed_ms",
    "attempts",
    "redirects",
    "title",
    "links",
    "text_chars",
    "meta",
    "data",
]
ERROR_KINDS = {kind.value for kind in scraper.ErrorKind}


# -- helpers -------------------------------------------------------------------------------


def run_crawl(urls: list[str], **options: Any) -> list[Page]:
    return list(crawl(urls, **{**FAST, **options}))


def by_url(pages: list[Page]) -> dict[str, Page]:
    index = {page.url: page for page in pages}
    assert len(index) == len(pages), "a URL was recorded more than once"
    return index


def site_paths(site: Any) -> list[str]:
    """Every URL a full crawl of the site records (/private/ is disallowed by robots.txt)."""
    return [*page_paths(site.spec), *file_paths(site.spec)]


def page_hits(site: Any) -> dict[str, int]:
    """The server's hit counts, less the one robots.txt request every crawl makes first."""
    hits = dict(site.hits)
    assert hits.pop("/robots.txt", 0) <= 1
    return hits


def allowed_links(page: Page, site: Any) -> set[str]:
    """The on-site links of `page` that robots.txt lets the crawl follow."""
    private = site.url_for(PRIVATE_PATH)
    return {link for link in page.links if link.startswith(site.url) and link != private}


def only(pages: list[Page]) -> Page:
    assert len(pages) == 1, [page.url for page in pages]
    return pages[0]


def assert_record_shape(record: dict[str, Any]) -> None:
    """One pages.jsonl record has every documented field, in order, with its type."""
    assert list(record) == DOCUMENTED_FIELDS
    assert isinstance(record["url"], str)
    assert record["url"] == canonicalize(record["url"])
    assert record["final_url"] is None or isinstance(record["final_url"], str)
    assert record["status"] is None or type(record["status"]) is int
    assert type(record["ok"]) is bool
    error = record["error"]
    assert (error is None) == record["ok"]
    if error is not None:
        assert set(error) == {"kind", "message"}
        assert error["kind"] in ERROR_KINDS
        assert isinstance(error["message"], str)
        assert error["message"]
    assert record["content_type"] is None or isinstance(record["content_type"], str)
    assert type(record["bytes"]) is int
    assert record["bytes"] >= 0
    sha = record["sha256"]
    assert sha is None or (len(sha) == 64 and set(sha) <= set("0123456789abcdef"))
    assert record["path"] is None or isinstance(record["path"], str)
    assert type(record["depth"]) is int
    assert record["depth"] >= 0
    assert (record["parent"] is None) == (record["depth"] == 0)
    fetched_at = datetime.fromisoformat(record["fetched_at"])
    assert fetched_at.utcoffset() == timedelta(0)
    assert type(record["elapsed_ms"]) is int
    assert record["elapsed_ms"] >= 0
    assert type(record["attempts"]) is int
    assert record["attempts"] >= 1
    assert isinstance(record["redirects"], list)
    assert record["title"] is None or isinstance(record["title"], str)
    assert isinstance(record["links"], list)
    assert all(isinstance(link, str) for link in record["links"])
    assert record["text_chars"] is None or type(record["text_chars"]) is int
    meta = record["meta"]
    assert meta is None or set(meta) == {"description", "language", "canonical", "robots"}


def new_crawl_threads(before: set[threading.Thread]) -> list[str]:
    return [
        thread.name
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith(CRAWL_THREAD)
    ]


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, command line) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left to collect
        return None
    return int(fields[1]), cmdline


def worker_processes() -> list[int]:
    """Descendants of this process that do work: the multiprocessing forkserver and resource
    tracker are long-lived helpers shared by the whole test session, so they are not
    counted, but the processes the forkserver started for us are."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            table[int(entry)] = info
    workers: list[int] = []
    parents = [os.getpid()]
    while parents:
        parent = parents.pop()
        for pid, (ppid, cmdline) in table.items():
            if ppid != parent:
                continue
            if parent == os.getpid() and "multiprocessing.forkserver" in cmdline:
                parents.append(pid)  # its children are the parse processes
            elif "multiprocessing.resource_tracker" not in cmdline:
                workers.append(pid)
                parents.append(pid)
    return workers


@pytest.fixture
def latency_site() -> Any:
    """A 200-page site that answers after 50 ms: a crawl of it is still going after 3 pages."""
    with running_site(SiteSpec(pages=200, fanout=4, latency_ms=50)) as site:
        yield site


# -- a whole site --------------------------------------------------------------------------


def test_full_crawl_records_every_url_once_and_writes_output(fresh_site, tmp_path):
    site = fresh_site
    out = tmp_path / "out"
    pages = run_crawl([site.url], depth=DEEP, output=out, parse="processes")
    records = by_url(pages)

    expected = {site.url_for(path): path for path in site_paths(site)}
    assert set(records) == set(expected)
    assert page_hits(site) == {path: 1 for path in expected.values()}

    for url, page in records.items():
        body = site.body_for(expected[url])
        assert body is not None
        assert page.ok, page.error
        assert page.status == 200
        assert page.final_url == url
        assert page.attempts == 1
        assert page.bytes == len(body)
        assert page.sha256 == hashlib.sha256(body).hexdigest()
        assert page.path is not None
        assert not Path(page.path).is_absolute()
        assert (out / page.path).read_bytes() == body
        for link in page.links:
            assert link.startswith(("http://", "https://"))
            assert "#" not in link
            assert canonicalize(link) == link
        assert len(set(page.links)) == len(page.links)

    for path in page_paths(site.spec):
        page = records[site.url_for(path)]
        assert page.content_type == "text/html"
        assert page.title == f"Page {0 if path == '/' else int(path.rsplit('/', 1)[1])}"
        assert page.text_chars is not None
        assert page.text_chars > 0
        assert page.meta is not None
        assert page.meta["language"] == "en"
        assert site.url in page.links  # every page links home
    for path in file_paths(site.spec):
        page = records[site.url_for(path)]
        assert page.content_type == "application/octet-stream"
        assert page.title is None
        assert page.links == ()

    root = records[site.url]
    assert root.depth == 0
    assert root.parent is None
    for page in pages:
        if page.parent is not None:
            parent = records[page.parent]
            assert page.url in parent.links
            assert page.depth == parent.depth + 1

    lines = read_jsonl(out / "pages.jsonl")
    assert lines == [json.loads(json.dumps(page.to_json())) for page in pages]
    for line in lines:
        assert_record_shape(line)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pages"] == len(pages)
    assert stats["ok"] == len(pages)
    assert stats["failed"] == 0
    skipped = read_jsonl(out / "skipped.jsonl")
    assert {"url": OFFSITE_URL, "reason": "offsite", "parent": site.url, "detail": None} in skipped


def signature(pages: list[Page]) -> dict[str, tuple[Any, ...]]:
    return {page.url: (page.status, page.sha256, page.links, page.title) for page in pages}


@pytest.fixture(scope="module")
def reference(demo_site) -> dict[str, tuple[Any, ...]]:
    pages = run_crawl([demo_site.url], depth=DEEP, fetch="sequential", parse="inline")
    by_url(pages)
    return signature(pages)


@pytest.mark.parametrize("parse", ["processes", "threads", "inline"])
@pytest.mark.parametrize("fetch", ["threads", "sequential"])
def test_every_strategy_finds_the_same_records(demo_site, reference, fetch, parse):
    pages = run_crawl([demo_site.url], depth=DEEP, fetch=fetch, parse=parse, workers=4)
    by_url(pages)
    assert set(reference) == {demo_site.url_for(path) for path in site_paths(demo_site)}
    assert signature(pages) == reference


# -- scope: depth, max_pages, offsite, duplicates ----------------------------------------


def test_depth_0_fetches_only_the_seeds(fresh_site, tmp_path):
    site = fresh_site
    seeds = [site.url, site.url_for("/page/5")]
    pages = run_crawl(seeds, depth=0, output=tmp_path)
    assert [page.url for page in sorted(pages, key=lambda p: seeds.index(p.url))] == seeds
    assert all(page.depth == 0 and page.parent is None for page in pages)
    assert page_hits(site) == {"/": 1, "/page/5": 1}
    skipped = read_jsonl(tmp_path / "skipped.jsonl")
    assert skipped
    assert {entry["reason"] for entry in skipped} == {"depth", "scheme"}
    by_reason = {entry["url"]: entry["reason"] for entry in skipped}
    assert by_reason[MAILTO_URL] == "scheme"


def test_depth_1_fetches_the_root_and_its_direct_links(fresh_site, tmp_path):
    site = fresh_site
    pages = run_crawl([site.url], depth=1, output=tmp_path)
    records = by_url(pages)
    root = records[site.url]
    on_site = allowed_links(root, site)
    assert set(records) == {site.url} | on_site
    direct = ["/page/1", "/page/2", "/page/3", *file_paths(site.spec)]  # not /private/: robots.txt
    assert {site.url_for(path) for path in direct} <= on_site
    assert all(page.depth == 1 and page.parent == site.url for page in pages if page is not root)
    skipped = {entry["url"]: entry for entry in read_jsonl(tmp_path / "skipped.jsonl")}
    assert skipped[OFFSITE_URL]["reason"] == "offsite"
    # a link two hops away that is not also one hop away: page/1's first child
    grandchild = site.url_for(f"/page/{1 * site.spec.fanout + 1}")
    if grandchild not in records:
        assert skipped[grandchild]["reason"] == "depth"


def test_skipped_jsonl_lists_only_urls_that_were_not_fetched(fresh_site, tmp_path):
    # README: skipped.jsonl holds "URLs seen but not fetched". Pages at the depth limit link
    # back to pages already fetched (every page links home), which must not be logged.
    pages = run_crawl([fresh_site.url], depth=1, output=tmp_path)
    fetched = {page.url for page in pages}
    wrongly_skipped = [
        (entry["url"], entry["reason"])
        for entry in read_jsonl(tmp_path / "skipped.jsonl")
        if entry["url"] in fetched
    ]
    assert wrongly_skipped == []


def test_max_pages_limits_the_records(fresh_site, tmp_path):
    site = fresh_site
    pages = run_crawl([site.url], depth=DEEP, max_pages=5, output=tmp_path)
    assert len(by_url(pages)) == 5
    assert sum(page_hits(site).values()) == 5
    skipped = read_jsonl(tmp_path / "skipped.jsonl")
    over_budget = [entry["url"] for entry in skipped if entry["reason"] == "max_pages"]
    assert over_budget
    assert len(set(over_budget)) == len(over_budget)
    assert not set(over_budget) & {page.url for page in pages}
    assert json.loads((tmp_path / "stats.json").read_text())["pages"] == 5


def test_the_clock_runs_again_for_a_second_run_of_a_crawler(demo_site):
    crawler = Crawler(Config())
    list(crawler.run([demo_site.url_for("/page/2")]))  # its end stops the clock
    pages = crawler.run([demo_site.url_for("/page/3")])
    next(pages)
    before = crawler.stats.snapshot().elapsed_s
    time.sleep(0.05)  # long enough to show on a running clock (ms precision)
    assert crawler.stats.snapshot().elapsed_s > before
    pages.close()


def test_a_second_run_of_a_crawler_counts_only_its_own_pages(demo_site, tmp_path):
    crawler = Crawler(Config.from_options(depth=1, output=tmp_path, overwrite=True))
    first = list(crawler.run([demo_site.url]))
    second = list(crawler.run([demo_site.url_for("/page/3")]))
    assert first and second
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["pages"] == len(second) == len(read_jsonl(tmp_path / "pages.jsonl"))
    assert crawler.stats.snapshot().pages == len(second)


@pytest.mark.parametrize("fetch", ["threads", "async", "processes", "sequential"])
def test_a_failed_attempt_records_how_long_it_took(demo_site, fetch):
    """A timeout took the whole timeout: its record and fetch_time_s say so, not 0."""
    crawler = Crawler(Config(timeout=0.3, retries=0, fetch=fetch, parse="inline"))
    [page] = crawler.run([demo_site.url_for("/stall")])
    assert page.error is not None and page.error["kind"] == "timeout"
    assert page.elapsed_ms >= 300
    assert crawler.stats.snapshot().fetch_time_s >= 0.3


def test_one_string_instead_of_a_list_of_urls_is_refused():
    with pytest.raises(TypeError, match=r"use \['http://a.example/'\]"):
        crawl("http://a.example/")

    async def first_of_arun() -> Any:
        return await anext(Crawler(Config()).arun("http://a.example/"))  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="not one string"):
        asyncio.run(first_of_arun())


@pytest.mark.parametrize(
    "item",
    [
        b"http://a.example/",
        None,
        1,
        ["http://a.example/"],
        pytest.param(10**5000, id="10**5000"),  # no repr: ValueError in place of TypeError
    ],
)
def test_an_item_that_is_no_string_is_refused(item: Any, tmp_path: Path) -> None:
    """A caller's mistake, said as one: bytes broke the skipped log's JSON mid-crawl, a list
    the frontier's set, and None or a number went into skipped.jsonl as a URL. Raised
    before the output opens: after, the same call was refused ("an earlier crawl")."""
    with pytest.raises(TypeError, match="urls must hold strings"):
        run_crawl(["http://127.0.0.1:1/", item], output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_url_with_a_lone_surrogate_is_logged_escaped_and_the_crawl_resumes(tmp_path):
    """SQLite and the JSONL files take UTF-8 only: logged as it came, it crashed the crawl
    and every resume after it."""
    options: dict[str, Any] = {"output": tmp_path / "out", "state": tmp_path / "out/s.sqlite"}
    assert run_crawl(["http://127.0.0.1:1/a\udcff", "http://127.0.0.1:1/"], **options)
    assert run_crawl(["http://127.0.0.1:1/"], resume=True, **options) == []
    skipped = (tmp_path / "out/skipped.jsonl").read_text()
    assert "a\\\\xed\\\\xb3\\\\xbf" in skipped


def test_the_clock_stops_when_the_crawl_ends(demo_site, tmp_path):
    """The summary printed after a crawl and its stats.json report the same elapsed time."""
    crawler = Crawler(Config.from_options(output=tmp_path))
    assert len(list(crawler.run([demo_site.url_for("/page/2")]))) == 1
    written = json.loads((tmp_path / "stats.json").read_text())
    time.sleep(0.05)  # long enough to show on a clock that still ran (ms precision)
    later = crawler.stats.snapshot()
    assert (later.elapsed_s, later.to_json()["pages_per_second"]) == (
        written["elapsed_s"],
        written["pages_per_second"],
    )


def test_a_url_listed_twice_is_fetched_once(fresh_site, tmp_path):
    site = fresh_site
    spellings = [site.url, site.url.rstrip("/"), site.url + "#top", site.url_for("/page/1")]
    pages = run_crawl(spellings, depth=0, output=tmp_path)
    assert sorted(page.url for page in pages) == [site.url, site.url_for("/page/1")]
    assert page_hits(site) == {"/": 1, "/page/1": 1}
    duplicates = [
        entry for entry in read_jsonl(tmp_path / "skipped.jsonl") if entry["reason"] == "duplicate"
    ]
    assert [entry["url"] for entry in duplicates] == [site.url]


# -- one URL, each way it can end --------------------------------------------------------


def test_http_error_status(demo_site):
    page = only(run_crawl([demo_site.url_for("/status/404")], retries=0))
    assert page.ok is False
    assert page.status == 404
    assert page.error is not None
    assert page.error["kind"] == "http"
    assert "404" in page.error["message"]
    assert page.path is None


def test_unreachable_port_is_a_connect_error():
    page = only(run_crawl(["http://127.0.0.1:1/"], retries=1, timeout=5.0))
    assert page.ok is False
    assert page.status is None
    assert page.final_url is None
    assert page.sha256 is None
    assert page.error is not None
    assert page.error["kind"] == "connect"
    assert page.attempts == 0, "its robots.txt failed first: the page itself was never sent"
    assert "robots.txt" in page.error["message"]


def test_unreachable_port_without_robots_is_retried():
    page = only(run_crawl(["http://127.0.0.1:1/"], retries=1, ignore_robots=True))
    assert page.error is not None
    assert page.error["kind"] == "connect"
    assert page.attempts == 2


@pytest.mark.parametrize("parse", ["processes", "inline"])
def test_extraction_data_json_cannot_encode_fails_its_page_only(demo_site, parse):
    pages = run_crawl([demo_site.url], depth=1, parse=parse, extract=extractors.returns_a_set)
    assert pages
    assert all(page.error and page.error["kind"] == "parse" for page in pages if page.title)
    assert all("JSON" in page.error["message"] for page in pages if page.error)


@pytest.mark.parametrize("parse", ["processes", "inline"])
def test_extraction_data_nested_too_deep_fails_its_page_only(demo_site, parse, tmp_path):
    """It had ended the crawl in RecursionError, in the collector writing the record."""
    options: dict[str, Any] = {"depth": 1, "parse": parse, "output": tmp_path / "out"}
    deep = run_crawl([demo_site.url], extract=extractors.nested_near_the_recursion_limit, **options)
    html = [page for page in deep if page.content_type == "text/html"]
    assert html
    assert all(page.error and "nested deeper than 200" in page.error["message"] for page in html)
    options["overwrite"] = True
    at_the_limit = run_crawl([demo_site.url], extract=extractors.nested_to_the_limit, **options)
    html = [page for page in at_the_limit if page.content_type == "text/html"]
    assert len(html) > 1  # its links were followed
    assert all(page.ok and page.data == extractors.nested(200) for page in html)


def test_a_page_that_kills_its_parse_process_is_recorded_and_the_crawl_goes_on(demo_site):
    pages = run_crawl([demo_site.url], depth=1, extract=extractors.dies_on_page_1)
    records = by_url(pages)
    killer = records[demo_site.url_for("/page/1")]
    assert killer.error == {"kind": "parse", "message": "the parse process died on this page"}
    html = [page for page in pages if page.content_type == "text/html" and page is not killer]
    assert len(html) > 3
    assert all(page.ok and page.data == "fine" for page in html), "no other page is blamed"


def test_a_suspect_page_is_parsed_with_nothing_else_in_the_pool():
    """After a parse process died, each page that was in the pool is parsed again alone, so
    that a crash is blamed on its own page. Pages waiting meanwhile join none of them, the
    last one included: one that kills the pool beside it would have blamed it (found by a
    review: innocent pages recorded as "died", and their links never followed)."""
    run = _Run(Config.from_options(output=None), Stats())
    submitted: list[list[str]] = []

    class StillParsing:
        def submit(self, pages: list[tuple[str, str, Response]], files: Any) -> Future[Any]:
            submitted.append([url for url, _, _ in pages])
            return Future()

    run.parse_stage = StillParsing()  # type: ignore[assignment]
    html = Response("http://a.example/", 200, "OK", {"content-type": "text/html"}, b"", 0.1)
    run.parse_suspects.append(_ParseJob(Request("http://a.example/suspect"), html, False))
    waiting = [_ParseJob(Request(f"http://a.example/{n}"), html, False) for n in range(3)]
    run.parse_waiting.extend(waiting)
    run._feed_parser()
    run._feed_parser()
    assert submitted == [["http://a.example/suspect"]]
    assert list(run.parse_waiting) == waiting


def test_each_parser_has_a_whole_batch_queued_behind_the_one_it_parses():
    """With a backlog, every batch is full: the pool takes two per parser, so a parse
    process that ends a batch starts the next at once instead of idling until the collector
    has taken the result in (with room for one batch, the fetchers then ran out of leases).
    Nothing more: the pool stays bounded."""
    parsers = 2
    run = _Run(Config.from_options(output=None, parsers=parsers), Stats())
    submitted: list[int] = []

    class StillParsing:
        def submit(self, pages: list[tuple[str, str, Response]], files: Any) -> Future[Any]:
            submitted.append(len(pages))
            return Future()

    run.parse_stage = StillParsing()  # type: ignore[assignment]
    html = Response("http://a.example/", 200, "OK", {"content-type": "text/html"}, b"", 0.1)
    backlog = 5 * PARSE_BATCH * parsers
    run.parse_waiting.extend(
        _ParseJob(Request(f"http://a.example/{n}"), html, False) for n in range(backlog)
    )
    run._feed_parser()
    run._feed_parser()
    assert submitted == [PARSE_BATCH] * 2 * parsers
    assert len(run.parse_waiting) == backlog - 2 * parsers * PARSE_BATCH


class _BreaksWhileSubmitting:
    """A pool whose manager thread marked it broken, then shut down, while submit ran:
    submit saw only the shutdown (RuntimeError); asked again, it says it is broken."""

    def __init__(self) -> None:
        self.asked = 0

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        self.asked += 1
        if self.asked == 1:
            raise RuntimeError("cannot schedule new futures after shutdown")
        raise BrokenProcessPool("a child process terminated abruptly")

    def shutdown(self, **kwargs: Any) -> None:
        pass


def test_a_pool_that_breaks_while_a_batch_is_submitted_is_replaced(monkeypatch):
    """The batch comes back (None) to be sent to the new pool; the crawl goes on."""
    pools = [_BreaksWhileSubmitting(), InlineExecutor()]
    monkeypatch.setattr("scraper.parse_pool.open_parse_pool", lambda config: pools.pop(0))
    stage = ParseStage(Config.from_options(output=None))
    assert stage.submit([], None) is None
    assert stage.submit([], None).result() == []  # the new pool
    stage.shutdown()


def test_a_runtime_error_of_a_pool_that_is_not_broken_is_raised(monkeypatch):
    class ShutDown(_BreaksWhileSubmitting):
        def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr("scraper.parse_pool.open_parse_pool", lambda config: ShutDown())
    stage = ParseStage(Config.from_options(output=None))
    with pytest.raises(RuntimeError, match="interpreter shutdown"):
        stage.submit([], None)


def test_an_error_in_the_collector_ends_the_crawl_even_a_queue_empty(demo_site, monkeypatch):
    """queue.Empty from the work on an event was taken for "no event yet", and the event was
    dropped: its URL never finished, and the crawl waited for it for ever."""
    import scraper.pipeline  # noqa: PLC0415

    def stray(*args: Any, **kwargs: Any) -> Any:
        raise queue.Empty

    monkeypatch.setattr(scraper.pipeline, "page_for", stray)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            run_crawl([demo_site.url], parse="inline")
        except BaseException as error:
            outcome.append(error)

    crawler = threading.Thread(target=run, daemon=True)
    crawler.start()
    crawler.join(60)
    assert not crawler.is_alive(), "the crawl waited for the dropped URL"
    assert [type(error) for error in outcome] == [queue.Empty]


def test_a_robots_txt_retry_that_fails_to_start_ends_the_crawl_with_its_error(monkeypatch):
    """It runs in a timer's thread, where an error would only be printed, and the host's
    URLs would wait for their robots.txt for ever."""
    run = _Run(Config.from_options(output=None), Stats())

    def broken(request: Request) -> None:
        raise OSError("no more file descriptors")

    monkeypatch.setattr(run, "_submit_when_a_slot_frees", broken)
    run._resubmit(Request("http://a.example/robots.txt", for_robots=True))
    failed = run.events.get_nowait()
    assert isinstance(failed.error, OSError)


def test_robots_txt_retries_still_waiting_are_cancelled_when_the_run_ends():
    """A program that embeds the crawler goes on after the run: a retry timer left
    running would hold the run for up to 10 minutes, then wake for nothing."""
    run = _Run(Config.from_options(output=None), Stats())
    run._submit_later(Request("http://a.example/robots.txt", for_robots=True), delay=3600)
    (timer,) = run.retry_timers
    run._shut_down(None, None, None, None, after_error=None)
    timer.join(timeout=60)
    assert not timer.is_alive()


def test_redirect_chain_ends_at_the_root(demo_site):
    site = demo_site
    start = site.url_for("/redirect/3")
    page = only(run_crawl([start]))
    assert page.ok, page.error
    assert page.url == start
    assert page.final_url == site.url
    assert page.redirects == (start, site.url_for("/redirect/2"), site.url_for("/redirect/1"))
    assert page.title == "Page 0"
    assert page.sha256 == hashlib.sha256(site.body_for("/") or b"").hexdigest()


def test_redirect_loop(demo_site):
    page = only(run_crawl([demo_site.url_for("/redirect-loop")]))
    assert page.ok is False
    assert page.error is not None
    assert page.error["kind"] == "redirect_loop"
    hops = [demo_site.url_for(f"/redirect-loop{query}") for query in ("", "?a", "?b")]
    assert (page.final_url, page.redirects) == (hops[2], tuple(hops))  # ?b went back to ?a


def test_too_many_redirects_lists_every_hop_that_redirected(demo_site):
    page = only(run_crawl([demo_site.url_for("/redirect/11")]))  # 11 redirects, then the root
    assert page.error is not None and page.error["kind"] == "too_many_redirects"
    hops = tuple(demo_site.url_for(f"/redirect/{n}") for n in range(11, 0, -1))
    assert (page.final_url, page.redirects) == (hops[-1], hops)


def test_trickling_body_times_out(demo_site):
    # 40 bytes, one every 0.1 s: each read is quick, the whole body is not
    page = only(run_crawl([demo_site.url_for("/trickle?bytes=40&interval=0.1")], timeout=0.5))
    assert page.ok is False
    assert page.error is not None
    assert page.error["kind"] == "timeout"


def test_stalled_server_times_out(demo_site):
    page = only(run_crawl([demo_site.url_for("/stall")], timeout=0.5, retries=1))
    assert page.ok is False
    assert page.status is None
    assert page.error is not None
    assert page.error["kind"] == "timeout"
    assert page.attempts == 2


def test_gzip_bomb_stops_at_max_bytes(demo_site):
    page = only(run_crawl([demo_site.url_for("/gzip-bomb?mb=4")], max_bytes=1 << 20))
    assert page.ok is False
    assert page.error is not None
    assert page.error["kind"] == "too_large"


def test_flaky_url_succeeds_within_its_retries(demo_site):
    path = f"/flaky/{uuid.uuid4().hex}?fail=2&status=503"
    page = only(run_crawl([demo_site.url_for(path)], retries=2))
    assert page.ok, page.error
    assert page.status == 200
    assert page.attempts == 3
    assert demo_site.hits[path] == 3


def test_flaky_url_fails_when_retries_run_out(demo_site):
    path = f"/flaky/{uuid.uuid4().hex}?fail=2&status=503"
    page = only(run_crawl([demo_site.url_for(path)], retries=1))
    assert page.ok is False
    assert page.status == 503
    assert page.error is not None
    assert page.error["kind"] == "http"
    assert page.attempts == 2
    assert demo_site.hits[path] == 2


def test_binary_file_is_saved_but_not_parsed(demo_site, tmp_path):
    path = "/files/1.bin"
    page = only(run_crawl([demo_site.url_for(path)], output=tmp_path))
    assert page.ok, page.error
    assert page.content_type == "application/octet-stream"
    assert page.title is None
    assert page.links == ()
    assert page.path is not None
    assert (tmp_path / page.path).read_bytes() == demo_site.body_for(path)


# -- the extraction hook -----------------------------------------------------------------


@pytest.mark.parametrize("parse", ["processes", "threads", "inline"])
def test_extracted_data_lands_in_records(demo_site, parse):
    pages = run_crawl([demo_site.url], depth=1, parse=parse, extract=extractors.headings)
    html = [page for page in pages if page.content_type == "text/html"]
    assert len(html) > 5
    for page in html:
        assert page.ok, page.error
        has_h1 = page.url != demo_site.url_for(PRIVATE_PATH)  # the private page has none
        assert page.data["h1"] == ([page.title] if has_h1 else [])
        assert page.data["url"] == page.final_url
        in_this_process = page.data["pid"] == os.getpid()
        assert in_this_process is (parse != "processes")
    assert all(page.data is None for page in pages if page not in html)


def test_extracted_bs4_strings_arrive_as_plain_strings(demo_site):
    pages = run_crawl([demo_site.url], depth=1, extract=extractors.title_string)
    titled = [page for page in pages if page.title]
    assert len(titled) > 5
    assert all(page.data == page.title and type(page.data) is str for page in titled)


@pytest.mark.parametrize("parse", ["processes", "threads", "inline"])
@pytest.mark.parametrize(
    ("extract", "message"),
    [
        (extractors.fails_on_page_1, f"RuntimeError: {extractors.FAILURE_TEXT}"),
        (extractors.exits_on_page_1, f"SystemExit: {extractors.FAILURE_TEXT}"),
        # parsing inline, it ended the crawl
        (
            extractors.raises_its_own_base_exception_on_page_1,
            f"OwnBaseException: {extractors.FAILURE_TEXT}",
        ),
        # in the parse processes, formatting it raised in a callback: the crawl waited forever
        (
            extractors.raises_the_unprintable_on_page_1,
            "Unprintable (its message could not be read)",
        ),
    ],
)
def test_a_raising_extractor_fails_its_page_only(demo_site, parse, extract, message):
    pages = run_crawl([demo_site.url], depth=1, parse=parse, extract=extract)
    records = by_url(pages)
    failed = records[demo_site.url_for("/page/1")]
    assert failed.ok is False
    assert failed.status == 200
    assert failed.error == {"kind": "parse", "message": message}
    assert failed.sha256 == hashlib.sha256(demo_site.body_for("/page/1") or b"").hexdigest()
    others = [page for page in pages if page is not failed and page.content_type == "text/html"]
    assert len(others) > 3
    assert all(page.ok and page.data == "fine" for page in others)
    root = records[demo_site.url]
    assert set(records) == {root.url} | allowed_links(root, demo_site)


# -- stopping early ----------------------------------------------------------------------


def test_leaving_the_loop_does_not_wait_for_a_page_still_being_parsed(fresh_site):
    """Its parse processes are ended: nobody would collect what they make. (close() waited
    for the batch, here ten minutes.)"""
    pages = crawl([fresh_site.url], depth=1, extract=extractors.stalls_on_page_3, **FAST)
    stuck = fresh_site.url_for(extractors.STALLING_SUFFIX)
    seen = [next(pages).url for _ in range(3)]  # all but the stalled page
    assert stuck not in seen
    closer = threading.Thread(target=pages.close, name="test-closer", daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive(), "close() waited for the stalled page"
    assert wait_for(lambda: not worker_processes(), GRACE), worker_processes()


@pytest.mark.parametrize(
    ("parse", "how"), [("processes", "break"), ("processes", "close"), ("threads", "break")]
)
def test_leaving_the_loop_early_stops_the_crawl(latency_site, parse, how):
    before = set(threading.enumerate())
    options = {**FAST, "depth": 10, "workers": 4, "parse": parse}
    seen = []
    if how == "break":
        for page in crawl([latency_site.url], **options):
            seen.append(page)
            if len(seen) == 3:
                break  # the loop drops its iterator: the generator is closed at once
    else:
        pages = crawl([latency_site.url], **options)
        seen = [next(pages) for _ in range(3)]
        if parse == "processes":
            assert worker_processes(), "the check below would not see the parse processes"
        closer = threading.Thread(target=pages.close, name="test-closer", daemon=True)
        closer.start()
        closer.join(60)
        assert not closer.is_alive(), "close() of the crawl's iterator did not return"
    assert len(seen) == 3

    stopped = wait_for(lambda: not new_crawl_threads(before), GRACE)
    assert stopped, f"crawl threads still alive: {new_crawl_threads(before)}"
    assert wait_for(lambda: not multiprocessing.active_children(), GRACE), (
        multiprocessing.active_children()
    )
    assert wait_for(lambda: not worker_processes(), GRACE), worker_processes()
    hits = sum(latency_site.hits.values())
    assert hits < latency_site.spec.pages
    time.sleep(0.3)
    assert sum(latency_site.hits.values()) == hits, "fetching went on after the crawl stopped"


def test_a_consumer_that_stops_reading_holds_the_fetchers_back():
    """Backpressure: a paused iteration pauses the collector, and with it the crawl. What
    the site may have served by then is bounded by the hand-offs (pipeline's docstring):
    the pages read, the rest of a parsed batch, a full parse pool, every lease, robots.txt.
    Every page is listed, so the frontier never runs dry while the collector waits."""
    workers, parsers, read = 4, 1, 5
    bound = read + PARSE_BATCH + PARSE_BACKLOG * parsers + LEASES_PER_WORKER * workers + 1
    with running_site(SiteSpec(pages=300, fanout=4)) as site:
        listed = [site.url + path.lstrip("/") for path in page_paths(site.spec)]
        pages = crawl(listed, **{**FAST, "workers": workers, "parsers": parsers})
        try:
            for _ in range(read):
                next(pages)
            served = settled(lambda: sum(site.hits.values()))  # fetching stops, or all is served
            assert served <= bound < site.spec.pages
        finally:
            pages.close()


def test_a_crawl_closed_before_it_starts_holds_no_open_file(tmp_path):
    # crawl() opens the output files at once, but close() on a generator that never started
    # runs none of its code: the files are left to the garbage collector (ResourceWarning).
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        pages = crawl(["http://127.0.0.1:1/"], output=out, **FAST)
        pages.close()
        open_files = [
            target
            for fd in Path("/proc/self/fd").iterdir()
            if (target := _readlink(fd)).startswith(str(out))
        ]
        del pages
        gc.collect()
    assert open_files == []
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


# -- asyncio -----------------------------------------------------------------------------


def test_async_iterator_yields_the_same_pages(demo_site):
    config = Config(depth=2, **FAST)

    async def collect() -> list[Page]:
        return [page async for page in Crawler(config).arun([demo_site.url])]

    async_pages = asyncio.run(collect())
    sync_pages = list(Crawler(config).run([demo_site.url]))
    assert len(async_pages) > 10
    assert signature(async_pages) == signature(sync_pages)
    assert sorted(page.url for page in async_pages) == sorted(page.url for page in sync_pages)


CANCEL_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys, threading, time
    from scraper import Config, Crawler
    from scraper.demo import SiteSpec, running_site

    def slowly(soup, url):  # parse threads are waited for as a crawl closes
        time.sleep(1.5)

    CONFIG = Config(workers=2, parse="threads", parsers=2, backoff=0, timeout=20,
                    output="out", overwrite=True, extract=slowly)

    async def consume(url):
        async for _ in Crawler(CONFIG).arun([url]):
            pass

    async def main(url, cancels):
        task = asyncio.ensure_future(consume(url))
        await asyncio.sleep(0.5)  # the root page is being parsed
        for _ in range(cancels):  # a second one lands while the crawl closes
            task.cancel()
            await asyncio.sleep(0.1)
        try:
            await task
        except BaseException as error:
            outcome = type(error).__name__
        else:
            outcome = "finished"
        try:  # the output directory is free as soon as the cancellation is raised
            list(Crawler(CONFIG).run([]))
        except Exception as error:
            outcome += ", then " + type(error).__name__
        return outcome

    if __name__ == "__main__":
        with running_site(SiteSpec(pages=5)) as site:
            outcome = asyncio.run(main(site.url, int(sys.argv[1])))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                names = [t.name for t in threading.enumerate()
                         if t.name.startswith(("fetch-", "dispatch", "parse"))]
                if not names:
                    break
                time.sleep(0.05)
            print(json.dumps({"outcome": outcome, "threads": names}), flush=True)
        os._exit(0)  # do not wait for threads a broken shutdown left behind
    """
)


@pytest.mark.parametrize("cancels", [1, 2])
def test_cancelling_an_async_crawl_stops_it(tmp_path, cancels):
    """The cancellation is raised once the crawl is closed (its threads ended, its output
    directory free), a second one that lands while it closes too.
    Run in a process of its own: a crawl that does not stop would leave threads here."""
    script = tmp_path / "cancel.py"
    script.write_text(CANCEL_SCRIPT)
    done = python(tmp_path, str(script), str(cancels))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "CancelledError"
    assert result["threads"] == []


# -- options -----------------------------------------------------------------------------


def test_an_unknown_option_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="no_such_option"):
        crawl(["http://127.0.0.1:1/"], no_such_option=1)


@pytest.mark.parametrize(
    ("name", "value"), [("workers", 0), ("parse", "gpu"), ("fetch", "carrier-pigeon")]
)
def test_an_invalid_option_value_is_a_value_error_naming_it(name, value):
    with pytest.raises(ValueError, match=name):
        crawl(["http://127.0.0.1:1/"], **{name: value})
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(Config(), **{name: value})


@pytest.mark.parametrize(("option", "value", "records"), [("depth", 4, 5), ("max_pages", 7, 7)])
def test_a_calendar_trap_is_stopped(demo_site, option, value, records):
    """An endless chain of links ends at the depth limit or the page budget."""
    options = {"depth": 1000, option: value}
    pages = run_crawl([demo_site.url_for("/calendar/0")], **options)
    assert len(pages) == records
    assert {page.title for page in pages} == {f"Day {day}" for day in range(records)}


def test_the_engine_loads_no_fetch_library_and_no_encoding_detector_on_import():
    """What a crawl imports before its first request delays it: the HTTP library comes with
    the fetch strategy (aiohttp for async, requests for the others), charset-normalizer
    with the first page whose encoding must be guessed. Each costs 25-140 ms here."""
    late = ("requests", "aiohttp", "charset_normalizer")
    assert loaded_by_import("scraper.pipeline", late) == []
    assert loaded_by_import("scraper.parse_pool", late) == []
    # its workers send the requests: the main process of a `processes` crawl needs none
    assert loaded_by_import("scraper.fetch.processes", late) == []


def test_the_main_process_of_a_crawl_parsing_in_processes_loads_no_parser(demo_site):
    """Parsing is the parse processes' work: the crawl's own process needs neither lxml nor
    w3lib (≈ 30 ms of CPU as the crawl starts, and 5 MB), but must still have parsed."""
    probe = textwrap.dedent(
        f"""
        import sys
        from scraper import crawl
        pages = list(crawl([{demo_site.url_for("/")!r}], depth=1, parse="processes",
                           **{FAST!r}))
        print(sum(page.title is not None for page in pages),
              *(name for name in ("lxml", "w3lib") if name in sys.modules))
        """
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    titled, *loaded = answer.stdout.split()
    assert int(titled) > 1  # the root was parsed, and pages it links to
    assert loaded == []


STDIN_SCRIPT = """
import json
from scraper import crawl
outcomes = {}
for parse, fetch in (("processes", "threads"), ("inline", "processes"), ("inline", "threads")):
    try:
        pages = list(crawl(["http://127.0.0.1:1/"], output=None, parse=parse, fetch=fetch,
                           retries=0))
        outcomes[parse + "/" + fetch] = [page.error["kind"] for page in pages]
    except ValueError as error:
        outcomes[parse + "/" + fetch] = str(error)
print(json.dumps(outcomes))
"""


def test_a_script_read_from_stdin_is_told_processes_cannot_start(tmp_path):
    """Child processes run the main script again as they start: `python -` has no file
    for them. Said before anything starts, instead of every page failing to parse."""
    done = python(tmp_path, "-", stdin=STDIN_SCRIPT)
    assert done.returncode == 0, done.stderr
    outcomes = json.loads(done.stdout)
    for refused in ("processes/threads", "inline/processes"):
        assert "'<stdin>' is not a file" in outcomes[refused]
        assert "parse='threads' or 'inline'" in outcomes[refused]
    assert outcomes["inline/threads"] == ["connect"]
    assert "Traceback" not in done.stderr


def test_each_parse_process_loads_the_extraction_function_once(demo_site):
    """It was sent with every batch: a callable holding 50 MB made 30 pages take 1.5 s."""
    pages = run_crawl([demo_site.url], depth=2, extract=extractors.counts_its_loads, parsers=2)
    parsed = [page for page in pages if page.content_type == "text/html"]
    assert len(parsed) > 2 * 8  # more batches than parse processes
    assert {page.data for page in parsed} == {1}


def test_parse_threads_leave_the_programs_warning_filters_as_they_were(demo_site):
    """Two threads each saving and restoring them (warnings.catch_warnings) around bs4,
    in each other's order, left bs4's two "ignore" filters in the program."""
    before = list(warnings.filters)
    for _ in range(3):
        run_crawl([demo_site.url], depth=2, extract=extractors.headings, parse="threads")
    assert warnings.filters == before


GUARDED_EXTRACTION_SCRIPT = """
from scraper import crawl

if __name__ == "__main__":
    def titles(soup, url):
        return soup.title.get_text()

    try:
        list(crawl([{url!r}], depth=1, extract=titles))
    except ValueError as error:
        print(f"{{type(error).__name__}}: {{error}}")
"""


def test_an_extraction_function_the_parse_processes_cannot_find_ends_the_crawl(demo_site, tmp_path):
    """Defined under the main guard, it pickles by a name that the parse processes, running
    the script again, never define: unpickled with each batch, it killed the process, and
    every page failed to parse (with a traceback each)."""
    (tmp_path / "guarded.py").write_text(GUARDED_EXTRACTION_SCRIPT.format(url=demo_site.url))
    done = python(tmp_path, "guarded.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ConfigError: the parse processes cannot load the extraction")
    assert "Can't get attribute 'titles'" in done.stdout
    assert "Traceback" not in done.stderr


UNGUARDED_SCRIPT = """
from scraper import crawl

print(len(list(crawl([{url!r}], depth=1))))
"""


def test_a_script_without_the_main_guard_ends_its_crawl_and_starts_none_in_its_children(
    fresh_site, tmp_path
):
    """Each parse process runs the script again as it starts: each one's crawl fetched
    robots.txt and the root, then every page of the real crawl failed to parse."""
    (tmp_path / "unguarded.py").write_text(UNGUARDED_SCRIPT.format(url=fresh_site.url))
    done = python(tmp_path, "unguarded.py")
    assert done.returncode == 1
    assert "ScraperError: the parse processes died as they started" in done.stderr
    assert "ConfigError: a crawl started in a parse or fetch process" in done.stderr  # theirs
    assert done.stdout == ""
    assert fresh_site.hits["/robots.txt"] == 1
    assert fresh_site.hits["/"] == 1


def test_the_parse_stack_and_the_terminal_ui_load_after_the_first_requests():
    """A crawl imports the parse pool and starts its processes while robots.txt and the
    seeds are on their way (the parser itself, lxml and w3lib, only where pages are parsed),
    and rich only to show something: imported before, each delayed the first request
    (≈ 15-30 ms each here)."""
    later = ("lxml", "w3lib", "multiprocessing", "rich")
    assert loaded_by_import("scraper.pipeline", later) == []
    assert loaded_by_import("scraper.report", later) == []


def test_the_parse_pool_starts_all_its_processes_when_it_opens():
    """While the crawl's first requests are on their way, not when pages wait for them.
    (ProcessPoolExecutor starts a process only for a call that finds none idle.)"""
    pool = open_parse_pool(Config.from_options(parsers=3))
    try:
        assert len(pool._processes) == 3  # type: ignore[attr-defined]
    finally:
        pool.shutdown()


def test_the_crawl_fetches_while_its_parse_processes_start(fresh_site, monkeypatch):
    """Starting the parse pool waits for a fork server and its children (60-150 ms here).
    The crawl's thread goes on meanwhile, learning robots.txt and sending the seed: only
    parsing waits for the pool. (It waited before any answer was collected.)"""
    release = threading.Event()
    opening = open_parse_pool

    def held(config: Config) -> Any:
        release.wait(timeout=30)
        return opening(config)

    monkeypatch.setattr("scraper.parse_pool.open_parse_pool", held)
    pages: list[Page] = []
    crawler = threading.Thread(
        target=lambda: pages.extend(crawl([fresh_site.url_for("/")], depth=0, **FAST))
    )
    crawler.start()
    try:
        seed_fetched = wait_for(lambda: fresh_site.hits.get("/"), timeout=10)
    finally:
        release.set()
        crawler.join(timeout=30)
    assert seed_fetched
    assert [(page.url, page.title) for page in pages] == [(fresh_site.url_for("/"), "Page 0")]


def test_a_ctrl_c_while_the_parse_pool_starts_ends_its_processes_once_started(monkeypatch):
    """The crawl's end waits for the pool's start; a Ctrl-C there (a second one, in a
    program that embeds the crawl and goes on) hands the pool to the thread starting it,
    which ends it. Before, its processes ran on, idle, until the program exited."""
    release = threading.Event()
    started: list[multiprocessing.process.BaseProcess] = []
    opening = open_parse_pool

    def held(config: Config) -> Any:
        release.wait(timeout=30)
        pool = opening(config)
        started.extend(pool._processes.values())  # type: ignore[attr-defined]
        return pool

    monkeypatch.setattr("scraper.parse_pool.open_parse_pool", held)
    stage = ParseStage(Config.from_options(parsers=1))

    def interrupted(timeout: float | None = None) -> BaseException | None:
        raise KeyboardInterrupt

    stage._opening.exception = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        stage.shutdown()
    del stage._opening.exception  # the future's own again, for the thread that sets it
    release.set()
    assert wait_for(lambda: started and not any(p.is_alive() for p in started), GRACE)


def test_a_parse_pool_that_cannot_start_ends_the_crawl_with_its_error(
    demo_site, second_parse_process_refused, caplog
):
    """Raised once, where the first page needs the pool, as a ScraperError that says what
    failed; the process that did start is ended; stopping neither logs nor raises it again."""
    with pytest.raises(ScraperError, match=r"cannot start the parse processes: .*(limit|tempo)"):
        run_crawl([demo_site.url_for("/")], depth=1)
    assert len(second_parse_process_refused) == 1
    assert wait_for(lambda: not second_parse_process_refused[0].is_alive(), timeout=GRACE)
    assert "cannot start" not in caplog.text  # raised, so neither logged nor raised again


def test_a_crawl_that_parses_nothing_logs_a_parse_pool_that_could_not_start(
    demo_site, second_parse_process_refused, caplog
):
    """Nothing needed the pool, so the crawl is whole; the failure is still told."""
    [file_path, *_] = file_paths(demo_site.spec)
    pages = run_crawl([demo_site.url_for(file_path)])
    assert [page.ok for page in pages] == [True]
    assert "cannot start the parse processes" in caplog.text


def test_without_a_thread_to_spare_the_parse_pool_opens_in_the_crawls_thread(
    demo_site, monkeypatch
):
    start = threading.Thread.start

    def refuse_the_starter(thread: threading.Thread) -> None:
        if thread.name == "parse-pool-start":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse_the_starter)
    pages = run_crawl([demo_site.url_for("/")], depth=1)
    assert sum(page.title is not None for page in pages) > 1


def test_terminating_a_pool_waits_for_its_manager_thread():
    """The manager thread holds the last references to the pool's queues, whose semaphores
    are unregistered from multiprocessing's resource tracker when they are freed: left to a
    daemon manager at exit, one could be unlinked but not unregistered ("leaked semaphore")."""
    pool = open_parse_pool(Config.from_options(parsers=2))
    manager = pool._executor_manager_thread  # type: ignore[attr-defined]
    assert manager is not None and manager.is_alive()
    terminate_pool(pool)
    assert not manager.is_alive()


@pytest.fixture
def stats_json_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the output writes every record, but stats.json fails, as on a full disk."""
    close = CrawlOutput.close

    def fail_after_records(output: CrawlOutput, stats: Any) -> None:
        close(output, None)
        raise OutputError("cannot write stats.json: No space left on device")

    monkeypatch.setattr(CrawlOutput, "close", fail_after_records)


@pytest.mark.usefixtures("stats_json_fails")
def test_the_error_that_stopped_a_crawl_is_the_one_raised(demo_site, tmp_path, monkeypatch):
    """A full disk fails the state's commit first and stats.json after it, on the way out:
    the first failure is what the user must see, not the last."""

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OutputError("cannot use the crawl state: database or disk is full")

    monkeypatch.setattr(ScheduledFrontier, "add_many", disk_full)
    with pytest.raises(OutputError, match="crawl state"):
        run_crawl([demo_site.url], depth=1, output=tmp_path)


@pytest.mark.usefixtures("stats_json_fails")
def test_a_failure_to_shut_down_is_raised_when_nothing_failed_before(demo_site, tmp_path):
    with pytest.raises(OutputError, match=r"stats\.json"):
        run_crawl([demo_site.url], output=tmp_path)


@pytest.mark.parametrize("again", [{}, {"overwrite": True}], ids=["new", "overwrite"])
def test_a_second_crawl_in_a_directory_in_use_is_refused(demo_site, tmp_path, again):
    """Even with overwrite=True: it would take over the running crawl's state and files.
    Without, it was told that the directory held a crawl, to be resumed or overwritten."""
    first = crawl([demo_site.url], depth=1, output=tmp_path, parse="inline")
    next(first)  # running: it holds the directory until it ends
    try:
        with pytest.raises(OutputError, match="in use by another crawl"):
            next(crawl([demo_site.url], output=tmp_path, **again))
        assert len(list(first)) > 1, "the first crawl goes on"
    finally:
        first.close()
    assert list(crawl([demo_site.url], output=tmp_path, overwrite=True))  # free again


@pytest.mark.parametrize("again", [{}, {"overwrite": True}], ids=["new", "overwrite"])
@pytest.mark.parametrize("output", [None, "elsewhere"])
def test_a_second_crawl_on_a_state_file_in_use_is_refused(demo_site, tmp_path, again, output):
    """The output directory's claim does not cover a state file elsewhere, or a crawl with
    none: two crawls fetched and recorded the same URLs, and one died of "database is
    locked". With overwrite=True, the running crawl's state was deleted under it."""
    state = tmp_path / "state.sqlite"
    first = crawl([demo_site.url], depth=1, state=state, parse="inline")
    next(first)
    try:
        with pytest.raises(OutputError, match="in use by another crawl"):
            next(crawl([demo_site.url], state=state, output=output and tmp_path / output, **again))
        assert len(list(first)) > 1, "the first crawl goes on"
    finally:
        first.close()
    assert state.exists()


@pytest.mark.parametrize("output", [None, "out"])
def test_an_empty_state_file_holds_no_earlier_crawl(demo_site, tmp_path, output):
    """One made beforehand (tempfile.mkstemp, touch): checking whether a crawl held it had
    written SQLite's header into it, and the crawl then refused it as an earlier crawl's."""
    directory = tmp_path / (output or "")
    directory.mkdir(exist_ok=True)
    state = directory / "state.sqlite"
    state.touch()
    options = {"output": output and directory, "state": state, "parse": "inline"}
    assert len(list(crawl([demo_site.url], **options))) == 1


def test_a_refused_state_file_is_left_as_it_was(demo_site, tmp_path):
    """Another program's database, named by mistake: refused, and not turned to WAL."""
    state = tmp_path / "theirs.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as theirs:
        theirs.execute("CREATE TABLE kept (x)")
        theirs.commit()
    before = state.read_bytes()
    with pytest.raises(OutputError, match="holds an earlier crawl"):
        next(crawl([demo_site.url], state=state, parse="inline"))
    assert state.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["theirs.sqlite"]


def test_a_state_file_of_an_earlier_crawl_is_refused_without_an_output_directory(
    demo_site, tmp_path
):
    """Reused, its URLs were all taken for done: the second crawl yielded nothing."""
    state = tmp_path / "state.sqlite"
    assert len(list(crawl([demo_site.url], state=state, parse="inline"))) == 1
    with pytest.raises(OutputError, match="holds an earlier crawl: use overwrite=True"):
        next(crawl([demo_site.url], state=state, parse="inline"))
    assert len(list(crawl([demo_site.url], state=state, parse="inline", overwrite=True))) == 1


def test_a_refused_resume_creates_no_directory(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(OutputError, match="nothing to resume"):
        next(crawl(["http://127.0.0.1:9/"], output=missing, state=missing / "s", resume=True))
    assert not missing.exists()


def test_a_resume_refused_for_its_settings_lets_go_of_the_directory(demo_site, tmp_path):
    """A crawl that cannot start must not keep the output claimed: the next try, in the
    same program, with the right settings, goes ahead."""
    options = {"output": tmp_path, "state": tmp_path / "state.sqlite", "parse": "inline"}
    first = crawl([demo_site.url], depth=1, **options)
    next(first)
    first.close()
    with pytest.raises(ConfigError, match="depth"):
        next(crawl([demo_site.url], depth=3, resume=True, **options))
    assert list(crawl([demo_site.url], depth=1, resume=True, **options))


def test_a_resume_refused_for_its_settings_says_them_as_options(demo_site, tmp_path):
    """It said `max_pages was None, now 5` and `allow_domains was []`: Python, to a user of
    the command."""
    options = {"output": tmp_path, "state": tmp_path / "state.sqlite", "parse": "inline"}
    assert list(crawl([demo_site.url], **options))
    changed = {"max_pages": 5, "allow_domains": ["example.org"], "ignore_robots": True}
    with pytest.raises(ConfigError) as refused:
        next(crawl([demo_site.url], resume=True, **changed, **options))
    assert (
        "(--max-pages was no limit, now 5; --allow-domain was none, now example.org; "
        "--ignore-robots was off, now on)"
    ) in str(refused.value)


@pytest.mark.parametrize(
    "name",
    ["pages.jsonl", "skipped.jsonl", "stats.json", "files", "state.sqlite", "state.sqlite-wal"],
)
def test_an_output_directory_holding_a_link_is_refused(demo_site, tmp_path, name):
    """A crawl writes only inside its output directory: a link there took its writes
    elsewhere (records appended to any file, truncated by overwrite, bodies saved in any
    directory). Refused as the output opens, before anything is fetched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(outside if name == "files" else victim)
    with pytest.raises(OutputError, match="symbolic link"):
        run_crawl([demo_site.url], output=out, state=out / "state.sqlite", overwrite=True)
    assert victim.read_text() == "keep\n"
    assert list(outside.iterdir()) == [victim]


def test_a_ctrl_c_while_stopping_still_closes_the_output(demo_site, tmp_path, monkeypatch):
    """A second Ctrl-C in a program that embeds the crawl may land in any step of the
    shutdown: the later steps still run (stats.json, the claim on the directory)."""

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ParseStage, "shutdown", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_crawl([demo_site.url], output=tmp_path)
    assert json.loads((tmp_path / "stats.json").read_text())["pages"] == 1
    monkeypatch.undo()
    assert run_crawl([demo_site.url], output=tmp_path, overwrite=True)  # not claimed


def test_a_ctrl_c_while_stopping_wins_over_an_earlier_failure(demo_site, tmp_path, monkeypatch):
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OutputError("cannot use the crawl state: database or disk is full")

    monkeypatch.setattr(ParseStage, "shutdown", interrupted)
    monkeypatch.setattr(SQLiteFrontier, "close", disk_full)
    with pytest.raises(KeyboardInterrupt):
        run_crawl([demo_site.url], output=tmp_path, state=tmp_path / "state.sqlite")
