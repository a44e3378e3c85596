"""Politeness: robots.txt rules and gate, per-host slots and delays, nofollow.

The unit tests are pure. The integration tests crawl a small aiohttp site of this module's
own on 127.0.0.1 (port 0, bound by the server itself) whose routes each test sets, and which
records every request's path and monotonic arrival time and how many requests were in flight
at once. Delays are checked from the server's side, as lower bounds only.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from jsonl import read_jsonl, skipped_by_url
from sites import Site, serving_site

from scraper import Page, crawl, politeness
from scraper.errors import ErrorKind, FetchError, TransportError
from scraper.fetch import Response
from scraper.politeness import (
    CRAWL_DELAY_CAP,
    ROBOTS_RECHECK,
    THROTTLE_FIRST_DELAY,
    HostSlots,
    RobotsGate,
    RobotsRules,
    Verdict,
    agent_token,
    robots_url,
)
from scraper.records import Request

FAST = {"backoff": 0, "timeout": 5.0, "parse": "inline", "retries": 0}
AGENT = "scraper"
SLACK = 0.03  # seconds of scheduling noise allowed between a request's lease and its arrival


# -- RobotsRules.from_answer ---------------------------------------------------------------


def answer(status: int, body: str = "") -> Response:
    return Response(
        url="http://h.example/robots.txt",
        status=status,
        reason="",
        headers={"content-type": "text/plain"},
        body=body.encode(),
        elapsed=0.0,
    )


def test_rules_from_200_allow_and_deny_by_path() -> None:
    text = "User-agent: *\nDisallow: /private/\nAllow: /private/open\n"
    rules = RobotsRules.from_answer(answer(200, text), now=5.0)
    assert rules.allows("http://h.example/", AGENT)
    assert rules.allows("http://h.example/public/page", AGENT)
    assert not rules.allows("http://h.example/private/secret", AGENT)
    assert rules.allows("http://h.example/private/open", AGENT)
    assert rules.unavailable is None
    assert rules.expires == float("inf")
    assert rules.crawl_delay(AGENT) == 0.0


def test_rules_from_200_use_the_group_for_our_agent() -> None:
    text = "User-agent: scraper\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    rules = RobotsRules.from_answer(answer(200, text), now=0.0)
    assert not rules.allows("http://h.example/page", AGENT)
    assert rules.allows("http://h.example/page", "otherbot")


def test_rules_read_crawl_delay() -> None:
    text = "User-agent: *\nCrawl-delay: 2.5\nDisallow:\n"
    rules = RobotsRules.from_answer(answer(200, text), now=0.0)
    assert rules.crawl_delay(AGENT) == 2.5


def test_crawl_delay_is_capped() -> None:
    text = "User-agent: *\nCrawl-delay: 86400\n"
    rules = RobotsRules.from_answer(answer(200, text), now=0.0)
    assert rules.crawl_delay(AGENT) == CRAWL_DELAY_CAP


def test_undecodable_robots_txt_is_read_leniently() -> None:
    body = b"User-agent: *\nDisallow: /caf\xe9\nDisallow: /private/\n"
    response = Response("http://h.example/robots.txt", 200, "OK", {}, body, 0.0)
    rules = RobotsRules.from_answer(response, now=0.0)
    assert not rules.allows("http://h.example/private/x", AGENT)
    assert rules.allows("http://h.example/public", AGENT)


def test_a_byte_order_mark_does_not_hide_the_first_group() -> None:
    body = "\ufeffUser-agent: *\nDisallow: /secret\n".encode()
    response = Response("http://h.example/robots.txt", 200, "OK", {}, body, 0.0)
    rules = RobotsRules.from_answer(response, now=0.0)
    assert not rules.allows("http://h.example/secret", AGENT)
    assert rules.allows("http://h.example/public", AGENT)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_rules_from_4xx_allow_everything(status: int) -> None:
    rules = RobotsRules.from_answer(answer(status, "User-agent: *\nDisallow: /\n"), now=0.0)
    assert rules.allows("http://h.example/anything", AGENT)
    assert rules.unavailable is None
    assert rules.expires == float("inf")
    assert rules.crawl_delay(AGENT) == 0.0


@pytest.mark.parametrize("status", [500, 503])
def test_rules_from_5xx_deny_everything_for_a_while(status: int) -> None:
    rules = RobotsRules.from_answer(answer(status), now=100.0)
    assert not rules.allows("http://h.example/", AGENT)
    assert not rules.allows("http://h.example/page", AGENT)
    assert rules.unavailable is not None
    assert rules.unavailable.kind is ErrorKind.ROBOTS
    assert str(status) in rules.unavailable.message
    assert rules.expires == 100.0 + ROBOTS_RECHECK


@pytest.mark.parametrize("kind", [ErrorKind.CONNECT, ErrorKind.DNS, ErrorKind.TIMEOUT])
def test_unreachable_robots_txt_denies_with_the_errors_kind(kind: ErrorKind) -> None:
    rules = RobotsRules.from_answer(TransportError("refused", kind), now=10.0)
    assert not rules.allows("http://h.example/", AGENT)
    assert rules.unavailable is not None
    assert rules.unavailable.kind is kind
    assert "robots.txt" in rules.unavailable.message
    assert "refused" in rules.unavailable.message
    assert rules.expires == 10.0 + ROBOTS_RECHECK


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_robots_txt_ending_in_a_redirect_is_unavailable(status: int) -> None:
    """A 3xx is the last answer when its redirects were refused (a loop, too many, an
    unusable target) or it had no Location: RFC 9309 2.3.1.2 lets robots.txt count as
    unavailable then, and unavailable (like a 4xx) means no rules."""
    rules = RobotsRules.from_answer(answer(status), now=0.0)
    assert rules.unavailable is None
    assert rules.allows("http://h.example/anything", AGENT)


# -- agent_token, robots_url ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "token"),
    [
        ("scraper/0.1.0 (+https://example.org/bot)", "scraper"),
        ("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla"),
        ("mybot", "mybot"),
        ("mybot (+https://example.com/bot)", "mybot"),
        ("  padded/2.0", "padded"),
    ],
)
def test_agent_token(user_agent: str, token: str) -> None:
    assert agent_token(user_agent) == token


def test_agent_token_of_a_user_agent_without_product_name_does_not_crash() -> None:
    # Config accepts user_agent="/1.0" (it is non-empty), so the gate must be buildable.
    gate = RobotsGate("/1.0")
    assert isinstance(gate.agent, str)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/a/b?q=1", "http://example.com/robots.txt"),
        ("https://example.com/", "https://example.com/robots.txt"),
        ("http://example.com:8080/deep/page", "http://example.com:8080/robots.txt"),
        ("http://user:secret@example.com:81/x?y=2", "http://example.com:81/robots.txt"),
        ("https://example.com/robots.txt?again", "https://example.com/robots.txt"),
        ("http://[::1]:8080/x", "http://[::1]:8080/robots.txt"),
    ],
)
def test_robots_url(url: str, expected: str) -> None:
    assert robots_url(url) == expected


# -- RobotsGate ----------------------------------------------------------------------------


def rules_from(text: str) -> RobotsRules:
    return RobotsRules.from_answer(answer(200, text), now=0.0)


def test_gate_fetches_robots_once_per_host_and_holds_the_rest() -> None:
    gate = RobotsGate("scraper/1.0")
    assert gate.agent == "scraper"
    first, second, third = (Request(f"http://h.example/{n}") for n in ("a", "b", "private/c"))
    assert gate.check(first, 0.0) is Verdict.FETCH_ROBOTS
    assert gate.check(second, 0.0) is Verdict.WAIT
    assert gate.check(third, 0.0) is Verdict.WAIT
    other = Request("http://other.example/")
    assert gate.check(other, 0.0) is Verdict.FETCH_ROBOTS

    waiting = gate.learn("h.example", rules_from("User-agent: *\nDisallow: /private/\n"))
    assert waiting == [first, second, third]
    assert gate.check(second, 1.0) is Verdict.ALLOW
    assert gate.check(third, 1.0) is Verdict.DENY
    assert gate.check(Request("http://h.example/new"), 1.0) is Verdict.ALLOW
    denial = gate.denial(third.url)
    assert isinstance(denial, FetchError)
    assert denial.kind is ErrorKind.ROBOTS
    # the other host is still waiting for its own robots.txt
    assert gate.check(Request("http://other.example/x"), 1.0) is Verdict.WAIT
    assert gate.learn("other.example", RobotsRules()) == [other, Request("http://other.example/x")]


def test_gate_keys_hosts_with_their_port() -> None:
    gate = RobotsGate("scraper/1.0")
    assert gate.check(Request("http://h.example:8080/a"), 0.0) is Verdict.FETCH_ROBOTS
    assert gate.check(Request("http://h.example/a"), 0.0) is Verdict.FETCH_ROBOTS
    assert gate.learn("h.example:8080", RobotsRules()) == [Request("http://h.example:8080/a")]


def test_gate_learn_with_nothing_waiting() -> None:
    gate = RobotsGate("scraper/1.0")
    assert gate.learn("h.example", RobotsRules()) == []
    assert gate.check(Request("http://h.example/a"), 0.0) is Verdict.ALLOW


def test_gate_asks_again_when_rules_expire() -> None:
    gate = RobotsGate("scraper/1.0")
    first = Request("http://h.example/a")
    assert gate.check(first, 0.0) is Verdict.FETCH_ROBOTS
    assert gate.learn("h.example", RobotsRules.from_answer(answer(503), now=0.0)) == [first]
    assert gate.check(first, 1.0) is Verdict.DENY
    assert gate.denial(first.url).kind is ErrorKind.ROBOTS
    assert "503" in gate.denial(first.url).message
    later = ROBOTS_RECHECK + 1.0
    assert gate.check(first, later) is Verdict.FETCH_ROBOTS
    assert gate.check(Request("http://h.example/b"), later) is Verdict.WAIT
    assert len(gate.learn("h.example", RobotsRules())) == 2
    assert gate.check(first, later + 1.0) is Verdict.ALLOW


def test_gate_denial_of_an_unreachable_host_carries_its_kind() -> None:
    gate = RobotsGate("scraper/1.0")
    gate.check(Request("http://h.example/a"), 0.0)
    down = TransportError("connection refused", ErrorKind.CONNECT)
    gate.learn("h.example", RobotsRules.from_answer(down, now=0.0))
    assert gate.check(Request("http://h.example/a"), 1.0) is Verdict.DENY
    assert gate.denial("http://h.example/a").kind is ErrorKind.CONNECT


# -- HostSlots -----------------------------------------------------------------------------


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ±50% jitter always pick its lower bound: delays are exactly half."""
    monkeypatch.setattr(politeness.random, "uniform", lambda low, high: low)


