"""Per-host politeness: how many requests a host may have in flight, and how often.

`HostSlots` is bookkeeping without I/O or locking of its own: a frontier calls it under
the frontier's lock, so the decision "may this host be fetched now?" and the hand-out
of the URL happen atomically.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import Enum

import yarl
from protego import Protego

from scraper.errors import ErrorKind, FetchError
from scraper.fetch.base import Response
from scraper.records import Request
from scraper.urls import host_of

THROTTLE_FIRST_DELAY = 1.0  # gap imposed on a host by its first 429/503/reset
THROTTLE_DELAY_CAP = 60.0  # doubling stops here


@dataclass
class _Host:
    active: int = 0
    next_start: float = 0.0
    previous_start: float = 0.0  # next_start before the last start, to undo an unsent one
    penalty: float = 0.0  # extra gap while the host pushes back: doubles, then halves
    throttled_until: float = 0.0  # the gap the last push-back imposed; no undo goes below it
    limit: int | None = None  # reduced concurrency while the host pushes back
    slowed_at: float = float("-inf")  # when the host was last slowed down

    def is_idle(self) -> bool:
        return not (self.active or self.next_start or self.penalty or self.limit)


class HostSlots:
    """Tracks requests in flight and the earliest next start for each host.

    `per_host` caps concurrent requests to one host; `delay` is the minimum gap between
    two request starts on one host, jittered by ±50% so a crawler's rhythm is not a
    fingerprint and many workers do not align.

    A host that pushes back (429, 503, reset connections, timeouts) is slowed at once:
    its gap doubles up to a cap and its concurrency halves. Each later normal answer
    halves the gap and gives back one slot, so a recovered host speeds up again slowly.
    A crawler that speeds up on 429s, or ignores them, is how sites get hurt.

    One overload is one push-back, however many requests it answered: an answer to a
    request started before the host was slowed (`started_at`: when it took its slot, which
    is when the pace it went at was decided) neither slows it again nor speeds
    it up: it tells nothing about the slowed pace (as TCP cuts its window once per round
    trip). Four parallel 503s doubled the gap four times, 1 s to 8 s, and halved
    concurrency to one.
    """

    def __init__(self, *, per_host: int, delay: float = 0.0) -> None:
        self._per_host = per_host
        self._delay = delay
        self._delays: dict[str, float] = {}
        self._hosts: dict[str, _Host] = {}

    def set_delay(self, host: str, seconds: float) -> None:
        """Give `host` a minimum gap between request starts (a robots.txt Crawl-delay)."""
        if seconds:
            self._delays[host] = seconds

    def can_start(self, host: str, now: float) -> bool:
        state = self._hosts.get(host)
        if state is None:
            return True
        return state.active < (state.limit or self._per_host) and state.next_start <= now

    def next_start(self, host: str) -> float:
        """When `host` could next start a request, if a slot frees up by then."""
        state = self._hosts.get(host)
        return 0.0 if state is None else state.next_start

    def start(self, host: str, now: float) -> None:
        state = self._hosts.setdefault(host, _Host())
        state.active += 1
        state.previous_start = state.next_start
        gap = max(self._jittered_delay(), self._delays.get(host, 0.0), state.penalty)
        if gap:
            state.next_start = now + gap

    def _jittered_delay(self) -> float:
        """--delay with ±50% jitter. A Crawl-delay or a back-off penalty is a minimum the
        site asked for, so it is never jittered below."""
        return self._delay * random.uniform(0.5, 1.5) if self._delay else 0.0

    def finish(
        self,
        host: str,
        now: float,
        *,
        throttled: bool,
        sent: bool = True,
        started_at: float = float("inf"),
    ) -> None:
        """A request to `host`, started at `started_at` (unknown: as late as can be), is over;
        `throttled` when the host pushed back.

        An unsent request (robots.txt decided it first) gives back the gap it took, but not
        one that a push-back imposed meanwhile (requests finish in any thread).
        """
        state = self._hosts[host]
        state.active -= 1
        if not sent:
            state.next_start = max(state.previous_start, state.throttled_until)
        elif started_at < state.slowed_at:
            pass  # an answer about the pace before the slow-down: see the class docstring
        elif throttled:
            self._slow_down(state, now)
        elif state.penalty or state.limit:
            state.penalty = 0.0 if state.penalty < THROTTLE_FIRST_DELAY else state.penalty / 2
            limit = (state.limit or self._per_host) + 1
            state.limit = None if limit >= self._per_host else limit
        if state.is_idle():
            del self._hosts[host]  # keep the table as small as the set of busy hosts

    def _slow_down(self, state: _Host, now: float) -> None:
        state.penalty = min(THROTTLE_DELAY_CAP, max(THROTTLE_FIRST_DELAY, 2 * state.penalty))
        state.limit = max(1, (state.limit or self._per_host) // 2)
        state.throttled_until = now + state.penalty
        state.next_start = max(state.next_start, state.throttled_until)
        state.slowed_at = now


# -- robots.txt (RFC 9309) ------------------------------------------------------------------

CRAWL_DELAY_CAP = 30.0  # a Crawl-delay above this is read as this: a site cannot stall us
ROBOTS_RECHECK = 600.0  # seconds before a host whose robots.txt failed is asked again


def robots_request(of: Request) -> Request:
    """The robots.txt fetch that `of` waits for. It goes where `of` would, so it is held to
    the same guard: for a URL found on a public page, public addresses only (a name that
    resolves to 10.0.0.1 must not be asked for anything, robots.txt included)."""
    return Request(robots_url(of.url), for_robots=True, public_only=of.public_only)


def robots_url(url: str) -> str:
    """The robots.txt that governs `url`: same scheme, host and port."""
    parsed = yarl.URL(url)
    return str(parsed.with_path("/robots.txt").with_query(None).with_user(None))


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against ("scraper" in "scraper/1.0")."""
    words = user_agent.split("/", 1)[0].split()
    return words[0] if words else "*"


