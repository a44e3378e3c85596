"""The fetch policy: finish, retry (backoff, Retry-After) or follow a redirect. Pure."""

from __future__ import annotations

import email.utils
import math

import pytest

from scraper.config import Config
from scraper.errors import ErrorKind, FetchError, InvalidURL, ResponseError, TransportError
from scraper.fetch.base import Response
from scraper.fetch.policy import (
    RETRY_AFTER_CAP,
    FetchPolicy,
    Finish,
    Follow,
    Retry,
    retry_after,
)
from scraper.records import Request

URL = "http://example.com/page"
NOW = 1_700_000_000.0


def policy_for(config: Config) -> FetchPolicy:
    """The policy a crawl with `config` uses (as the pipeline builds it)."""
    return FetchPolicy(
        retries=config.retries,
        backoff=config.backoff,
        backoff_cap=config.backoff_cap,
        max_redirects=config.max_redirects,
    )


POLICY = FetchPolicy(retries=2, backoff=1.0, backoff_cap=8.0, max_redirects=3)


def response(status: int, headers: dict[str, str] | None = None, *, url: str = URL) -> Response:
    return Response(
        url=url, status=status, reason="", headers=headers or {}, body=b"", elapsed=0.01
    )


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


# -- statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 206, 299])
def test_success_finishes(status: int) -> None:
    outcome = response(status)
    assert POLICY.decide(Request(URL), outcome) == Finish(outcome)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 501, 304])
def test_non_retryable_statuses_finish(status: int) -> None:
    outcome = response(status)
    assert POLICY.decide(Request(URL), outcome) == Finish(outcome)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_status_with_attempts_left_retries_within_backoff(status: int) -> None:
    decision = POLICY.decide(Request(URL), response(status))
    assert isinstance(decision, Retry)
    assert POLICY.backoff / 2 <= decision.delay <= POLICY.backoff  # attempt 1: base, jittered


def test_second_attempt_backs_off_longer() -> None:
    decision = POLICY.decide(Request(URL, attempt=2), response(503))
    assert isinstance(decision, Retry)
    assert 1.0 <= decision.delay <= 2.0  # base * 2, half of it jittered


def test_retries_exhausted_finishes_with_the_response() -> None:
    outcome = response(503)
    last = Request(URL, attempt=POLICY.retries + 1)
    assert POLICY.decide(last, outcome) == Finish(outcome)


def test_retries_zero_never_retries() -> None:
    policy = FetchPolicy(retries=0, backoff=1.0, backoff_cap=8.0, max_redirects=3)
    outcome = response(503)
    assert policy.decide(Request(URL), outcome) == Finish(outcome)


def test_attempt_count_matches_retries() -> None:
    request = Request(URL)
    attempts = 1
    while isinstance(POLICY.decide(request, response(500)), Retry):
        request = request.retried()
        attempts += 1
    assert attempts == POLICY.retries + 1


# -- Retry-After ---------------------------------------------------------------------------


def test_retry_after_seconds_are_honoured() -> None:
    decision = POLICY.decide(Request(URL), response(503, {"retry-after": "30"}))
    assert isinstance(decision, Retry)
    assert decision.delay >= 30


def test_retry_after_shorter_than_backoff_keeps_the_backoff() -> None:
    decision = POLICY.decide(Request(URL), response(429, {"retry-after": "0"}))
    assert isinstance(decision, Retry)
    assert decision.delay >= POLICY.backoff / 2


def test_retry_after_http_date_is_honoured() -> None:
    import time  # noqa: PLC0415 (only this test needs the real clock)

    when = http_date(time.time() + 120)
    decision = POLICY.decide(Request(URL), response(503, {"retry-after": when}))
    assert isinstance(decision, Retry)
    assert decision.delay >= 110  # the date has one-second resolution; the clock moves on


def test_retry_after_over_the_cap_finishes() -> None:
    outcome = response(503, {"retry-after": str(int(RETRY_AFTER_CAP) + 1)})
    assert RETRY_AFTER_CAP == 600
    decision = POLICY.decide(Request(URL), outcome)
    assert isinstance(decision, Finish)
    assert isinstance(decision.outcome, Response)
    assert decision.outcome.status == 503
    assert decision.outcome.body == outcome.body
    assert "Retry-After 601 s exceeds the 600 s cap" in decision.outcome.reason