@pytest.mark.usefixtures("no_jitter")
def test_set_delay_never_lowers_below_the_global_delay() -> None:
    slots = HostSlots(per_host=4, delay=1.0)
    slots.set_delay("h", 0.5)
    slots.set_delay("h", 0.0)
    slots.start("h", 100.0)
    assert slots.next_start("h") == 100.0 + 1.0 * 0.5


@pytest.mark.usefixtures("no_jitter")
def test_set_delay_raises_one_hosts_delay() -> None:
    slots = HostSlots(per_host=4, delay=1.0)
    slots.set_delay("slow", 4.0)
    slots.start("slow", 100.0)
    slots.start("other", 100.0)
    assert slots.next_start("slow") == 100.0 + 4.0, "a Crawl-delay is a minimum: no jitter below"
    assert slots.next_start("other") == 100.0 + 1.0 * 0.5


def test_delay_spaces_starts_even_with_free_slots() -> None:
    slots = HostSlots(per_host=3, delay=1.0)
    assert slots.can_start("h", 100.0)
    slots.start("h", 100.0)
    assert not slots.can_start("h", 100.49)  # the jitter never goes below half the delay
    assert slots.can_start("h", 101.51)
    assert slots.can_start("other", 100.0)


def test_per_host_caps_requests_in_flight() -> None:
    slots = HostSlots(per_host=2)
    slots.start("h", 0.0)
    slots.start("h", 0.0)
    assert not slots.can_start("h", 0.0)
    slots.finish("h", 0.0, throttled=False)
    assert slots.can_start("h", 0.0)