@dataclass(frozen=True)
class RobotsRules:
    """What one host's robots.txt allows, decided once per host and cached.

    RFC 9309 §2.3.1: a 4xx answer means there are no rules (allow all); a 5xx answer or no
    answer at all means the crawler must assume everything is disallowed, for now.
    """

    parser: Protego | None = None
    unavailable: FetchError | None = None  # why everything is disallowed, when it is
    expires: float = float("inf")

    @classmethod
    def from_answer(cls, answer: Response | FetchError, *, now: float) -> RobotsRules:
        """Rules from the final answer to a robots.txt request (redirects already followed).

        When the host cannot be reached at all, its URLs are denied with that error's own
        kind (dns, connect, ...): "the host is down" says more than "robots". A final
        3xx (its redirects looped, went on too long, led to no usable URL, or it had no
        Location) leaves robots.txt unavailable, like a 4xx: no rules (RFC 9309 2.3.1.2
        allows that after five redirects).
        """
        if isinstance(answer, FetchError):
            why = FetchError(f"robots.txt: {answer.message}", answer.kind)
        elif 200 <= answer.status < 300:
            # utf-8-sig: a byte-order mark left in front of "User-agent" would hide the
            # first group from protego (as it did from Scrapy: scrapy#6195).
            return cls(Protego.parse(answer.body.decode("utf-8-sig", errors="replace")))
        elif 300 <= answer.status < 500:
            return cls()
        else:
            why = FetchError(f"robots.txt answered {answer.status}", ErrorKind.ROBOTS)
        return cls(unavailable=why, expires=now + ROBOTS_RECHECK)

    def allows(self, url: str, agent: str) -> bool:
        if self.unavailable is not None:
            return False
        return self.parser is None or bool(self.parser.can_fetch(url, agent))

    def crawl_delay(self, agent: str) -> float:
        delay = self.parser.crawl_delay(agent) if self.parser is not None else None
        return min(float(delay), CRAWL_DELAY_CAP) if delay else 0.0


class Verdict(Enum):
    """What the robots gate says about one URL."""

    ALLOW = "allow"
    DENY = "deny"
    FETCH_ROBOTS = "fetch_robots"  # the first URL of a host: fetch its robots.txt now
    WAIT = "wait"  # the host's robots.txt is on its way; the URL waits for it


class RobotsGate:
    """Per-host robots.txt rules, and the requests waiting for a host's rules to arrive.

    Nothing is requested from a host before its rules are known: the first URL of a host
    gets FETCH_ROBOTS, later ones WAIT until `learn` hands them back. Thread-safe: the
    dispatcher asks, the collector learns.
    """

    def __init__(self, user_agent: str) -> None:
        self.agent = agent_token(user_agent)
        self._lock = threading.Lock()
        self._rules: dict[str, RobotsRules] = {}
        self._waiting: dict[str, list[Request]] = {}

    def check(self, request: Request, now: float) -> Verdict:
        host = host_of(request.url)
        with self._lock:
            rules = self._rules.get(host)
            if rules is not None and rules.expires > now:
                return Verdict.ALLOW if rules.allows(request.url, self.agent) else Verdict.DENY
            waiting = self._waiting.setdefault(host, [])
            waiting.append(request)
            return Verdict.FETCH_ROBOTS if len(waiting) == 1 else Verdict.WAIT

    def learn(self, host: str, rules: RobotsRules) -> list[Request]:
        """Store `host`'s rules; return the requests that were waiting for them."""
        with self._lock:
            self._rules[host] = rules
            return self._waiting.pop(host, [])

    def denial(self, url: str) -> FetchError:
        """The error recorded for a denied URL."""
        with self._lock:
            rules = self._rules.get(host_of(url))
        if rules is not None and rules.unavailable is not None:
            return rules.unavailable
        return FetchError("disallowed by robots.txt", ErrorKind.ROBOTS)
