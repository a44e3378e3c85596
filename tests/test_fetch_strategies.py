"""Every fetch strategy gives the same answers and the same error kinds, over real HTTP.

Against the demo site (its pages and its hostile routes) and a small server of this
module's own (`rude_server`) for misbehaviour the demo site does not have: a bad status
line, a hang-up, a head or a body cut short, compressed bodies whole, broken or followed
by garbage, a redirect whose body never ends. It also echoes the User-Agent and the
Accept-Encoding it received.
Time bounds are generous (PATIENCE): they catch hangs, they do not measure speed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import gzip
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import queue
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from multiprocessing.reduction import ForkingPickler
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
import requests
import requests.adapters
import requests.utils
import trustme
import yarl
from aiohttp import web
from sites import TLS_PAGE, Site, forwarding_proxy, serving_site, serving_tls_page

from scraper import crawl
from scraper.config import FETCH_STRATEGIES
from scraper.demo import RunningSite
from scraper.errors import ErrorKind, FetchError, InvalidURL, ScraperError
from scraper.fetch import Fetcher, Limits, Response, open_fetcher, processes
from scraper.fetch.decoding import ACCEPT_ENCODING
from scraper.fetch.environment import (
    Route,
    Routes,
    proxy_for_aiohttp,
    proxy_for_requests,
    tls_context,
)
from scraper.fetch.http import fetch_once
from scraper.fetch.processes import ProcessFetcher
from scraper.records import Request

LIMITS = Limits(timeout=1.0, max_bytes=256 * 1024, user_agent="strategy-tests/1.0")
PATIENCE = 10 * LIMITS.timeout  # only reached when something hangs; never what a test asserts
# For close() tests: long enough that a close() that waited for the stall would show.
STALLED = Limits(timeout=3.0, max_bytes=LIMITS.max_bytes, user_agent=LIMITS.user_agent)
REFUSED = "http://127.0.0.1:1/"
# The rude server's answers start so; a whole head ends so.
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
_WHOLE_HEAD = _HEAD + b"Content-Length: 0\r\n\r\n"
_INVALID_CUTS = (b"hello", b"HTTX/1.1 200 OK", b"HTTP/1.1 2x0 OK", _HEAD + b"Bad Name: x")
_CHUNKED = _HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
_GZIPPED_PAGE = gzip.compress(b"<p>page</p>", mtime=0)  # 31 bytes
# Chunked bodies that bend the framing; aiohttp's parser decides, requests' http.client
# took all of them for "hello" (or "helloXX", or lost a byte).
_CHUNKED_BODIES = {
    "data-past-its-size": b"5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n",
    "size-line-ends-in-lf": b"5\nhello\r\n0\r\n\r\n",
    "data-ends-in-lf": b"5\r\nhello\n0\r\n\r\n",
    "with-a-trailer": b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n",
    "with-a-folded-trailer": b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n 2\r\n\r\n",
    "trailer-folded-onto-nothing": b"5\r\nhello\r\n0\r\n 2\r\n\r\n",
    "trailer-not-a-header": b"5\r\nhello\r\n0\r\nnot a header\r\n\r\n",
    "cut-after-the-last-chunk": b"5\r\nhello\r\n0\r\n",
    "cut-in-the-trailer": b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n",
}
# Chunk-size lines for an 11-byte chunk: the first six are not sizes, as aiohttp says (and
# int(), which requests' http.client calls, takes "-b", "0xb" and " b").
_CHUNK_SIZES = {
    "not-hex": b"zz",
    "signed": b"-b",
    "prefixed": b"0xb",
    "over-64-bits": b"1" + b"0" * 16,
    "after-a-space": b" b",
    "then-a-cr": b"b\r",
    "then-spaces": b"b \t",
    "with-extension": b"B;name=value",
}
# Answers written as they are, then the connection closed: /raw/{name}. The route adds a
# "Connection: close" after the status line: a client that pooled the connection for the
# next test could find it closed under its request (`connect`).
_RAW_ANSWERS = {
    "bad-status-line": b"HELLO, NOT HTTP\r\n\r\n",
    "hang-up": b"",
    "cut-short": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this",
    "header-line-too-long": _HEAD + b"X-Long: " + b"x" * 100_000 + b"\r\n\r\n",
    "header-line-of-10-kb": _HEAD
    + b"X-Long: "
    + b"x" * 10_000
    + b"\r\nContent-Length: 2\r\n\r\nhi",
    # with Content-Type, Connection and Content-Length
    "99-headers": _HEAD + b"X-Many: 1\r\n" * 96 + b"Content-Length: 2\r\n\r\nhi",
    "100-headers": _HEAD + b"X-Many: 1\r\n" * 97 + b"Content-Length: 2\r\n\r\nhi",
    "status-099": b"HTTP/1.1 099 Early\r\nContent-Length: 2\r\n\r\nhi",
    "version-2.0": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "version-1.2": b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "nul-in-header": _HEAD + b"X-Note: a\0b\r\nContent-Length: 2\r\n\r\nhi",
    "not-a-header": _HEAD + b"no colon here\r\n\r\n<p>page</p>",
    "content-length-abc": _HEAD + b"Content-Length: abc\r\n\r\n<p>page</p>",
    "content-length-twice": _HEAD + b"Content-Length: 11\r\n" * 2 + b"\r\n<p>page</p>",
    "content-length-over-64-bits": _HEAD + b"Content-Length: %d\r\n\r\nhi" % 2**64,
    "content-length-and-chunks": _HEAD
    + b"Transfer-Encoding: chunked\r\nContent-Length: 11\r\n\r\nb\r\n<p>page</p>\r\n0\r\n\r\n",
    **{
        f"chunk-size-{name}": _CHUNKED + size + b"\r\n<p>page</p>\r\n0\r\n\r\n"
        for name, size in _CHUNK_SIZES.items()
    },
    "204-in-zstd": b"HTTP/1.1 204 No Content\r\nContent-Encoding: zstd\r\n\r\n",
    "304-chunked": b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    "304-of-a-large-page": b"HTTP/1.1 304 Not Modified\r\nContent-Length: %d\r\n\r\n" % 2**30,
    "gzip-then-endless-garbage": _HEAD
    + b"Content-Encoding: gzip\r\n\r\n"  # no length: the body ends with the connection
    + _GZIPPED_PAGE
    + b"x" * (LIMITS.max_bytes + 1),
    **{
        f"status-line-{name}": line + b"\r\nContent-Length: 2\r\n\r\nhi"
        for name, line in (
            ("two-spaces", b"HTTP/1.1  200 OK"),
            ("tab", b"HTTP/1.1\t200 OK"),
            ("space-first", b" HTTP/1.1 200 OK"),
            ("cr-in-reason", b"HTTP/1.1 200 O\rK"),
            ("no-reason", b"HTTP/1.1 200"),
            ("utf-8-reason", "HTTP/1.1 200 Très bien".encode()),
        )
    },
    **{f"chunks-{name}": _CHUNKED + body for name, body in _CHUNKED_BODIES.items()},
    **{
        f"transfer-coding-{name}": _HEAD + b"Transfer-Encoding: %s\r\n\r\n" % coding + body
        for name, coding, body in (
            ("gzip-chunked", b"gzip, chunked", b"1f\r\n%s\r\n0\r\n\r\n" % _GZIPPED_PAGE),
            ("gzip", b"gzip", _GZIPPED_PAGE),
            ("chunked-twice", b"chunked, chunked", b"b\r\n<p>page</p>\r\n0\r\n\r\n"),
            ("identity", b"identity", b"<p>page</p>"),
            ("chunked-then-a-space", b"chunked ", b"b\r\n<p>page</p>\r\n0\r\n\r\n"),
        )
    },
}
_TEXT = b"<p>a page, coded</p>" * 20
_GZIPPED = gzip.compress(_TEXT)
_BROTLI = brotli.compress(_TEXT)


# (Content-Encoding, body) served with a Content-Length that matches: /coded/{name}.
def _raw_deflate(data: bytes) -> bytes:
    """Deflate with no zlib header (zlib.compress takes `wbits` from Python 3.11 on)."""
    squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return squeeze.compress(data) + squeeze.flush()


_CODED_ANSWERS = {
    "not-gzip": ("gzip", b"this is not gzip" * 8),
    "unknown-coding": ("compress", b"LZW-compressed, say"),
    "gzip-then-garbage": ("gzip", _GZIPPED + b"\ngarbage"),
    "gzip-members": ("gzip", _GZIPPED * 2),
    "x-gzip": ("x-gzip", _GZIPPED),
    "deflate": ("deflate", zlib.compress(_TEXT)),
    "deflate-raw": ("deflate", _raw_deflate(_TEXT)),
    "br": ("br", _BROTLI),
    "gzip-empty": ("gzip", b""),
    "gzip-cut": ("gzip", _GZIPPED[:-20]),
    "gzip-second-member-cut": ("gzip", _GZIPPED + _GZIPPED[:-20]),
    "deflate-cut": ("deflate", zlib.compress(_TEXT)[:-9]),
    "br-cut": ("br", _BROTLI[:-5]),
    "br-then-garbage": ("br", _BROTLI + b"\n"),
}


@pytest.fixture(scope="module")
def fetchers() -> Iterator[dict[str, Fetcher]]:
    """One fetcher per strategy, shared by the module's tests that only read."""
    with contextlib.ExitStack() as stack:
        opened = {}
        for name in FETCH_STRATEGIES:
            opened[name] = open_fetcher(name, LIMITS, workers=4)
            stack.callback(opened[name].close)
        yield opened