@pytest.fixture
def site() -> Iterator[Site]:
    with serving_site(Site()) as running:
        yield running


@pytest.fixture
def other_site() -> Iterator[Site]:
    with serving_site(Site()) as running:
        yield running


# -- helpers -------------------------------------------------------------------------------


def run_crawl(urls: list[str], **options: Any) -> dict[str, Page]:
    pages = list(crawl(urls, **{**FAST, **options}))
    index = {page.url: page for page in pages}
    assert len(index) == len(pages), "a URL was recorded more than once"
    return index


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [later - earlier for earlier, later in itertools.pairwise(ordered)]


# -- robots.txt over HTTP ------------------------------------------------------------------


def test_robots_txt_is_requested_first_and_once_per_host(site, other_site, tmp_path):
    seeds = []
    for server in (site, other_site):
        server.robots("User-agent: *\nAllow: /\n")
        root = server.page("/", "/a", "/b", "/c")
        seeds += [root, server.page("/a", "/b", "/"), server.page("/b", "/c"), server.page("/c")]
    pages = run_crawl(seeds, depth=2, workers=8, per_host=4, output=tmp_path)

    assert set(pages) == set(seeds)
    assert all(page.ok for page in pages.values())
    for server in (site, other_site):
        assert server.paths[0] == "/robots.txt"
        assert server.paths.count("/robots.txt") == 1
        assert sorted(server.paths) == ["/", "/a", "/b", "/c", "/robots.txt"]


