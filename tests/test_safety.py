"""Address safety and crawl limits: private addresses, redirect guards, skip log, max_pages.

Loopback test servers are private addresses themselves, so a public host is emulated with
`responses`, which patches requests in-process: no request here leaves the process, and a
URL with no mock registered fails as a connection error instead of reaching the network.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import responses
from jsonl import read_jsonl, skipped_by_url

from scraper import Page, crawl
from scraper.urls import is_private

PUBLIC = "http://public.example/"
OTHER = "http://other.example/"
PRIVATE_LINKS = ["http://127.0.0.1:9/x", "http://10.0.0.5/y", "http://[::1]/z"]
PRIVATE_HOSTS = ("127.0.0.1", "10.0.0.5", "::1")  # as --allow-domain: brings them in scope
PRIVATE_ROBOTS = [
    "http://127.0.0.1:9/robots.txt",
    "http://10.0.0.5/robots.txt",
    "http://[::1]/robots.txt",
]
OTHER_SCHEMES = ["javascript:alert(1)", "mailto:someone@public.example", "ftp://public.example/f"]
FAST = {"backoff": 0, "timeout": 5.0, "fetch": "sequential", "parse": "inline", "retries": 0}


# -- is_private ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.8.9.10:8080/x",
        "http://[::1]/",
        "http://[::1]:8080/",
        "http://10.0.0.5/",
        "http://10.255.255.254/",
        "http://172.16.0.1/",
        "http://172.31.255.254/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:7f00:1]/",  # 127.0.0.1, IPv4-mapped
        "http://0.0.0.0/",
        "http://localhost/",
        "http://localhost:8080/admin",
        "http://foo.localhost/",
        "http://a.b.localhost:3000/",
    ],
)
def test_private_addresses(url: str) -> None:
    assert is_private(url)


@pytest.mark.parametrize(
    "url",
    [
        # Spellings that the resolver (getaddrinfo, inet_aton) reads as 127.0.0.1:
        "http://localhost./",
        "http://foo.localhost./",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
    ],
)
def test_other_spellings_of_loopback_are_private(url: str) -> None:
    assert is_private(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://public.example/page",
        "http://8.8.8.8/",
        "http://172.32.0.1/",  # just past 172.16/12
        "http://172.15.255.255/",  # just before it
        "http://192.169.0.1/",
        "http://11.0.0.1/",
        "http://[2001:4860:4860::8888]/",
        "http://localhost.example.com/",
        "http://mylocalhost/",
    ],
)
def test_public_addresses_and_names(url: str) -> None:
    assert not is_private(url)


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def html(*links: str) -> str:
    anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{anchors}</body></html>"


def page(mock: responses.RequestsMock, url: str, *links: str) -> str:
    mock.get(url, body=html(*links), content_type="text/html")
    return url


def missing(mock: responses.RequestsMock, *urls: str) -> None:
    for url in urls:
        mock.get(url, status=404, body="not found")


def redirect(mock: responses.RequestsMock, url: str, location: str) -> str:
    mock.get(url, status=302, headers={"Location": location})
    return url


def requested(mock: responses.RequestsMock) -> list[str]:
    return [call.request.url or "" for call in mock.calls]


def run_crawl(urls: list[str], **options: Any) -> dict[str, Page]:
    pages = list(crawl(urls, **{**FAST, **options}))
    index = {page.url: page for page in pages}
    assert len(index) == len(pages), "a URL was recorded more than once"
    return index


def error_kind(page: Page) -> str | None:
    return page.error["kind"] if page.error else None


# -- links from a public host --------------------------------------------------------------


@pytest.fixture
def public_site(mock: responses.RequestsMock) -> responses.RequestsMock:
    """public.example links to three private addresses, to /ok and to other schemes; the
    private URLs are mocked too, so a request to them would succeed and be counted."""
    missing(mock, PUBLIC + "robots.txt", *PRIVATE_ROBOTS)
    page(mock, PUBLIC, *PRIVATE_LINKS, PUBLIC + "ok", *OTHER_SCHEMES)
    page(mock, PUBLIC + "ok")
    for link in PRIVATE_LINKS:
        page(mock, link)
    return mock


def test_links_to_private_addresses_are_not_followed(public_site, tmp_path):
    # --allow-domain puts the private hosts in scope: only the address guard stops them.
    pages = run_crawl([PUBLIC], depth=1, allow_domains=PRIVATE_HOSTS, output=tmp_path)

    assert set(pages) == {PUBLIC, PUBLIC + "ok"}
    assert all(page.ok for page in pages.values())
    assert sorted(requested(public_site)) == [PUBLIC, PUBLIC + "ok", PUBLIC + "robots.txt"]
    skipped = skipped_by_url(tmp_path)
    for link in PRIVATE_LINKS:
        assert skipped[link] == {"url": link, "reason": "private", "parent": PUBLIC, "detail": None}
    for href in OTHER_SCHEMES:
        assert skipped[href]["reason"] == "scheme"
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["skipped"]["private"] == len(PRIVATE_LINKS)


def test_links_to_private_addresses_outside_the_scope_are_not_followed(public_site, tmp_path):
    pages = run_crawl([PUBLIC], depth=1, output=tmp_path)

    assert set(pages) == {PUBLIC, PUBLIC + "ok"}
    assert sorted(requested(public_site)) == [PUBLIC, PUBLIC + "ok", PUBLIC + "robots.txt"]
    skipped = skipped_by_url(tmp_path)
    for link in PRIVATE_LINKS:
        assert skipped[link]["reason"] in ("offsite", "private")


def test_allow_private_follows_links_to_private_addresses(public_site, tmp_path):
    pages = run_crawl(
        [PUBLIC], depth=1, allow_domains=PRIVATE_HOSTS, allow_private=True, output=tmp_path
    )

    assert set(pages) == {PUBLIC, PUBLIC + "ok", *PRIVATE_LINKS}
    for link in PRIVATE_LINKS:
        assert pages[link].ok, pages[link].error
        assert pages[link].parent == PUBLIC
        assert link in requested(public_site)
    assert not {entry["reason"] for entry in read_jsonl(tmp_path / "skipped.jsonl")} & {"private"}


def test_a_private_site_may_link_within_private_addresses(mock, tmp_path):
    start, neighbour = "http://10.0.0.5/", "http://192.168.0.7/p"
    missing(mock, start + "robots.txt", "http://192.168.0.7/robots.txt")
    page(mock, start, neighbour)
    page(mock, neighbour)
    pages = run_crawl([start], depth=1, allow_domains=("192.168.0.7",), output=tmp_path)

    assert set(pages) == {start, neighbour}
    assert pages[neighbour].ok
    assert neighbour in requested(mock)


class _AttackerThroughProxy(BaseHTTPRequestHandler):
    """An HTTP proxy on 127.0.0.1 serving a public site whose robots.txt redirects to a
    private address and whose page links to one; it records every URL asked of it."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.asked.append(self.path)  # type: ignore[attr-defined]
        private = f"http://127.0.0.1:{self.server.server_address[1]}"
        status, headers, body = 404, {}, b""
        if self.path == PUBLIC + "robots.txt":
            status, headers = 302, {"Location": private + "/latest/meta-data/"}
        elif self.path == PUBLIC:
            status, body = 200, html(private + "/admin/delete").encode()
            headers = {"Content-Type": "text/html"}
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AttackerThroughProxy)
    server.asked = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{server.server_address[1]}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.shutdown()
    server.server_close()


