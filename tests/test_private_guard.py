"""The connect-time guard of `Request.public_only`, for every fetch strategy.

The server's hit counter is the witness: a refused request must not reach it at all. Each
test asks for a URL of its own (`unique`) on the module's demo site, so the counts of one
test are not another's. (A refused connection is opened and closed without a byte sent; a
site stopped at that very moment may not have closed its side yet, hence one site for the
module rather than a fresh one per test.)

A public-looking name is made to resolve to 127.0.0.1 by patching `socket.getaddrinfo` in
this process, which the requests strategies (through urllib3) and the async one (through
aiohttp's ThreadedResolver) call at connect time. The processes strategy resolves names in
its worker processes, out of a patch's reach: it runs the same `http.Sessions`, whose
guarded connection class the threads and sequential cases exercise, and the `localhost`
case shows that a name resolved inside a worker is caught there too.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
import yarl
from jsonl import skipped_by_url

from scraper import crawl
from scraper.config import FETCH_STRATEGIES
from scraper.demo import RunningSite
from scraper.errors import ErrorKind, FetchError, PrivateAddress
from scraper.fetch import Fetcher, Limits, Response, aio, http, open_fetcher
from scraper.fetch.exchange import is_public, refuse_private
from scraper.records import Request

LIMITS = Limits(timeout=5.0, max_bytes=1 << 20, user_agent="guard-tests/1.0")
PATIENCE = 30.0  # only reached when something hangs; never what a test asserts
IN_PROCESS = [name for name in FETCH_STRATEGIES if name != "processes"]
REBOUND = "www.rebound.example"  # a public-looking name, resolved to 127.0.0.1 below
_SERIAL = itertools.count()


@pytest.fixture(params=FETCH_STRATEGIES)
def fetcher(request: pytest.FixtureRequest) -> Iterator[Fetcher]:
    # One worker, so a later request lands where the earlier one left its connections.
    opened = open_fetcher(str(request.param), LIMITS, workers=1)
    yield opened
    opened.close()


def outcome(fetcher: Fetcher, url: str, *, public_only: bool) -> Response | FetchError:
    try:
        return fetcher.submit(Request(url, public_only=public_only)).result(timeout=PATIENCE)
    except FetchError as error:
        return error


def unique(site: RunningSite, host: str = "127.0.0.1") -> tuple[str, str]:
    """A URL no other request of the module asks for, and the key its hits are counted by."""
    path_qs = f"/page/1?serial={next(_SERIAL)}"
    url = yarl.URL(site.url).with_host(host).join(yarl.URL(path_qs))
    return str(url), path_qs


# -- every strategy --------------------------------------------------------------------------


def test_a_private_address_is_refused_before_anything_is_sent(
    fetcher: Fetcher, demo_site: RunningSite
) -> None:
    url, path_qs = unique(demo_site)
    error = outcome(fetcher, url, public_only=True)
    assert isinstance(error, PrivateAddress), error
    assert error.kind is ErrorKind.PRIVATE_ADDRESS
    assert "127.0.0.1" in error.message
    assert path_qs not in demo_site.hits


def test_without_public_only_the_same_request_succeeds(
    fetcher: Fetcher, demo_site: RunningSite
) -> None:
    url, path_qs = unique(demo_site)
    answer = outcome(fetcher, url, public_only=False)
    assert isinstance(answer, Response), answer
    assert answer.status == 200
    assert demo_site.hits[path_qs] == 1


def test_a_guarded_request_never_reuses_an_unchecked_connection(
    fetcher: Fetcher, demo_site: RunningSite
) -> None:
    (first, _), (second, refused) = unique(demo_site), unique(demo_site)
    assert isinstance(outcome(fetcher, first, public_only=False), Response)
    error = outcome(fetcher, second, public_only=True)
    assert isinstance(error, PrivateAddress), error
    assert refused not in demo_site.hits


def test_a_name_is_judged_by_the_address_it_resolves_to(
    fetcher: Fetcher, demo_site: RunningSite
) -> None:
    url, path_qs = unique(demo_site, "localhost")
    error = outcome(fetcher, url, public_only=True)
    assert isinstance(error, PrivateAddress), error
    assert "localhost" in error.message
    assert path_qs not in demo_site.hits


# -- a public-looking name that resolves to loopback (DNS rebinding) ------------------------


@pytest.fixture
def rebound_name(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == REBOUND:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.usefixtures("rebound_name")
@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_a_public_name_resolving_to_loopback_is_refused(
    strategy: str, demo_site: RunningSite
) -> None:
    (guarded, refused), (unguarded, served) = unique(demo_site, REBOUND), unique(demo_site, REBOUND)
    fetcher = open_fetcher(strategy, LIMITS, workers=1)
    try:
        error = outcome(fetcher, guarded, public_only=True)
        answer = outcome(fetcher, unguarded, public_only=False)
    finally:
        fetcher.close()
    assert isinstance(error, PrivateAddress), error
    assert REBOUND in error.message
    assert isinstance(answer, Response), answer  # the name does resolve, to the demo site
    assert refused not in demo_site.hits
    assert demo_site.hits[served] == 1


def test_the_async_resolver_keeps_only_public_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)

    async def resolve() -> list[str]:
        found = await aio._PublicOnlyResolver().resolve("mixed.example", 80)
        return [result["host"] for result in found]

    assert asyncio.run(resolve()) == ["93.184.216.34"]


# -- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata, link-local
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "not an address",
    ],
)
def test_non_global_addresses_are_refused(address: str) -> None:
    assert not is_public(address)
    with pytest.raises(PrivateAddress, match=r"example\.com"):
        refuse_private("example.com", address)


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses_pass(address: str) -> None:
    assert is_public(address)
    refuse_private("example.com", address)


@pytest.mark.parametrize("table", [http.ERRORS, aio.ERRORS])
def test_private_address_passes_the_error_tables_unchanged(table: Any) -> None:
    error = PrivateAddress("example.com is at 10.0.0.1, which is not a public address")
    assert table.translate(error, LIMITS) is error


def test_private_address_pickles() -> None:
    error = PrivateAddress("example.com is at 10.0.0.1, which is not a public address")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.kind, copy.message) == (PrivateAddress, error.kind, error.message)


@pytest.mark.usefixtures("rebound_name")
@pytest.mark.parametrize("strategy", IN_PROCESS)
def test_the_links_of_a_public_name_stay_public_whatever_it_resolves_to(
    strategy: str, demo_site: RunningSite, tmp_path: Path
) -> None:
    """Public or private is read from the page's URL, for every strategy alike. (It was the
    address connected to where the strategy knew it: a proxy's address, and for requests
    only while the server kept the connection open.)"""
    seed = str(yarl.URL(demo_site.url).with_host(REBOUND))
    pages = list(crawl([seed], depth=1, fetch=strategy, parse="inline", retries=0, output=tmp_path))
    assert [page.url for page in pages] == [seed]  # a listed URL is always allowed
    skipped = skipped_by_url(tmp_path)
    links = [url for url in skipped if url.startswith(seed + "page/")]
    assert links
    assert {skipped[url]["reason"] for url in links} == {"private"}


# -- robots.txt of a URL found on a public page ------------------------------------------------


@pytest.mark.usefixtures("rebound_name")
def test_robots_txt_is_fetched_under_the_guard_of_the_url_it_is_for(
    demo_site: RunningSite, tmp_path: Path
) -> None:
    """A link on a public page may reach public addresses only; so may the robots.txt
    fetched before it, or a name resolving to a private address would be asked for it."""
    rebound = str(yarl.URL(demo_site.url).with_host(REBOUND))
    public = "http://public.example/"
    before = demo_site.hits.get("/robots.txt", 0)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(rebound)
        mock.get(public + "robots.txt", status=404)
        link = f'<a href="{rebound}page/1">x</a>'
        mock.get(public, body=link, content_type="text/html")
        pages = list(
            crawl(
                [public],
                depth=1,
                allow_domains=(REBOUND,),
                fetch="threads",
                parse="inline",
                retries=0,
                output=tmp_path,
            )
        )

    assert [page.url for page in pages] == [public]
    assert demo_site.hits.get("/robots.txt", 0) == before
    assert skipped_by_url(tmp_path)[rebound + "page/1"]["reason"] == "private"