def test_disallowed_listed_url_gets_a_robots_record(site, tmp_path):
    site.robots("User-agent: *\nDisallow: /secret\n")
    root, secret = site.page("/"), site.page("/secret")
    pages = run_crawl([root, secret], output=tmp_path)

    denied = pages[secret]
    assert denied.ok is False
    assert denied.status is None
    assert denied.error is not None
    assert denied.error["kind"] == "robots"
    assert pages[root].ok
    assert "/secret" not in site.paths
    records = {record["url"]: record for record in read_jsonl(tmp_path / "pages.jsonl")}
    assert records[secret]["ok"] is False
    assert records[secret]["status"] is None
    assert records[secret]["error"]["kind"] == "robots"


def test_disallowed_discovered_link_is_skipped_and_never_requested(site, tmp_path):
    site.robots("User-agent: *\nDisallow: /secret/\n")
    root = site.page("/", "/secret/x", "/open")
    secret, open_page = site.page("/secret/x"), site.page("/open")
    pages = run_crawl([root], depth=1, output=tmp_path)

    assert set(pages) == {root, open_page}
    assert "/secret/x" not in site.paths
    assert skipped_by_url(tmp_path)[secret] == {
        "url": secret,
        "reason": "robots",
        "parent": root,
        "detail": None,
    }
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["skipped"].get("robots") == 1


def test_robots_txt_404_allows_everything(site, tmp_path):
    root = site.page("/", "/secret")
    secret = site.page("/secret")
    pages = run_crawl([root], depth=1, output=tmp_path)

    assert set(pages) == {root, secret}
    assert all(page.ok for page in pages.values())
    assert site.paths[0] == "/robots.txt"
    assert sorted(site.paths) == ["/", "/robots.txt", "/secret"]


def test_robots_txt_500_denies_the_whole_host(site, tmp_path):
    site.robots("oops", status=500)
    root, other = site.page("/", "/linked"), site.page("/other")
    pages = run_crawl([root, other], depth=1, retries=2, output=tmp_path)

    assert set(pages) == {root, other}
    for page in pages.values():
        assert page.ok is False
        assert page.status is None
        assert page.error is not None
        assert page.error["kind"] == "robots"
        assert "500" in page.error["message"]
    assert set(site.paths) == {"/robots.txt"}