def test_a_public_site_behind_a_private_proxy_cannot_lead_into_private_addresses(proxy, tmp_path):
    """Through a proxy, the address connected to is the proxy's: a public page must not
    pass for private because the proxy is, or its links and robots.txt's redirects would
    reach the proxy's own network."""
    private = f"http://127.0.0.1:{proxy.server_address[1]}"
    pages = run_crawl([PUBLIC, private + "/intranet"], depth=1, fetch="threads", output=tmp_path)

    assert error_kind(pages[PUBLIC]) == "redirect_blocked"  # its robots.txt was refused
    asked = proxy.asked
    assert private + "/latest/meta-data/" not in asked and "/latest/meta-data/" not in asked
    assert "/admin/delete" not in asked and private + "/admin/delete" not in asked


# -- redirect guards -----------------------------------------------------------------------


@pytest.mark.parametrize("allow_domains", [(), ("127.0.0.1",)], ids=["offsite", "in-scope"])
def test_discovered_redirect_to_a_private_address_is_blocked(mock, tmp_path, allow_domains):
    missing(mock, PUBLIC + "robots.txt", "http://127.0.0.1:9/robots.txt")
    page(mock, PUBLIC, "/go-private")
    hop = redirect(mock, PUBLIC + "go-private", "http://127.0.0.1:9/")
    page(mock, "http://127.0.0.1:9/")
    pages = run_crawl([PUBLIC], depth=1, allow_domains=allow_domains, output=tmp_path)

    blocked = pages[hop]
    assert blocked.ok is False
    assert blocked.status is None
    assert error_kind(blocked) == "redirect_blocked"
    assert (blocked.final_url, blocked.redirects) == (hop, (hop,))  # its 302 came
    if allow_domains:  # in scope: the private-address guard is what stopped it
        assert blocked.error is not None
        assert "private" in blocked.error["message"]
    assert not [url for url in requested(mock) if "127.0.0.1" in url]


def test_discovered_redirect_to_a_private_address_is_followed_with_allow_private(mock, tmp_path):
    missing(mock, PUBLIC + "robots.txt", "http://127.0.0.1:9/robots.txt")
    page(mock, PUBLIC, "/go-private")
    hop = redirect(mock, PUBLIC + "go-private", "http://127.0.0.1:9/")
    page(mock, "http://127.0.0.1:9/")
    pages = run_crawl(
        [PUBLIC], depth=1, allow_domains=("127.0.0.1",), allow_private=True, output=tmp_path
    )

    assert pages[hop].ok, pages[hop].error
    assert pages[hop].final_url == "http://127.0.0.1:9/"
    assert "http://127.0.0.1:9/" in requested(mock)


