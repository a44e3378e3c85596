"""URLs as the crawl sees them: the list file, the canonical form, and the crawl's scope.

Everything here is a pure function over strings, so the rules that decide what is fetched
are tested without any I/O.

The canonical form is what makes "each resource is fetched once however it was written":
yarl (the URL type aiohttp is built on) lower-cases scheme and host, IDNA-encodes the host,
drops the default port, resolves dot segments and normalizes percent-encoding (unreserved
characters decoded, escapes upper-cased); we drop the fragment and give an empty path "/".
The query keeps its order: servers may read it positionally, so reordering would fetch a
different resource than the page linked.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import yarl

from scraper.errors import InvalidURL

FETCHABLE_SCHEMES = frozenset({"http", "https"})

# A host name or IPv4 address (IPv6 literals are recognized separately): letters, digits,
# hyphens, underscores (seen on the real web) and dots.
_HOSTNAME = re.compile(
    r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$"
)
_SCHEME_PREFIX = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_HOST_AND_PORT = re.compile(r"^[^:/?#]+:[0-9]+(?:[/?#]|$)")
_AUTHORITY = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//([^/?#]*)")
# What yarl, like a browser (WHATWG URL), drops before reading a URL: C0 controls and
# spaces around it, and tabs and newlines anywhere.
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_AND_NEWLINES = str.maketrans("", "", "\t\r\n")
_PORT = re.compile(r"(?:^|\]|[^:\]]):([^:\]]*)$")  # after the host, an IPv6 literal's too
_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")  # a label WHATWG URL reads as a number
_NUMERIC_HOST = re.compile(rf"({_NUMBER.pattern})(\.({_NUMBER.pattern})){{0,3}}")
# What errors="surrogateescape" makes of a byte that is not UTF-8.
_UNDECODED_BYTE = re.compile("[\udc80-\udcff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # text no UTF-8 encodes
_FORBIDDEN_IN_LINE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# A relative path ("b.html", "../x?q"): its first segment has no ":" (that would be a scheme).
_RELATIVE_PATH = re.compile(r"[^:/?#\\]+(?:[/?#\\]|$)")
# A base URL's directory: from the "/" that ends its authority to the last "/" of its path.
_BASE_DIRECTORY = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*(/(?:[^?#]*/)?)")


def canonicalize(url: str, base: str | None = None) -> str:
    """Return the canonical form of `url` (resolved against `base` first, if given).

    Raises InvalidURL for anything that is not a fetchable http(s) URL with a valid host.
    """
    if not url.isascii() and _LONE_SURROGATE.search(url):
        # yarl drops a lone surrogate ("/a\udcff" became "/a"): another URL, silently
        raise InvalidURL("URL holds text UTF-8 cannot encode (a lone surrogate)")
    try:
        parsed = yarl.URL(url)
        if base is not None:
            parsed = yarl.URL(resolution_base(url, base) or base).join(parsed)
        host = parsed.raw_host  # yarl validates the host lazily, here
    except (ValueError, TypeError, IndexError) as error:
        # yarl raises IndexError too for some malformed hosts ("http://[]-@").
        raise InvalidURL(f"cannot parse URL: {error}") from None
    if parsed.scheme not in FETCHABLE_SCHEMES:
        raise InvalidURL(f"scheme {parsed.scheme or '(none)'!r} is not http or https")
    if not host:
        raise InvalidURL("URL has no host")
    if not (":" in host or _HOSTNAME.match(host)):
        raise InvalidURL(f"invalid host {host!r}")
    if ":" not in host and (len(host.rstrip(".")) > 253 or max(map(len, host.split("."))) > 63):
        raise InvalidURL(
            f"invalid host {host[:80]!r}: a name is at most 253 characters, 63 a label"
        )
    _check_port(url)
    address = _numbers_as_ipv4(host)
    if address is not None:
        parsed = parsed.with_host(address)
    text = str(parsed.with_fragment(None))
    # yarl leaves the root path implicit ("http://h"); the canonical form spells it out.
    return text if parsed.raw_path != "/" or text.endswith("/") or "?" in text else text + "/"


def _check_port(url: str) -> None:
    """yarl reads a port as Python reads a number: "+80" and "80" in full-width digits are 80,
    and it takes 0: none is a port a request can go to (RFC 3986: digits; TCP: 1-65535)."""
    authority = _AUTHORITY.match(url.strip(_C0_AND_SPACE).translate(_TAB_AND_NEWLINES))
    port = _PORT.search(authority.group(1).rpartition("@")[2]) if authority else None
    if port is None or port.group(1) == "":
        return
    digits = port.group(1)
    if not (digits.isascii() and digits.isdigit()) or int(digits) == 0:
        raise InvalidURL(f"invalid port {digits!r}")


def _numbers_as_ipv4(host: str) -> str | None:
    """A host of numbers, dotted-quad as a browser reads it (WHATWG URL's IPv4 parser, which
    reads like inet_aton): "127.1", "2130706433", "0x7f.0.0.1" and "127.0.0.1." are
    127.0.0.1. The resolver connects there; aiohttp (yarl) refuses the URL; and one address
    should have one spelling. None for a host whose last label is not a number (a name).

    A host whose last label is a number is an address or nothing, as in a browser
    (WHATWG's "ends in a number"): numbers that make no address ("1.2.3.09", "256.0.0.1",
    "1.2.3.4.5") and names ending in a number ("example.123") are InvalidURL. No domain
    ends in one, and the resolver read some of them as addresses of its own accord."""
    numbers = host.removesuffix(".").lower()
    if ":" in numbers or not _NUMBER.fullmatch(numbers.rpartition(".")[2]):
        return None  # a name, or an IPv6 address ("::ffff:1.2.3.4")
    if not _NUMERIC_HOST.fullmatch(numbers):
        raise InvalidURL(f"invalid host {host!r}: ending in a number, it must be an IPv4 address")
    # "0x" alone is 0 to WHATWG; inet_aton wants a digit after it
    labels = ("0" if label == "0x" else label for label in numbers.split("."))
    try:
        return socket.inet_ntoa(socket.inet_aton(".".join(labels)))
    except OSError:
        raise InvalidURL(f"invalid IPv4 address {host!r}") from None


def resolution_base(reference: str, base: str) -> str | None:
    """The part of the absolute URL `base` that resolving `reference` against it depends on,
    when that is less than all of it: the origin for a path from the root ("/x"), the
    directory for a relative path ("b.html", "../x?q"; RFC 3986, 5.2.3); else None.

    Resolving against it gives the same URL, so a caller may remember resolutions by it
    (the parser does, per process). For a relative path it also steers clear of yarl's join,
    which decodes the base's path first when it does not end in "/" (yarl issue 1774:
    "d%20ir/p" + "b" gave "d ir/b", and "a%3Fb/c" + "b" gave "a?b/b").
    """
    directory = _BASE_DIRECTORY.match(base)
    if directory is None:
        return None
    if reference.startswith("/") and not reference.startswith("//"):
        return base[: directory.start(1)]
    if _RELATIVE_PATH.match(reference):
        return base[: directory.end(1)]
    return None


def host_of(url: str) -> str:
    """The host of a canonical URL, with its port when that is not the default.

    Called for every URL the frontier schedules, so it reads the canonical text directly
    (scheme://[userinfo@]host[:port]/...), which is already lower-cased, IDNA-encoded
    and without a default port, instead of parsing it again.
    """
    scheme, separator, rest = url.partition("://")
    if separator and scheme in ("http", "https"):
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        return authority.rpartition("@")[2]
    parsed = yarl.URL(url)
    host = parsed.raw_host or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets, so the port stays apart
    return host if parsed.explicit_port is None else f"{host}:{parsed.explicit_port}"


@dataclass(frozen=True, slots=True)
class ListedURL:
    """A valid line of a URL list: its 1-based line number and canonical URL."""

    line: int
    url: str


@dataclass(frozen=True, slots=True)
class BadLine:
    """An invalid line of a URL list, kept so the user can be told which and why."""

    line: int
    text: str
    reason: str


def read_url_list(lines: Iterable[str]) -> Iterator[ListedURL | BadLine]:
    """Parse a URL list: one URL per line, `#` comments and blank lines ignored.

    Lines without a scheme are read as https. Whitespace or control characters inside a
    line make it invalid: a URL list is typed by people, and a space usually means two
    URLs ran together. So do bytes that are not UTF-8, when `lines` were decoded with
    errors="surrogateescape": one bad line does not cost the others.
    """
    for number, raw in enumerate(lines, start=1):
        text = (raw.removeprefix("\ufeff") if number == 1 else raw).strip()
        if not text or text.startswith("#"):
            continue
        if _UNDECODED_BYTE.search(text):
            yield BadLine(number, _shown_with_escapes(text), "not UTF-8 text")
            continue
        try:
            yield ListedURL(number, _listed_to_canonical(text))
        except InvalidURL as error:
            yield BadLine(number, text, str(error))


def _shown_with_escapes(text: str) -> str:
    """A line read with errors="surrogateescape", its undecodable bytes written as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _listed_to_canonical(text: str) -> str:
    if _FORBIDDEN_IN_LINE.search(text):
        raise InvalidURL("contains whitespace or control characters")
    if not _SCHEME_PREFIX.match(text) or _looks_like_host_and_port(text):
        text = "https://" + text
    return canonicalize(text)


def _looks_like_host_and_port(text: str) -> bool:
    """`localhost:8080/x` parses as scheme "localhost"; it is a scheme-less host and port."""
    return _HOST_AND_PORT.match(text) is not None


@dataclass(frozen=True, slots=True)
class Scope:
    """Which discovered links the crawl follows.

    `hosts` are followed exactly (the seeds' hosts, with and without "www.");
    `domains` are followed with all their subdomains (`--allow-domain`).
    """

    hosts: frozenset[str]
    domains: frozenset[str] = frozenset()

    @classmethod
    def around(cls, seeds: Iterable[str], domains: Iterable[str] = ()) -> Scope:
        hosts: set[str] = set()
        for seed in seeds:
            hosts.update(_www_siblings(host_of(seed)))
        return cls(frozenset(hosts), frozenset(ascii_domain(d) for d in domains))

    def widened(self, url: str) -> Scope:
        """The scope plus the host of `url`: a seed that redirects brings its target along."""
        host = host_of(url)
        if host in self.hosts:
            return self
        return Scope(self.hosts | _www_siblings(host), self.domains)

    def contains(self, url: str) -> bool:
        authority = host_of(url)
        if authority in self.hosts:
            return True
        if not self.domains:
            return False
        name = _host_name(authority)
        return any(name == d or name.endswith("." + d) for d in self.domains)


def _www_siblings(host: str) -> frozenset[str]:
    bare = host.removeprefix("www.")
    return frozenset({bare, "www." + bare})


def ascii_domain(domain: str) -> str:
    """A domain as hosts appear in canonical URLs: lower-case, IDNA-encoded, an IPv4
    address in numbers dotted-quad. Raises InvalidURL for one that no URL's host can be or
    end in ("bad domain", "ex*ample.com", "example.123", "256.0.0.1", "")."""
    try:
        host = yarl.URL.build(scheme="http", host=domain.strip(".")).raw_host
    except ValueError as error:
        raise InvalidURL(f"invalid domain {domain!r}: {error}") from None
    if not host or not (":" in host or _HOSTNAME.match(host)):
        raise InvalidURL(f"invalid domain {domain!r}")
    return _numbers_as_ipv4(host) or host


def is_private(url: str) -> bool:
    """True for URLs naming a loopback, private, link-local or otherwise non-public address.

    Decided from the URL alone: IP literals and "localhost" names. A public-looking name
    that resolves to a private address is not caught here (that needs the resolver).
    """
    return _is_private_host(_host_name(host_of(url)).rstrip("."))


# Both run for every link of every page, and a crawl meets few hosts: cache per host.
@functools.lru_cache(maxsize=4096)
def _host_name(authority: str) -> str:
    """The host name in `host_of`'s answer, without port or IPv6 brackets."""
    return yarl.URL(f"http://{authority}/").raw_host or ""


@functools.lru_cache(maxsize=4096)
def _is_private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = _legacy_ipv4(host)
    return address is not None and not address.is_global


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address of a host the resolver reads as IPv4 although it is not dotted-quad:
    "127.1", "2130706433", "0x7f000001" all mean 127.0.0.1 to inet_aton."""
    try:
        address = _numbers_as_ipv4(host)
    except InvalidURL:
        return None
    return None if address is None else ipaddress.IPv4Address(address)


def has_fetchable_scheme(href: str) -> bool:
    """True for a relative reference or an http(s) URL: a link that failed to canonicalize
    for any other reason was malformed, not of another scheme."""
    scheme = _SCHEME_PREFIX.match(href)
    return scheme is None or scheme.group(0)[:-1].lower() in FETCHABLE_SCHEMES