def test_robots_txt_429_allows_the_host_but_slows_it(site, tmp_path):
    """A 4xx gives no rules (RFC 9309), but a 429 is the host pushing back: its pages
    wait for the gap a 429 imposes (1 s), as after a page's 429."""
    site.robots("slow down", status=429)
    root = site.page("/", "/a", "/b")
    site.page("/a"), site.page("/b")
    pages = run_crawl([root], depth=1, retries=0, workers=4, per_host=4, output=tmp_path)

    assert all(page.ok for page in pages.values()) and len(pages) == 3
    arrivals = site.arrivals(robots=True)
    assert arrivals[1] - arrivals[0] >= THROTTLE_FIRST_DELAY - SLACK


def test_robots_txt_redirect_is_followed_and_obeyed(site, tmp_path):
    site.redirect("/robots.txt", "/real-robots.txt")
    site.robots("User-agent: *\nDisallow: /secret\n", path="/real-robots.txt")
    root, secret = site.page("/", "/secret"), site.page("/secret")
    pages = run_crawl([root, secret], depth=1, output=tmp_path)

    assert pages[root].ok
    assert pages[secret].error is not None
    assert pages[secret].error["kind"] == "robots"
    assert site.paths[:2] == ["/robots.txt", "/real-robots.txt"]
    assert sorted(site.paths) == ["/", "/real-robots.txt", "/robots.txt"]


def test_robots_txt_over_max_bytes_leaves_its_host_unread(site, tmp_path):
    site.robots("# padding\n" * 200)  # 2,000 bytes
    root = site.page("/")
    [page] = run_crawl([root], max_bytes=1000, output=tmp_path).values()

    assert page.error is not None and page.error["kind"] == "too_large"
    assert page.attempts == 0
    assert site.paths == ["/robots.txt"]


def test_robots_txt_redirecting_in_a_loop_gives_no_rules(site, tmp_path):
    site.redirect("/robots.txt", "/robots.txt?again")
    site.redirect("/robots.txt?again", "/robots.txt")
    root = site.page("/", "/a")
    site.page("/a")
    pages = run_crawl([root], depth=1, output=tmp_path)

    assert all(page.ok for page in pages.values()) and len(pages) == 2
    assert site.paths[:2] == ["/robots.txt", "/robots.txt?again"]


def test_a_robots_txt_redirect_is_followed_with_a_single_worker(site, tmp_path):
    """The hop waits for the one fetch slot. The dispatcher must not hold that slot while
    it waits for the frontier (whose URLs wait for robots.txt), or the crawl never ends:
    it hung 7 times in 10 when it did. A hang fails the test instead of stalling it."""
    site.redirect("/robots.txt", "/real-robots.txt")
    site.robots("User-agent: *\nAllow: /\n", path="/real-robots.txt")
    root = site.page("/")
    for attempt in range(3):
        records: list[dict[str, Page]] = []
        output = tmp_path / str(attempt)
        runner = threading.Thread(
            target=lambda found, where: found.append(run_crawl([root], workers=1, output=where)),
            args=(records, output),
            daemon=True,
        )
        runner.start()
        runner.join(30)
        assert records, f"the crawl did not end (attempt {attempt + 1})"
        assert records[0][root].ok


def test_ignore_robots_neither_requests_nor_obeys_robots_txt(site, tmp_path):
    site.robots("User-agent: *\nDisallow: /\n")
    root = site.page("/", "/secret")
    secret = site.page("/secret")
    pages = run_crawl([root], depth=1, ignore_robots=True, output=tmp_path)

    assert set(pages) == {root, secret}
    assert all(page.ok for page in pages.values())
    assert "/robots.txt" not in site.paths
    assert sorted(site.paths) == ["/", "/secret"]