def test_discovered_redirect_offsite_is_blocked(mock, tmp_path):
    missing(mock, PUBLIC + "robots.txt", OTHER + "robots.txt")
    page(mock, PUBLIC, "/go-offsite")
    hop = redirect(mock, PUBLIC + "go-offsite", OTHER)
    page(mock, OTHER)
    pages = run_crawl([PUBLIC], depth=1, output=tmp_path)

    assert error_kind(pages[hop]) == "redirect_blocked"
    assert pages[hop].status is None
    assert not [url for url in requested(mock) if url.startswith(OTHER)]


def test_listed_redirect_to_another_host_widens_the_scope(mock, tmp_path):
    missing(mock, PUBLIC + "robots.txt", OTHER + "robots.txt")
    seed = redirect(mock, PUBLIC + "moved", OTHER + "home")
    page(mock, OTHER + "home", "/next", "http://third.example/x")
    page(mock, OTHER + "next")
    pages = run_crawl([seed], depth=1, output=tmp_path)

    assert set(pages) == {seed, OTHER + "next"}
    assert pages[seed].ok, pages[seed].error
    assert pages[seed].final_url == OTHER + "home"
    assert pages[seed].redirects == (seed,)
    followed = pages[OTHER + "next"]
    assert followed.ok
    assert followed.depth == 1
    assert followed.parent == seed
    assert skipped_by_url(tmp_path)["http://third.example/x"]["reason"] == "offsite"
    assert not [url for url in requested(mock) if "third.example" in url]


def test_listed_redirect_to_a_private_address_is_followed(mock, tmp_path):
    # Listed URLs are always allowed, wherever they lead.
    missing(mock, PUBLIC + "robots.txt", "http://127.0.0.1:9/robots.txt")
    seed = redirect(mock, PUBLIC + "to-local", "http://127.0.0.1:9/")
    page(mock, "http://127.0.0.1:9/")
    pages = run_crawl([seed], output=tmp_path)

    assert pages[seed].ok, pages[seed].error
    assert pages[seed].final_url == "http://127.0.0.1:9/"


def test_robots_txt_redirect_to_a_private_address_is_not_followed(mock, tmp_path):
    # A public host must not steer the crawler into a private network through its
    # robots.txt either: that request is made before any page of the host.
    redirect(mock, PUBLIC + "robots.txt", "http://127.0.0.1:9/robots.txt")
    mock.get("http://127.0.0.1:9/robots.txt", body="User-agent: *\nAllow: /\n")
    page(mock, PUBLIC)
    run_crawl([PUBLIC], output=tmp_path)

    assert PUBLIC + "robots.txt" in requested(mock)
    assert not [url for url in requested(mock) if "127.0.0.1" in url]


# -- skipped_log, max_pages ----------------------------------------------------------------


def test_skipped_log_false_writes_no_lines_but_stats_count_skips(mock, tmp_path):
    missing(mock, PUBLIC + "robots.txt")
    page(mock, PUBLIC, "/a", "/b", "/c", "http://elsewhere.example/")

    logged, quiet = tmp_path / "logged", tmp_path / "quiet"
    run_crawl([PUBLIC], output=logged)
    run_crawl([PUBLIC], skipped_log=False, output=quiet)

    expected = {"depth": 4}  # at depth 0 every link is beyond the depth limit
    assert len(read_jsonl(logged / "skipped.jsonl")) == 4  # the same crawl, logged
    assert read_jsonl(quiet / "skipped.jsonl") == []
    for output in (logged, quiet):
        stats = json.loads((output / "stats.json").read_text())
        assert stats["skipped"] == expected


def test_listed_urls_beyond_max_pages_get_a_record_and_are_never_requested(mock, tmp_path):
    missing(mock, PUBLIC + "robots.txt")
    seeds = [page(mock, f"{PUBLIC}{n}") for n in range(1, 5)]
    pages = run_crawl(seeds, max_pages=2, output=tmp_path)

    assert set(pages) == set(seeds)
    assert all(pages[url].ok for url in seeds[:2])
    for url in seeds[2:]:
        over = pages[url]
        assert over.ok is False
        assert over.status is None
        assert over.final_url is None
        assert error_kind(over) == "max_pages"
        assert url not in requested(mock)
    assert sorted(requested(mock)) == sorted([PUBLIC + "robots.txt", *seeds[:2]])
    records = {record["url"]: record for record in read_jsonl(tmp_path / "pages.jsonl")}
    assert set(records) == set(seeds)
    assert [records[url]["error"]["kind"] for url in seeds[2:]] == ["max_pages", "max_pages"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["errors"] == {"max_pages": 2}
    assert stats["pages"] == 4