def test_retry_after_at_the_cap_still_retries() -> None:
    decision = POLICY.decide(Request(URL), response(503, {"retry-after": "600"}))
    assert isinstance(decision, Retry)
    assert decision.delay >= 600


def test_garbage_retry_after_falls_back_to_backoff() -> None:
    decision = POLICY.decide(Request(URL), response(503, {"retry-after": "soon"}))
    assert isinstance(decision, Retry)
    assert POLICY.backoff / 2 <= decision.delay <= POLICY.backoff


def test_retry_after_on_a_success_is_ignored() -> None:
    outcome = response(200, {"retry-after": "30"})
    assert POLICY.decide(Request(URL), outcome) == Finish(outcome)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        ("  7 ", 7.0),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
        ("Mon, 01 Jan 2024 25:00:00 GMT", None),
    ],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert retry_after(value, now=NOW) == expected


def test_retry_after_date_in_the_future() -> None:
    assert retry_after(http_date(NOW + 90), now=NOW) == 90.0


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert retry_after(http_date(NOW - 3600), now=NOW) == 0.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() is True, float() refuses it
        "Mon, 01 Jan 2024 00:00:00 +99999999999999999999",  # offset overflows
    ],
)
def test_retry_after_never_raises_on_hostile_values(value: str) -> None:
    # Headers are decoded as latin-1, so a server can send any of these; a bad header must
    # mean "no Retry-After", not an exception out of decide().
    assert retry_after(value, now=NOW) is None


def test_hostile_retry_after_header_falls_back_to_backoff() -> None:
    decision = POLICY.decide(Request(URL), response(503, {"retry-after": "\u00b2"}))
    assert isinstance(decision, Retry)
    assert POLICY.backoff / 2 <= decision.delay <= POLICY.backoff


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [ErrorKind.CONNECT, ErrorKind.TIMEOUT])
def test_retryable_error_kinds_retry(kind: ErrorKind) -> None:
    decision = POLICY.decide(Request(URL), TransportError("boom", kind))
    assert isinstance(decision, Retry)
    assert POLICY.backoff / 2 <= decision.delay <= POLICY.backoff


@pytest.mark.parametrize("kind", [ErrorKind.CONNECT, ErrorKind.TIMEOUT])
def test_retryable_errors_finish_when_attempts_are_spent(kind: ErrorKind) -> None:
    error = TransportError("boom", kind)
    assert POLICY.decide(Request(URL, attempt=3), error) == Finish(error)


@pytest.mark.parametrize(
    "error",
    [
        TransportError("no such host", ErrorKind.DNS),
        TransportError("bad certificate", ErrorKind.TLS),
        ResponseError("too big", ErrorKind.TOO_LARGE),
        InvalidURL("not a url"),
        TransportError("bad gzip", ErrorKind.DECODE),
    ],
)
def test_non_retryable_errors_finish(error: FetchError) -> None:
    assert POLICY.decide(Request(URL), error) == Finish(error)


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_follows_the_resolved_canonical_target(status: int) -> None:
    outcome = response(status, {"location": "../Other/./Page%7e?b=1&a=2#frag"}, url=URL)
    decision = POLICY.decide(Request(URL), outcome)
    assert decision == Follow("http://example.com/Other/Page~?b=1&a=2")


def test_redirect_to_another_host_is_followed() -> None:
    decision = POLICY.decide(
        Request(URL), response(301, {"location": "HTTPS://WWW.Example.COM:443"})
    )
    assert decision == Follow("https://www.example.com/")


def test_redirect_resolves_against_the_hop_url_not_the_origin() -> None:
    request = Request(URL).redirected("http://other.example/dir/x")
    outcome = response(302, {"location": "y"}, url=request.url)
    assert POLICY.decide(request, outcome) == Follow("http://other.example/dir/y")


def test_redirect_without_location_finishes() -> None:
    outcome = response(302)
    assert POLICY.decide(Request(URL), outcome) == Finish(outcome)