# -- spacing and concurrency ---------------------------------------------------------------


def test_crawl_delay_spaces_requests_to_the_host(site):
    site.robots("User-agent: *\nCrawl-delay: 0.3\n")
    seeds = [site.page(f"/p{n}") for n in range(5)]
    pages = run_crawl(seeds, workers=8, per_host=4)

    assert all(page.ok for page in pages.values())
    arrivals = site.arrivals()
    assert len(arrivals) == 5
    assert min(gaps(arrivals)) >= 0.3 - SLACK  # Crawl-delay is a minimum, never jittered below


def test_delay_spaces_request_starts_even_with_several_slots_per_host(site):
    site.hold = 0.5  # longer than any jittered gap: the requests overlap
    seeds = [site.page(f"/p{n}") for n in range(5)]
    pages = run_crawl(seeds, workers=8, per_host=4, delay=0.2)

    assert all(page.ok for page in pages.values())
    arrivals = site.arrivals(robots=True)
    assert len(arrivals) == 6
    assert min(gaps(arrivals)) >= 0.2 * 0.5 - SLACK
    assert site.max_in_flight >= 2  # spaced starts, not one request after another


def test_per_host_caps_concurrent_requests(site):
    site.hold = 0.1
    seeds = [site.page(f"/p{n}") for n in range(10)]
    pages = run_crawl(seeds, workers=8, per_host=2)

    assert all(page.ok for page in pages.values())
    assert len(site.arrivals()) == 10
    assert site.max_in_flight == 2


# -- nofollow ------------------------------------------------------------------------------


NOFOLLOW = [
    pytest.param((("X-Robots-Tag", "nofollow"),), "", id="header-nofollow"),
    pytest.param((("X-Robots-Tag", "noindex, nofollow"),), "", id="header-noindex-nofollow"),
    pytest.param((("X-Robots-Tag", "none"),), "", id="header-none"),
    pytest.param((), '<meta name="robots" content="nofollow">', id="meta-nofollow"),
    pytest.param((), '<meta name="ROBOTS" content="NoIndex, NoFollow">', id="meta-mixed-case"),
    # The directive names our own crawler: it concerns us.
    pytest.param((("X-Robots-Tag", "scraper: nofollow"),), "", id="header-our-agent"),
    # Two headers, joined with ", " on receipt: one for another bot, one for everyone.
    pytest.param(
        (("X-Robots-Tag", "otherbot: noindex"), ("X-Robots-Tag", "nofollow")),
        "",
        id="header-repeated",
    ),
    # Several robots meta tags combine.
    pytest.param(
        (),
        '<meta name="robots" content="noindex"><meta name="robots" content="nofollow">',
        id="meta-repeated",
    ),
]


@pytest.mark.parametrize(("headers", "head"), NOFOLLOW)
def test_nofollow_stops_link_following(site, tmp_path, headers, head):
    root = site.page("/", "/child", head=head, headers=headers)
    child = site.page("/child")
    pages = run_crawl([root], depth=1, output=tmp_path)

    assert set(pages) == {root}
    assert pages[root].links == (child,)  # the links are still recorded
    assert "/child" not in site.paths
    assert skipped_by_url(tmp_path)[child] == {
        "url": child,
        "reason": "depth",
        "parent": root,
        "detail": None,
    }


@pytest.mark.parametrize(
    "value", ["otherbot: nofollow", "googlebot: none", "noindex", "noarchive, nosnippet"]
)
def test_robots_header_for_another_crawler_or_without_nofollow_is_ignored(site, tmp_path, value):
    root = site.page("/", "/child", headers=(("X-Robots-Tag", value),))
    child = site.page("/child")
    pages = run_crawl([root], depth=1, output=tmp_path)

    assert set(pages) == {root, child}
    assert "/child" in site.paths
    assert child not in skipped_by_url(tmp_path)


# -- adaptive back-off ----------------------------------------------------------------------