@pytest.fixture(params=FETCH_STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fetcher(fetchers: dict[str, Fetcher], strategy: str) -> Fetcher:
    return fetchers[strategy]


def outcome(fetcher: Fetcher, url: str) -> Response | FetchError:
    try:
        return fetcher.submit(Request(url)).result(timeout=PATIENCE)
    except FetchError as error:
        return error


def error_of(fetcher: Fetcher, url: str) -> FetchError:
    result = outcome(fetcher, url)
    assert isinstance(result, FetchError), result
    return result


def answer_of(fetcher: Fetcher, url: str) -> Response:
    result = outcome(fetcher, url)
    assert isinstance(result, Response), result
    return result


def wait_until(condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- the same answer from every strategy ---------------------------------------------------


def summary(answer: Response) -> tuple[Any, ...]:
    """What must not depend on the strategy (the Date header may tick between fetches)."""
    headers = {name: value for name, value in answer.headers.items() if name != "date"}
    digest = hashlib.sha256(answer.body).hexdigest()
    return (answer.url, answer.status, answer.reason, digest, headers)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/page/7",
        "/files/0.bin",
        "/robots.txt",
        "/status/404",
        "/status/503",
        "/status/204",
        "/encoding/shift_jis",
        "/redirect/2",
        "/redirect-loop",
    ],
)
def test_every_strategy_gives_the_same_response(
    fetchers: dict[str, Fetcher], demo_site: RunningSite, path: str
) -> None:
    url = demo_site.url_for(path)
    summaries = {name: summary(answer_of(fetcher, url)) for name, fetcher in fetchers.items()}
    assert len(set(map(repr, summaries.values()))) == 1, summaries
    url_, status, _, _, headers = summaries["sequential"]
    assert url_ == url
    assert all(name == name.lower() for name in headers)
    if demo_site.body_for(path) is not None:
        answer = answer_of(fetchers["sequential"], url)
        assert (status, answer.body) == (200, demo_site.body_for(path))


def test_redirects_are_answers_not_followed(fetcher: Fetcher, fresh_site: RunningSite) -> None:
    answer = answer_of(fetcher, fresh_site.url_for("/redirect/3"))
    assert (answer.status, answer.headers["location"], answer.body) == (302, "/redirect/2", b"")
    assert fresh_site.hits == {"/redirect/3": 1}


def test_the_user_agent_comes_from_limits(fetcher: Fetcher, rude_server: str) -> None:
    answer = answer_of(fetcher, rude_server + "user-agent")
    assert answer.body.decode() == LIMITS.user_agent


# -- the same error kinds from every strategy ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/trickle?bytes=100&interval=0.1", ErrorKind.TIMEOUT),  # 10 s of body, 1 s allowed
        ("/stall", ErrorKind.TIMEOUT),
        ("/gzip-bomb?mb=64", ErrorKind.TOO_LARGE),
        ("/trickle?bytes=1000000&interval=60", ErrorKind.TOO_LARGE),  # declared too large
        ("/brotli-bomb", ErrorKind.TOO_LARGE),
    ],
)
def test_hostile_routes_end_in_the_same_kind(
    fetcher: Fetcher, demo_site: RunningSite, path: str, kind: ErrorKind
) -> None:
    started = time.monotonic()
    error = error_of(fetcher, demo_site.url_for(path))
    assert error.kind is kind, error
    assert time.monotonic() - started < PATIENCE


@pytest.mark.parametrize("part", ["status", "header", "interim"])
def test_a_head_that_never_ends_times_out(fetcher: Fetcher, rude_server: str, part: str) -> None:
    """Only a deadline for the whole answer ends it. With requests the head's reads had
    none: the fetch lasted as long as the server went on."""
    started = time.monotonic()
    error = error_of(fetcher, rude_server + f"trickle-head/{part}")
    assert error.kind is ErrorKind.TIMEOUT, error
    assert time.monotonic() - started < PATIENCE


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (REFUSED, ErrorKind.CONNECT),
        ("http://nothing-here.invalid/", ErrorKind.DNS),
        ("http://[::1/", ErrorKind.INVALID_URL),
    ],
)
def test_unreachable_hosts_end_in_the_same_kind(
    fetcher: Fetcher, url: str, kind: ErrorKind
) -> None:
    assert error_of(fetcher, url).kind is kind


def test_tls_to_a_plain_http_server_is_tls(fetcher: Fetcher, demo_site: RunningSite) -> None:
    https = str(yarl.URL(demo_site.url).with_scheme("https"))
    assert error_of(fetcher, https).kind is ErrorKind.TLS


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    """A certificate authority of the tests' own: no bundle trusts it unless told to."""
    return trustme.CA()


@pytest.fixture
def plain_page() -> Iterator[str]:
    with serving_site(Site()) as site:
        yield site.page("/page")


@pytest.fixture
def tls_page(authority: trustme.CA) -> Iterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with serving_tls_page(context) as url:
        yield url + "page"


