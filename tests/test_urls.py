"""URL rules: the list file, the canonical form, hosts and the crawl's scope. All pure."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scraper.errors import ErrorKind, InvalidURL
from scraper.urls import (
    BadLine,
    ListedURL,
    Scope,
    _numbers_as_ipv4,
    canonicalize,
    host_of,
    read_url_list,
)


def parse_list(text: str) -> list[ListedURL | BadLine]:
    # Iterate as a text file does: lines end at "\n" only (str.splitlines would also split
    # at U+2028 and NEL, which the list reader must see inside a line).
    return list(read_url_list(io.StringIO(text)))


# -- read_url_list ------------------------------------------------------------------------


def test_comments_and_blank_lines_are_ignored_but_counted() -> None:
    items = parse_list("# a comment\n\n   \n\t\nhttp://example.com/a\n  # indented comment\n")
    assert items == [ListedURL(5, "http://example.com/a")]


def test_surrounding_whitespace_is_stripped() -> None:
    items = parse_list("   http://example.com/x \t \r\n")
    assert items == [ListedURL(1, "http://example.com/x")]


def test_lines_without_newline_and_crlf_endings() -> None:
    items = list(read_url_list(["http://a.example/\r\n", "http://b.example/"]))
    assert items == [ListedURL(1, "http://a.example/"), ListedURL(2, "http://b.example/")]


def test_urls_come_out_canonical() -> None:
    items = parse_list("HTTP://Example.COM:80/a/./b/../c#frag\n")
    assert items == [ListedURL(1, "http://example.com/a/c")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("example.com", "https://example.com/"),
        ("example.com/path?q=1", "https://example.com/path?q=1"),
        ("www.Example.com/A", "https://www.example.com/A"),
        ("localhost:8080", "https://localhost:8080/"),
        ("localhost:8080/p", "https://localhost:8080/p"),
        ("example.com:8443/x?y", "https://example.com:8443/x?y"),
        ("example.com:443", "https://example.com/"),
        ("127.0.0.1:9000/", "https://127.0.0.1:9000/"),
        ("[::1]:8080/x", "https://[::1]:8080/x"),
    ],
)
def test_scheme_less_lines_are_read_as_https(line: str, expected: str) -> None:
    assert parse_list(line) == [ListedURL(1, expected)]


def test_explicit_http_scheme_is_kept() -> None:
    assert parse_list("http://example.com/") == [ListedURL(1, "http://example.com/")]


@pytest.mark.parametrize(
    "url", [" http://127.0.0.1:0/", "http:\t//127.0.0.1:0/", "http://h:+8\t0/"]
)
def test_a_port_is_checked_as_yarl_reads_it(url: str) -> None:
    """Spaces around the URL dropped, tabs and newlines anywhere (as in a browser), as a
    caller of the library or a Location header may leave them."""
    with pytest.raises(InvalidURL, match="port"):
        canonicalize(url)


def test_a_port_with_a_tab_inside_is_the_port_yarl_reads() -> None:
    assert canonicalize("http://h:8\t0/") == "http://h/"


@pytest.mark.parametrize(
    ("line", "reason_part"),
    [
        ("ftp://example.com/file", "scheme"),
        ("mailto:someone@example.com", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http:///path", "no host"),
        ("https://", "no host"),
        ("http:example.com", "no host"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/a b", "whitespace"),
        ("http://example.com/a\tb", "whitespace"),
        ("http://example.com/a\x00b", "control"),
        ("http://example.com/a\x07b", "control"),
        ("http://example.com/a\x7fb", "control"),
        ("example.com other.com", "whitespace"),
        ("http://127.0.0.1:0/", "port"),
        ("http://127.0.0.1:+80/", "port"),
        ("http://127.0.0.1:\uff18\uff10/", "port"),  # full-width digits
        ("http://[::1]:+80/", "port"),
        ("http://" + "a" * 64 + ".com/", "label"),
        ("http://" + ".".join(["a" * 60] * 5) + "/", "253"),
    ],
)
def test_invalid_lines_are_reported_with_a_reason(line: str, reason_part: str) -> None:
    [item] = parse_list(line)
    assert isinstance(item, BadLine)
    assert item.line == 1
    assert item.text == line
    assert reason_part in item.reason


@pytest.mark.parametrize(
    "line",
    [
        "http://example.com/a\u00a0b",  # NO-BREAK SPACE, typical of copy-paste from a page
        "http://example.com/a\u2028b",  # LINE SEPARATOR
        "http://example.com/a\x85b",  # NEL, a C1 control character
    ],
)
def test_non_ascii_whitespace_and_c1_controls_inside_a_line_are_invalid(line: str) -> None:
    # The contract: "Whitespace or control characters inside a line make it invalid".
    [item] = parse_list(line)
    assert isinstance(item, BadLine)


def test_line_numbers_count_every_physical_line() -> None:
    text = "# header\nhttp://a.example/\n\nftp://bad.example/\n# note\n\nb.example\nhttp://\n"
    items = parse_list(text)
    assert [(type(item).__name__, item.line) for item in items] == [
        ("ListedURL", 2),
        ("BadLine", 4),
        ("ListedURL", 7),
        ("BadLine", 8),
    ]
    assert items[2] == ListedURL(7, "https://b.example/")


def test_a_bad_line_does_not_stop_the_rest() -> None:
    items = parse_list("http://\nhttp://ok.example/\n")
    assert isinstance(items[0], BadLine)
    assert items[1] == ListedURL(2, "http://ok.example/")


def test_output_is_bom_free() -> None:
    items = parse_list("http://example.com/\n")
    assert all("\ufeff" not in item.url for item in items if isinstance(item, ListedURL))
    assert items == [ListedURL(1, "http://example.com/")]


def test_a_leading_byte_order_mark_is_ignored() -> None:
    # `scrape -` reads sys.stdin, which does not drop a UTF-8 BOM (PowerShell pipes add one);
    # only the file path is opened with utf-8-sig.
    items = list(read_url_list(["\ufeffhttp://example.com/a\n", "http://example.com/b\n"]))
    assert items == [ListedURL(1, "http://example.com/a"), ListedURL(2, "http://example.com/b")]


def test_a_line_that_is_not_utf8_is_invalid_and_the_others_are_read() -> None:
    # as the CLI reads a list: errors="surrogateescape" turns each bad byte into U+DCxx
    lines = ["http://a.example/\n", "http://b.example/\udce9\n", "\udcff\udcfe\n", "c.example"]
    assert list(read_url_list(lines)) == [
        ListedURL(1, "http://a.example/"),
        BadLine(2, "http://b.example/\\xe9", "not UTF-8 text"),
        BadLine(3, "\\xff\\xfe", "not UTF-8 text"),
        ListedURL(4, "https://c.example/"),
    ]


def test_read_url_list_is_lazy() -> None:
    def lines():
        yield "http://a.example/"
        raise AssertionError("read past the first item")

    assert next(iter(read_url_list(lines()))) == ListedURL(1, "http://a.example/")


# -- canonicalize -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # fragment dropped
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/#", "http://example.com/"),
        ("http://example.com/a?q=1#x", "http://example.com/a?q=1"),
        # scheme and host lower-cased, path case kept
        ("HTTP://EXAMPLE.COM/Path/File", "http://example.com/Path/File"),
        ("HtTpS://Example.Com/", "https://example.com/"),
        # default ports dropped, other ports kept
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("http://example.com:443/x", "http://example.com:443/x"),
        ("https://example.com:80/x", "https://example.com:80/x"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("http://example.com:/x", "http://example.com/x"),
        # dot segments
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/a/b/../../..", "http://example.com/"),
        ("http://example.com/..", "http://example.com/"),
        ("http://example.com/%2e%2e/b", "http://example.com/b"),
        # percent-encoding: unreserved decoded, escapes upper-cased, reserved kept
        ("http://example.com/%7euser", "http://example.com/~user"),
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("http://example.com/%41%62", "http://example.com/Ab"),
        ("http://example.com/%e2%82%ac", "http://example.com/%E2%82%AC"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/a?q=%7e&r=%e2", "http://example.com/a?q=~&r=%E2"),
        ("http://example.com/\u20ac", "http://example.com/%E2%82%AC"),
        # query order preserved
        ("http://example.com/?b=2&a=1", "http://example.com/?b=2&a=1"),
        ("http://example.com/p?z=1&a=2&z=0", "http://example.com/p?z=1&a=2&z=0"),
        # IDNA host
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
        ("http://BÜCHER.de/", "http://xn--bcher-kva.de/"),
        ("http://xn--bcher-kva.de/", "http://xn--bcher-kva.de/"),
        # empty path becomes "/"
        ("http://example.com", "http://example.com/"),
        ("http://example.com?x=1", "http://example.com/?x=1"),
        ("http://example.com#top", "http://example.com/"),
        ("http://example.com:8080", "http://example.com:8080/"),
        # IP literals
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/"),
        ("http://[2001:DB8::1]/", "http://[2001:db8::1]/"),
        # IPv4 in numbers other than dotted-quad, as browsers and the resolver read it
        ("http://127.1:8000/x", "http://127.0.0.1:8000/x"),
        ("http://0/", "http://0.0.0.0/"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://0x7F.0.0.1/", "http://127.0.0.1/"),
        ("http://017700000001/", "http://127.0.0.1/"),
        ("http://user@1.2.3.4./", "http://user@1.2.3.4/"),
        ("http://1.2.3.0x/", "http://1.2.3.0/"),  # "0x" alone is 0 to WHATWG URL
        ("http://0X.1/", "http://0.0.0.1/"),
        # an IPv6 address whose text ends in an IPv4 one is no name ending in a number
        ("http://[::ffff:1.2.3.4]/", "http://[::ffff:102:304]/"),
        ("http://example.com./", "http://example.com./"),  # a name keeps its dot
    ],
)
def test_canonical_form(url: str, expected: str) -> None:
    assert canonicalize(url) == expected


def test_an_ipv6_address_ending_in_an_ipv4_one_is_no_name_ending_in_a_number() -> None:
    """yarl writes "::ffff:1.2.3.4" so on Python 3.13, where ipaddress does; read as a
    name ending in a number, it was refused as an invalid IPv4 address."""
    assert _numbers_as_ipv4("::ffff:1.2.3.4") is None


def test_spellings_of_one_resource_share_a_canonical_form() -> None:
    spellings = [
        "http://example.com/~user/",
        "HTTP://EXAMPLE.com:80/%7euser/",
        "http://example.com/a/../%7Euser/#x",
        "http://Example.com/./~user/",
    ]
    assert {canonicalize(url) for url in spellings} == {"http://example.com/~user/"}


@pytest.mark.parametrize(
    ("href", "base", "expected"),
    [
        ("c", "http://example.com/a/b", "http://example.com/a/c"),
        ("../c?x#y", "http://example.com/a/b/", "http://example.com/a/c?x"),
        ("/root", "http://example.com/a/b", "http://example.com/root"),
        ("?q=1", "http://example.com/a/b", "http://example.com/a/b?q=1"),
        ("#frag", "http://example.com/a/b", "http://example.com/a/b"),
        ("//other.example.org/p", "https://example.com/a", "https://other.example.org/p"),
        ("HTTP://Other.Example.org:80", "https://example.com/a", "http://other.example.org/"),
        ("", "http://example.com/a?q=1", "http://example.com/a?q=1"),
    ],
)
def test_relative_resolution_against_base(href: str, base: str, expected: str) -> None:
    assert canonicalize(href, base=base) == expected


def test_resolution_against_base_can_reach_a_bad_scheme() -> None:
    with pytest.raises(InvalidURL):
        canonicalize("mailto:x@example.com", base="http://example.com/")


@pytest.mark.parametrize(
    "url",
    [
        "http://-bad-.example.com/",
        "http://bad-.example.com/",
        "http://a..b.com/",
        "http://.a.com/",
        "http://ex*ample.com/",
        "http://exa%20mple.com/",
        "http://[]-@",
        "http://[::1/",
        "http://[zz]/",
        "http://example.com:65536/",
        "http://example.com:99999/",
        "http://example.com:-1/",
        "http://example.com:abc/",
        "http://1.2.3.09/",  # 09 is no octal number
        "http://256.0.0.1/",
        "http://a.example/\udcff",  # yarl dropped a lone surrogate: another URL
        "http://a.example/?q=\ud800",
        "http://1.2.3.4.5/",  # a host ending in a number is an address, or nothing
        "http://example.123/",
        "http://example.0x1f/",
        "http:///nohost",
        "http://",
        "ftp://example.com/",
        "file:///etc/passwd",
        "data:text/plain,hi",
        "/relative/without/base",
        "",
    ],
)
def test_unusable_urls_raise_invalid_url(url: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        canonicalize(url)
    assert caught.value.kind is ErrorKind.INVALID_URL
    assert str(caught.value)


# -- host_of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://example.com/", "example.com"),
        ("https://example.com/a?b", "example.com"),
        ("http://example.com:8080/x", "example.com:8080"),
        ("https://www.example.com:8443/", "www.example.com:8443"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
        ("http://xn--bcher-kva.de/", "xn--bcher-kva.de"),
    ],
)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host


def test_host_of_canonical_default_port_has_no_port() -> None:
    assert host_of(canonicalize("https://example.com:443/")) == "example.com"
    assert host_of(canonicalize("http://example.com:80/")) == "example.com"


def test_host_of_tells_ipv6_hosts_and_ports_apart() -> None:
    # "[::1]:8080" and "[::1:8080]" are different hosts; the politeness slots and the scope
    # are keyed by host_of, so the two must not collapse into one key.
    with_port = canonicalize("http://[::1]:8080/")
    other_host = canonicalize("http://[::1:8080]/")
    assert with_port != other_host
    assert host_of(with_port) != host_of(other_host)


# -- Scope ----------------------------------------------------------------------------------


def test_scope_follows_seed_hosts_with_and_without_www() -> None:
    scope = Scope.around(["http://example.com/", "https://www.other.example.org/start"])
    assert scope.contains("http://example.com/page")
    assert scope.contains("https://www.example.com/page")
    assert scope.contains("https://other.example.org/x")
    assert scope.contains("http://www.other.example.org/x")


def test_scope_excludes_other_hosts_and_subdomains_of_seeds() -> None:
    scope = Scope.around(["http://example.com/"])
    assert not scope.contains("http://sub.example.com/")
    assert not scope.contains("http://notexample.com/")
    assert not scope.contains("http://example.com.evil.org/")
    assert not scope.contains("http://evil.org/example.com")


def test_scope_ports_are_part_of_the_host() -> None:
    scope = Scope.around(["http://127.0.0.1:8000/"])
    assert scope.contains("http://127.0.0.1:8000/page")
    assert not scope.contains("http://127.0.0.1:8001/page")


def test_allow_domains_include_subdomains() -> None:
    scope = Scope.around(["http://seed.example.org/"], ["Example.COM."])
    assert scope.contains("http://example.com/")
    assert scope.contains("http://a.example.com/")
    assert scope.contains("https://deep.a.example.com:8443/x")
    assert scope.contains("http://seed.example.org/")


def test_allow_domains_is_not_a_bare_suffix_match() -> None:
    scope = Scope.around([], ["example.com"])
    assert not scope.contains("http://notexample.com/")
    assert not scope.contains("http://example.com.evil.org/")
    assert not scope.contains("http://com/")


def test_allow_domains_in_ipv4_numbers_match_the_canonical_address() -> None:
    scope = Scope.around([], ["127.1"])
    assert scope.contains(canonicalize("http://127.1/x"))
    assert scope.contains("http://127.0.0.1/x")


def test_allow_domains_accept_international_domain_names() -> None:
    # Canonical URLs carry IDNA (punycode) hosts, so `--allow-domain bücher.de` must match them.
    scope = Scope.around([], ["bücher.de"])
    assert scope.contains(canonicalize("http://shop.bücher.de/"))


def test_empty_scope_contains_nothing() -> None:
    scope = Scope.around([])
    assert not scope.contains("http://example.com/")


def test_widened_adds_the_host_and_its_www_sibling() -> None:
    scope = Scope.around(["http://example.com/"])
    wider = scope.widened("https://www.moved.example.org/landing")
    assert wider.contains("http://moved.example.org/")
    assert wider.contains("http://www.moved.example.org/")
    assert wider.contains("http://example.com/")
    assert not scope.contains("http://moved.example.org/")  # the original is unchanged (frozen)
    assert wider.domains == scope.domains


def test_widened_returns_itself_when_the_host_is_known() -> None:
    scope = Scope.around(["http://example.com/"], ["x.org"])
    assert scope.widened("http://www.example.com/other") is scope


# -- properties -----------------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_HOSTS = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["bücher.de", "BÜCHER.de", "127.0.0.1", "[::1]", "[2001:DB8::1]", "例え.jp"]),
)
_PIECES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                *"aZ09-._~!$&'()*+,;=:@/?% ",
                "%7e",
                "%7E",
                "%2f",
                "%20",
                "%e2%82%ac",
                "%41",
                "%zz",
                "..",
                "./",
                "../",
                "é",
                "\u20ac",
            ]
        ),
        st.text(max_size=3),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "HttpS"]),
    host=_HOSTS,
    port=st.sampled_from(["", ":80", ":443", ":8080", ":"]),
    path=_PIECES,
    query=st.none() | _PIECES,
    fragment=st.none() | _PIECES,
)
def test_canonicalize_is_idempotent(
    scheme: str, host: str, port: str, path: str, query: str | None, fragment: str | None
) -> None:
    url = f"{scheme}://{host}{port}/{path}"
    if query is not None:
        url += "?" + query
    if fragment is not None:
        url += "#" + fragment
    try:
        once = canonicalize(url)
    except InvalidURL:
        return
    assert "#" not in once
    assert once.startswith(("http://", "https://"))
    assert canonicalize(once) == once


@pytest.mark.parametrize(
    ("reference", "base", "expected"),
    [
        ("b.html", "http://h.example/d%20ir/p", "http://h.example/d%20ir/b.html"),
        ("b", "http://h.example/a%3Fb/c", "http://h.example/a%3Fb/b"),
        ("../b", "http://h.example/x/a%2Fb/c", "http://h.example/x/b"),
        ("/b", "http://h.example/a%3Fb/c", "http://h.example/b"),
        ("?q", "http://h.example/a%3Fb/c", "http://h.example/a%3Fb/c?q"),
    ],
)
def test_resolving_keeps_the_base_paths_escapes(reference: str, base: str, expected: str) -> None:
    """yarl's join decodes a base path that does not end in "/" (yarl issue 1774), which
    turned an escaped "?" into a query: only the base's directory is joined instead."""
    assert canonicalize(reference, base) == expected
