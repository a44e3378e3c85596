"""The demo site: its model without HTTP, then the same site served on loopback."""

from __future__ import annotations

import gzip
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import bs4
import lxml.html
import pytest
import requests
from protego import Protego

from scraper.demo import (
    ENCODING_TITLES,
    MAILTO_URL,
    OFFSITE_URL,
    PRIVATE_PATH,
    ROBOTS_TXT,
    SiteSpec,
    body_for,
    build_app,
    file_paths,
    page_paths,
    running_site,
)
from scraper.demo import site as demo_site
from scraper.demo.site import PRERENDERED, prerender
from scraper.errors import ConfigError

ROOT = "http://127.0.0.1:8000/"  # where the model tests pretend the site is served
SPEC = SiteSpec(pages=60, fanout=3, page_kb=2, files=3, seed=7)
TIMEOUT = (2, 5)  # connect, read: no request in this file can hang
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site():
    with running_site(SPEC) as running:
        yield running


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def hrefs(body: bytes) -> list[str]:
    return lxml.html.fromstring(body).xpath("//a/@href")


def crawl_model(spec: SiteSpec) -> tuple[set[str], set[str]]:
    """Follow links from "/" through the model: (site paths reached, other URLs seen)."""
    reached, elsewhere, queue = {"/"}, set(), deque(["/"])
    while queue:
        path = queue.popleft()
        body = body_for(spec, path, ROOT)
        assert body is not None, path
        if not path.startswith("/files/"):
            for href in hrefs(body):
                url = urldefrag(urljoin(ROOT + path[1:], href)).url
                if not url.startswith(ROOT):
                    elsewhere.add(url)
                elif (target := "/" + url.removeprefix(ROOT)) not in reached:
                    reached.add(target)
                    queue.append(target)
    return reached, elsewhere


# The spec.


def test_spec_defaults():
    assert SiteSpec() == SiteSpec(pages=100, fanout=5, page_kb=4, latency_ms=0, files=3, seed=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pages", 0),
        ("pages", 1.5),
        ("pages", True),
        ("fanout", 0),
        ("page_kb", -1),
        ("files", -1),
        ("seed", "x"),
        ("latency_ms", -1),
        ("latency_ms", math.nan),
        ("latency_ms", math.inf),
        ("latency_ms", "5"),
        # rendered whole for each answer, while the server does nothing else: a page of
        # gigabytes, or a latency of years, left every request unanswered
        ("page_kb", demo_site.MAX_PAGE_KB + 1),
        ("latency_ms", demo_site.MAX_LATENCY_MS + 1),
    ],
)
def test_spec_rejects_invalid_fields(field, value):
    with pytest.raises(ConfigError, match=rf"SiteSpec\.{field} "):
        SiteSpec(**{field: value})
    assert issubclass(ConfigError, ValueError)


# The model.


def test_paths():
    assert page_paths(SiteSpec(pages=3)) == ["/", "/page/1", "/page/2"]
    assert page_paths(SiteSpec(pages=1)) == ["/"]
    assert file_paths(SiteSpec(files=2)) == ["/files/0.bin", "/files/1.bin"]
    assert file_paths(SiteSpec(files=0)) == []


@pytest.mark.parametrize(
    "spec", [SPEC, SiteSpec(pages=1), SiteSpec(pages=500, fanout=1, page_kb=0), SiteSpec()]
)
def test_every_page_and_file_is_reachable_from_root(spec):
    reached, elsewhere = crawl_model(spec)
    assert reached == {*page_paths(spec), *file_paths(spec), PRIVATE_PATH}
    assert elsewhere == {OFFSITE_URL, MAILTO_URL}


def test_private_page_is_linked_from_root_only():
    linking = [p for p in page_paths(SPEC) if PRIVATE_PATH in hrefs(body_for(SPEC, p, ROOT))]
    assert linking == ["/"]


def test_links_are_spelled_in_every_form():
    links = [href for path in page_paths(SPEC) for href in hrefs(body_for(SPEC, path, ROOT))]
    assert any(href.startswith("/page/") and "#" in href for href in links)
    assert any(href.startswith("./") for href in links)
    assert any(href.startswith("../") for href in links)
    assert any(href.startswith(ROOT) for href in links)
    assert any(href.isdigit() for href in links)
    assert "#content" in links