@pytest.mark.usefixtures("authority_trusted", "no_proxy_settings")
def test_close_leaves_no_connection_to_the_garbage_collector(
    strategy: str, authority: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp ends a TLS connection with close_notify and waits for the peer's own: from a
    peer that never sends it, the loop stopped with the socket open, and the garbage
    collector found it later, failing whichever test it was running then."""
    unraised: list[Any] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with serving_tls_page(context, hold=True) as url:
        with fresh_fetcher(strategy) as fetcher:
            assert answer_of(fetcher, url).body == TLS_PAGE
        monkeypatch.setattr(sys, "unraisablehook", unraised.append)
        gc.collect()
    assert unraised == []


@pytest.fixture
def authority_trusted(
    authority: trustme.CA, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests' authority in the bundle the environment names, as requests reads it."""
    bundle = tmp_path / "authority.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))


@contextlib.contextmanager
def fresh_fetcher(strategy: str) -> Iterator[Fetcher]:
    """A fetcher opened now, so that it reads the environment as the test has set it."""
    fetcher = open_fetcher(strategy, LIMITS, workers=2)
    try:
        yield fetcher
    finally:
        fetcher.close()


def test_a_certificate_no_bundle_trusts_is_tls(fetcher: Fetcher, tls_page: str) -> None:
    assert error_of(fetcher, tls_page).kind is ErrorKind.TLS


@pytest.mark.usefixtures("authority_trusted")
def test_every_strategy_trusts_the_bundle_the_environment_names(
    strategy: str, tls_page: str
) -> None:
    """One set of trusted authorities for every strategy, requests' (aiohttp would use the
    system's store, and a site's certificate could pass with one strategy and not another)."""
    with fresh_fetcher(strategy) as fetcher:
        assert answer_of(fetcher, tls_page).body == TLS_PAGE


def test_a_ca_bundle_that_cannot_be_loaded_is_tls_for_every_strategy(
    strategy: str, tls_page: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests raised a bare OSError for it, `protocol`; aiohttp could not start."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    with fresh_fetcher(strategy) as fetcher:
        assert error_of(fetcher, tls_page).kind is ErrorKind.TLS
    assert tls_context().get_ca_certs() == []  # not the system's store in its place


# What the environment says → whether the page goes through the proxy, as requests decides.
_PROXY_SETTINGS = {
    "http": ({"HTTP_PROXY": "{proxy}"}, True),
    "https": ({"HTTPS_PROXY": "{proxy}"}, True),
    "all": ({"ALL_PROXY": "{proxy}"}, True),  # aiohttp's own lookup took no ALL_PROXY
    # nor an address range in NO_PROXY: it sent the request through the proxy
    "no_proxy range": ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "127.0.0.0/8"}, False),
}


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.usefixtures("authority_trusted", "no_proxy_settings")
@pytest.mark.parametrize("setting", sorted(_PROXY_SETTINGS))
def test_every_strategy_takes_the_proxy_the_environment_names(
    strategy: str,
    setting: str,
    plain_page: str,
    tls_page: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """https through an HTTP proxy is a CONNECT tunnel: with requests, reading the proxy's
    answer to it failed an assertion of ours; aiohttp did not use the proxy at all, and
    then read the environment its own way."""
    environment, proxied = _PROXY_SETTINGS[setting]
    url = tls_page if setting == "https" else plain_page
    with forwarding_proxy() as proxy:
        for name, value in environment.items():
            monkeypatch.setenv(name, value.format(proxy=proxy.url))
        with fresh_fetcher(strategy) as fetcher:
            answer = answer_of(fetcher, url)
    assert answer.status == 200
    assert b"<title>" in answer.body
    authority = yarl.URL(url).authority
    through = f"CONNECT {authority}" if setting == "https" else f"GET {url}"
    assert proxy.requests == ([through] if proxied else [])


@pytest.mark.usefixtures("authority_trusted", "no_proxy_settings")
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(
    ("credentials", "sent"),
    [
        ("alice:s3cret@", "Basic YWxpY2U6czNjcmV0"),  # alice:s3cret
        ("alice@", None),  # no password: requests reads no credentials, and sends none
        ("", None),
    ],
)
def test_a_proxys_credentials_are_sent_to_it_and_never_shown(
    strategy: str,
    scheme: str,
    credentials: str,
    sent: str | None,
    plain_page: str,
    tls_page: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp put the proxy's URL, password included, in the error a refusal raised: it
    went into pages.jsonl. A plain-http request carries them itself: aiohttp sends
    `proxy_headers` only with a tunnel's CONNECT."""
    with forwarding_proxy() as proxy:
        proxy.refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
        monkeypatch.setenv(f"{scheme.upper()}_PROXY", proxy.url.replace("//", f"//{credentials}"))
        with fresh_fetcher(strategy) as fetcher:
            result = outcome(fetcher, plain_page if scheme == "http" else tls_page)
    assert proxy.authorizations == [sent]
    if scheme == "https":
        assert isinstance(result, FetchError)
        assert result.kind is ErrorKind.CONNECT
        assert "s3cret" not in result.message


@pytest.mark.usefixtures("no_proxy_settings")
@pytest.mark.parametrize(
    "proxy",
    [
        "http://alice:s3cret@127.0.0.1:abc",
        "http://alice:s3/cret@127.0.0.1:1",  # a "/" as it came: requests quotes it whole
        "http://alice:s3@cret@127.0.0.1:abc",
    ],
)
def test_a_proxy_url_that_cannot_be_parsed_is_invalid_and_keeps_its_password(
    strategy: str, plain_page: str, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with fresh_fetcher(strategy) as fetcher:
        error = error_of(fetcher, plain_page)
    assert error.kind is ErrorKind.INVALID_URL
    assert "no valid URL" in error.message  # ours: requests' quotes the URL, or a piece of it
    assert "s3" not in error.message
    assert "cret" not in error.message


@pytest.mark.usefixtures("no_proxy_settings")
@pytest.mark.parametrize(
    ("proxy", "kind"),
    [
        ("socks5://127.0.0.1:1", ErrorKind.PROTOCOL),  # requests without PySocks; aiohttp
        ("ftp://127.0.0.1:1", ErrorKind.INVALID_URL),  # aiohttp sent HTTP to both
    ],
)
def test_a_proxy_no_strategy_can_use_fails_alike(
    strategy: str, plain_page: str, proxy: str, kind: ErrorKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with fresh_fetcher(strategy) as fetcher:
        assert error_of(fetcher, plain_page).kind is kind


@pytest.fixture
def alices_netrc(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .netrc that gives 127.0.0.1 the login alice, password secret."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))


@pytest.fixture
def netrc_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs requests' .netrc lookup is asked about, in order."""
    asked: list[str] = []
    read_netrc = requests.utils.get_netrc_auth

    def looked_up(url: str, raise_errors: bool = False) -> tuple[str, str] | None:
        asked.append(url)
        return read_netrc(url, raise_errors)

    monkeypatch.setattr(requests.utils, "get_netrc_auth", looked_up)
    return asked


@pytest.mark.usefixtures("no_proxy_settings", "alices_netrc")
@pytest.mark.parametrize("proxy_route", [proxy_for_requests, proxy_for_aiohttp])
def test_the_environment_is_read_once_per_origin(
    proxy_route: Callable[[str], Route], netrc_lookups: list[str]
) -> None:
    """requests' lookups read the environment and parse the .netrc for every request:
    `Routes` asks once for each scheme, host and port."""
    routes = Routes(proxy_route)

    first = routes("http://127.0.0.1:8000/a")
    assert routes("http://127.0.0.1:8000/b?c") == first
    assert first.authorization == "Basic YWxpY2U6c2VjcmV0"  # alice:secret
    assert routes("http://bob:pw@127.0.0.1:8000/").authorization is None  # its own come first
    assert routes("http://@127.0.0.1:8000/").authorization == first.authorization
    routes("http://127.0.0.1:8001/")
    assert netrc_lookups == ["http://127.0.0.1:8000/", "http://127.0.0.1:8001/"]


# Python 3.10's netrc cannot parse a character outside Latin-1 at all: such a .netrc is
# unreadable there (test_an_unreadable_netrc_is_said_once_and_sends_nothing).
NETRC_READS_UNICODE = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Python 3.10's netrc cannot parse the character"
)


@pytest.mark.usefixtures("no_proxy_settings")
@pytest.mark.parametrize("strategy", ["sequential", "threads", "async"])  # not in this process
def test_an_unreadable_netrc_is_said_once_and_sends_nothing(
    strategy: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """requests keeps quiet about a .netrc it cannot parse: its credentials were silently
    not sent. Said once, not for each origin, nor by each of the fetcher's workers."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password secret\nbogus token\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with serving_site(Site()) as site, fresh_fetcher(strategy) as fetcher:
        site.hold = 0.2  # so that both workers take one
        urls = [site.page(f"/{n}") for n in range(2)] + [
            site.page(f"/{n}").replace("127.0.0.1", "localhost") for n in range(2, 4)
        ]
        answers = [fetcher.submit(Request(url)) for url in urls]
        assert [answer.result(timeout=PATIENCE).status for answer in answers] == [200] * 4
    assert site.authorizations == [None] * 4
    said = [record.getMessage() for record in caplog.records if ".netrc" in record.getMessage()]
    assert len(said) == 1
    assert said[0].startswith("the .netrc cannot be read, and no credentials come from it: ")
    assert "bogus" in said[0]


@NETRC_READS_UNICODE
@pytest.mark.usefixtures("no_proxy_settings")
def test_a_netrc_login_that_cannot_be_sent_matters_only_where_it_is_used(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login \u0141ukasz password secret\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(netrc))
    routes = Routes(proxy_for_requests)

    assert routes("http://bob:pw@127.0.0.1:8000/").authorization is None  # its own are sent
    with pytest.raises(InvalidURL):
        routes("http://127.0.0.1:8000/")


@pytest.mark.usefixtures("no_proxy_settings", "alices_netrc")
@pytest.mark.parametrize("userinfo", ["", "@"])  # "@": no credentials of the URL's own
def test_every_strategy_sends_the_credentials_of_a_netrc(strategy: str, userinfo: str) -> None:
    with serving_site(Site()) as site, fresh_fetcher(strategy) as fetcher:
        url = site.page("/page").replace("//", f"//{userinfo}", 1)
        assert answer_of(fetcher, url).status == 200
    assert site.authorizations == ["Basic YWxpY2U6c2VjcmV0"]  # alice:secret


@pytest.mark.usefixtures("no_proxy_settings", "alices_netrc")
def test_every_strategy_sends_a_urls_own_credentials_rather_than_the_netrcs(
    strategy: str,
) -> None:
    """As aiohttp sends them. requests, reading the .netrc itself, sent its credentials."""
    with serving_site(Site()) as site, fresh_fetcher(strategy) as fetcher:
        assert answer_of(fetcher, site.page("/page").replace("//", "//bob:pw@", 1)).status == 200
    assert site.authorizations == ["Basic Ym9iOnB3"]  # bob:pw


@pytest.mark.usefixtures("no_proxy_settings", "alices_netrc")
@pytest.mark.parametrize("strategy", ["sequential", "threads", "async"])  # not in this process
def test_a_fetcher_reads_the_netrc_once_per_origin(strategy: str, netrc_lookups: list[str]) -> None:
    """requests, reading the environment itself, parsed the .netrc for every request."""
    with serving_site(Site()) as site, fresh_fetcher(strategy) as fetcher:
        for path in ("/a", "/b", "/c"):
            assert answer_of(fetcher, site.page(path)).status == 200
    assert netrc_lookups == [site.url]
    assert site.authorizations == ["Basic YWxpY2U6c2VjcmV0"] * 3  # alice:secret


@pytest.mark.usefixtures("no_proxy_settings")
@pytest.mark.parametrize(
    "source", ["url", "url, not UTF-8", pytest.param("netrc", marks=NETRC_READS_UNICODE), "proxy"]
)
def test_credentials_outside_latin_1_are_invalid_and_not_shown(
    strategy: str, source: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The libraries' UnicodeEncodeError quoted the character: a piece of the password.
    A URL's are read as requests reads them: aiohttp sent "%FF" as three characters."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s\u5bc6cret\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(netrc if source == "netrc" else tmp_path / "none"))
    with serving_site(Site()) as site, forwarding_proxy() as proxy:
        if source == "proxy":
            monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("//", "//alice:s\u5bc6cret@"))
        url = site.page("/page")
        if source.startswith("url"):
            password = "s%E5%AF%86cret" if source == "url" else "s%FFcret"
            url = url.replace("//", f"//alice:{password}@", 1)
        with fresh_fetcher(strategy) as fetcher:
            error = error_of(fetcher, url)
    assert error.kind is ErrorKind.INVALID_URL
    assert "outside Latin-1" in error.message
    assert "\u5bc6" not in error.message
    assert site.authorizations == []
    assert proxy.authorizations == []


@pytest.mark.usefixtures("authority_trusted", "no_proxy_settings")
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_that_refuses_is_connect_for_every_strategy(
    strategy: str, scheme: str, plain_page: str, tls_page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kind politeness reads as push-back. aiohttp's refused tunnel was `protocol`."""
    with forwarding_proxy() as proxy:
        proxy.refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
        monkeypatch.setenv(f"{scheme.upper()}_PROXY", proxy.url)
        with fresh_fetcher(strategy) as fetcher:
            outcome_ = outcome(fetcher, plain_page if scheme == "http" else tls_page)
    if scheme == "http":  # a proxy's answer to a plain request is the answer
        assert isinstance(outcome_, Response)
        assert outcome_.status == 407
    else:
        assert isinstance(outcome_, FetchError)
        assert outcome_.kind is ErrorKind.CONNECT


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("coded/not-gzip", ErrorKind.DECODE),
        ("coded/unknown-coding", ErrorKind.DECODE),
        ("raw/bad-status-line", ErrorKind.PROTOCOL),
        ("raw/hang-up", ErrorKind.CONNECT),
        ("raw/cut-short", ErrorKind.CONNECT),
        ("raw/content-length-abc", ErrorKind.PROTOCOL),
        ("raw/content-length-twice", ErrorKind.PROTOCOL),
        ("raw/content-length-and-chunks", ErrorKind.PROTOCOL),
        ("raw/not-a-header", ErrorKind.PROTOCOL),  # requests made it a 200
        # requests made each of these a 200: an empty one for a cut in the head
        *((f"cut-head/{cut}", ErrorKind.CONNECT) for cut in range(len(_WHOLE_HEAD) - 1)),
        ("raw/header-line-too-long", ErrorKind.PROTOCOL),  # not a cut, for all it has no end
        ("raw/100-headers", ErrorKind.PROTOCOL),  # aiohttp took up to 128
        # ended by the connection, but no start of a valid head either
        *((f"cut-invalid/{index}", ErrorKind.PROTOCOL) for index in range(len(_INVALID_CUTS))),
        ("raw/status-099", ErrorKind.PROTOCOL),
        # http.client split the status line on any whitespace: each was a 200
        ("raw/status-line-two-spaces", ErrorKind.PROTOCOL),
        ("raw/status-line-tab", ErrorKind.PROTOCOL),
        ("raw/status-line-space-first", ErrorKind.PROTOCOL),
        ("raw/status-line-cr-in-reason", ErrorKind.PROTOCOL),
        ("raw/version-2.0", ErrorKind.PROTOCOL),  # aiohttp made it a 200
        ("raw/version-1.2", ErrorKind.PROTOCOL),  # requests made it a 200
        ("raw/nul-in-header", ErrorKind.PROTOCOL),
        ("raw/content-length-over-64-bits", ErrorKind.PROTOCOL),  # was too_large
        ("raw/gzip-then-endless-garbage", ErrorKind.TOO_LARGE),  # was a timeout
        ("raw/chunks-data-past-its-size", ErrorKind.PROTOCOL),
        ("raw/chunks-size-line-ends-in-lf", ErrorKind.PROTOCOL),
        ("raw/chunks-trailer-not-a-header", ErrorKind.PROTOCOL),
        ("raw/chunks-trailer-folded-onto-nothing", ErrorKind.PROTOCOL),
        ("raw/chunks-cut-after-the-last-chunk", ErrorKind.CONNECT),
        ("raw/chunks-cut-in-the-trailer", ErrorKind.CONNECT),
        # a transfer coding neither library undoes: gzip bytes or chunk framing as the page
        ("raw/transfer-coding-gzip-chunked", ErrorKind.PROTOCOL),
        ("raw/transfer-coding-gzip", ErrorKind.PROTOCOL),
        ("raw/transfer-coding-chunked-twice", ErrorKind.PROTOCOL),
        # requests made "0xb", " b" and "b\r" a 200, and the others `connect`
        *((f"raw/chunk-size-{name}", ErrorKind.PROTOCOL) for name in list(_CHUNK_SIZES)[:6]),
        # each a 200 with what decompressed, before we decoded
        ("coded/gzip-cut", ErrorKind.DECODE),
        ("coded/gzip-second-member-cut", ErrorKind.DECODE),
        ("coded/deflate-cut", ErrorKind.DECODE),
        ("coded/br-cut", ErrorKind.DECODE),
        ("coded/br-then-garbage", ErrorKind.DECODE),
    ],
)
def test_broken_answers_end_in_the_same_kind(
    fetcher: Fetcher, rude_server: str, path: str, kind: ErrorKind
) -> None:
    assert error_of(fetcher, rude_server + path).kind is kind


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("raw/header-line-of-10-kb", b"hi"),  # aiohttp refused lines over 8,190 bytes
        ("raw/99-headers", b"hi"),
        ("raw/chunk-size-with-extension", b"<p>page</p>"),
        ("raw/chunk-size-then-spaces", b"<p>page</p>"),
        ("raw/transfer-coding-identity", b"<p>page</p>"),  # obsolete, and changes nothing
        ("raw/chunks-data-ends-in-lf", b"hello"),  # requests lost the next line's "0"
        ("raw/chunks-with-a-trailer", b"hello"),
        ("raw/chunks-with-a-folded-trailer", b"hello"),
        # requests read the chunk framing into the page: http.client compares the raw value
        # (with a tab after it, aiohttp still does, and shows the value stripped: not here)
        ("raw/transfer-coding-chunked-then-a-space", b"<p>page</p>"),
        ("raw/status-line-no-reason", b"hi"),
        ("raw/status-line-utf-8-reason", b"hi"),
        ("coded/gzip-then-garbage", _TEXT),  # aiohttp said `decode`
        ("coded/gzip-members", _TEXT * 2),
        ("coded/x-gzip", _TEXT),  # aiohttp said `decode`
        ("coded/deflate", _TEXT),
        ("coded/deflate-raw", _TEXT),
        ("coded/br", _TEXT),
        ("coded/gzip-empty", b""),
    ],
)
def test_odd_but_whole_answers_are_the_same_page(
    fetcher: Fetcher, rude_server: str, path: str, body: bytes
) -> None:
    answer = answer_of(fetcher, rude_server + path)
    assert (answer.status, answer.body) == (200, body)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("raw/204-in-zstd", 204),  # a coding we cannot undo, on no body
        ("raw/304-chunked", 304),  # requests looked for a chunk until the timeout
        ("raw/304-of-a-large-page", 304),  # was too_large: the length is the page's
    ],
)
def test_an_answer_without_a_body_has_none_whatever_its_headers_say(
    fetcher: Fetcher, rude_server: str, path: str, status: int
) -> None:
    answer = answer_of(fetcher, rude_server + path)
    assert (answer.status, answer.body) == (status, b"")


