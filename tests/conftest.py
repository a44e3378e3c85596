"""Shared fixtures: the built-in demo site on 127.0.0.1, bound to a port it picks itself;
a parse pool the system refuses to start; and a guard that keeps every test of this
process on the machine."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from scraper.demo import RunningSite, SiteSpec, running_site


@pytest.fixture(scope="module")
def demo_site() -> Iterator[RunningSite]:
    """A 60-page demo site, shared by the tests of one module (they only read from it)."""
    with running_site(SiteSpec(pages=60, fanout=4)) as site:
        yield site


@pytest.fixture
def fresh_site() -> Iterator[RunningSite]:
    """A demo site of its own, for tests that count the server's hits."""
    with running_site(SiteSpec(pages=30, fanout=3)) as site:
        yield site


# How a refused fork reaches the process starting a child: as the OSError of its own fork
# (spawn, off Linux), or as the end of the fork server, whose fork it was (forkserver).
FORK_REFUSALS = {
    "fork": BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"),
    "fork server": EOFError("unexpected EOF"),
}


@pytest.fixture(params=sorted(FORK_REFUSALS))
def second_parse_process_refused(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> list[Any]:
    """The system refuses the pool's second process, as at a process limit. Gives the
    processes that did start."""
    started: list[Any] = []
    spawn = ProcessPoolExecutor._spawn_process  # type: ignore[attr-defined]

    def refuse_the_second(pool: ProcessPoolExecutor) -> None:
        if started:
            raise FORK_REFUSALS[request.param]
        spawn(pool)
        started.extend(pool._processes.values())  # type: ignore[attr-defined]

    monkeypatch.setattr(ProcessPoolExecutor, "_spawn_process", refuse_the_second)
    return started


# -- no test leaves the machine ------------------------------------------------------------

_LOCAL_NAMES = frozenset({"localhost", "localhost.", ""})
_left_loopback: list[str] = []  # connections attempted off loopback, by any thread


@pytest.fixture(scope="session", autouse=True)
def _stay_on_loopback() -> Iterator[None]:
    """Names other than localhost do not resolve (as on a machine without DNS: no query is
    sent), and a connection to an address off loopback is refused and remembered, so the
    test that made it fails. Covers this process; the `scrape` subprocesses the CLI tests
    start crawl only the demo site they are given."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name.lower() not in _LOCAL_NAMES and not _is_ip(name):
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no names: {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            _left_loopback.append(str(address[0]))
            raise OSError(f"tests stay on loopback: refused a connection to {address[0]}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield


@pytest.fixture(autouse=True)
def _no_connection_left_loopback() -> Iterator[None]:
    _left_loopback.clear()
    yield
    assert not _left_loopback, f"the test tried to connect off loopback: {_left_loopback}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", maxsplit=1)[0])
    except ValueError:
        return False
    return True


def _is_loopback(host: Any) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host).lower() in _LOCAL_NAMES