def test_pages_carry_title_description_language_and_text():
    for index, path in enumerate(page_paths(SPEC)):
        document = lxml.html.fromstring(body_for(SPEC, path, ROOT))
        assert document.findtext(".//title") == f"Page {index}"
        assert document.get("lang") == "en"
        assert document.xpath("//meta[@name='description']/@content")[0]
        assert len(document.find(".//main").text_content()) > 100


def test_heavy_pages_are_dense_with_markup_like_real_articles():
    """`scrape bench --scenario cpu` relies on it: its pages must be heavy to parse."""
    body = body_for(SiteSpec(pages=10, page_kb=64), "/page/3", ROOT)
    document = lxml.html.fromstring(body)
    elements = sum(1 for _ in document.iter())
    assert len(body) / elements < 50  # bytes per element; real articles have 30-60
    assert {"p", "ul", "li", "table", "td", "strong", "em", "code"} <= {
        element.tag for element in document.iter()
    }


def test_pages_are_about_page_kb():
    for path in page_paths(SPEC):
        assert 2048 <= len(body_for(SPEC, path, ROOT)) < 2048 + 1024


def test_files_are_binary_and_seeded():
    bodies = [body_for(SPEC, path, ROOT) for path in file_paths(SPEC)]
    assert all(2048 <= len(body) <= 5 * 1024 for body in bodies)
    assert len(set(bodies)) == len(bodies)
    other_seed = SiteSpec(pages=SPEC.pages, fanout=SPEC.fanout, files=SPEC.files, seed=8)
    assert body_for(other_seed, "/files/0.bin", ROOT) != bodies[0]


def test_unknown_paths_have_no_body():
    for path in ["/page/0", f"/page/{SPEC.pages}", "/page/01", "/files/3.bin", "/status/200"]:
        assert body_for(SPEC, path, ROOT) is None


def test_content_is_the_same_in_another_process():
    """Seeding must not depend on hash randomization: the benchmark compares across runs."""
    code = "from scraper.demo import *; print(body_for(SiteSpec(seed=3), '/page/9', 'x/').hex())"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-c", code]
    out = subprocess.run(run, env=env, capture_output=True, text=True, check=True, timeout=30)
    assert bytes.fromhex(out.stdout) == body_for(SiteSpec(seed=3), "/page/9", "x/")


def test_a_huge_site_is_lazy():
    spec = SiteSpec(pages=100_000)
    build_app(spec)
    assert len(page_paths(spec)) == 100_000
    assert b"<title>Page 99999</title>" in body_for(spec, "/page/99999", ROOT)
    assert body_for(spec, "/page/100000", ROOT) is None


def test_prerender_renders_pages_in_order_up_to_the_budget():
    app = build_app(SPEC)
    first_ten = page_paths(SPEC)[:10]
    budget = sum(len(body_for(SPEC, path, ROOT)) for path in first_ten)
    assert prerender(app, ROOT, budget=budget) == 10
    rendered = app[PRERENDERED]
    assert sorted(rendered) == sorted((path, ROOT) for path in first_ten)
    assert all(body == body_for(SPEC, path, ROOT) for (path, _), body in rendered.items())


def test_robots_txt_disallows_private_only():
    robots = Protego.parse(ROBOTS_TXT.decode())
    assert not robots.can_fetch(ROOT + PRIVATE_PATH[1:], "scraper")
    assert robots.can_fetch(ROOT + "page/1", "scraper")


# Served over HTTP.


def test_site_url_is_a_bound_loopback_root(site):
    parts = urlsplit(site.url)
    assert (parts.scheme, parts.hostname, parts.path) == ("http", "127.0.0.1", "/")
    assert parts.port > 0
    assert site.spec == SPEC