@pytest.mark.parametrize("status", [204, 304])
def test_a_connection_is_used_again_after_an_answer_without_a_body(
    strategy: str, rude_server: str, status: int
) -> None:
    fetcher = open_fetcher(strategy, LIMITS, workers=1)
    try:
        before = answer_of(fetcher, rude_server + "peer").body
        assert answer_of(fetcher, rude_server + f"no-body/{status}").status == status
        assert answer_of(fetcher, rude_server + "peer").body == before
    finally:
        fetcher.close()


def test_every_strategy_asks_for_the_codings_it_decodes(fetcher: Fetcher, rude_server: str) -> None:
    answer = answer_of(fetcher, rude_server + "accept-encoding")
    assert answer.body.decode() == ACCEPT_ENCODING == "gzip, deflate, br"


def test_a_cut_head_is_connect_on_a_connection_of_the_library_too(rude_server: str) -> None:
    """Through a SOCKS proxy, requests makes its own connections, without the head check:
    the check on what followed the headers still tells a line cut off (`connect`)."""
    with requests.Session() as session:
        session.mount("http://", requests.adapters.HTTPAdapter())
        with pytest.raises(FetchError) as caught:
            fetch_once(session, rude_server + "cut-head/27", LIMITS)
    assert caught.value.kind is ErrorKind.CONNECT


