"""One HTTP exchange (fetch_once) under mocked requests, error translation, and strategies.

`responses` patches requests globally, so it also serves the worker threads of
ThreadFetcher. The only real socket use is a connection to 127.0.0.1:1, which is refused.
"""

from __future__ import annotations

import gzip
import pickle
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from pathlib import Path

import pytest
import requests
import responses
import urllib3.exceptions
from processes import wait_for

from scraper.errors import (
    ErrorKind,
    FetchError,
    InvalidURL,
    ResponseError,
    TransportError,
)
from scraper.fetch import Limits, Response, open_fetcher
from scraper.fetch.http import ERRORS, fetch_once, new_session
from scraper.fetch.sequential import SequentialFetcher
from scraper.fetch.threads import ThreadFetcher
from scraper.records import Request

LIMITS = Limits(timeout=5.0, max_bytes=1000, user_agent="test-agent/1.0 (+tests)")
URL = "http://example.com/page"
REFUSED = "http://127.0.0.1:1/"
PATIENCE = 30.0  # only reached when something hangs; never what a test asserts


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with new_session(LIMITS) as s:
        yield s


def fetch_error(session: requests.Session, url: str = URL, limits: Limits = LIMITS) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_once(session, url, limits)
    return caught.value


# -- fetch_once: answers ------------------------------------------------------------------


def test_status_headers_and_body(mock: responses.RequestsMock, session: requests.Session) -> None:
    mock.get(
        URL,
        body=b"<html>hi</html>",
        status=200,
        headers={"Content-Type": "text/html; charset=utf-8", "X-Custom-Thing": "Value"},
    )
    answer = fetch_once(session, URL, LIMITS)
    assert isinstance(answer, Response)
    assert answer.url == URL
    assert answer.status == 200
    assert answer.reason == "OK"
    assert answer.body == b"<html>hi</html>"
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["x-custom-thing"] == "Value"
    assert answer.elapsed >= 0


def test_header_names_are_lower_case(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=b"", headers={"X-MiXeD-CaSe": "1", "ETAG": '"abc"'})
    answer = fetch_once(session, URL, LIMITS)
    assert all(name == name.lower() for name in answer.headers)
    assert answer.headers["x-mixed-case"] == "1"
    assert answer.headers["etag"] == '"abc"'


def test_error_statuses_are_answers_not_errors(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=b"gone", status=404)
    answer = fetch_once(session, URL, LIMITS)
    assert (answer.status, answer.body) == (404, b"gone")


def test_user_agent_comes_from_limits(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=b"ok")
    fetch_once(session, URL, LIMITS)
    assert len(mock.calls) == 1
    assert mock.calls[0].request.headers["User-Agent"] == LIMITS.user_agent


def test_a_session_sends_back_the_cookies_it_was_given(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=b"ok", headers={"Set-Cookie": "visit=1; Path=/"})
    fetch_once(session, URL, LIMITS)
    fetch_once(session, URL, LIMITS)
    assert "Cookie" not in mock.calls[0].request.headers
    assert mock.calls[1].request.headers["Cookie"] == "visit=1"


def test_a_session_of_the_caller_keeps_its_own_settings(mock: responses.RequestsMock) -> None:
    """fetch_once takes any Session: one not made by new_session keeps its params and auth."""
    mock.get(URL, body=b"ok")
    with requests.Session() as session:
        session.trust_env = False
        session.params = {"k": "1"}
        session.auth = ("user", "secret")
        fetch_once(session, URL, LIMITS)
    assert mock.calls[0].request.url == f"{URL}?k=1"
    assert mock.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_a_proxy_in_the_environment_is_used(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With proxy settings in the environment, the requests go through the proxy."""
    mock.get(URL, body=b"ok")
    with new_session(LIMITS) as direct:
        fetch_once(direct, URL, LIMITS)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    with new_session(LIMITS) as proxied:
        fetch_once(proxied, URL, LIMITS)
    assert not mock.calls[0].request.req_kwargs["proxies"]
    assert mock.calls[1].request.req_kwargs["proxies"] == {"all": "http://proxy.invalid:3128"}


def test_no_proxy_alone_leaves_nothing_to_look_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """It excepts hosts from proxies there are none of: looking it up for every request
    cost requests about 2 ms of CPU a page."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")
    with new_session(LIMITS) as session:
        assert session.routes is None


