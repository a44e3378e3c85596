"""The Crawler: wires frontier, fetcher, parser and sinks together, and ends the crawl.

    seeds ─► Frontier ─► dispatcher thread ──submit──► Fetcher (threads, ...)
               ▲  ▲       (takes a lease and a          │ future done
               │  │        fetch slot for each URL)     ▼ (frees the fetch slot)
               │  │                               events queue ◄──────────────────┐
               │  │                                     │                         │
               │  └── retry / redirect hop ◄──┐         ▼                         │
               │                              └── collector: the iterating thread │
               │                                   · fetch policy decides          │
               │                                   · HTML: submits, in batches ──► parse pool
               │                                     (other bodies: saves them)   (processes:
               └───────── in-scope links ◄──────── · writes the record, yields     save, parse)
                                                     the Page

Bounded hand-offs: at most `workers` requests are on the wire (the fetch slots, each freed
the moment its answer is in, so a fetcher never waits for the collector), at most
`LEASES_PER_WORKER * workers` URLs are between lease and parse pool (the leases: on the
wire, or answered and waiting for the collector or for room in the parse pool), and at
most `PARSE_BACKLOG * parsers` pages are in the parse pool. When the parse pool is full,
answered pages keep their leases, so the dispatcher stops leasing new URLs until the
parsers catch up. The collector runs in the thread that iterates the crawl, so a slow
consumer slows the crawl instead of piling up records.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import queue
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scraper.config import Config
from scraper.errors import (
    ErrorKind,
    FetchError,
    InvalidURL,
    ParseError,
    TransportError,
    shown,
)
from scraper.fetch import Fetcher, Limits, Response, open_fetcher
from scraper.fetch.base import is_html
from scraper.fetch.policy import FetchPolicy, Finish, Follow, Retry
from scraper.frontier import Admission, Frontier
from scraper.outcome import is_ok, page_for
from scraper.politeness import (
    RobotsGate,
    RobotsRules,
    Verdict,
    agent_token,
    robots_request,
)
from scraper.records import Page, ParsedPage, Request, Skipped, SkipReason
from scraper.sinks import CrawlOutput
from scraper.state import Crawl, open_crawl
from scraper.stats import Stats
from scraper.urls import (
    BadLine,
    Scope,
    canonicalize,
    has_fetchable_scheme,
    host_of,
    is_private,
)

_log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the parse pool is imported as a crawl starts: see `_Run.pages`
    import asyncio  # and asyncio where a program awaits `arun`

    from scraper.parse_pool import PageWork, ParseStage

_POLL = 0.2  # seconds a blocked stage waits before re-checking whether to stop
PARSE_BATCH = 8  # pages sent to the parse pool in one hand-off, when that many wait
# Pages in the parse pool per parser: the batch it is parsing and a whole one queued behind
# it. With room for one batch (8 pages), a crawl whose batches were full (a backlog) left
# each parse process idle from the end of its batch until the collector had taken the
# result in and sent the next; the fetchers then ran out of leases. At 100 ms latency on
# a slow stretch of the test machine, 4 crawls each in turn: the dispatcher found no lease
# 96-177 times a crawl, and 0-19 with two batches; median wall 8.06 -> 7.81 s. (On a fast
# stretch, where the parsers keep up anyway, the two were level.) The cost: when a parse
# process dies, the pages in the pool, now up to twice as many, are each parsed again alone.
PARSE_BACKLOG = 2 * PARSE_BATCH
# A lease for each request on the wire and one for an answer waiting to be collected: the
# collector works in bursts (a parsed page's links, its record), and meanwhile the fetch
# slots keep working instead of holding answers (measured: 1.7 answers waited on average).
LEASES_PER_WORKER = 2
COLLECT_AT_ONCE = 16  # events collected before the parse pool is fed again
_SCOPE_HOSTS = "scope_hosts"  # saved with the frontier: hosts seeds redirected to


@dataclass(frozen=True, slots=True)
class _Fetched:
    request: Request
    outcome: Response | FetchError
    attempted: bool = True  # False: decided without a request (robots.txt denied it)


@dataclass(frozen=True, slots=True)
class _Failed:
    """A stage thread hit an error the crawl cannot go on after (the state's disk is full)."""

    error: Exception


@dataclass(frozen=True, slots=True)
class _Parsed:
    jobs: list[_ParseJob]
    result: list[PageWork] | ParseError  # one PageWork per job, or what befell them all


@dataclass(slots=True)
class _ParseJob:
    """A fetched HTML page on its way through the parse pool."""

    request: Request
    response: Response
    holds_lease: bool = True  # until the page enters the parse pool
    alone: bool = False  # parsed with nothing else in the pool: a crash is its own


_Event = _Fetched | _Parsed | _Failed


def crawl(urls: Iterable[str], **options: Any) -> Generator[Page, None, None]:
    """Crawl `urls` and yield one Page per URL attempted, as each is finished.

    Options are the fields of Config (depth, max_pages, workers, output, extract, ...);
    an unknown or invalid option raises ValueError naming it. Leaving the loop early
    stops the crawl and frees its threads and processes.
    """
    return Crawler(Config.from_options(**options)).run(urls)


class Crawler:
    """A crawl described by a Config; `run` and `arun` execute it, as often as asked.

    `stats` holds the figures of the latest run: each run counts afresh, as each writes
    its own stats.json (a second run's counted the first's pages too).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats = Stats()
        self._current: _Run | None = None

    def run(
        self, urls: Iterable[str], *, rejected: Iterable[BadLine] = ()
    ) -> Generator[Page, None, None]:
        """Yield a Page per URL attempted. `rejected` lines are logged as skipped."""
        _refuse_one_string(urls)
        self.stats = Stats()
        self._current = _Run(self.config, self.stats)
        return self._current.pages(urls, rejected)

    def stop(self) -> None:
        """Ask the running crawl to end in order; safe from any thread or a signal handler.

        Records already written stay; URLs not finished are simply not attempted. The
        iteration ends at the next step instead of being torn apart by an exception, so a
        record and its count in the stats can never part ways.
        """
        if self._current is not None:
            self._current.stopping.set()

    async def arun(self, urls: Iterable[str]) -> AsyncIterator[Page]:
        """`run` for asyncio programs: the crawl's threads do the work, the loop stays free.

        Each page is awaited from a worker thread. If the consumer is cancelled meanwhile,
        the run is told to stop, the step under way is awaited (a generator cannot be
        closed while it runs), and then the crawl is closed. A cancellation that comes
        while it closes waits for the closing, then is raised: cut short, the closing
        would leave the crawl's threads, processes and output behind.
        """
        import asyncio  # noqa: PLC0415 (whoever awaits this has it loaded; the CLI need not)

        _refuse_one_string(urls)
        self.stats = Stats()
        run = self._current = _Run(self.config, self.stats)
        pages = run.pages(urls, ())
        done = object()
        step: asyncio.Future[Any] | None = None
        try:
            while True:
                step = asyncio.ensure_future(asyncio.to_thread(next, pages, done))
                page = await asyncio.shield(step)
                if page is done:
                    return
                yield page
        finally:
            run.stopping.set()
            await _close_despite_cancellation(step, pages)


async def _close_despite_cancellation(
    step: asyncio.Future[Any] | None, pages: Generator[Page, None, None]
) -> None:
    """Close `pages` whatever cancellations come meanwhile (asyncio.run's end cancels
    too), then raise the cancellation if one came."""
    import asyncio  # noqa: PLC0415 (as in arun)

    closing = asyncio.ensure_future(_close_after(step, pages))
    cancelled = False
    while not closing.done():
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            cancelled = True
    closing.result()
    if cancelled:
        raise asyncio.CancelledError


async def _close_after(
    step: asyncio.Future[Any] | None, pages: Generator[Page, None, None]
) -> None:
    """Close a crawl's generator once the step under way (if any) has returned."""
    import asyncio  # noqa: PLC0415 (as in arun)

    if step is not None:
        with suppress(Exception):
            await step
    await asyncio.to_thread(pages.close)


class _Run:
    """One execution of a crawl: the threads, pools and sinks it owns, and their state."""

    def __init__(self, config: Config, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.policy = FetchPolicy(
            retries=config.retries,
            backoff=config.backoff,
            backoff_cap=config.backoff_cap,
            max_redirects=config.max_redirects,
        )
        self.robots = None if config.ignore_robots else RobotsGate(config.user_agent)
        self.fetcher: Fetcher | None = None
        self.events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self.fetch_slots = threading.BoundedSemaphore(config.workers)
        self.leases = threading.BoundedSemaphore(config.workers * LEASES_PER_WORKER)
        self.stopping = threading.Event()
        # robots.txt fetches waiting to be tried again; cancelled at shutdown, not left to
        # hold the run for up to 10 minutes in a program that goes on
        self.retry_timers: weakref.WeakSet[threading.Timer] = weakref.WeakSet()
        self.scope = Scope(frozenset())
        self.parse_waiting: deque[_ParseJob] = deque()
        self.parse_suspects: deque[_ParseJob] = deque()  # in the pool when a process died
        self.suspect_in_pool = False  # a suspect is being parsed: nothing may join it
        self.parsing = 0
        self.frontier: Frontier
        self.parse_stage: ParseStage
        self.output: CrawlOutput | None = None
        self.resumed = False

    def pages(
        self, urls: Iterable[str], rejected: Iterable[BadLine]
    ) -> Generator[Page, None, None]:
        crawl = fetcher = parser = dispatcher = None
        crawl_error: BaseException | None = None
        self.stats.start()
        try:
            if "processes" in (self.config.parse, self.config.fetch):
                from scraper.workers import refuse_a_main_children_cannot_run  # noqa: PLC0415

                refuse_a_main_children_cannot_run()
            urls = _strings(urls)
            crawl = open_crawl(self.config, self.stats)
            self.frontier, self.output, self.resumed = crawl.frontier, crawl.output, crawl.resumed
            yield from self._seed(urls, rejected)
            fetcher = self.fetcher = open_fetcher(
                self.config.fetch, _limits(self.config), workers=self.config.workers
            )
            dispatcher = threading.Thread(target=self._dispatch, name="dispatch", daemon=True)
            dispatcher.start()
            # Started with the first request, in the background (see ParseStage): a crawl
            # begins with robots.txt and its seeds, during which the parse processes start.
            # Started before, their fork server and children took CPU from the crawl's own
            # start and sent robots.txt 50-100 ms later.
            from scraper.parse_pool import ParseStage  # noqa: PLC0415

            parser = self.parse_stage = ParseStage(self.config)
            while not self._is_finished() and not self.stopping.is_set():
                try:
                    event = self.events.get(timeout=_POLL)
                except queue.Empty:
                    pass
                else:
                    yield from self._collect(event)
                    yield from self._collect_arrived()
                    self._feed_parser()
                self.stats.set_queued(self.frontier.pending())
        except (Exception, KeyboardInterrupt) as error:  # not GeneratorExit: see _shut_down
            crawl_error = error
            raise
        finally:
            self._shut_down(crawl, fetcher, parser, dispatcher, after_error=crawl_error)

    # -- seeding -----------------------------------------------------------------------

    def _seed(self, urls: Iterable[str], rejected: Iterable[BadLine]) -> Iterator[Page]:
        """Queue the listed URLs. One beyond --max-pages still gets its record, unfetched.

        A resumed crawl meets its seeds again: those already seen are simply not queued.
        """
        for bad in rejected:
            self._skip(bad.text, SkipReason.INVALID, None, f"line {bad.line}: {bad.reason}")
        seeds = []
        for raw in urls:
            if self.stopping.is_set():
                break
            try:
                url = canonicalize(raw)
            except InvalidURL as error:
                # a lone surrogate has no UTF-8: logged escaped, as SQLite and the JSONL need
                shown = raw.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
                self._skip(shown, SkipReason.INVALID, None, str(error))
                continue
            seeds.append(url)
            admission = self.frontier.add(Request(url))
            if admission is Admission.DUPLICATE and not self.resumed:
                self._skip(url, SkipReason.DUPLICATE, None, "listed more than once")
            elif admission is Admission.MAX_PAGES:
                limit = f"--max-pages {self.config.max_pages} reached"
                unsent = Request(url, attempt=0)
                yield self._record(page_for(unsent, FetchError(limit, ErrorKind.MAX_PAGES)))
        scope = Scope.around(seeds, self.config.allow_domains)
        saved = self.frontier.settings().get(_SCOPE_HOSTS, [])
        self.scope = Scope(scope.hosts | frozenset(saved), scope.domains)

    # -- dispatching (its own thread) --------------------------------------------------

    def _dispatch(self) -> None:
        """Lease URLs and start fetches, never more than `workers` at once."""
        try:
            self._dispatch_until_stopped()
        except Exception as error:  # the collector raises it in the iterating thread
            self.events.put(_Failed(error))

    def _dispatch_until_stopped(self) -> None:
        while not self.stopping.is_set():
            if not self.leases.acquire(timeout=_POLL):
                continue
            request = self.frontier.next_request(timeout=_POLL)
            if request is None:
                self._release_lease()
                continue
            leased_at = time.monotonic()  # when it took its host's slot: the pace it went at
            verdict = self.robots.check(request, time.monotonic()) if self.robots else None
            if verdict is Verdict.WAIT:  # its host's robots.txt is on its way
                self.frontier.fetched(request, sent=False)
                self._release_lease()
            elif verdict is Verdict.DENY:  # decided without a request: the lease stays
                self.frontier.fetched(request, sent=False)
                denial = self.robots.denial(request.url)  # type: ignore[union-attr]
                self.events.put(_Fetched(request, denial, attempted=False))
            elif verdict is Verdict.FETCH_ROBOTS:
                self._submit_when_a_slot_frees(robots_request(request))
            else:
                self._submit_when_a_slot_frees(request, leased_at)

    def _submit_when_a_slot_frees(self, request: Request, leased_at: float = math.inf) -> None:
        """Wait for a fetch slot, then start the fetch; the slot is freed when its answer is
        in. A URL is leased before its slot is taken, never after: a slot held while
        waiting for the frontier would starve a robots.txt retry waiting for that slot."""
        while not self.stopping.is_set():
            if self.fetch_slots.acquire(timeout=_POLL):
                self._submit(request, leased_at)
                return

    def _submit(self, request: Request, leased_at: float) -> None:
        """Start a fetch that holds a fetch slot. A fetcher that refuses it (closed while
        the run stops) gives a failed attempt, which the fetch policy retries, rather than
        a URL that never finishes."""
        assert self.fetcher is not None
        self.stats.fetch_started()
        started = time.monotonic()
        try:
            future = self.fetcher.submit(request)
        except RuntimeError as error:
            future = Future()
            future.set_exception(
                TransportError(f"cannot start the fetch: {error}", ErrorKind.CONNECT)
            )
        future.add_done_callback(functools.partial(self._on_fetched, request, started, leased_at))

    def _submit_later(self, request: Request, delay: float) -> None:
        """Fetch a robots.txt again (a retry, a redirect hop) under its URL's lease, after
        `delay`: from a timer thread, which may wait for a fetch slot where the collector
        must not."""
        timer = threading.Timer(delay, self._resubmit, args=(request,))
        timer.daemon = True
        timer.start()
        self.retry_timers.add(timer)

    def _resubmit(self, request: Request) -> None:
        """In a timer's thread: an error here would only be printed, and the robots.txt it
        was for would never be answered, holding its host's URLs for ever; the collector
        raises it instead, as the dispatcher's."""
        try:
            self._submit_when_a_slot_frees(request)
        except Exception as error:
            self.events.put(_Failed(error))

    def _on_fetched(
        self, request: Request, started: float, leased_at: float, future: Future[Response]
    ) -> None:
        """Done-callback of a fetch, run in whatever thread finished it: free the fetch slot
        and the host's politeness slot now, not when the collector gets to the answer, then
        hand the answer off. (A robots.txt frees its host when its rules are learnt.) Nothing
        here may lose the answer: an error would only be logged, and the crawl would wait
        for the answer forever."""
        outcome = _outcome(future)
        if isinstance(outcome, FetchError):  # a Response measured itself
            outcome.elapsed = time.monotonic() - started
        try:
            if not request.for_robots:
                self.frontier.fetched(
                    request, throttled=_is_push_back(outcome), started_at=leased_at
                )
        except Exception as error:  # the collector raises it: the crawl ends in order
            self.events.put(_Failed(error))
        finally:
            self.fetch_slots.release()
            self.events.put(_Fetched(request, outcome))

    def _on_parsed(self, jobs: list[_ParseJob], future: Future[list[PageWork]]) -> None:
        """Pass a batch's result on to the collector. What ends the crawl instead (a page
        that could not be saved on a full disk, parse processes that cannot start) is
        passed on too: raised in this callback, it would be logged by the pool, and the
        crawl would wait for the batch forever."""
        try:
            self.events.put(_Parsed(jobs, self.parse_stage.result(future)))
        except Exception as error:  # the collector raises it: the crawl ends in order
            self.events.put(_Failed(error))

    # -- collecting (the iterating thread) ---------------------------------------------

    def _collect_arrived(self) -> Iterator[Page]:
        """Collect the events that are already waiting (up to COLLECT_AT_ONCE) before feeding
        the parse pool: the pages they bring go to it together, in batches, instead of one
        hand-off each."""
        for _ in range(COLLECT_AT_ONCE):
            if self.stopping.is_set():
                return
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            yield from self._collect(event)

    def _collect(self, event: _Event) -> Iterator[Page]:
        if isinstance(event, _Failed):
            raise event.error
        if isinstance(event, _Parsed):
            yield from self._parsed(event)
            return
        request, outcome = event.request, event.outcome
        if event.attempted:
            self.stats.fetch_finished(
                outcome.elapsed,
                status=outcome.status if isinstance(outcome, Response) else None,
                size=len(outcome.body) if isinstance(outcome, Response) else 0,
            )
        if request.for_robots:
            self._robots_answer(request, outcome)
            return
        if not event.attempted:  # robots.txt decided: nothing was sent, nothing to retry
            yield from self._finished_fetch(dataclasses.replace(request, attempt=0), outcome)
            return
        decision = self.policy.decide(request, outcome)
        if isinstance(decision, Follow) and (blocked := self._blocked_redirect(request, decision)):
            decision = Finish(blocked)
        refused = decision.outcome if isinstance(decision, Finish) else None
        if isinstance(refused, FetchError) and isinstance(outcome, Response):
            # A redirect refused: this hop redirected too, and its answer was the last one.
            refused.elapsed = outcome.elapsed
            request = dataclasses.replace(request, redirects=(*request.redirects, request.url))
        if isinstance(decision, Retry):
            self._release_lease()
            self.stats.retry_scheduled()
            self.frontier.reschedule(request.retried(), delay=decision.delay)
        elif isinstance(decision, Follow):
            self._release_lease()
            if request.depth == 0:
                self._widen_scope(decision.target)
            self.frontier.reschedule(request.redirected(decision.target))
        else:
            yield from self._finished_fetch(request, decision.outcome)

    def _finished_fetch(self, request: Request, outcome: Response | FetchError) -> Iterator[Page]:
        """The last attempt of a URL is in: record it, or send its page to the parsers."""
        if isinstance(outcome, Response) and _is_good_html(outcome):
            # It keeps its lease until it enters the parse pool, which saves it.
            self.parse_waiting.append(_ParseJob(request, outcome))
            return
        self._release_lease()
        if isinstance(outcome, Response):
            yield self._finish(request, outcome, saved=self._save(request, outcome))
        elif request.depth > 0 and outcome.kind is ErrorKind.ROBOTS:
            self.frontier.done(request)
            self._skip(request.origin, SkipReason.ROBOTS, request.parent)
        elif outcome.kind is ErrorKind.PRIVATE_ADDRESS and not request.redirects:
            self.frontier.done(request)
            self._skip(request.origin, SkipReason.PRIVATE, request.parent, outcome.message)
        elif outcome.kind is ErrorKind.PRIVATE_ADDRESS:
            blocked = FetchError(outcome.message, ErrorKind.REDIRECT_BLOCKED)
            blocked.elapsed = outcome.elapsed
            yield self._finish(request, blocked)
        else:
            yield self._finish(request, outcome)

    def _blocked_redirect(self, request: Request, follow: Follow) -> FetchError | None:
        """A redirect of a discovered URL may not leave the scope, nor go public → private."""
        if request.depth == 0:
            return None
        if not self.scope.contains(follow.target):
            return FetchError(
                f"redirect to {follow.target} leaves the crawl's scope", ErrorKind.REDIRECT_BLOCKED
            )
        if self._crosses_into_private(request.url, follow.target):
            return FetchError(
                f"redirect to private address {follow.target}", ErrorKind.REDIRECT_BLOCKED
            )
        return None

    def _crosses_into_private(self, source: str, target: str) -> bool:
        return not self.config.allow_private and is_private(target) and not is_private(source)

    def _widen_scope(self, target: str) -> None:
        """A seed redirected: its target's host joins the scope, in this run and on resume."""
        self.scope = self.scope.widened(target)
        self.frontier.save_settings({_SCOPE_HOSTS: sorted(self.scope.hosts)})

    def _robots_answer(self, request: Request, outcome: Response | FetchError) -> None:
        """Learn a host's robots.txt (redirects followed) and release the URLs waiting on it."""
        decision = self.policy.decide(request, outcome)
        if isinstance(decision, Retry):  # the host's URLs wait; this one keeps its lease
            self._submit_later(request.retried(), decision.delay)
            self.stats.retry_scheduled()
            return
        if isinstance(decision, Follow):
            if not self._crosses_into_private(request.url, decision.target):
                self._submit_later(request.redirected(decision.target), 0.0)
                return
            message = f"robots.txt redirects to private address {decision.target}"
            outcome = FetchError(message, ErrorKind.REDIRECT_BLOCKED)
        assert self.robots is not None
        rules = RobotsRules.from_answer(outcome, now=time.monotonic())
        host = host_of(request.origin)
        self.frontier.set_delay(host, rules.crawl_delay(self.robots.agent))
        # Frees the slot its first URL took. A robots.txt that answered 429 or 503 in the
        # end (retries spent) slows its host as a page would: a 429 gives no rules (4xx)
        # and the host's pages would otherwise go out at full speed.
        self.frontier.fetched(Request(request.origin), throttled=_is_push_back(outcome))
        for waiting in self.robots.learn(host, rules):
            self.frontier.reschedule(waiting)
        self._release_lease()

    def _save(self, request: Request, response: Response) -> str | None:
        """Save a body the parse stage does not save: not HTML, or the pool lost its page."""
        if self.output and self.config.save_files and is_ok(response):
            return self.output.save_body(request.origin, response.body)
        return None

    def _feed_parser(self) -> None:
        """Move waiting pages into the parse pool while it has room.

        Pages go in batches of up to PARSE_BATCH when several wait: a hand-off to a parse
        process costs about 140 µs for one page and 64 µs a page in batches (measured here),
        and wakes fewer threads. After a parse process dies, the pages that were in the
        pool are suspects: each is parsed again alone, so the one that kills a process again
        is the one recorded.
        """
        while (room := PARSE_BACKLOG * self.config.parsers - self.parsing) > 0:
            batch = self._next_parse_batch(min(room, PARSE_BATCH))
            if not batch:
                return
            pages = [(job.request.url, job.request.origin, job.response) for job in batch]
            files = self.output.files if self.output and self.config.save_files else None
            future = self.parse_stage.submit(pages, files)
            if future is None:  # the pool had broken; a new one runs: send the batch again
                self.suspect_in_pool = False
                requeue = self.parse_suspects if batch[0].alone else self.parse_waiting
                requeue.extendleft(reversed(batch))
                continue
            self.parsing += len(batch)
            for job in batch:
                self.stats.parse_started()
                if job.holds_lease:
                    job.holds_lease = False
                    self._release_lease()
            future.add_done_callback(functools.partial(self._on_parsed, batch))

    def _next_parse_batch(self, size: int) -> list[_ParseJob]:
        """Up to `size` waiting pages; a suspect goes alone, once the pool is empty, and
        nothing joins it there until it is back: the last one too, when no suspect waits."""
        if self.suspect_in_pool or (self.parse_suspects and self.parsing):
            return []
        if self.parse_suspects:
            job = self.parse_suspects.popleft()
            job.alone = self.suspect_in_pool = True
            return [job]
        return [self.parse_waiting.popleft() for _ in range(min(size, len(self.parse_waiting)))]

    def _parsed(self, event: _Parsed) -> Iterator[Page]:
        self.parsing -= len(event.jobs)
        if event.jobs[0].alone:
            self.suspect_in_pool = False
        if isinstance(event.result, ParseError):
            yield from self._batch_lost(event.jobs, event.result)
            return
        for job, work in zip(event.jobs, event.result, strict=True):
            self.stats.parse_finished(work.seconds)
            request, response = job.request, job.response
            saved, sha256 = work.saved, work.sha256
            if isinstance(work.parsed, ParseError):
                yield self._finish(
                    request, response, saved=saved, sha256=sha256, failure=work.parsed
                )
                continue
            self._follow_links(request, response, work.parsed)
            yield self._finish(request, response, saved=saved, sha256=sha256, parsed=work.parsed)

    def _batch_lost(self, jobs: list[_ParseJob], error: ParseError) -> Iterator[Page]:
        """No result came back for a batch (a parse process died, or the result could not
        be sent back): each page is parsed again alone, so only a page that fails alone is
        blamed, and its body is saved here."""
        for job in jobs:
            self.stats.parse_finished(0.0)
            if not job.alone:
                self.parse_suspects.append(job)
                continue
            saved = self._save(job.request, job.response)
            yield self._finish(job.request, job.response, saved=saved, failure=error)

    def _follow_links(self, request: Request, response: Response, parsed: ParsedPage) -> None:
        """Queue the page's links that the crawl follows; account for every other one."""
        parent = request.origin
        skips = [Skipped(href, _unfetchable_reason(href), parent) for href in parsed.unfetchable]
        seen = self.frontier.seen_among(parsed.links)
        new_links = [link for link in parsed.links if link not in seen]
        followed, not_followed = self._sort_links(new_links, request, response, parsed)
        skips += not_followed
        duplicates = len(seen)
        for queued, admission in zip(followed, self.frontier.add_many(followed), strict=True):
            if admission is Admission.DUPLICATE:
                duplicates += 1
            elif admission is Admission.MAX_PAGES:
                skips.append(Skipped(queued.origin, SkipReason.MAX_PAGES, parent))
        if duplicates:
            self.stats.skipped(SkipReason.DUPLICATE.value, duplicates)
        self._log_skips(skips)

    def _sort_links(
        self,
        links: list[str],
        request: Request,
        response: Response,
        parsed: ParsedPage,
    ) -> tuple[list[Request], list[Skipped]]:
        """The page's new `links`: requests for those the crawl follows, and the others."""
        depth, parent = request.depth + 1, request.origin
        agent = self.robots.agent if self.robots else agent_token(self.config.user_agent)
        directives = (parsed.meta.robots, response.headers.get("x-robots-tag", ""))
        nofollow = any(_says_nofollow(text, agent) for text in directives)
        # From the URL's text, as for redirects: the address connected to may be a proxy's,
        # and is known to some strategies only (not to requests once the server closed).
        public_only = not self.config.allow_private and not is_private(response.url)
        followed: list[Request] = []
        skips: list[Skipped] = []
        for link in links:
            if nofollow or depth > self.config.depth:
                skips.append(Skipped(link, SkipReason.DEPTH, parent))
            elif not self.scope.contains(link):
                skips.append(Skipped(link, SkipReason.OFFSITE, parent))
            elif self._crosses_into_private(request.url, link):
                skips.append(Skipped(link, SkipReason.PRIVATE, parent))
            else:
                followed.append(Request(link, depth, parent, public_only=public_only))
        return followed, skips

    def _finish(
        self,
        request: Request,
        outcome: Response | FetchError,
        *,
        saved: str | None = None,
        parsed: ParsedPage | None = None,
        failure: ParseError | None = None,
        sha256: str | None = None,
    ) -> Page:
        page = self._record(
            page_for(request, outcome, saved=saved, parsed=parsed, failure=failure, sha256=sha256)
        )
        self.frontier.done(request)
        return page

    def _record(self, page: Page) -> Page:
        if self.output:
            self.output.record(page)
        self.stats.page_finished(ok=page.ok, error_kind=page.error["kind"] if page.error else None)
        return page

    def _skip(
        self, url: str, reason: SkipReason, parent: str | None, detail: str | None = None
    ) -> None:
        self._log_skips([Skipped(url, reason, parent, detail)])

    def _log_skips(self, skips: list[Skipped]) -> None:
        """Count URLs that will not be fetched; log each once in skipped.jsonl, in one write."""
        first = _once_each(skips, self.frontier.first_skips(skip.url for skip in skips))
        for reason, count in Counter(skip.reason.value for skip in first).items():
            self.stats.skipped(reason, count)
        if first and self.output and self.config.skipped_log:
            self.output.skipped(*first)
        self.frontier.skips_logged(skip.url for skip in first)

    def _release_lease(self) -> None:
        self.leases.release()

    def _is_finished(self) -> bool:
        idle_parsers = not (self.parse_waiting or self.parse_suspects or self.parsing)
        return idle_parsers and self.frontier.is_exhausted()

    def _shut_down(
        self,
        crawl: Crawl | None,
        fetcher: Fetcher | None,
        parser: ParseStage | None,
        dispatcher: threading.Thread | None,
        *,
        after_error: BaseException | None,
    ) -> None:
        """Stop every part in order, each even when an earlier one failed (a full disk can
        fail the state's last commit, then stats.json), and raise the first failure; but
        not over `after_error`, the error the crawl is ending on: that is the cause, and
        what fails after it is most often its consequence (the same full disk). A Ctrl-C
        always wins, so that it stops the program. A consumer that stops iterating
        (GeneratorExit) gets the shutdown's failure from `close()`."""
        self.stopping.set()
        for timer in list(self.retry_timers):
            timer.cancel()
        output = crawl.output if crawl is not None else None
        steps: list[Callable[[], object] | None] = [
            crawl.frontier.close if crawl else None,  # wakes a dispatcher waiting for a URL
            # A sequential fetch runs in the dispatcher and may take up to --timeout: do not
            # wait for it (the thread is a daemon; its answer goes nowhere).
            functools.partial(dispatcher.join, timeout=1.0) if dispatcher else None,
            fetcher.close if fetcher else None,
            functools.partial(parser.shutdown, abandon=self.parsing > 0) if parser else None,
            self.stats.stop,  # once everything else has shut down
            (lambda: output.close(self.stats.snapshot())) if output else None,  # stopped stats
        ]
        failure = _first_failure(step for step in steps if step is not None)
        if failure is None:
            return
        interrupts = isinstance(failure, KeyboardInterrupt)
        if after_error is None or (interrupts and not isinstance(after_error, KeyboardInterrupt)):
            raise failure
        _log.warning("while stopping after %r: %s", after_error, failure)


# -- values and pure helpers ---------------------------------------------------------------


def _first_failure(steps: Iterable[Callable[[], object]]) -> BaseException | None:
    """Run every step, whatever fails, a Ctrl-C included (the output must still be
    closed, stats.json written and the directory let go). The first Ctrl-C, else the
    first failure, else None."""
    failures: list[BaseException] = []
    for step in steps:
        try:
            step()
        except BaseException as error:  # returned, and raised by the caller
            failures.append(error)
    interrupts = [error for error in failures if isinstance(error, KeyboardInterrupt)]
    return (interrupts or failures or [None])[0]


def _refuse_one_string(urls: Iterable[str]) -> None:
    """A string is an iterable of URLs too, each a character long: say what was meant."""
    if isinstance(urls, str | bytes):
        raise TypeError(f"urls must be an iterable of URLs, not one string: use [{urls!r}]")


def _strings(urls: Iterable[str]) -> list[str]:
    """`urls` read to the end, every item a string, before the output opens. One that is not
    (bytes, None...) is a caller's mistake, not a bad URL: a TypeError, raised while
    nothing is written yet, so that the same call can be made again once mended."""
    listed = list(urls)
    for item in listed:
        if not isinstance(item, str):
            raise TypeError(f"urls must hold strings, not {type(item).__name__}: {shown(item)}")
    return listed


def _limits(config: Config) -> Limits:
    return Limits(timeout=config.timeout, max_bytes=config.max_bytes, user_agent=config.user_agent)


def _outcome(future: Future[Response]) -> Response | FetchError:
    """A finished fetch future as a value; an unexpected exception becomes a FetchError."""
    if future.cancelled():
        return TransportError("cancelled", ErrorKind.CONNECT)
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, FetchError):
        return error
    return TransportError(f"{type(error).__name__}: {error}", ErrorKind.PROTOCOL)


def _once_each(skips: list[Skipped], urls: set[str]) -> list[Skipped]:
    """The first skip of each URL in `urls`, in order; `urls` is used up."""
    first = []
    for skip in skips:
        if skip.url in urls:
            urls.remove(skip.url)
            first.append(skip)
    return first


def _unfetchable_reason(href: str) -> SkipReason:
    """Why a link the parser could not make a fetchable URL of is skipped."""
    return SkipReason.INVALID if has_fetchable_scheme(href) else SkipReason.SCHEME


def _is_good_html(response: Response) -> bool:
    return is_ok(response) and is_html(response.headers.get("content-type"))


def _is_push_back(outcome: Response | FetchError) -> bool:
    """An answer that asks us to slow down: 429, 503, or a reset or timed-out connection."""
    if isinstance(outcome, Response):
        return outcome.status in (429, 503)
    return outcome.kind in (ErrorKind.CONNECT, ErrorKind.TIMEOUT)


def _says_nofollow(directives: str | None, agent: str) -> bool:
    """Robots directives (meta robots, X-Robots-Tag) ask `agent` not to follow links.

    "nofollow" and "none" count. A part naming a crawler ("otherbot: nofollow") concerns
    that crawler only. Repeated headers arrive joined by commas, so when in doubt a bare
    directive counts for everyone: the polite reading.
    """
    for part in (directives or "").lower().split(","):
        name, named, rule = part.partition(":")
        if named and name.strip() not in (agent.lower(), "*"):
            continue
        if (rule if named else name).strip() in ("nofollow", "none"):
            return True
    return False