@pytest.mark.parametrize("interim", [b"100 Continue", b"102 Processing", b"103 Early Hints"])
def test_interim_answers_are_read_past(fetcher: Fetcher, rude_server: str, interim: bytes) -> None:
    answer = answer_of(fetcher, rude_server + "interim/" + interim[:3].decode())
    assert (answer.status, answer.body) == (200, b"hi")


def test_a_multipart_answer_is_an_answer(fetcher: Fetcher, rude_server: str) -> None:
    assert answer_of(fetcher, rude_server + "multipart").status == 200


def test_a_redirect_body_is_never_read(fetcher: Fetcher, rude_server: str) -> None:
    # Reading the endless body would end at the deadline, in a timeout instead of an answer.
    answer = answer_of(fetcher, rude_server + "endless-redirect")
    assert (answer.status, answer.body) == (302, b"")


# -- shutting down -------------------------------------------------------------------------


def test_close_while_a_request_stalls_returns_promptly(
    strategy: str, fresh_site: RunningSite
) -> None:
    fetcher = open_fetcher(strategy, STALLED, workers=2)
    submitted: queue.SimpleQueue[Future[Response]] = queue.SimpleQueue()
    request = Request(fresh_site.url_for("/stall"))
    # The sequential strategy fetches inside submit(), so submit from a thread of its own.
    threading.Thread(target=lambda: submitted.put(fetcher.submit(request)), daemon=True).start()
    wait_until(lambda: "/stall" in fresh_site.hits)
    fetcher.close()
    # Did not wait for the stall: when close() returns, the request has not yet ended by
    # its own timeout (it is still on its way, or close cut it short).
    assert not _ended_by_timeout(submitted)
    fetcher.close()  # a second close is harmless
    future = submitted.get(timeout=PATIENCE)
    assert concurrent.futures.wait([future], timeout=PATIENCE).done == {future}
    assert future.cancelled() or isinstance(future.exception(), FetchError)