@pytest.mark.usefixtures("no_jitter")
def test_a_host_that_pushes_back_is_slowed_and_then_restored():
    slots = politeness.HostSlots(per_host=4)
    for _ in range(4):
        slots.start("h", 0.0)
    slots.finish("h", 10.0, throttled=True, started_at=0.0)
    assert not slots.can_start("h", 10.0), "the first push-back imposes a gap"
    first_gap = slots.next_start("h")
    assert first_gap >= 10.0 + politeness.THROTTLE_FIRST_DELAY
    for _ in range(3):  # sent before the host was slowed: the same overload, counted once
        slots.finish("h", 10.5, throttled=True, started_at=0.0)
    assert slots.next_start("h") == first_gap
    slots.start("h", first_gap)  # sent after it, and pushed back too: now the gap doubles
    slots.finish("h", first_gap, throttled=True, started_at=first_gap)
    assert slots.next_start("h") >= first_gap + 2 * politeness.THROTTLE_FIRST_DELAY
    later = 100.0
    # concurrency was halved twice (4 -> 2 -> 1): with one active, no other may start
    slots.start("h", later)
    assert not slots.can_start("h", later + 10.0), "past the gap, but at the limit"
    slots.finish("h", later, throttled=False)
    later += 10.0
    assert slots.can_start("h", later)
    for _ in range(10):  # normal answers give back the gap and the slots, step by step
        slots.start("h", later)
        later += 100.0
        slots.finish("h", later, throttled=False)
    for _ in range(4):
        assert slots.can_start("h", later)
        slots.start("h", later)
    assert not slots.can_start("h", later), "never above per_host"


@pytest.mark.usefixtures("no_jitter")
def test_answers_sent_before_a_slow_down_do_not_speed_the_host_up():
    """Requests counted, not stamped, let old 200s undo a slow-down, after which a fresh
    503 was taken for an old one: the host ran at full speed while it pushed back."""
    slots = politeness.HostSlots(per_host=8)
    for _ in range(8):
        slots.start("h", 0.0)
    slots.finish("h", 1.0, throttled=True, started_at=0.0)
    for _ in range(4):
        slots.finish("h", 1.1, throttled=False, started_at=0.0)
    assert slots.next_start("h") == 1.0 + politeness.THROTTLE_FIRST_DELAY, "not sped up"
    slots.start("h", 2.0)
    slots.finish("h", 2.5, throttled=True, started_at=2.0)
    assert slots.next_start("h") == 2.5 + 2 * politeness.THROTTLE_FIRST_DELAY


@pytest.mark.usefixtures("no_jitter")
def test_the_gap_stops_doubling_at_its_cap():
    slots = politeness.HostSlots(per_host=1)
    for _ in range(20):
        slots.start("h", 0.0)
        slots.finish("h", 0.0, throttled=True)
    assert slots.next_start("h") == politeness.THROTTLE_DELAY_CAP


@pytest.mark.usefixtures("no_jitter")
def test_an_unsent_request_gives_back_its_delay():
    slots = politeness.HostSlots(per_host=2, delay=5.0)
    slots.start("h", 0.0)
    slots.finish("h", 1.0, throttled=False)
    before = slots.next_start("h")
    slots.start("h", 100.0)
    slots.finish("h", 100.0, throttled=False, sent=False)
    assert slots.next_start("h") == before


@pytest.mark.usefixtures("no_jitter")
def test_an_unsent_request_does_not_undo_a_push_back_that_came_meanwhile():
    """Answers are settled in the fetchers' threads: a 429 can arrive between a URL's lease
    and robots.txt's verdict on it. Giving back the unsent request's gap keeps the 429's."""
    slots = politeness.HostSlots(per_host=4)
    slots.start("h", 0.0)  # a request that gets a 429
    slots.start("h", 0.0)  # a URL that robots.txt turns out to deny: never sent
    slots.finish("h", 10.0, throttled=True)
    slots.finish("h", 10.0, throttled=False, sent=False)
    assert slots.next_start("h") >= 10.0 + politeness.THROTTLE_FIRST_DELAY
    assert not slots.can_start("h", 10.5)