def test_redirect_to_itself_is_a_loop() -> None:
    decision = POLICY.decide(Request(URL), response(301, {"location": URL + "#again"}))
    assert isinstance(decision, Finish)
    assert isinstance(decision.outcome, ResponseError)
    assert decision.outcome.kind is ErrorKind.REDIRECT_LOOP


def test_redirect_back_to_an_earlier_hop_is_a_loop() -> None:
    request = Request(URL).redirected("http://example.com/b").redirected("http://example.com/c")
    outcome = response(302, {"location": "/page"}, url=request.url)
    decision = POLICY.decide(request, outcome)
    assert isinstance(decision, Finish)
    assert isinstance(decision.outcome, FetchError)
    assert decision.outcome.kind is ErrorKind.REDIRECT_LOOP


def test_chain_up_to_max_redirects_is_followed_and_one_more_is_too_many() -> None:
    request = Request(URL)
    for hop in range(POLICY.max_redirects):
        outcome = response(302, {"location": f"/hop{hop}"}, url=request.url)
        decision = POLICY.decide(request, outcome)
        assert isinstance(decision, Follow), hop
        request = request.redirected(decision.target)
    assert len(request.redirects) == POLICY.max_redirects
    decision = POLICY.decide(request, response(302, {"location": "/beyond"}, url=request.url))
    assert isinstance(decision, Finish)
    assert isinstance(decision.outcome, FetchError)
    assert decision.outcome.kind is ErrorKind.TOO_MANY_REDIRECTS


def test_max_redirects_zero_refuses_the_first_redirect() -> None:
    policy = FetchPolicy(retries=0, backoff=0, backoff_cap=0, max_redirects=0)
    decision = policy.decide(Request(URL), response(301, {"location": "/elsewhere"}))
    assert isinstance(decision, Finish)
    assert isinstance(decision.outcome, FetchError)
    assert decision.outcome.kind is ErrorKind.TOO_MANY_REDIRECTS


@pytest.mark.parametrize(
    "location", ["ftp://example.com/file", "mailto:x@example.com", "http://-bad-.com/", "//:80/x"]
)
def test_redirect_to_an_unusable_url_is_invalid_url(location: str) -> None:
    decision = POLICY.decide(Request(URL), response(302, {"location": location}))
    assert isinstance(decision, Finish)
    assert isinstance(decision.outcome, InvalidURL)
    assert decision.outcome.kind is ErrorKind.INVALID_URL


# -- backoff -------------------------------------------------------------------------------


def test_backoff_delay_is_exponential_jittered_and_capped() -> None:
    policy = FetchPolicy(retries=10, backoff=0.5, backoff_cap=4.0, max_redirects=3)
    for attempt in range(1, 9):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        samples = [policy.backoff_delay(attempt) for _ in range(300)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), attempt
        assert len(set(samples)) > 1, "no jitter"
        assert max(samples) - min(samples) > ceiling / 10  # spread over the jitter range


def test_backoff_delay_never_exceeds_the_cap_even_for_huge_attempts() -> None:
    policy = FetchPolicy(retries=5000, backoff=0.5, backoff_cap=60.0, max_redirects=3)
    for attempt in (50, 1024, 1100, 5000):
        delay = policy.backoff_delay(attempt)
        assert math.isfinite(delay)
        assert 30.0 <= delay <= 60.0


def test_zero_backoff_config_gives_zero_delays() -> None:
    policy = policy_for(Config(backoff=0))
    assert policy.backoff == 0
    for attempt in range(1, 5):
        assert policy.backoff_delay(attempt) == 0.0
    decision = policy.decide(Request(URL), response(503))
    assert decision == Retry(0.0)
    decision = policy.decide(Request(URL), TransportError("refused", ErrorKind.CONNECT))
    assert decision == Retry(0.0)


def test_zero_backoff_cap_gives_zero_delays() -> None:
    policy = policy_for(Config(backoff_cap=0))
    assert all(policy.backoff_delay(attempt) == 0.0 for attempt in range(1, 5))


def test_policy_is_a_frozen_value() -> None:
    with pytest.raises(AttributeError):
        POLICY.retries = 5  # type: ignore[misc]