def _ended_by_timeout(submitted: queue.SimpleQueue[Future[Response]]) -> bool:
    """Whether the submitted request (if submit() has returned yet) failed by its timeout.
    Looks without taking it from the queue."""
    try:
        future = submitted.get_nowait()
    except queue.Empty:
        return False
    submitted.put(future)
    error = future.exception(timeout=0) if future.done() and not future.cancelled() else None
    return isinstance(error, FetchError) and error.kind is ErrorKind.TIMEOUT


@pytest.mark.parametrize("strategy", [name for name in FETCH_STRATEGIES if name != "sequential"])
def test_close_cancels_queued_requests_and_wakes_their_waiters(
    strategy: str, fresh_site: RunningSite
) -> None:
    fetcher = open_fetcher(strategy, STALLED, workers=1)
    try:
        fetcher.submit(Request(fresh_site.url_for("/stall")))
        wait_until(lambda: "/stall" in fresh_site.hits)
        queued = [fetcher.submit(Request(fresh_site.url_for(f"/stall?{n}"))) for n in range(3)]
    finally:
        fetcher.close()
    # concurrent.futures.wait counts a cancelled future as done only once it is notified.
    done = concurrent.futures.wait(queued, timeout=STALLED.timeout / 2).done
    assert done == set(queued)
    assert all(future.cancelled() for future in queued)
    assert set(fresh_site.hits) == {"/stall"}


def test_submit_after_close_raises(strategy: str) -> None:
    fetcher = open_fetcher(strategy, LIMITS, workers=1)
    fetcher.close()
    if strategy == "sequential":  # fetches inline: nothing to refuse, nothing left pending
        return
    with pytest.raises(RuntimeError):
        fetcher.submit(Request(REFUSED))


def test_a_killed_fetch_process_fails_its_request_and_the_pool_recovers(
    fresh_site: RunningSite,
) -> None:
    before = set(multiprocessing.active_children())
    slow = Limits(timeout=60.0, max_bytes=LIMITS.max_bytes, user_agent=LIMITS.user_agent)
    fetcher = ProcessFetcher(slow, workers=1)
    try:
        future = fetcher.submit(Request(fresh_site.url_for("/stall")))
        wait_until(lambda: "/stall" in fresh_site.hits)
        (worker,) = set(multiprocessing.active_children()) - before
        worker.kill()
        error = future.exception(timeout=PATIENCE)
        assert isinstance(error, FetchError)
        assert error.kind is ErrorKind.CONNECT
        assert "process" in error.message
        answer = fetcher.submit(Request(fresh_site.url)).result(timeout=PATIENCE)
        assert answer.status == 200
    finally:
        fetcher.close()