def test_served_bytes_equal_the_model(site, http):
    expected_types = {"/robots.txt": "text/plain; charset=utf-8"}
    expected_types |= dict.fromkeys(file_paths(SPEC), "application/octet-stream")
    for path in [*page_paths(SPEC), *file_paths(SPEC), "/robots.txt", PRIVATE_PATH]:
        response = http.get(site.url_for(path), timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.content == site.body_for(path) == body_for(SPEC, path, site.url)
        content_type = expected_types.get(path, "text/html; charset=utf-8")
        assert response.headers["Content-Type"] == content_type


def test_prerendered_pages_are_served_without_rendering_them(http, monkeypatch):
    with running_site(SPEC, prerendered=True) as prerendered:
        expected = {path: prerendered.body_for(path) for path in page_paths(SPEC)}

        def refuse(*args: object) -> bytes:
            raise AssertionError(f"rendered on request: {args}")

        monkeypatch.setattr(demo_site, "_page_body", refuse)
        for path, body in expected.items():
            response = http.get(prerendered.url_for(path), timeout=TIMEOUT)
            assert (response.status_code, response.content) == (200, body)


def test_unknown_paths_answer_404(site, http):
    for path in ["/page/0", f"/page/{SPEC.pages}", "/files/9.bin", "/nowhere", "/encoding/koi8-r"]:
        assert http.get(site.url_for(path), timeout=TIMEOUT).status_code == 404


def test_latency_delays_every_page_and_file(http):
    with running_site(SiteSpec(pages=2, latency_ms=150)) as slow:
        for path in ["/", "/page/1", "/files/0.bin"]:
            started = time.perf_counter()
            http.get(slow.url_for(path), timeout=TIMEOUT).raise_for_status()
            assert time.perf_counter() - started >= 0.15


def test_hits_count_requests_per_path_and_query(http):
    with running_site(SiteSpec(pages=3)) as fresh:
        for path in ["/", "/page/2", "/", "/status/404?x=1", "/redirect/2"]:
            http.get(fresh.url_for(path), timeout=TIMEOUT)
        assert fresh.hits == {
            "/": 3,
            "/page/2": 1,
            "/status/404?x=1": 1,
            "/redirect/2": 1,
            "/redirect/1": 1,
        }


# The misbehaving routes.


@pytest.mark.parametrize("code", [200, 204, 299, 301, 404, 429, 500, 503, 599])
def test_status(site, http, code):
    response = http.get(site.url_for(f"/status/{code}"), timeout=TIMEOUT, allow_redirects=False)
    assert response.status_code == code
    assert response.content == (b"" if code == 204 else f"status {code}\n".encode())


@pytest.mark.parametrize(
    "path",
    [
        "/status/100",
        "/status/600",
        "/slow?seconds=soon",
        "/slow?seconds=nan",
        "/trickle?bytes=-1",
        "/trickle?interval=61",
        "/gzip-bomb?mb=0",
        "/flaky/bad?status=200",
        "/flaky/bad?fail=x",
        "/flaky/bad?retry_after=tomorrow",
    ],
)
def test_bad_parameters_answer_400(site, http, path):
    assert http.get(site.url_for(path), timeout=TIMEOUT).status_code == 400


def test_redirect_chain_ends_at_root(site, http):
    response = http.get(site.url_for("/redirect/3"), timeout=TIMEOUT)
    assert [r.status_code for r in response.history] == [302, 302, 302]
    assert [urlsplit(r.url).path for r in response.history] == [
        "/redirect/3",
        "/redirect/2",
        "/redirect/1",
    ]
    assert response.url == site.url
    assert response.content == site.body_for("/")


def test_redirect_loop_alternates(site, http):
    hops = {}
    for query in ["", "?a", "?b"]:
        response = http.get(
            site.url_for(f"/redirect-loop{query}"), timeout=TIMEOUT, allow_redirects=False
        )
        assert response.status_code == 302
        hops[query] = response.headers["Location"]
    assert hops == {"": "/redirect-loop?a", "?a": "/redirect-loop?b", "?b": "/redirect-loop?a"}
    with requests.Session() as session:
        session.max_redirects = 5
        with pytest.raises(requests.TooManyRedirects):
            session.get(site.url_for("/redirect-loop"), timeout=TIMEOUT)


def test_slow_answers_after_the_delay(site, http):
    started = time.perf_counter()
    response = http.get(site.url_for("/slow?seconds=0.2"), timeout=TIMEOUT)
    assert time.perf_counter() - started >= 0.2
    assert response.status_code == 200
    assert "<title>Slow: 0.2 s</title>" in response.text


def test_trickle_sends_headers_then_one_byte_per_interval(site, http):
    url = site.url_for("/trickle?bytes=4&interval=0.05")
    started = time.perf_counter()
    with http.get(url, timeout=TIMEOUT, stream=True) as r:
        assert r.status_code == 200
        assert r.headers["Content-Length"] == "4"
        assert r.raw.read(1) == b"."
        assert r.raw.read() == b"..."
    assert time.perf_counter() - started >= 0.2


def test_stall_never_answers(site, http):
    with pytest.raises(requests.ReadTimeout):
        http.get(site.url_for("/stall"), timeout=(2, 0.2))


def test_gzip_bomb_is_small_on_the_wire_and_large_inflated(site, http):
    with http.get(site.url_for("/gzip-bomb?mb=2"), timeout=TIMEOUT, stream=True) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        raw = response.raw.read(decode_content=False)
    assert len(raw) < 20_000
    assert gzip.decompress(raw) == bytes(2 << 20)


def test_flaky_fails_k_times_per_key_then_succeeds(site, http):
    url = site.url_for("/flaky/one?fail=2&status=429&retry_after=0")
    statuses = [http.get(url, timeout=TIMEOUT) for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert [r.headers.get("Retry-After") for r in statuses] == ["0", "0", None]
    other = http.get(site.url_for("/flaky/two"), timeout=TIMEOUT)
    assert (other.status_code, other.headers.get("Retry-After")) == (503, None)
    assert http.get(site.url_for("/flaky/two"), timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize(
    ("name", "header_charset", "body_declares"),
    [
        ("utf-8", "utf-8", None),
        ("utf-8-bom", None, b"\xef\xbb\xbf"),
        ("cp1252", None, b'<meta charset="windows-1252">'),
        ("shift_jis", "Shift_JIS", None),
        ("gbk", None, b'content="text/html; charset=gbk"'),
    ],
)
def test_encoding_pages_declare_as_documented(site, http, name, header_charset, body_declares):
    response = http.get(site.url_for(f"/encoding/{name}"), timeout=TIMEOUT)
    content_type = response.headers["Content-Type"]
    assert content_type.partition("charset=")[2] == (header_charset or "")
    if body_declares is not None:
        assert body_declares in response.content[:1024]
    soup = bs4.BeautifulSoup(response.content, "lxml", from_encoding=header_charset)
    assert soup.title.string == ENCODING_TITLES[name]


# Shutting down, and the CLI's foreground server.


def test_shutdown_cancels_a_stalled_request():
    threads_before = set(threading.enumerate())
    with running_site(SiteSpec(pages=1)) as stalling:
        address = urlsplit(stalling.url)
        client = socket.create_connection((address.hostname, address.port), timeout=5)
        client.sendall(b"GET /stall HTTP/1.1\r\nHost: demo\r\n\r\n")
        deadline = time.monotonic() + 5
        while "/stall" not in stalling.hits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stalling.hits == {"/stall": 1}
    with client:
        assert client.recv(1024) == b""  # closed by the server, no response sent
    assert set(threading.enumerate()) <= threads_before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_forever_prints_its_url_and_stops_on_signal(signum):
    code = "from scraper.demo import *; serve_forever(SiteSpec(pages=2))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as server:
        try:
            line = server.stdout.readline().decode()
            assert line.startswith("URL http://127.0.0.1:") and line.endswith("/\n")
            url = line.split()[1]
            assert requests.get(url, timeout=TIMEOUT).content == body_for(
                SiteSpec(pages=2), "/", url
            )
            server.send_signal(signum)
            stdout, stderr = server.communicate(timeout=10)
        finally:
            server.kill()
    assert (server.returncode, stdout, stderr) == (0, b"", b"")