@pytest.mark.parametrize("where", ["home", "NETRC"])
def test_credentials_in_netrc_are_used(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    netrc = tmp_path / (".netrc" if where == "home" else "credentials")
    netrc.write_text("machine example.com login user password secret\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    if where == "NETRC":
        monkeypatch.setenv("NETRC", str(netrc))
    mock.get(URL, body=b"ok")
    with new_session(LIMITS) as session:
        fetch_once(session, URL, LIMITS)
    assert mock.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_a_netrc_location_that_cannot_be_looked_at_is_no_netrc(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As requests itself sees it. Looking raised before (here ENAMETOOLONG; for a user
    whose home cannot be read, PermissionError), which killed the fetch worker."""
    monkeypatch.setenv("NETRC", "/tmp/" + "x" * 300)
    mock.get(URL, body=b"ok")
    with new_session(LIMITS) as session:
        assert fetch_once(session, URL, LIMITS).body == b"ok"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(
    mock: responses.RequestsMock, session: requests.Session, status: int
) -> None:
    mock.get(URL, status=status, body=b"moved away", headers={"Location": "/elsewhere"})
    mock.get("http://example.com/elsewhere", body=b"target")
    answer = fetch_once(session, URL, LIMITS)
    assert answer.status == status
    assert answer.headers["location"] == "/elsewhere"
    assert answer.body == b""
    assert [call.request.url for call in mock.calls] == [URL]


def test_body_up_to_max_bytes_is_accepted(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=b"x" * LIMITS.max_bytes)
    assert len(fetch_once(session, URL, LIMITS).body) == LIMITS.max_bytes


def test_declared_content_length_over_max_bytes_is_too_large(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=b"x" * 10, headers={"Content-Length": str(LIMITS.max_bytes + 1)})
    error = fetch_error(session)
    assert isinstance(error, ResponseError)
    assert error.kind is ErrorKind.TOO_LARGE
    assert str(LIMITS.max_bytes) in error.message


def test_streamed_body_over_max_bytes_is_too_large(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=b"x" * (LIMITS.max_bytes + 1))  # no Content-Length sent
    error = fetch_error(session)
    assert isinstance(error, ResponseError)
    assert error.kind is ErrorKind.TOO_LARGE


def test_size_cap_applies_to_the_decompressed_body(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    bomb = gzip.compress(b"\0" * (LIMITS.max_bytes * 50))
    assert len(bomb) < LIMITS.max_bytes
    mock.get(URL, body=bomb, headers={"Content-Encoding": "gzip"})
    error = fetch_error(session)
    assert error.kind is ErrorKind.TOO_LARGE


def test_gzip_body_is_decompressed(mock: responses.RequestsMock, session: requests.Session) -> None:
    mock.get(URL, body=gzip.compress(b"hello, world"), headers={"Content-Encoding": "gzip"})
    assert fetch_once(session, URL, LIMITS).body == b"hello, world"


# -- fetch_once: failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (requests.exceptions.ConnectionError("connection refused"), ErrorKind.CONNECT),
        (requests.exceptions.ReadTimeout("read timed out"), ErrorKind.TIMEOUT),
        (requests.exceptions.ConnectTimeout("connect timed out"), ErrorKind.TIMEOUT),
        (requests.exceptions.SSLError("certificate verify failed"), ErrorKind.TLS),
        (requests.exceptions.ChunkedEncodingError("broken chunk"), ErrorKind.CONNECT),
        (requests.exceptions.InvalidURL("bad url"), ErrorKind.INVALID_URL),
    ],
)
def test_library_errors_become_fetch_errors_with_their_kind(
    mock: responses.RequestsMock,
    session: requests.Session,
    raised: Exception,
    kind: ErrorKind,
) -> None:
    mock.get(URL, body=raised)
    error = fetch_error(session)
    assert isinstance(error, TransportError)
    assert error.kind is kind
    assert error.message


def test_timeout_message_names_the_limit(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    assert "5s" in fetch_error(session).message


def test_unexpected_exceptions_are_translated_too(
    mock: responses.RequestsMock, session: requests.Session
) -> None:
    mock.get(URL, body=RuntimeError("something odd"))
    error = fetch_error(session)
    assert error.kind is ErrorKind.PROTOCOL
    assert "something odd" in error.message


def test_name_resolution_failure_is_dns() -> None:
    # Built the way requests' adapter builds it: ConnectionError raised while handling
    # urllib3's MaxRetryError, whose reason is the NameResolutionError.
    resolution = urllib3.exceptions.NameResolutionError(
        "nowhere.invalid",
        None,  # type: ignore[arg-type]
        socket.gaierror(-2, "Name or service not known"),
    )
    try:
        try:
            raise urllib3.exceptions.MaxRetryError(None, "/", reason=resolution)  # type: ignore[arg-type]
        except urllib3.exceptions.MaxRetryError as retry_error:
            raise requests.exceptions.ConnectionError(retry_error)  # noqa: B904
    except requests.exceptions.ConnectionError as error:
        translated = ERRORS.translate(error, LIMITS)
    assert isinstance(translated, TransportError)
    assert translated.kind is ErrorKind.DNS


def test_a_refused_connection_is_connect(session: requests.Session) -> None:
    error = fetch_error(session, REFUSED)
    assert isinstance(error, TransportError)
    assert error.kind is ErrorKind.CONNECT


# -- pickling ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        FetchError("plain"),
        FetchError("with kind", ErrorKind.TIMEOUT),
        TransportError("refused", ErrorKind.CONNECT),
        TransportError("tls", ErrorKind.TLS),
        ResponseError("too big", ErrorKind.TOO_LARGE),
        ResponseError("loop", ErrorKind.REDIRECT_LOOP),
        InvalidURL("no host"),
    ],
)
def test_fetch_errors_pickle(error: FetchError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.kind is error.kind
    assert copy.message == error.message
    assert str(copy) == str(error)


def test_translated_errors_pickle(mock: responses.RequestsMock, session: requests.Session) -> None:
    mock.get(URL, body=requests.exceptions.SSLError("certificate verify failed"))
    error = fetch_error(session)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.kind, copy.message) == (type(error), ErrorKind.TLS, error.message)


def test_responses_pickle(mock: responses.RequestsMock, session: requests.Session) -> None:
    mock.get(URL, body=b"body", headers={"X-A": "1"})
    answer = fetch_once(session, URL, LIMITS)
    assert pickle.loads(pickle.dumps(answer)) == answer


# -- strategies ----------------------------------------------------------------------------

STRATEGIES = ["threads", "sequential"]


@pytest.fixture(params=STRATEGIES)
def fetcher_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_open_fetcher_picks_the_strategy_by_name() -> None:
    threads = open_fetcher("threads", LIMITS, workers=1)
    sequential = open_fetcher("sequential", LIMITS, workers=1)
    try:
        assert isinstance(threads, ThreadFetcher)
        assert isinstance(sequential, SequentialFetcher)
    finally:
        threads.close()
        sequential.close()


def test_submit_resolves_with_a_response(mock: responses.RequestsMock, fetcher_name: str) -> None:
    mock.get(URL, body=b"hello", status=203)
    fetcher = open_fetcher(fetcher_name, LIMITS, workers=2)
    try:
        answer = fetcher.submit(Request(URL)).result(timeout=PATIENCE)
    finally:
        fetcher.close()
    assert isinstance(answer, Response)
    assert (answer.status, answer.body) == (203, b"hello")
    assert mock.calls[0].request.headers["User-Agent"] == LIMITS.user_agent


def test_submit_fetches_request_url_not_origin(
    mock: responses.RequestsMock, fetcher_name: str
) -> None:
    mock.get("http://example.com/hop", body=b"hop")
    fetcher = open_fetcher(fetcher_name, LIMITS, workers=1)
    try:
        request = Request(URL).redirected("http://example.com/hop")
        answer = fetcher.submit(request).result(timeout=PATIENCE)
    finally:
        fetcher.close()
    assert (answer.url, answer.body) == ("http://example.com/hop", b"hop")


def test_submit_fails_with_fetch_error_for_a_refused_connection(fetcher_name: str) -> None:
    fetcher = open_fetcher(fetcher_name, LIMITS, workers=2)
    try:
        future = fetcher.submit(Request(REFUSED))
        error = future.exception(timeout=PATIENCE)
    finally:
        fetcher.close()
    assert isinstance(error, TransportError)
    assert error.kind is ErrorKind.CONNECT


def test_many_submissions_all_resolve(mock: responses.RequestsMock) -> None:
    for n in range(20):
        mock.get(f"http://example.com/{n}", body=str(n).encode())
    fetcher = ThreadFetcher(LIMITS, workers=4)
    try:
        futures = [fetcher.submit(Request(f"http://example.com/{n}")) for n in range(20)]
        bodies = [future.result(timeout=PATIENCE).body for future in futures]
    finally:
        fetcher.close()
    assert bodies == [str(n).encode() for n in range(20)]


def _answer_once(
    release: threading.Event, entered: Callable[[], object]
) -> Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]:
    """A `responses` callback that calls `entered`, then answers "slow" once `release` is set."""

    def slow(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        entered()
        release.wait(PATIENCE)
        return 200, {}, b"slow"

    return slow


def _fetch_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("fetch-")}


def test_thread_fetcher_starts_workers_as_jobs_need_them(mock: responses.RequestsMock) -> None:
    """No thread before the first job (the first request goes out at once); jobs that find
    every worker busy start more, never more than `workers`."""
    inside = threading.Semaphore(0)
    release = threading.Event()
    mock.add_callback(
        responses.GET, "http://example.com/slow", callback=_answer_once(release, inside.release)
    )
    before = _fetch_threads()
    fetcher = ThreadFetcher(LIMITS, workers=3)
    slow_ones: list[Future[Response]] = []
    try:
        assert _fetch_threads() == before
        slow_ones = [fetcher.submit(Request("http://example.com/slow")) for _ in range(5)]
        for _ in range(3):
            assert inside.acquire(timeout=PATIENCE)
        assert len(_fetch_threads() - before) == 3
    finally:
        release.set()
        bodies = [future.result(timeout=PATIENCE).body for future in slow_ones]
        fetcher.close()
    assert bodies == [b"slow"] * 5


def test_a_done_callback_may_wait_for_another_fetch(mock: responses.RequestsMock) -> None:
    """A worker counts as idle only once its job's callbacks have run, so a callback that
    waits for a second fetch gets a second thread instead of waiting for itself."""
    mock.get("http://example.com/first", body=b"first")
    mock.get("http://example.com/second", body=b"second")
    fetcher = ThreadFetcher(LIMITS, workers=2)
    seen: list[bytes] = []

    def fetch_again(_: Future[Response]) -> None:
        second = fetcher.submit(Request("http://example.com/second"))
        seen.append(second.result(timeout=PATIENCE).body)

    try:
        first = fetcher.submit(Request("http://example.com/first"))
        first.add_done_callback(fetch_again)
        first.result(timeout=PATIENCE)
        wait_for(lambda: seen, PATIENCE)
    finally:
        fetcher.close()
    assert seen == [b"second"]


def test_a_job_is_not_queued_when_no_thread_can_start(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of threads (a process limit), submit raises and nothing is fetched behind the
    caller's back: the pipeline records a failed attempt and retries it itself."""
    mock.get(URL, body=b"ok")

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    fetcher = ThreadFetcher(LIMITS, workers=2)
    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            fetcher.submit(Request(URL))
    answer = fetcher.submit(Request(URL)).result(timeout=PATIENCE)
    fetcher.close()
    assert answer.body == b"ok"
    assert len(mock.calls) == 1


def test_thread_fetcher_close_cancels_queued_work(mock: responses.RequestsMock) -> None:
    entered = threading.Event()
    release = threading.Event()
    mock.add_callback(
        responses.GET, "http://example.com/slow", callback=_answer_once(release, entered.set)
    )
    mock.get("http://example.com/queued", body=b"never")
    fetcher = ThreadFetcher(LIMITS, workers=1)
    try:
        running = fetcher.submit(Request("http://example.com/slow"))
        assert entered.wait(PATIENCE)
        queued = [fetcher.submit(Request("http://example.com/queued")) for _ in range(5)]
        fetcher.close()
    finally:
        release.set()

    assert running.result(timeout=PATIENCE).body == b"slow"
    assert all(future.cancelled() for future in queued)
    with pytest.raises(CancelledError):
        queued[0].result(timeout=0)
    assert [call.request.url for call in mock.calls] == ["http://example.com/slow"]


def test_thread_fetcher_refuses_work_after_close() -> None:
    # The pipeline's dispatcher expects submit() on a closed fetcher to raise RuntimeError
    # (as ThreadPoolExecutor does). Today the job is queued behind the workers' stop
    # sentinels and its future never resolves.
    fetcher = ThreadFetcher(LIMITS, workers=1)
    fetcher.close()
    future: Future[Response] | None = None
    try:
        future = fetcher.submit(Request(URL))
    except RuntimeError:
        return
    finally:
        if future is not None:
            future.cancel()
    pytest.fail("submit() after close() returned a future that will never resolve")