def test_a_killed_fetch_process_fails_only_the_attempts_it_held(
    fresh_site: RunningSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(multiprocessing.active_children())
    slow = Limits(timeout=60.0, max_bytes=LIMITS.max_bytes, user_agent=LIMITS.user_agent)
    monkeypatch.setattr(processes, "usable_cpus", lambda: 2)  # two, whatever the machine
    fetcher = ProcessFetcher(slow, workers=2)
    try:
        stalls = [fetcher.submit(Request(fresh_site.url_for(f"/stall?{n}"))) for n in range(2)]
        wait_until(lambda: len(fresh_site.hits) == 2)  # one in each process: the least busy
        victim, survivor = set(multiprocessing.active_children()) - before
        victim.kill()
        wait_until(lambda: any(future.done() for future in stalls))
        (lost,) = [future for future in stalls if future.done()]
        error = connect_error(lost)
        assert "exit code -9" in error.message  # SIGKILL, known because it was joined
        assert survivor.is_alive()
        assert not all(future.done() for future in stalls)
        answer = fetcher.submit(Request(fresh_site.url)).result(timeout=PATIENCE)
        assert answer.status == 200
    finally:
        fetcher.close()


@pytest.mark.parametrize("strategy", [name for name in FETCH_STRATEGIES if name != "sequential"])
def test_every_worker_fetches_at_once(
    strategy: str, rude_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workers` requests are in flight together: the server answers each only once all
    of them have arrived. (With `processes`: 5 over two processes, of 3 and 2 threads.)"""
    monkeypatch.setattr(processes, "usable_cpus", lambda: 2)
    fetcher = open_fetcher(strategy, LIMITS, workers=5)
    try:
        url = f"{rude_server}together/{strategy}-{time.monotonic_ns()}/5"
        futures = [fetcher.submit(Request(url)) for _ in range(5)]
        answers = [future.result(timeout=PATIENCE) for future in futures]
    finally:
        fetcher.close()
    assert [answer.status for answer in answers] == [200] * 5


@pytest.mark.parametrize("strategy", [name for name in FETCH_STRATEGIES if name != "sequential"])
def test_no_more_than_workers_fetch_at_once(
    strategy: str, fresh_site: RunningSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "usable_cpus", lambda: 2)
    fetcher = open_fetcher(strategy, STALLED, workers=3)
    try:
        for n in range(4):
            fetcher.submit(Request(fresh_site.url_for(f"/stall?{n}")))
        wait_until(lambda: len(fresh_site.hits) >= 3)
        time.sleep(0.3)  # time for a fourth to arrive, were it sent
        assert len(fresh_site.hits) == 3
    finally:
        fetcher.close()


@pytest.mark.parametrize("refused", [BlockingIOError(11, "Resource unavailable"), EOFError()])
def test_a_fetch_process_that_cannot_be_replaced_fails_the_attempt_not_the_crawl(
    fresh_site: RunningSite, monkeypatch: pytest.MonkeyPatch, refused: Exception
) -> None:
    """Refused by this process's fork (OSError) or by the fork server's (EOFError)."""

    def cannot_start(*args: object, **kwargs: object) -> None:
        raise refused

    fetcher = ProcessFetcher(LIMITS, workers=1)
    try:
        _fail_with_an_unreadable_answer(fetcher, fresh_site.url, monkeypatch)  # lost
        with monkeypatch.context() as patch:
            patch.setattr(processes, "_FetchProcess", cannot_start)
            error = connect_error(fetcher.submit(Request(fresh_site.url)))
        assert error.message.startswith("cannot start the fetch process: ")
        assert error.message != "cannot start the fetch process: "  # it says why
        assert fetcher.submit(Request(fresh_site.url)).result(timeout=PATIENCE).status == 200
    finally:
        fetcher.close()


def test_a_fork_server_that_ends_instead_of_forking_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the fork server's own fork is refused, it ends, and the process asking for a
    child reads an end of file instead of its pid."""

    def fork_server_ended(*args: object, **kwargs: object) -> None:
        raise EOFError("unexpected EOF")

    monkeypatch.setattr(processes, "_FetchProcess", fork_server_ended)
    with pytest.raises(ScraperError, match="fetch processes: the fork server ended"):
        ProcessFetcher(LIMITS, workers=1)


def test_a_fetch_process_that_cannot_start_leaves_no_pipe_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "process_context", lambda preload: _NoProcesses)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ScraperError, match="cannot start the fetch processes") as raised:
        ProcessFetcher(LIMITS, workers=1)
    # Checked while the error, and through its traceback the half-made fetcher, is alive:
    # a caller that keeps it must not keep the pipes with it.
    assert isinstance(raised.value.__cause__, BlockingIOError)
    assert len(os.listdir("/proc/self/fd")) == before


def test_while_a_lost_process_cannot_be_replaced_the_others_take_the_attempts(
    fresh_site: RunningSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(multiprocessing.active_children())
    monkeypatch.setattr(processes, "usable_cpus", lambda: 2)
    fetcher = ProcessFetcher(LIMITS, workers=2)
    try:
        victim, _ = set(multiprocessing.active_children()) - before
        victim.kill()
        # Until its reader has seen it gone, a request may still be sent to it (and fail).
        wait_until(lambda: any(process.lost for process in fetcher._processes))
        with monkeypatch.context() as patch:
            patch.setattr(processes, "_FetchProcess", _CannotStart)
            answers = [fetcher.submit(Request(fresh_site.url)) for _ in range(4)]
            assert [answer.result(timeout=PATIENCE).status for answer in answers] == [200] * 4
    finally:
        fetcher.close()


class _NoProcesses:
    """A multiprocessing context whose processes cannot start (fork fails: EAGAIN)."""

    Pipe = staticmethod(multiprocessing.Pipe)

    class Process:
        def __init__(self, **kwargs: object) -> None:
            pass

        def start(self) -> None:
            raise BlockingIOError(11, "Resource temporarily unavailable")


class _CannotStart:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")


def test_an_answer_that_cannot_be_read_fails_its_attempt_and_its_process_is_replaced(
    fresh_site: RunningSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetcher = ProcessFetcher(LIMITS, workers=1)
    try:
        error = _fail_with_an_unreadable_answer(fetcher, fresh_site.url, monkeypatch)
        assert "lost" in error.message
        assert fetcher.submit(Request(fresh_site.url)).result(timeout=PATIENCE).status == 200
    finally:
        fetcher.close()


def _fail_with_an_unreadable_answer(
    fetcher: Fetcher, url: str, monkeypatch: pytest.MonkeyPatch
) -> FetchError:
    """Fetch `url` while no answer can be read in this process (the answers' reader)."""
    with monkeypatch.context() as patch:
        patch.setattr(multiprocessing.connection, "_ForkingPickler", _NoMemoryToUnpickle)
        return connect_error(fetcher.submit(Request(url)))


def connect_error(future: Future[Response]) -> FetchError:
    error = future.exception(timeout=PATIENCE)
    assert isinstance(error, FetchError)
    assert error.kind is ErrorKind.CONNECT
    return error


class _NoMemoryToUnpickle(ForkingPickler):
    """Sends as usual; no answer can be read."""

    @staticmethod
    def loads(data: object) -> object:  # type: ignore[override]
        raise MemoryError


@pytest.fixture
def sessions_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch thread cannot make its Sessions, as under a home it may not read."""

    def unusable(limits: Limits) -> Any:
        raise PermissionError(13, "Permission denied", "/home/nobody/.netrc")

    monkeypatch.setattr("scraper.fetch.threads.Sessions", unusable)


@pytest.mark.usefixtures("sessions_refused")
def test_a_fetch_worker_that_cannot_make_its_sessions_fails_its_attempts(
    fresh_site: RunningSite,
) -> None:
    """Rather than die and leave them unanswered: the crawl waited for them forever."""
    fetcher = open_fetcher("threads", LIMITS, workers=2)
    try:
        futures = [fetcher.submit(Request(fresh_site.url)) for _ in range(3)]
        errors = [future.exception(timeout=PATIENCE) for future in futures]
    finally:
        fetcher.close()
    assert all(isinstance(error, PermissionError) for error in errors)


def test_an_error_of_ours_ends_a_sequential_attempt_too(
    fresh_site: RunningSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the crawl: it is recorded, as with the threads strategy."""

    def faulty(self: Any, request: Request) -> Response:
        raise ValueError("a fault of ours")

    monkeypatch.setattr("scraper.fetch.http.Sessions.fetch", faulty)
    fetcher = open_fetcher("sequential", LIMITS, workers=1)
    try:
        error = fetcher.submit(Request(fresh_site.url)).exception(timeout=PATIENCE)
    finally:
        fetcher.close()
    assert isinstance(error, ValueError)


@pytest.mark.usefixtures("sessions_refused")
def test_a_crawl_whose_fetch_workers_cannot_make_sessions_records_each_url(
    fresh_site: RunningSite,
) -> None:
    pages = list(
        crawl(
            [fresh_site.url_for("/page/1"), fresh_site.url_for("/page/2")],
            output=None,
            parse="inline",
            backoff=0,
        )
    )
    assert sorted(page.url for page in pages) == [
        fresh_site.url_for("/page/1"),
        fresh_site.url_for("/page/2"),
    ]
    assert {page.error["kind"] for page in pages if page.error} == {"protocol"}
    assert all("PermissionError" in page.error["message"] for page in pages if page.error)


def test_an_answer_that_cannot_be_pickled_is_sent_as_an_error() -> None:
    received, sent = multiprocessing.Pipe(duplex=False)
    answered: Future[Response] = Future()
    unpicklable = {"content-type": lambda: "text/html"}  # as a body too large to pickle
    answered.set_result(Response("http://a.example/", 200, "OK", unpicklable, b"", 0.1))  # type: ignore[arg-type]
    processes._send_answer(sent, threading.Lock(), 7, answered)
    job_id, error = received.recv()
    assert job_id == 7
    assert isinstance(error, FetchError)
    assert "could not be sent back" in error.message


class _Unprintable(Exception):
    """An error that cannot even say what it is (no memory for its text)."""

    def __str__(self) -> str:
        raise MemoryError


class _Exited(Exception):
    pass


@pytest.mark.parametrize("pickling_fails_with", [MemoryError, _Unprintable])
def test_a_fetch_process_that_cannot_even_send_an_error_ends_rather_than_leave_it_waiting(
    monkeypatch: pytest.MonkeyPatch, pickling_fails_with: type[Exception]
) -> None:
    """Its reader in the crawl then fails every attempt it held (tested above)."""

    def exit_now(code: int) -> None:
        raise _Exited(code)

    def refused(obj: object) -> bytes:
        raise pickling_fails_with

    received, sent = multiprocessing.Pipe(duplex=False)
    answered: Future[Response] = Future()
    answered.set_result(Response("http://a.example/", 200, "OK", {}, b"", 0.1))
    monkeypatch.setattr(processes.ForkingPickler, "dumps", refused)
    monkeypatch.setattr(processes.os, "_exit", exit_now)
    with pytest.raises(_Exited) as exited:
        processes._send_answer(sent, threading.Lock(), 7, answered)
    assert exited.value.args == (processes.CANNOT_ANSWER,)
    assert not received.poll(0)


def test_a_cancelled_attempt_sends_no_answer() -> None:
    received, sent = multiprocessing.Pipe(duplex=False)
    cancelled: Future[Response] = Future()
    cancelled.cancel()
    processes._send_answer(sent, threading.Lock(), 7, cancelled)
    assert not received.poll(0)


# -- a whole crawl -------------------------------------------------------------------------


def test_a_refused_redirect_records_how_long_its_attempt_took(rude_server: str) -> None:
    [page] = crawl([rude_server + "slow-redirect-to-itself"], parse="inline", output=None)
    assert page.error is not None and page.error["kind"] == "redirect_loop"
    assert page.elapsed_ms >= 100  # the server waited that long before its 302


def crawl_signature(site: RunningSite, strategy: str) -> dict[str, tuple[Any, ...]]:
    """The whole site: with a depth limit, which pages fall within it would depend on the
    order answers arrive in (a page met first through a deeper page's link gets that depth,
    and its children may fall beyond the limit), and that order is each strategy's own."""
    pages = crawl([site.url], depth=1000, fetch=strategy, output=None, parse="inline", workers=4)
    return {page.url: (page.status, page.sha256, tuple(sorted(page.links))) for page in pages}


@pytest.fixture(scope="module")
def reference_crawl(demo_site: RunningSite) -> dict[str, tuple[Any, ...]]:
    return crawl_signature(demo_site, "sequential")


def test_a_crawl_finds_the_same_pages_with_every_strategy(
    demo_site: RunningSite, reference_crawl: dict[str, tuple[Any, ...]], strategy: str
) -> None:
    assert len(reference_crawl) > demo_site.spec.pages / 2
    assert crawl_signature(demo_site, strategy) == reference_crawl


# -- a server that breaks HTTP on purpose ----------------------------------------------------

_routes = web.RouteTableDef()
_FOREVER = 3600.0


@_routes.get("/user-agent")
async def _user_agent(request: web.Request) -> web.Response:
    return web.Response(text=request.headers.get("User-Agent", ""))


@_routes.get("/peer")
async def _peer(request: web.Request) -> web.Response:
    """The client's address and port: the same on a connection used again."""
    assert request.transport is not None
    return web.Response(text=repr(request.transport.get_extra_info("peername")))


@_routes.get("/no-body/{status}")
async def _no_body(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["status"]))


@_routes.get("/accept-encoding")
async def _accept_encoding(request: web.Request) -> web.Response:
    return web.Response(text=request.headers.get("Accept-Encoding", ""))


@_routes.get("/raw/{name}")
async def _raw(request: web.Request) -> web.Response:
    answer = _RAW_ANSWERS[request.match_info["name"]]
    return await _write_raw(request, answer.replace(b"\r\n", b"\r\nConnection: close\r\n", 1))


@_routes.get("/coded/{name}")
async def _coded(request: web.Request) -> web.Response:
    coding, body = _CODED_ANSWERS[request.match_info["name"]]
    return web.Response(body=body, headers={"Content-Encoding": coding})


@_routes.get("/cut-head/{at}")
async def _cut_head(request: web.Request) -> web.Response:
    """The head of an answer, cut off after `at` bytes (every one of them before its end)."""
    return await _write_raw(request, _WHOLE_HEAD[: int(request.match_info["at"])])


@_routes.get("/cut-invalid/{index}")
async def _cut_invalid(request: web.Request) -> web.Response:
    return await _write_raw(request, _INVALID_CUTS[int(request.match_info["index"])])


@_routes.get("/interim/{status}")
async def _interim(request: web.Request) -> web.Response:
    interim = b"HTTP/1.1 %s Interim\r\nLink: </style.css>; rel=preload\r\n\r\n"
    final = _HEAD + b"Connection: close\r\nContent-Length: 2\r\n\r\nhi"
    return await _write_raw(request, interim % request.match_info["status"].encode() + final)


@_routes.get("/trickle-head/{part}")
async def _trickle_head(request: web.Request) -> web.Response:
    """A head that never ends, a byte or an interim answer every 0.1 s, each well within
    the timeout: in its status line, in a header line, or as endless 103 answers."""
    start, more = {
        "status": (b"HTTP/1.1 200 O", b"k"),
        "header": (_HEAD + b"X-Long: ", b"x"),
        "interim": (b"", b"HTTP/1.1 103 Early Hints\r\n\r\n"),
    }[request.match_info["part"]]
    assert request.transport is not None
    request.transport.write(start)
    for _ in range(round(2 * PATIENCE / 0.1)):  # a fetch still going on fails the test
        await asyncio.sleep(0.1)
        request.transport.write(more)
    return await _write_raw(request, b"")


@_routes.get("/multipart")
async def _multipart(request: web.Request) -> web.Response:
    """Well-formed; yet the header parser of requests notes defects for its Content-Type."""
    body = b"--XYZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XYZ--\r\n"
    return web.Response(body=body, content_type="multipart/mixed; boundary=XYZ")


async def _write_raw(request: web.Request, data: bytes) -> web.Response:
    """Write `data` instead of an answer, hang up, and wait to be cancelled."""
    assert request.transport is not None
    request.transport.write(data)
    request.transport.close()
    await asyncio.sleep(_FOREVER)  # cancelled: the client is gone (handler_cancellation)
    raise AssertionError("unreachable")


_gatherings: dict[str, tuple[list[None], asyncio.Event]] = {}


@_routes.get("/together/{key}/{count}")
async def _together(request: web.Request) -> web.Response:
    """Answer 200 once `count` requests for `key` have arrived, 504 if they do not by the
    client's timeout (they were not all in flight at once)."""
    arrived, everyone = _gatherings.setdefault(request.match_info["key"], ([], asyncio.Event()))
    arrived.append(None)
    if len(arrived) == int(request.match_info["count"]):
        everyone.set()
    try:
        await asyncio.wait_for(everyone.wait(), LIMITS.timeout)
    except asyncio.TimeoutError:
        return web.Response(status=504, text=f"only {len(arrived)} arrived")
    return web.Response(text="together")


@_routes.get("/slow-redirect-to-itself")
async def _slow_redirect_to_itself(request: web.Request) -> web.Response:
    await asyncio.sleep(0.1)
    raise web.HTTPFound("/slow-redirect-to-itself")


@_routes.get("/endless-redirect")
async def _endless_redirect(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=302, headers={"Location": "/user-agent"})
    await response.prepare(request)
    try:
        while True:
            await response.write(b"x" * 65536)
            await asyncio.sleep(0.01)
    except ConnectionResetError:  # the client hung up, as it should
        return response


@contextlib.contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """Serve `app` on a port of 127.0.0.1 it binds itself, from a thread; yield its root URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)

    async def start() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(PATIENCE)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(PATIENCE)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(PATIENCE)
        loop.close()


@pytest.fixture(scope="module")
def rude_server() -> Iterator[str]:
    app = web.Application()
    app.add_routes(_routes)
    with serving(app) as url:
        yield url
